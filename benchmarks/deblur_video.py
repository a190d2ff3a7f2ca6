"""Deblur chains on blurred video frames, stored losslessly and after H.264 (what most footage has been through).

    python benchmarks/deblur_video.py [--frames 6] [--crf 18]

The first ``--frames`` frames of each development-kit clip (../shared/data/videos/*/gt.mkv, the clean
references) are blurred by the kit's Gaussian (σ 1.6) and by a seeded 15-px camera shake (the kernels of
``streamrestore train --task deblur``), then restored as they are and after a libx264 round trip (yuv420p,
``--crf``), by each chain through ``PreparedChain``. Prints one Markdown row per (blur, storage): the input's
PSNR-Y against the clean frame (BT.601, as the kit's ``score.py``), then each chain's gain over it (dB).
Needs the kit; without it, says so and exits 1.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import av
import numpy as np

from streamrestore.restore import PreparedChain
from streamrestore.training.degrade import convolve, gaussian_kernel, shake_kernel

KIT = Path(__file__).resolve().parents[2] / "shared" / "data"
CHAINS = ["deblur", "model=deblur-nafnet16", "sharpen:amount=6:radius=0.8"]


def luma_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR-Y by the kit's own ``score.py`` (its BT.601 luma and PSNR)."""
    from score import psnr, rgb_to_y

    return psnr(rgb_to_y(a), rgb_to_y(b))


def decoded(source: str | io.BytesIO, count: int) -> list[np.ndarray]:
    with av.open(source) as container:
        frames = [frame.to_ndarray(format="rgb24") for _, frame in zip(range(count), container.decode(video=0))]
    return frames


def through_x264(frames: list[np.ndarray], crf: int) -> list[np.ndarray]:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt, stream.options = "yuv420p", {"crf": str(crf)}
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    buffer.seek(0)
    return decoded(buffer, len(frames))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=6, help="frames per kit clip (default 6)")
    parser.add_argument("--crf", type=int, default=18, help="x264 quality of the compressed copy (default 18)")
    args = parser.parse_args()
    clips = sorted(KIT.glob("videos/*/gt.mkv"))
    if not clips or not (KIT / "score.py").exists():
        print(f"the development kit (clips and score.py) is not at {KIT}; nothing to measure", file=sys.stderr)
        return 1
    sys.path.insert(0, str(KIT))  # score.py, the kit's metrics
    clean = [decoded(str(path), args.frames) for path in clips]
    kernels = {"Gaussian σ 1.6": gaussian_kernel(1.6, 25), "camera shake 15 px": shake_kernel(np.random.default_rng(5),
                                                                                                 15.0, 25)}  # fmt: skip
    prepared = {chain: PreparedChain(chain) for chain in CHAINS}
    print("| blur | stored | input PSNR-Y | " + " | ".join(f"`{c}` gain" for c in CHAINS) + " |")
    print("|---|---|---|" + "---|" * len(CHAINS))
    for name, kernel in kernels.items():
        blurred = [[np.clip(np.rint(convolve(f.astype(np.float32), kernel)), 0, 255).astype(np.uint8) for f in clip]
                   for clip in clean]  # fmt: skip
        for storage, inputs in (("lossless", blurred), (f"x264 crf {args.crf}", [through_x264(c, args.crf)
                                                                                 for c in blurred])):  # fmt: skip
            pairs = [(x, y) for clip_in, clip_clean in zip(inputs, clean) for x, y in zip(clip_in, clip_clean)]
            base = np.mean([luma_psnr(x, y) for x, y in pairs])
            gains = [np.mean([luma_psnr(prepared[c].restore_array(x), y) for x, y in pairs]) - base for c in CHAINS]
            print(f"| {name} | {storage} | {base:.2f} | " + " | ".join(f"{g:+.2f}" for g in gains) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
