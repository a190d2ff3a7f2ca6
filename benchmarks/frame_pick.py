"""Frame-pick latency for the web demo: decord (random access by index) against a PyAV seek, on a 1080p H.264 clip.

    python benchmarks/frame_pick.py [--clip PATH] [--picks 20]
    PYTHONPATH=/path/to/decord2-site python benchmarks/frame_pick.py   # decord2 installs as module `decord`

Makes a 10 s 1080p24 H.264 clip (keyframe every 2 s, libx264 medium) unless given one, then picks the same
random times with ``demo.video.FramePicker`` (decord) and ``demo.video.pyav_frame`` (seek + decode forward):
the time to open (decord reads the index), the median and worst pick, CPU seconds per pick beside them.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np


def make_clip(path: Path, seconds: int = 10, rate: int = 24) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (1080 // 8, 1920 // 8, 3), np.uint8).repeat(8, 0).repeat(8, 1)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate, options={"preset": "medium", "g": str(2 * rate)})
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        for i in range(seconds * rate):
            frame = av.VideoFrame.from_ndarray(np.roll(base, 4 * i, axis=1), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path)
    parser.add_argument("--picks", type=int, default=20)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from demo.video import FramePicker, check_video, pyav_frame

    folder = tempfile.TemporaryDirectory()
    clip = args.clip or Path(folder.name) / "1080p.mp4"
    if args.clip is None:
        make_clip(clip)
    upload = check_video(clip, clip.name, 10**9, 10**9)
    times = np.random.default_rng(1).uniform(0, upload.duration - 0.1, args.picks)
    import decord

    version = getattr(decord, "__version__", "?")
    print(f"clip {upload.describe()}; decord {version} from {Path(decord.__file__).parent}")
    picker = FramePicker()
    wall, used = time.perf_counter(), cpu()
    picker.pick(upload, 0.0)
    print(f"decord open + first pick: {time.perf_counter() - wall:.3f} s wall, {cpu() - used:.3f} s CPU")
    for name, pick in (("decord", lambda t: picker.pick(upload, t)), ("PyAV seek", lambda t: pyav_frame(clip, t))):
        walls, cpus, frames = [], [], []
        for t in times:
            wall, used = time.perf_counter(), cpu()
            frames.append(pick(float(t)))
            walls.append(time.perf_counter() - wall)
            cpus.append(cpu() - used)
        print(f"{name:10s} median {statistics.median(walls) * 1000:6.0f} ms, worst {max(walls) * 1000:6.0f} ms, "
              f"CPU {statistics.median(cpus) * 1000:6.0f} ms/pick (median) over {len(times)} picks")
        if name == "decord":
            decord_frames = frames
    same = sum(np.array_equal(a.pixels, b.pixels) for a, b in zip(decord_frames, frames))
    print(f"decord and PyAV gave the same pixels for {same}/{len(times)} picks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
