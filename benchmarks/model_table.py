"""Seconds per 720p frame for every network streamrestore ships (the README's model table), on this machine.

    python benchmarks/model_table.py [--repeat 2] [--names a,b]

For each shipped network (``streamrestore models``, the ones trained here) one ``PreparedChain`` is built and
run on a photo-like 720p frame: the input is 1280×720 for ×1 networks, and 1280/s × 720/s for ×s ones, so
every output is 720p. Prints a Markdown row per network: task, scale, parameters, file size, the best of
``--repeat`` timed runs after one warm-up, in seconds per frame (wall) and CPU seconds per frame (process
time, all threads). On a shared machine compare the rows with each other (one run), not across runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def frame(width: int, height: int) -> np.ndarray:
    """A photo-like frame: scikit-image's coffee photo tiled and cropped to ``width``×``height``."""
    from skimage import data

    photo = data.coffee()
    tiled = np.tile(photo, (height // photo.shape[0] + 1, width // photo.shape[1] + 1, 1))
    return np.ascontiguousarray(tiled[:height, :width])


def main() -> None:
    import torch

    from streamrestore.models.loader import load_network
    from streamrestore.models.trained import trained_entries
    from streamrestore.models.weights import resolve_weights
    from streamrestore.restore import PreparedChain

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--names", help="comma-separated model names (default: every shipped network)")
    args = parser.parse_args()
    wanted = set(args.names.split(",")) if args.names else None
    print(f"torch threads: {torch.get_num_threads()}")
    print("| network | task | scale | parameters | size | s / 720p frame | CPU s / frame |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for entry in trained_entries():
        if wanted and entry.name not in wanted:
            continue
        path = Path(resolve_weights(entry.name))
        params = sum(p.numel() for p in load_network(path).model.parameters())
        scale = entry.scale
        image = frame(1280 // scale, 720 // scale)
        chain = PreparedChain(f"model={entry.name}")
        chain.restore_array(image)  # warm-up: weights read, first-call costs
        best = (float("inf"), float("inf"))
        for _ in range(args.repeat):
            wall, cpu = time.perf_counter(), time.process_time()
            out = chain.restore_array(image)
            best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
        assert out.shape == (720, 1280, 3), out.shape
        print(f"| `{entry.name}` | {entry.task} | ×{scale} | {params / 1e6:.2f} M | {path.stat().st_size / 1e6:.2f} MB "
              f"| {best[0]:.2f} | {best[1]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
