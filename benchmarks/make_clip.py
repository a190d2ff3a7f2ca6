"""Writes a benchmark clip with PyAV: a real photo (scikit-image) panned and zoomed, so every frame moves.

    python benchmarks/make_clip.py OUT.mp4 [--width 640 --height 360 --frames 48 --fps 24]
    python benchmarks/make_clip.py long.mp4 --width 1920 --height 1080 --frames 14400 --preset ultrafast

libx264 (yuv420p, BT.709 tags, CRF 18, ``--preset`` medium by default). The photo is resized once
to cover the frame with a margin; each frame is a crop of it that pans and zooms slowly (a few pixels a
frame, like a camera move), which is what encoders and temporal stages see in practice. A long clip
cycles the motion back and forth, so its size on disk stays proportional to its length only.
"""

from __future__ import annotations

import argparse
import math

import av
import cv2
import numpy as np


def photo_canvas(name: str, width: int, height: int) -> np.ndarray:
    import skimage.data

    picture = getattr(skimage.data, name)()
    if picture.ndim == 2:
        picture = np.stack([picture] * 3, axis=-1)
    zoom = max(1.5 * width / picture.shape[1], 1.5 * height / picture.shape[0])
    size = (math.ceil(picture.shape[1] * zoom), math.ceil(picture.shape[0] * zoom))
    return cv2.resize(picture[..., :3], size, interpolation=cv2.INTER_CUBIC)


def frame_at(canvas: np.ndarray, index: int, width: int, height: int) -> np.ndarray:
    """A crop of ``canvas`` that pans on an ellipse and breathes in and out (period 240 frames)."""
    phase = 2 * math.pi * (index % 240) / 240
    zoom = 1.0 + 0.15 * (0.5 + 0.5 * math.sin(phase))  # crop 1.0–1.15× the frame, resized down
    crop_w, crop_h = round(width * zoom), round(height * zoom)
    spare_x, spare_y = canvas.shape[1] - crop_w, canvas.shape[0] - crop_h
    left = round(spare_x * (0.5 + 0.45 * math.cos(phase)))
    top = round(spare_y * (0.5 + 0.45 * math.sin(2 * phase)))
    crop = canvas[top : top + crop_h, left : left + crop_w]
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)


def write_clip(path: str, width: int, height: int, frames: int, fps: int, photo: str, preset: str, crf: int) -> None:
    canvas = photo_canvas(photo, width, height)
    with av.open(path, mode="w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": preset})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.colorspace = stream.codec_context.color_primaries = 1  # BT.709
        stream.codec_context.color_trc = 1
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_at(canvas, index, width, height), format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace=av.video.reformatter.Colorspace.ITU709)
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--photo", default="astronaut", help="a scikit-image sample: astronaut, coffee, chelsea, …")
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--crf", type=int, default=18)
    args = parser.parse_args()
    write_clip(args.output, args.width, args.height, args.frames, args.fps, args.photo, args.preset, args.crf)


if __name__ == "__main__":
    main()
