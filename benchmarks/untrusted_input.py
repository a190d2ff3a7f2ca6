"""Peak memory of ``streamrestore run`` on hostile input, and the bytes per working pixel the size check assumes.

    python benchmarks/untrusted_input.py [--folder /tmp/streamrestore-untrusted]

Runs the command line in subprocesses and reads each one's peak RSS from ``wait4``:

1. a normal run (a 64×48 PNG through a tiny ×2 network): the baseline;
2. a deflate-bomb ``.pth`` (8 MB inflating to 8 GiB; tests/support/attacks.py) and a TorchScript ``.pt``: refused
   by ``models.safety`` before loading, so their peak stays at or under the baseline;
3. ``resize:scale=8`` three times on that PNG (805 MP): refused by ``engine.budget`` before the first frame;
4. ``resize:scale=4`` and ``scale=8`` of a 1280×960 picture with the check off (19.7 and 78.6 MP outputs):
   the slope between them is the host memory a working pixel costs (``engine.budget.BYTES_PER_WORKING_PIXEL``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # tests/support: the attack makers the tests use
from support.attacks import deflate_bomb, tiny_model, torchscript_writer  # noqa: E402


def run(*args: object) -> tuple[int, str, float]:
    """``streamrestore ARGS``: exit code, last stderr line, peak RSS in MiB."""
    script = Path(sys.executable).with_name("streamrestore")
    process = subprocess.Popen([str(script), *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, (stderr.strip().splitlines() or [""])[-1][:150], usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/streamrestore-untrusted"))
    folder = parser.parse_args().folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    small, large = folder / "small.png", folder / "large.png"
    cv2.imwrite(str(small), rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    cv2.imwrite(str(large), rng.integers(0, 256, (960, 1280, 3), dtype=np.uint8))
    model = tiny_model(folder / "tiny_x2.pth")
    bomb = deflate_bomb(folder / "bomb.pth", 8)
    script = torchscript_writer(folder / "evil.pt", folder / "marker")
    out = folder / "out.png"
    cases = [
        ("normal run (tiny ×2 network)", ["run", small, "--chain", f"sr2={model}"]),
        (f"deflate bomb ({bomb.stat().st_size / 1e6:.1f} MB → 8 GiB)", ["run", small, "--chain", f"sr2={bomb}"]),
        ("TorchScript .pt", ["run", small, "--chain", f"sr2={script}"]),
        ("resize ×8 ×8 ×8 (805 MP)", ["run", small, "--chain", "resize:scale=8,resize:scale=8,resize:scale=8"]),
        ("1280×960 resize ×4 (19.7 MP), no check", ["run", large, "--chain", "resize:scale=4", "--max-pixels", 0]),
        ("1280×960 resize ×8 (78.6 MP), no check", ["run", large, "--chain", "resize:scale=8", "--max-pixels", 0]),
    ]
    peaks = {}
    for name, args in cases:
        code, line, peak = run(*args, "-o", out, "--overwrite", "-q")
        peaks[name] = peak
        print(f"{name:<42} exit {code:>3}  peak RSS {peak:7.0f} MiB  {line}")
    slope = (peaks[cases[5][0]] - peaks[cases[4][0]]) * (1 << 20) / ((78.6 - 19.7) * 1e6)
    print(f"host memory per working pixel (resize): {slope:.0f} bytes; marker written: {(folder / 'marker').exists()}")


if __name__ == "__main__":
    main()
