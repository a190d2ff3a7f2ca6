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
    from streamrestore.demo.video import PREVIEW_ENCODER, VideoSession

    width, height = map(int, args.size.split("x"))
    script = str(Path(sys.executable).with_name("streamrestore"))
    encoder = [f"--{key.replace('_', '-')}={value}" for key, value in PREVIEW_ENCODER.items()]
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        make_clip(clip, panned_frames(args.seconds * 24, width, height), rate=24)
        session = DemoSession(DemoSettings(device=args.device, preview_pixels=10**8), Path(folder) / "work")
        videos = VideoSession(session)
        cpu = time.process_time()
        upload, preview = videos.preview(clip, args.seconds / 2, args.chain, 2.0)
        preview_cpu = time.process_time() - cpu
        session.close()
        load = os.getloadavg()[0]
        common = ["--chain", preview.chain, "--device", args.device, *encoder, "--overwrite"]
        job = timed([script, "job", str(clip), "-o", str(Path(folder) / "job.mp4"), "--workers", "1", *common])
        run = timed([script, "run", str(clip), "-o", str(Path(folder) / "run.mp4"), *common]) if args.also_run else None
    e, frames = preview.estimate, upload.frames
    old = preview.seconds / preview.frames * frames
    print(f"{args.chain} on {args.device}, {width}×{height}, {frames} frames (load {load:.1f} after the preview, "
          f"{os.getloadavg()[0]:.1f} at the end, {os.cpu_count()} cores)")
    print(f"  preview: {preview.frames} frames in {preview.seconds:.1f} s ({preview_cpu / preview.frames:.2f} CPU s/frame); "
          f"steady {e.per_frame:.3f} s/frame, fixed {e.fixed:.1f} s")
    print(f"  estimate {e.seconds:.1f} s; the old estimate (preview time / frames × frames) {old:.1f} s")
    for name, result in (("job --workers 1", job), ("run", run)):
        if result is None:
            continue
        wall, cpu_s, reported = result
        print(f"  {name}: {wall:.1f} s wall ({reported:.1f} s reported), {cpu_s / frames:.2f} CPU s/frame, "
              f"{frames / wall:.2f} fps; estimate/real = {e.seconds / wall:.2f} (old {old / wall:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
