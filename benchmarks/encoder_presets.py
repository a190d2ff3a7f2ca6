"""Prints encode speed and size per x264/x265 preset at one output size: the data behind the default preset.

    python benchmarks/encoder_presets.py --input CLIP [--scale 4] [--presets ultrafast,veryfast,faster,fast,medium]

The input's frames are decoded, resized (bicubic) by ``--scale`` beforehand and encoded through the
writer (RGB→YUV + encoder, as ``restore_video`` does) with each preset at the same CRF; each line
gives fps, CPU seconds per frame, output bytes per frame and PSNR-Y of the encoded frames against
the frames given to the encoder (how much the preset's choices cost at equal CRF).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

from streamrestore.media.reader import MediaReader
from streamrestore.media.writer import EncodeSettings, MediaWriter, OutputVideo, choose_pix_fmt


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])


def psnr_y(path: str, reference: list[np.ndarray]) -> float:
    with av.open(path) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    errors = [np.mean((luma(a) - luma(b)) ** 2) for a, b in zip(decoded, reference)]
    return 10 * np.log10(255.0**2 / max(np.mean(errors), 1e-12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--codec", default="libx264")
    parser.add_argument("--crf", type=float, default=18)
    parser.add_argument("--threads", type=int, default=0, help="encoder threads (0 = automatic)")
    parser.add_argument("--presets", default="ultrafast,veryfast,faster,fast,medium")
    args = parser.parse_args()

    reader = MediaReader(args.input)
    info = reader.info
    images = [f.rgb for f in reader.frames(lambda packet: None)]
    reader.close()
    width, height = info.width * args.scale, info.height * args.scale
    frames = [cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC) for image in images]
    print(f"{args.input}: {len(frames)} frames -> {width}×{height}, {args.codec} crf {args.crf:g}, "
          f"threads {args.threads or 'auto'}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as scratch:
        for preset in args.presets.split(","):
            settings = EncodeSettings(codec=args.codec, crf=args.crf, preset=preset, threads=args.threads)
            video = OutputVideo(width, height, choose_pix_fmt(settings, info, width, height), info.color, info)
            path = str(Path(scratch, f"{preset}.mkv"))
            usage = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            writer = MediaWriter(path, None, video, settings, [])
            for index, frame in enumerate(frames):
                writer.write_frame(frame, index)
            writer.close()
            seconds = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_SELF)
            cpu = after.ru_utime - usage.ru_utime + after.ru_stime - usage.ru_stime
            size = os.path.getsize(path)
            print(f"{preset:<10} {len(frames) / seconds:7.2f} fps  {cpu / len(frames):6.3f} CPU s/frame  "
                  f"{size / len(frames) / 1024:8.1f} KiB/frame  PSNR-Y {psnr_y(path, frames):6.2f} dB", flush=True)


if __name__ == "__main__":
    main()
