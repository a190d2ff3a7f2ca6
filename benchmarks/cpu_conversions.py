"""Prints the CPU cost of the conversions around the stages that would cap a GPU, before and after.

    python benchmarks/cpu_conversions.py [--repeat 5] [--sizes 1080p 2160p]

- encoder input: wrapping a restored RGB array in a frame, ``from_ndarray`` (before: a copy under the
  GIL) against ``from_numpy_buffer`` (after: ``media.writer.rgb_frame``), and the RGB→YUV conversion
  that follows (``rgb_to_frame``, accurate flags); the converted planes are compared byte for byte.
- decoder output: YUV→RGB with the accurate flags (``frame_to_rgb``), for reference (unchanged).
- classical stages: OpenCV (the CPU path) against ``tensor_filters`` (the CUDA path) run on the CPU.

Each line gives wall milliseconds per frame and CPU milliseconds per frame (this process, all
threads) from the same run, so the ratios hold on a shared machine; absolute figures do not.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Callable

import av
import cv2
import numpy as np
import torch

from streamrestore.media.color import ColorDescription, frame_to_rgb, rgb_to_frame
from streamrestore import tensor_filters

SIZES = {"1080p": (1080, 1920), "2160p": (2160, 3840), "4320p": (4320, 7680)}
BT709_LIMITED = ColorDescription(matrix=1, range=1, primaries=1, transfer=1)


def timed(call: Callable[[], object], repeat: int) -> tuple[float, float]:
    call()  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        call()
    return (time.perf_counter() - wall) / repeat * 1000, (time.process_time() - cpu) / repeat * 1000


def line(name: str, figures: tuple[float, float], base: tuple[float, float] | None = None) -> None:
    # CPU time, not wall time: on a shared machine the wall clock measures the neighbours.
    ratio = f"  {base[1] / max(figures[1], 1e-3):7.1f}× less CPU" if base else ""
    print(f"  {name:<44} {figures[0]:9.2f} ms  {figures[1]:9.2f} CPU ms{ratio}", flush=True)


def smooth_picture(height: int, width: int, dtype: type) -> np.ndarray:
    """Gradients and a few edges: what a restored frame looks like to a converter (no random noise)."""
    peak = np.iinfo(dtype).max
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([x / width, y / height, ((x // 64 + y // 64) % 2) * 0.5 + 0.25], axis=-1)
    return np.ascontiguousarray(np.rint(rgb * peak).astype(dtype))


def encoder(size: str, repeat: int) -> None:
    height, width = SIZES[size]
    for dtype, rgb_format, pix_fmt in ((np.uint8, "rgb24", "yuv420p"), (np.uint16, "rgb48le", "yuv420p10le")):
        rgb = smooth_picture(height, width, dtype)
        print(f"encoder input, {size} {rgb_format} -> {pix_fmt}")
        before = timed(lambda: av.VideoFrame.from_ndarray(rgb, format=rgb_format), repeat)
        after = timed(lambda: av.VideoFrame.from_numpy_buffer(rgb, format=rgb_format), repeat)
        line("wrap: from_ndarray (before)", before)
        line("wrap: from_numpy_buffer (after)", after, before)
        convert_before = timed(lambda: rgb_to_frame(av.VideoFrame.from_ndarray(rgb, format=rgb_format),
                                                    BT709_LIMITED, pix_fmt), repeat)
        convert_after = timed(lambda: rgb_to_frame(av.VideoFrame.from_numpy_buffer(rgb, format=rgb_format),
                                                   BT709_LIMITED, pix_fmt), repeat)
        line("wrap + RGB→YUV (before)", convert_before)
        line("wrap + RGB→YUV (after)", convert_after, convert_before)
        planes = [rgb_to_frame(make(rgb, format=rgb_format), BT709_LIMITED, pix_fmt).to_ndarray()
                  for make in (av.VideoFrame.from_ndarray, av.VideoFrame.from_numpy_buffer)]
        print(f"  converted planes identical: {np.array_equal(*planes)}")


def decoder(size: str, repeat: int) -> None:
    height, width = SIZES[size]
    for dtype, rgb_format, pix_fmt in ((np.uint8, "rgb24", "yuv420p"), (np.uint16, "rgb48le", "yuv420p10le")):
        yuv = rgb_to_frame(av.VideoFrame.from_ndarray(smooth_picture(height, width, dtype), format=rgb_format),
                           BT709_LIMITED, pix_fmt)
        print(f"decoder output, {size} {pix_fmt} -> {rgb_format}")
        line("YUV→RGB, accurate flags (unchanged)", timed(lambda: frame_to_rgb(yuv, BT709_LIMITED, rgb_format)
                                                          .to_ndarray(), repeat))


def classical(size: str, repeat: int) -> None:
    height, width = SIZES[size]
    image = smooth_picture(height, width, np.uint16).astype(np.float32) / 65535
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].contiguous()
    print(f"classical stages, {size}, float32, CPU")
    opencv = timed(lambda: np.clip(image + 1.2 * (image - cv2.GaussianBlur(image, (0, 0), 1.6,
                                                                           borderType=cv2.BORDER_REFLECT)), 0, 1),
                   repeat)
    line("unsharp σ1.6: OpenCV (the CPU path)", opencv)
    line("unsharp σ1.6: tensor_filters on the CPU", timed(lambda: tensor_filters.unsharp_mask(pixels, 1.2, 1.6, 0),
                                                          repeat), opencv)
    for method, flag in (("bicubic", cv2.INTER_CUBIC), ("lanczos", cv2.INTER_LANCZOS4)):
        opencv = timed(lambda: cv2.resize(image, (width * 2, height * 2), interpolation=flag), repeat)
        line(f"resize ×2 {method}: OpenCV (the CPU path)", opencv)
        line(f"resize ×2 {method}: tensor_filters on the CPU",
             timed(lambda: tensor_filters.resize(pixels, 2, method), repeat), opencv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sizes", nargs="+", default=["1080p", "2160p"], choices=list(SIZES))
    parser.add_argument("--skip", action="append", default=[], choices=["encoder", "decoder", "classical"])
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), PyAV {av.__version__}, "
          f"load average {os.getloadavg()[0]:.2f}")
    for size in args.sizes:
        if "encoder" not in args.skip:
            encoder(size, args.repeat)
        if "decoder" not in args.skip:
            decoder(size, args.repeat)
        if "classical" not in args.skip:
            classical(size, args.repeat)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
