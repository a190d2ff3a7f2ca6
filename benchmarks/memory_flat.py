"""Checks that host memory stays flat in clip length: peak RSS of ``streamrestore run`` on a short and a long clip.

    python benchmarks/memory_flat.py [--folder /tmp/streamrestore-memory] [--seconds 10,600] [--chain identity]

Makes (once, kept in ``--folder``) synthetic 1920×1080 24 fps clips of each length with
``make_clip.py`` (a panned photo, libx264 ultrafast CRF 28, so 10 minutes stay a few hundred MB), then
runs the command line on each (``--preset ultrafast``, output in the same folder, removed after),
sampling the process's VmRSS every 0.2 s. Prints the peak and the RSS at each quarter of the run:
with bounded queues the long clip's curve is as flat as the short one's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # make_clip beside this script; a script, not the library
from make_clip import write_clip  # noqa: E402


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def run(clip: Path, chain: str) -> tuple[float, list[tuple[float, int]]]:
    out = clip.with_suffix(".restored.mkv")
    command = ["streamrestore", "run", str(clip), "--chain", chain, "--preset", "ultrafast", "-o", str(out),
               "--overwrite", "-q"]
    start = time.perf_counter()
    process = subprocess.Popen(command)
    samples: list[tuple[float, int]] = []
    while process.poll() is None:
        kib = rss_kib(process.pid)
        if kib is not None:
            samples.append((time.perf_counter() - start, kib))
        time.sleep(0.2)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {process.returncode}")
    out.unlink(missing_ok=True)
    return time.perf_counter() - start, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default="/tmp/streamrestore-memory")
    parser.add_argument("--seconds", default="10,600", help="clip lengths in seconds")
    parser.add_argument("--chain", default="identity")
    args = parser.parse_args()
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    for seconds in (int(s) for s in args.seconds.split(",")):
        clip = folder / f"hd_{seconds}s.mp4"
        if not clip.exists():
            made = time.perf_counter()
            write_clip(str(clip), 1920, 1080, seconds * 24, 24, "astronaut", "ultrafast", 28)
            print(f"made {clip} ({clip.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - made:.0f} s")
        wall, samples = run(clip, args.chain)
        peak = max(kib for _, kib in samples)
        quarters = [next(kib for t, kib in samples if t >= wall * q / 4) for q in (1, 2, 3)] + [samples[-1][1]]
        print(f"{seconds:5d} s clip ({seconds * 24} frames): {seconds * 24 / wall:6.1f} fps, peak RSS "
              f"{peak / 1024:6.0f} MiB; at 25/50/75/100 % of the run: "
              + " / ".join(f"{kib / 1024:.0f}" for kib in quarters) + f" MiB; load average {os.getloadavg()[0]:.2f}",
              flush=True)


if __name__ == "__main__":
    main()
