"""Prints what archive jobs cost and gain: segmenting, --workers, segment size, resume after a kill, Ray.

    python benchmarks/jobs.py [--width 1280 --height 720 --seconds 10] [--chain identity] [--ray]

Makes a test clip with Debian's ffmpeg (testsrc2, libx264 ultrafast, a keyframe every second), then,
in this order, each run from a fresh output:

- one stream: ``restore_video`` (the single-stream path), the baseline;
- job, 1 worker, for each --segments length;
- job, 2 workers (same total cores: each worker's x264 and torch get half);
- resume: the job as a subprocess, SIGKILLed at half the uninterrupted command's wall time, then the
  same command again; total wall time (both runs) vs one uninterrupted job run;
- --workers-only: just the 1-worker and 2-worker jobs (e.g. a model-bound chain);
- --resume-only: just the resume comparison (e.g. ``--seconds 120 --segments 30``: the issue's 2-minute
  720p clip at the default segment length);
- --quick: just the one stream and a 1-worker job at the first segment length (with --interlaced: a 25i
  clip, testsrc2 woven by FFmpeg's ``interlace`` and coded interlaced, so both deinterlace at field rate);
- Ray (--ray): a local cluster (2 CPUs) started first, then the job through it, vs 2 local workers.

Each line: wall seconds, fps, and CPU seconds per frame (user+sys of this process and its reaped
children, so worker processes count; Ray's workers are not our children and are not counted). The
machine is shared: compare ratios within one run, and read the load average printed with it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from streamrestore.jobs import Job, JobOptions
from streamrestore.restore import OutputSettings, restore_video


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def make_clip(path: Path, width: int, height: int, seconds: float, interlaced: bool = False) -> None:
    if interlaced:  # 50p woven into 25i, coded interlaced, a keyframe every second
        video = ["-i", f"testsrc2=size={width}x{height}:rate=50", "-vf", "interlace=scan=tff", "-flags", "+ilme+ildct",
                 "-top", "1", "-g", "25"]
    else:
        video = ["-i", f"testsrc2=size={width}x{height}:rate=24", "-g", "24"]
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", *video[:2], "-t", str(seconds), *video[2:],
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)], check=True)


def measure(label: str, frames: int, run) -> float:
    started, cpu = time.perf_counter(), cpu_seconds()
    run()
    wall, used = time.perf_counter() - started, cpu_seconds() - cpu
    print(f"{label:<44} {wall:7.1f} s  {frames / wall:6.2f} fps  {used / frames:6.3f} CPU s/frame", flush=True)
    return wall


def resume_overhead(clip: Path, frames: int, args: argparse.Namespace, segment: float, out, folder: Path) -> None:
    """A job command killed (SIGKILL) once half its segments are in the manifest, then run again, vs uninterrupted."""
    target, job_dir = out("resumed.mp4"), folder / "resume-job"
    command = [sys.executable, "-m", "streamrestore.cli", "job", str(clip), "--chain", args.chain, "-o", target,
               "--preset", args.preset, "--segment-seconds", str(segment), "--workers", "1",
               "--job", str(job_dir), "-q"]
    uninterrupted = measure("job, 1 worker, as a command (uninterrupted)", frames,
                            lambda: subprocess.run(command, check=True))
    Path(target).unlink()

    def killed_then_resumed() -> None:
        # Killed at half the uninterrupted wall time: wherever that lands, usually inside a segment,
        # whose frames so far are lost (the worst case is a whole segment, --segment-seconds of video).
        process = subprocess.Popen(command, start_new_session=True)
        try:
            process.wait(timeout=uninterrupted / 2)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        pieces = len(json.loads((job_dir / "manifest.json").read_text())["pieces"])
        print(f"killed after {uninterrupted / 2:.1f} s with {pieces} piece(s) finished", flush=True)
        subprocess.run(command, check=True)

    resumed = measure("killed at 50 %, then resumed (both runs)", frames, killed_then_resumed)
    print(f"resume overhead: {resumed / uninterrupted:.2f}× the uninterrupted command's wall time", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--chain", default="identity")
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--segments", default="1,2.5,5", help="segment lengths in seconds, comma-separated")
    parser.add_argument("--ray", action="store_true")
    parser.add_argument("--workers-only", action="store_true",
                        help="only one worker (all cores to torch) vs 2 workers (one torch thread each)")
    parser.add_argument("--quick", action="store_true", help="only one stream vs a 1-worker job")
    parser.add_argument("--resume-only", action="store_true",
                        help="only the uninterrupted command vs the one killed at 50 %% and run again")
    parser.add_argument("--interlaced", action="store_true", help="a 25i clip (both paths deinterlace it)")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="jobs-bench-"))
    clip = folder / "clip.mp4"
    make_clip(clip, args.width, args.height, args.seconds, args.interlaced)
    frames = round(args.seconds * (25 if args.interlaced else 24))  # source frames (25i: 50 written per second)
    print(f"clip: {args.width}×{args.height}, {frames} frames; chain {args.chain!r}; x264 {args.preset}", flush=True)

    def out(name: str) -> str:
        path = folder / name
        path.unlink(missing_ok=True)
        return str(path)

    def job(name: str, **options) -> Job:
        return Job(str(clip), out(name), args.chain, JobOptions(output=OutputSettings(preset=args.preset), **options))

    if args.workers_only:
        first_segment = float(args.segments.split(",")[0])
        measure(f"job, 1 worker, {first_segment:g} s segments", frames,
                lambda: job("w1.mp4", workers=1, segment_seconds=first_segment).run())
        measure(f"job, 2 workers, {first_segment:g} s segments", frames,
                lambda: job("w2.mp4", workers=2, segment_seconds=first_segment).run())
        print(f"load average at end: {os.getloadavg()}", flush=True)
        return
    if args.resume_only:
        resume_overhead(clip, frames, args, float(args.segments.split(",")[0]), out, folder)
        print(f"load average at end: {os.getloadavg()}", flush=True)
        return
    alone = measure("one stream (restore_video)", frames,
                    lambda: restore_video(str(clip), out("one.mp4"), args.chain, output=OutputSettings(preset=args.preset)))
    first_segment = float(args.segments.split(",")[0])
    if args.quick:
        segmented = measure(f"job, 1 worker, {first_segment:g} s segments", frames,
                            lambda: job("w1.mp4", workers=1, segment_seconds=first_segment).run())
        print(f"job vs one stream: {segmented / alone:.2f}× the wall time", flush=True)
        print(f"load average at end: {os.getloadavg()}", flush=True)
        return
    for seconds in (float(s) for s in args.segments.split(",")):
        measure(f"job, 1 worker, {seconds:g} s segments", frames,
                lambda: job("w1.mp4", workers=1, segment_seconds=seconds).run())
    one = measure(f"job, 2 workers, {first_segment:g} s segments", frames,
                  lambda: job("w2.mp4", workers=2, segment_seconds=first_segment).run())

    resume_overhead(clip, frames, args, first_segment, out, folder)

    if args.ray:
        import ray

        started = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        print(f"ray.init (local cluster, 2 CPUs): {time.perf_counter() - started:.1f} s", flush=True)
        # The first job pays for starting Ray's worker processes; the second shows the steady state.
        measure(f"Ray, {first_segment:g} s segments (cold workers)", frames,
                lambda: job("ray.mp4", ray="auto", segment_seconds=first_segment).run())
        warm = measure(f"Ray, {first_segment:g} s segments (warm workers)", frames,
                       lambda: job("ray.mp4", ray="auto", segment_seconds=first_segment).run())
        print(f"Ray vs 2 local workers: {warm / one:.2f}× the wall time", flush=True)
        ray.shutdown()
    print(f"load average at end: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
