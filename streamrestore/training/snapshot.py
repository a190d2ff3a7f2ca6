"""Export the EMA weights of a run's latest checkpoint, mid-schedule, as the finished run would export them.

    python -m streamrestore.training.snapshot RUN_DIR OUT.safetensors

For CPU runs trained in chunks (``--stop-after`` / ``--resume``): the weights at any checkpoint can be scored
and shipped without waiting for the end of the schedule. The file is in the architecture's official layout
with the same metadata as a finished export, plus ``streamrestore.train.exported_at_step``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from streamrestore.errors import ConfigError


def snapshot(run_dir: Path, target: Path) -> int:
    """Write the checkpoint's EMA weights to ``target``; returns the step it was taken at."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from .degrade import scale_of
    from .loop import TrainConfig, _RUN_KEYS, export, initial_network

    path = run_dir / "checkpoint.pt"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no checkpoint.pt")
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = {key: state["config"][key] for key in _RUN_KEYS if key in state["config"]}
    if "blur_odds" in saved:
        saved["blur_odds"] = tuple(saved["blur_odds"])
    config = TrainConfig(data=str(run_dir), out=str(run_dir), **saved)
    start = initial_network(config, scale_of(config.task))
    start.network.load_state_dict(state["ema"])
    export(start.network, target, config, start)
    with safe_open(str(target), framework="pt") as reader:
        metadata, tensors = reader.metadata(), {key: reader.get_tensor(key) for key in reader.keys()}
    save_file(tensors, str(target), metadata={**metadata, "streamrestore.train.exported_at_step": str(state["step"])})
    return int(state["step"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamrestore.training.snapshot", description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="the run's --out folder (holds checkpoint.pt)")
    parser.add_argument("target", type=Path, help="the safetensors file to write")
    args = parser.parse_args(argv)
    step = snapshot(args.run, args.target)
    print(f"{args.target}: EMA weights at step {step}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
