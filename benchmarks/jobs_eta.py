"""Measures how honest the job progress display's ETA is: shown ETA vs the real remaining time.

    python benchmarks/jobs_eta.py [--command job|run] [--chain unsharp] [--frames 240] [--only single,folder]

Makes 720p clips (benchmarks/make_clip.py's panning photo, a keyframe every second), then runs the
CLI as a subprocess for each scenario, reads its progress display from stderr as it is drawn
(``n/total [elapsed<ETA``) and timestamps every redraw. When the command has exited, the real
remaining time at each redraw is known (exit time − redraw time). At the first redraw past 10 %,
25 %, 50 % and 75 % of the frames this run restores, it prints ETA shown / real remaining
(1.00 = exact, 2.0 = twice too long). Scenarios:

- single: one clip, ``--workers 1``, 1 s segments;
- workers2: the same with ``--workers 2`` (each worker a process that imports torch and builds the chain);
- resumed: the same command SIGKILLed once half the segments are in the manifest, then rerun (the
  rerun is measured: its kept pieces are not fresh work);
- folder: a folder of three clips, ``--workers 1`` (per-file planning, chain building and join);
- stream: ``streamrestore run`` without a job option (one stream) on a small clip through a model
  (``denoise``: weights load and warm up in the first batch); also the ratio of its one ``expected:``
  line (before: the whole run's duration from the first batch; after: the time left, from the steady rate).

The machine is shared: each scenario prints the load average, wall seconds and CPU s/frame of the command.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).parent))
from make_clip import frame_at, photo_canvas  # noqa: E402

POINTS = (0.10, 0.25, 0.50, 0.75)
# "12/240 [00:03<00:41" (tqdm's layout, kept by the job display)
DRAW = re.compile(r"(\d+)/(\d+) \[([\d:]+)<([\d:]+|\?)")
# "expected: about 4 min for 48 frames" (the whole run, before) or "expected: about 2 min more for ..." (the rest)
EXPECTED = re.compile(r"expected: about ([\d.]+ (?:s|min|h)) (more|for)")
expected: list[tuple[float, float, bool]] = []


def seconds_said(text: str) -> float:
    value, unit = text.split()
    return float(value) * {"s": 1, "min": 60, "h": 3600}[unit]


@dataclass
class Redraw:
    at: float
    done: int
    total: int
    eta: float | None


def write_clip(path: Path, frames: int, width: int = 1280, height: int = 720, photo: str = "astronaut") -> None:
    """libx264 veryfast, CRF 18, a keyframe every 24 frames (1 s), so 1 s segments exist."""
    canvas = photo_canvas(photo, width, height)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=24, options={"crf": "18", "preset": "veryfast", "g": "24"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_at(canvas, index, width, height), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame.reformat(format="yuv420p")))
        container.mux(stream.encode(None))


def seconds(text: str) -> float:
    value = 0.0
    for part in text.split(":"):
        value = value * 60 + int(part)
    return value


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def watch(command: list[str], kill_when=None, code: str | None = None) -> tuple[list[Redraw], float, float, float, int]:
    """Run ``command`` (with ``code`` first on PYTHONPATH); return its redraws, the time it exited, its wall and
    CPU seconds, and its exit code."""
    env = dict(os.environ, PYTHONPATH=code) if code else None
    cpu, started = children_cpu(), time.perf_counter()
    redraws: list[Redraw] = [Redraw(started, -1, 0, None)]  # the command's start, dropped below
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True,
                               env=env)

    def read() -> None:
        pending = b""
        while chunk := os.read(process.stderr.fileno(), 65536):
            pending += chunk
            *lines, pending = re.split(rb"[\r\n]", pending)
            now = time.perf_counter()
            for line in lines:
                text = line.decode("utf-8", "replace")
                said = EXPECTED.match(text)
                if said:  # `run`'s one-line announcement: (time, seconds, whether it is the time left)
                    expected.append((now, seconds_said(said[1]), said[2] == "more"))
                match = DRAW.search(text)
                if match:
                    eta = None if match[4] == "?" else seconds(match[4])
                    redraws.append(Redraw(now, int(match[1]), int(match[2]), eta))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while process.poll() is None:
        if kill_when is not None and kill_when():
            os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait()
    ended = time.perf_counter()
    reader.join(timeout=5)
    return redraws, ended, ended - started, children_cpu() - cpu, process.returncode


def report(name: str, command: list[str], frames: int, code: str | None = None, trace: Path | None = None) -> None:
    """Run ``command`` and print ETA shown / real remaining at each point, with wall and CPU figures.

    ``spread``: the fastest over the slowest speed (frames/s) of the run's quarters between 10 % and
    the end; an estimate from the speed so far cannot be closer than this lets it (a shared machine)."""
    redraws, ended, wall, cpu, code = watch(command, code=code)
    if trace is not None:
        trace.write_text("".join(f"{r.at - redraws[0].at:.2f} {r.done}/{r.total} {r.eta}\n" for r in redraws)
                         + f"{ended - redraws[0].at:.2f} exit\n")
    started, redraws = redraws[0].at, redraws[1:]
    said = ""
    if expected:
        at, value, is_rest = expected.pop()
        real = ended - (at if is_rest else redraws[0].at)
        said = f"  'expected' line {value / real:.2f} ({value:.0f}/{real:.0f} s)"
    if code != 0 or not redraws:
        print(f"{name}: exit code {code}, {len(redraws)} redraws", flush=True)
        return
    # Fixed costs seen from outside: command start -> first frame counted, last frame -> exit.
    first_frames = next((r.at for r in redraws if r.done > redraws[0].done), ended) - started
    last_frames = ended - next(r.at for r in redraws if r.done == redraws[-1].done)
    first, total = redraws[0].done, redraws[-1].total
    cells = []
    for point in POINTS:
        goal = first + point * (total - first)
        hit = next((r for r in redraws if r.done >= goal and r.eta is not None), None)
        if hit is None:
            cells.append("—")
            continue
        real = ended - hit.at
        cells.append(f"{hit.eta / real:.2f} ({hit.eta:.0f}/{real:.0f} s)")
    marks = [next((r.at for r in redraws if r.done >= first + p * (total - first)), ended) for p in POINTS]
    marks.append(next((r.at for r in redraws if r.done >= total), ended))
    speeds = [(b_frames - a_frames) / max(1e-9, b - a) for (a, a_frames), (b, b_frames) in zip(
        zip(marks, [first + p * (total - first) for p in POINTS]),
        zip(marks[1:], [first + p * (total - first) for p in POINTS[1:]] + [total]))]
    spread = max(speeds) / max(1e-9, min(speeds))
    print(f"{name:<10} " + "  ".join(f"{cell:>18}" for cell in cells)
          + f"  spread {spread:4.2f}   {wall:5.1f} s (first frame {first_frames:4.1f} s, last frame to exit {last_frames:4.1f} s)  "
          f"{cpu / frames:.3f} CPU s/frame  load {os.getloadavg()[0]:.2f}{said}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--command", default="job", choices=("job", "run"), help="the CLI command to run")
    parser.add_argument("--chain", default="unsharp")
    parser.add_argument("--frames", type=int, default=240, help="frames of the single clip (24 fps)")
    parser.add_argument("--folder-frames", default="72,120,96", help="frames of each clip in the folder")
    parser.add_argument("--only", default="single,workers2,resumed,folder,stream")
    parser.add_argument("--stream-chain", default="denoise", help="chain of the `stream` scenario (one `run` stream, "
                        "no job: its bar and its 'expected' line)")
    parser.add_argument("--stream-frames", type=int, default=48, help="frames of the stream scenario's 320×180 clip")
    parser.add_argument("--clips", help="folder to keep the clips in (default: a temporary one)")
    parser.add_argument("--code", metavar="LABEL=DIR", action="append", default=[],
                        help="run each scenario with the streamrestore package in DIR (e.g. `git archive REV "
                        "streamrestore | tar -x -C DIR`), once per --code, to compare versions (default: installed)")
    parser.add_argument("--trace", metavar="DIR", help="write each run's redraws (time, frames, ETA) to DIR")
    args = parser.parse_args()
    work = Path(args.clips or tempfile.mkdtemp(prefix="jobs-eta-"))
    work.mkdir(parents=True, exist_ok=True)
    clip = work / f"single-{args.frames}.mp4"
    if not clip.exists():
        write_clip(clip, args.frames)
    folder = work / f"folder-{args.folder_frames.replace(',', '-')}"
    if not folder.exists():
        folder.mkdir()
        for number, count in enumerate(int(n) for n in args.folder_frames.split(",")):
            write_clip(folder / f"clip{number}.mp4", count, photo=("astronaut", "coffee", "chelsea")[number % 3])
    print(f"chain {args.chain!r}, `streamrestore {args.command}`, 1280×720, 1 s segments; load average at start "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    print(f"{'scenario':<10} " + "  ".join(f"{f'ETA/real at {p:.0%}':>18}" for p in POINTS), flush=True)

    def command(source: Path, output: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "streamrestore.cli", args.command, str(source), "--chain", args.chain,
                "-o", str(output), "--segment-seconds", "1", *extra]

    codes = [tuple(c.split("=", 1)) for c in args.code] or [("", None)]
    trace = Path(args.trace) if args.trace else None
    if trace:
        trace.mkdir(parents=True, exist_ok=True)

    def measure(name: str, build, frames: int, prepare=lambda code: None) -> None:
        for label, code in codes:
            prepare(code)
            title = f"{name} {label}".strip()
            report(title, build(), frames, code, trace / f"{title.replace(' ', '-')}.txt" if trace else None)

    wanted = args.only.split(",")
    for name, workers in (("single", "1"), ("workers2", "2")):
        if name in wanted:
            out = work / f"{name}.mp4"
            measure(name, lambda: command(clip, out, "--workers", workers), args.frames,
                    lambda code: out.unlink(missing_ok=True))
    if "resumed" in wanted:
        out, job_dir = work / "resumed.mp4", work / "resumed-job"

        def half_done() -> bool:
            try:
                data = json.loads((job_dir / "manifest.json").read_text())
            except (FileNotFoundError, ValueError):
                return False
            return len(data["pieces"]) * 2 >= len(data["segments"])

        def killed(code: str | None) -> None:
            out.unlink(missing_ok=True)
            watch(command(clip, out, "--workers", "1", "--job", str(job_dir), "--restart"), half_done, code)

        measure("resumed", lambda: command(clip, out, "--workers", "1", "--job", str(job_dir)), args.frames // 2,
                killed)
    if "stream" in wanted:
        small = work / f"stream-{args.stream_frames}.mp4"
        if not small.exists():
            write_clip(small, args.stream_frames, 320, 180)
        out = work / "stream.mp4"
        command_line = [sys.executable, "-m", "streamrestore.cli", "run", str(small), "--chain", args.stream_chain,
                        "-o", str(out)]
        measure(f"stream ({args.stream_chain}, 320×180)", lambda: command_line, args.stream_frames,
                lambda code: out.unlink(missing_ok=True))
    if "folder" in wanted:
        out = work / "folder-out"
        frames = sum(int(n) for n in args.folder_frames.split(","))
        measure("folder", lambda: command(folder, out, "--workers", "1"), frames,
                lambda code: shutil.rmtree(out, ignore_errors=True))
    print(f"load average at end {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
