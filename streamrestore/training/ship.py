"""Turn an exported training result into a shipped model file: float16, same keys, same metadata.

    python -m streamrestore.training.ship RUN/denoise-nafnet.safetensors streamrestore/models/NAME.safetensors

Prints the size and sha256 to pin in ``streamrestore/models/trained.py``. Halving is safe for loading:
the loader builds the network in float32 and copies the float16 tensors in (float16 keeps ~3 significant
digits, far below what 8-bit output can show; the README's scores are measured on the shipped file).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamrestore.models.weights import sha256_file


def ship(source: Path, target: Path) -> str:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(source), framework="pt") as reader:
        metadata = reader.metadata() or {}
        tensors = {key: reader.get_tensor(key) for key in reader.keys()}
    halved = {key: (t.half() if t.is_floating_point() else t).contiguous() for key, t in tensors.items()}
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(halved, str(target), metadata={**metadata, "streamrestore.shipped_from": source.name})
    return sha256_file(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamrestore.training.ship", description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="the exported float32 safetensors of a finished run")
    parser.add_argument("target", type=Path, help="where the float16 copy goes")
    args = parser.parse_args(argv)
    digest = ship(args.source, args.target)
    print(f"{args.target}: {args.target.stat().st_size / 1e6:.2f} MB, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
