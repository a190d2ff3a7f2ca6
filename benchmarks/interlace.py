"""What the field operations cost beside decoding: bwdif (field and frame rate), yadif, w3fdif, IVTC.

    python benchmarks/interlace.py [--frames 100] [--size 720x576]

Makes a 25i clip with the ffmpeg command (a panning test pattern, woven by ``interlace``; H.264 coded
interlaced), decodes it once into memory, then times each ``FrameFilter`` over the same decoded frames
(wall and CPU seconds, per source frame), beside the decode itself. Figures go in RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from fractions import Fraction

import av

from streamrestore.media import interlace


def make_clip(path: str, frames: int, size: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=50",
                    "-frames:v", str(frames), "-vf", "interlace=scan=tff", "-c:v", "libx264", "-crf", "18",
                    "-flags", "+ilme+ildct", "-top", "1", "-pix_fmt", "yuv420p", path], check=True)


def timed(work) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--size", default="720x576")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "int.mp4")
        make_clip(path, args.frames, args.size)
        with av.open(path) as container:
            stream = container.streams.video[0]
            wall, cpu, frames = timed(lambda: list(container.decode(stream)))
            tb, rate, order = stream.time_base, stream.average_rate, stream.codec_context.field_order
    n = len(frames)
    print(f"{n} frames {args.size} 25i, load average {os.getloadavg()[0]:.2f}")
    print(f"{'decode (H.264)':<28} {wall / n * 1000:7.2f} ms/frame wall {cpu / n * 1000:7.2f} ms CPU")
    source = interlace.detect(order, frames[: interlace.IDET_FRAMES], tb, rate)
    wall, cpu, _ = timed(lambda: interlace.detect(order, frames[: interlace.IDET_FRAMES], tb, Fraction(rate)))
    print(f"{'detect (idet, 32 frames)':<28} {wall * 1000:7.2f} ms once")
    cases = {f"deinterlace {m} {r}": interlace.FieldOperation("deinterlace", {**interlace._defaults("deinterlace"),
                                                                              "method": m, "rate": r})
             for m, r in (("bwdif", "field"), ("bwdif", "frame"), ("yadif", "field"), ("w3fdif", "field"))}
    cases["ivtc"] = interlace.FieldOperation("ivtc", interlace._defaults("ivtc"))
    for name, operation in cases.items():
        plan = interlace.plan_fields([operation], "auto", source, True, Fraction(rate))

        def run() -> int:
            graph = interlace.FrameFilter(plan, frames[0], tb, Fraction(rate), None)
            return sum(len(graph.push(f)) for f in frames) + len(graph.flush())

        wall, cpu, produced = timed(run)
        print(f"{name:<28} {wall / n * 1000:7.2f} ms/frame wall {cpu / n * 1000:7.2f} ms CPU -> {produced} frames")


if __name__ == "__main__":
    main()
