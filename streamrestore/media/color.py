"""Colour description of a video and the one policy for RGB↔YUV conversion in both directions.

PyAV's encode path converts RGB→YUV with BT.601 unless told otherwise, and an untagged HD stream
decodes as BT.601 too; either silently shifts colours. So every conversion here names its matrix and
range explicitly, taken from the source's tags. Untagged input follows what players do (mpv, VLC,
browsers): BT.709 when the frame is HD (wider than 1024 or taller than 576), BT.601 otherwise, and
limited ("tv") range unless the pixel format is a full-range ``yuvj*`` one.

The output is always tagged with the matrix, range, primaries and transfer actually used: an
untagged SD source upscaled ×4 would otherwise be read as BT.709 by the same players.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
from av.video.reformatter import ColorRange, Colorspace, Interpolation

# AVColorSpace / AVColorPrimaries / AVColorTransferCharacteristic / AVColorRange values (FFmpeg's enums).
MATRIX_RGB, MATRIX_BT709, MATRIX_UNSPECIFIED, MATRIX_BT470BG, MATRIX_SMPTE170M = 0, 1, 2, 5, 6
MATRIX_SMPTE240M, MATRIX_BT2020_NCL, MATRIX_BT2020_CL = 7, 9, 10
PRIMARIES_BT709, PRIMARIES_UNSPECIFIED, PRIMARIES_SMPTE170M = 1, 2, 6
TRC_BT709, TRC_UNSPECIFIED, TRC_SMPTE170M = 1, 2, 6
RANGE_UNSPECIFIED, RANGE_LIMITED, RANGE_FULL = 0, 1, 2

_SWSCALE_MATRIX = {
    MATRIX_BT709: Colorspace.ITU709,
    4: Colorspace.FCC,
    MATRIX_BT470BG: Colorspace.ITU601,
    MATRIX_SMPTE170M: Colorspace.SMPTE170M,
    MATRIX_SMPTE240M: Colorspace.SMPTE240M,
    MATRIX_BT2020_NCL: Colorspace.BT2020,
    MATRIX_BT2020_CL: Colorspace.BT2020,
}

# Bicubic chroma, accurate rounding and full-resolution chroma handling: the same flags the scorer
# uses, and the ones that make an RGB round trip land within quantisation of the source.
DECODE_FLAGS = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
ENCODE_FLAGS = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INP


@dataclass(frozen=True)
class ColorDescription:
    """Matrix, range, primaries and transfer (FFmpeg enum values), after the untagged-input policy."""

    matrix: int
    range: int
    primaries: int
    transfer: int
    assumed: bool = False
    """True when the source carried no matrix tag and the policy chose one."""

    @property
    def swscale_matrix(self) -> Colorspace:
        return _SWSCALE_MATRIX.get(self.matrix, Colorspace.ITU601)

    @property
    def swscale_range(self) -> ColorRange:
        return ColorRange.JPEG if self.range == RANGE_FULL else ColorRange.MPEG

    def describe(self) -> str:
        names = {MATRIX_BT709: "BT.709", MATRIX_BT470BG: "BT.601", MATRIX_SMPTE170M: "BT.601",
                 MATRIX_BT2020_NCL: "BT.2020", MATRIX_SMPTE240M: "SMPTE 240M"}
        matrix = names.get(self.matrix, f"matrix {self.matrix}")
        level = "full" if self.range == RANGE_FULL else "limited"
        return f"{matrix} {level} range" + (" (assumed: source untagged)" if self.assumed else "")


def is_hd(width: int, height: int) -> bool:
    """The players' rule for untagged video: HD frames are BT.709, SD frames BT.601."""
    return width > 1024 or height > 576


def describe_source(frame: av.VideoFrame) -> ColorDescription:
    """Read a decoded frame's colour tags and fill in what is missing with the players' policy."""
    matrix = int(frame.colorspace)
    primaries = int(frame.color_primaries)
    transfer = int(frame.color_trc)
    colour_range = int(frame.color_range)
    pix_fmt = frame.format.name
    is_rgb = matrix == MATRIX_RGB and not pix_fmt.startswith(("yuv", "nv", "p0", "p2", "y2", "uyv", "yuyv"))

    assumed = matrix in (MATRIX_UNSPECIFIED, 3) or is_rgb
    if assumed:
        matrix = MATRIX_BT709 if is_hd(frame.width, frame.height) else MATRIX_SMPTE170M
    if colour_range == RANGE_UNSPECIFIED:
        colour_range = RANGE_FULL if pix_fmt.startswith("yuvj") else RANGE_LIMITED
    if is_rgb:
        # An RGB source has no YUV range of its own; the YUV we write is the standard limited range.
        colour_range = RANGE_LIMITED
    if primaries == PRIMARIES_UNSPECIFIED:
        primaries = PRIMARIES_BT709 if matrix == MATRIX_BT709 else PRIMARIES_SMPTE170M
    if transfer == TRC_UNSPECIFIED:
        transfer = TRC_BT709 if matrix == MATRIX_BT709 else TRC_SMPTE170M
    return ColorDescription(matrix, colour_range, primaries, transfer, assumed)


def is_rgb_format(pix_fmt: str) -> bool:
    return pix_fmt.startswith(("rgb", "bgr", "gbr", "argb", "abgr", "0rgb", "0bgr", "rgba", "bgra"))


def frame_to_rgb(frame: av.VideoFrame, color: ColorDescription, rgb_format: str) -> av.VideoFrame:
    """Decoded frame -> packed RGB (``rgb24`` or ``rgb48le``) with the source's own matrix and range."""
    if is_rgb_format(frame.format.name):
        return frame.reformat(format=rgb_format, interpolation=DECODE_FLAGS)
    return frame.reformat(
        format=rgb_format,
        src_colorspace=color.swscale_matrix,
        src_color_range=color.swscale_range,
        dst_color_range=ColorRange.JPEG,
        interpolation=DECODE_FLAGS,
    )


def rgb_to_frame(frame: av.VideoFrame, color: ColorDescription, pix_fmt: str) -> av.VideoFrame:
    """Packed RGB frame -> the output pixel format, converted with ``color``'s matrix and range, tagged."""
    if is_rgb_format(pix_fmt):
        out = frame.reformat(format=pix_fmt, interpolation=ENCODE_FLAGS)
    else:
        out = frame.reformat(
            format=pix_fmt,
            src_color_range=ColorRange.JPEG,
            dst_colorspace=color.swscale_matrix,
            dst_color_range=color.swscale_range,
            interpolation=ENCODE_FLAGS,
        )
        out.colorspace = color.matrix
        out.color_range = color.range
    out.color_primaries = color.primaries
    out.color_trc = color.transfer
    return out
