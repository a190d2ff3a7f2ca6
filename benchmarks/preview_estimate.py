"""How honest the demo's whole-file estimate is: preview 2 s of a clip, then restore the whole file, compare.

    python benchmarks/preview_estimate.py [--chain denoise] [--seconds 12] [--size 640x360] [--device cpu]

The estimate is (seconds the preview's restore took / its frames) × the file's frames; the whole run is
``PreparedChain.restore_video`` with the preview's own output settings (H.264 CRF 18), on the same machine,
after the preview (the chain is loaded once, as on the server).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chain", default="denoise")
    parser.add_argument("--seconds", type=int, default=12)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(root), str(root / "tests")]
    from support.media import make_clip, panned_frames

    from demo.logic import DemoSession, DemoSettings
    from demo.video import VideoSession
    from streamrestore.restore import OutputSettings

    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        make_clip(clip, panned_frames(args.seconds * 24, width, height), rate=24)
        session = DemoSession(DemoSettings(device=args.device, preview_pixels=10**8), Path(folder) / "work")
        videos = VideoSession(session)
        upload, preview = videos.preview(clip, args.seconds / 2, args.chain, 2.0)
        prepared = next(iter(session.chains._chains.values()))
        started = time.perf_counter()
        report = prepared.restore_video(str(clip), str(Path(folder) / "whole.mp4"),
                                        OutputSettings(codec="libx264", pix_fmt="yuv420p", crf=18))  # fmt: skip
        whole = time.perf_counter() - started
    print(f"{args.chain} on {args.device}, {width}×{height}, {upload.frames} frames: preview {preview.frames} frames "
          f"in {preview.seconds:.2f} s; estimate {preview.estimate:.1f} s; whole run {whole:.1f} s "
          f"({report.frames} frames); estimate/real = {preview.estimate / whole:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
