"""How honest the demo's whole-file estimate is: preview 2 s of a clip as the page does, then restore the whole file.

    python benchmarks/preview_estimate.py [--chain denoise] [--seconds 10] [--size 854x480] [--device cpu]
                                          [--also-run]

The preview is ``VideoSession.preview`` (the page's code: a range restore through ``streamrestore.jobs``);
its estimate is the steady seconds per frame (from its first frame out to its last) × the file's frames,
plus the fixed costs it measured (planning, first batch, join). The real run is the command a user
would type, in a subprocess: ``streamrestore job CLIP --chain CHAIN --workers 1`` with the preview's
encoder settings (and ``streamrestore run`` too with ``--also-run``). Printed: the estimate, the old
estimate (the preview's whole time / its frames × the file's frames), the real runs' wall time (and the
time the command itself reports, without Python's start), CPU seconds per frame, and the ratios.

On a shared machine the wall-time ratio moves with the load of the moment (the preview and the real run
do not get the same share of the cores), so the same estimate is also made in CPU seconds (the process's
CPU clock read at each frame the preview writes, the same formula) and compared with the real run's CPU
seconds (its user + system time, Python's start and imports included: about 5 CPU s here).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(command: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (the child's user + system), and the seconds the command reports itself."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: {done.stderr}")
    reported = re.findall(r"([\d.]+) s \(", done.stderr)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, float(reported[-1]) if reported else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chain", default="denoise")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--size", default="854x480")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--also-run", action="store_true", help="time `streamrestore run` too")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(root), str(root / "tests")]
    from support.media import make_clip, panned_frames

    from streamrestore.demo.settings import DemoSettings
    from streamrestore.demo.logic import DemoSession
    from streamrestore.demo.video import PREVIEW_ENCODER, Estimate, VideoSession

    width, height = map(int, args.size.split("x"))
    script = str(Path(sys.executable).with_name("streamrestore"))
    encoder = [f"--{key.replace('_', '-')}={value}" for key, value in PREVIEW_ENCODER.items()]
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        make_clip(clip, panned_frames(args.seconds * 24, width, height), rate=24)
        session = DemoSession(DemoSettings(device=args.device, preview_pixels=10**8), Path(folder) / "work")
        videos = VideoSession(session)
        clocks: list[tuple[float, float]] = []  # (wall, CPU) at each frame the preview writes

        def progress(fraction: float) -> None:
            clocks.append((time.perf_counter(), time.process_time()))

        cpu = time.process_time()
        upload, preview = videos.preview(clip, args.seconds / 2, args.chain, 2.0, progress=progress)
        preview_cpu = time.process_time() - cpu
        # The after-job's CPU clock: from the first progress call (0, before any frame) to its end.
        cpu_started, cpu_written = clocks[0][1], [c for _, c in clocks[1:]]
        cpu_estimate = Estimate.measure(cpu_started, cpu + preview_cpu, cpu_written, upload.frames)
        session.close()
        load = os.getloadavg()[0]
        common = ["--chain", preview.chain, "--device", args.device, *encoder, "--overwrite"]
        # What a command spends before its work: Python's start and the imports (the estimate leaves it out).
        start_wall, start_cpu, _ = timed([sys.executable, "-c", "import torch, av, streamrestore.cli, "
                                          "streamrestore.jobs.job, streamrestore.restore"])  # fmt: skip
        job = timed([script, "job", str(clip), "-o", str(Path(folder) / "job.mp4"), "--workers", "1", *common])
        run = timed([script, "run", str(clip), "-o", str(Path(folder) / "run.mp4"), *common]) if args.also_run else None
    e, frames = preview.estimate, upload.frames
    old = preview.seconds / preview.frames * frames
    print(f"{args.chain} on {args.device}, {width}×{height}, {frames} frames (load {load:.1f} after the preview, "
          f"{os.getloadavg()[0]:.1f} at the end, {os.cpu_count()} cores)")
    print(f"  preview: {preview.frames} frames in {preview.seconds:.1f} s ({preview_cpu / preview.frames:.2f} CPU "
          f"s/frame, the 'before' clip included); steady {e.per_frame:.3f} s/frame, fixed {e.fixed:.1f} s")
    print(f"  estimate {e.seconds:.1f} s; the old estimate (preview time / frames × frames) {old:.1f} s; "
          f"in CPU seconds: {cpu_estimate.per_frame:.3f} CPU s/frame steady, fixed {cpu_estimate.fixed:.1f}, "
          f"estimate {cpu_estimate.seconds:.1f} CPU s")
    for name, result in (("job --workers 1", job), ("run", run)):
        if result is None:
            continue
        wall, cpu_s, reported = result
        print(f"  {name}: {wall:.1f} s wall ({reported:.1f} s reported), {cpu_s:.1f} CPU s = {cpu_s / frames:.3f} "
              f"CPU s/frame, {frames / wall:.2f} fps; estimate/real = {e.seconds / wall:.2f} wall (old "
              f"{old / wall:.2f}), {cpu_estimate.seconds / cpu_s:.2f} CPU; without Python's start and imports "
              f"({start_wall:.1f} s, {start_cpu:.1f} CPU s): {e.seconds / (wall - start_wall):.2f} wall (old "
              f"{old / (wall - start_wall):.2f}), {cpu_estimate.seconds / (cpu_s - start_cpu):.2f} CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
