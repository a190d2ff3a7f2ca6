"""Transparency (an alpha plane) carried beside the picture, around the stages.

Stages see RGB only (``FrameBatch`` is 3-channel): restoring a matte is not what a denoiser or an
upscaler is for, and most networks have no fourth input. So the reader splits each frame's alpha
plane off at source precision, ``AlphaTrack`` keeps the planes in frame order while the pictures go
through the stages, and the writer resizes the plane to the restored picture's size (bicubic, the
same for every chain) and merges it back before encoding, into a pixel format with alpha.

Only codecs whose alpha survives a round trip through FFmpeg are used for it: ProRes 4444
(``prores_ks``), QuickTime Animation (``qtrle``), PNG and FFV1. Any other output codec with an
alpha source is an error that names them, unless ``--pix-fmt`` picks a format without alpha, which
drops the transparency on purpose. GIF's palette transparency (one colour, decoded as ``bgra``) is
not treated as alpha: an animated GIF becomes ordinary video.
"""

from __future__ import annotations

import threading
from collections import deque

import av
import cv2
import numpy as np

from ..errors import ConfigError

ALPHA_CODECS = ("prores_ks", "qtrle", "png", "ffv1")
_SUGGESTION = "prores_ks (.mov), ffv1 (.mkv), qtrle (.mov) or png (.mov)"


def has_alpha(pix_fmt: str) -> bool:
    """Whether the pixel format stores an alpha component (a palette's transparency does not count)."""
    return any(c.is_alpha for c in av.VideoFormat(pix_fmt).components)


def _bits(pix_fmt: str) -> int:
    return max(c.bits for c in av.VideoFormat(pix_fmt).components)


def choose_pix_fmt(codec: str, supported: list[str], source_bits: int, width: int, height: int) -> str:
    """The output format with alpha for ``codec``: the source's depth or more, full-resolution chroma first."""
    candidates = [f for f in supported if has_alpha(f)] if codec in ALPHA_CODECS else []
    if not candidates:
        raise ConfigError(
            f"the source has an alpha channel (transparency), which {codec} cannot store; use --codec "
            f"{_SUGGESTION} to keep it, or a --pix-fmt without alpha to drop it"
        )

    def rank(pix_fmt: str) -> tuple[int, int, int]:
        bits = _bits(pix_fmt)
        depth = 0 if bits == source_bits else 1 if bits > source_bits else 2
        subsampled = any(tag in pix_fmt for tag in ("420", "422"))
        return depth, int(subsampled), bits

    for pix_fmt in sorted(candidates, key=rank):
        if not any(tag in pix_fmt for tag in ("420", "422")) or (width % 2 == 0 and height % 2 == 0):
            return pix_fmt
    raise ConfigError(f"{codec} stores alpha only with an even frame size, but the output is {width}×{height}")


def rgba_format(deep: bool) -> str:
    """The packed format the reader converts an alpha source to (alpha last, at source precision)."""
    return "rgba64le" if deep else "rgba"


def split(rgba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """H×W×4 → the H×W×3 picture and the H×W alpha plane (both contiguous)."""
    return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])


def merge(rgb: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """The restored picture with the source's alpha resized to it (bicubic) at the picture's depth."""
    height, width = rgb.shape[:2]
    if alpha is None:
        plane = np.full((height, width), np.iinfo(rgb.dtype).max, rgb.dtype)
    else:
        plane = alpha
        if plane.shape != (height, width):
            # Bicubic in float, clipped: an edge between transparent and opaque rings slightly,
            # and the ring must not wrap around in an integer type.
            plane = cv2.resize(plane.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
            plane = np.clip(np.rint(plane), 0, np.iinfo(alpha.dtype).max).astype(alpha.dtype)
        plane = _to_depth(plane, rgb.dtype)
    return np.dstack([rgb, plane])


def _to_depth(plane: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if plane.dtype == dtype:
        return plane
    if dtype == np.uint16:
        return plane.astype(np.uint16) * 257
    return np.rint(plane.astype(np.float32) / 257).astype(np.uint8)


class AlphaTrack:
    """The source's alpha planes in frame order, waiting for their restored pictures (thread-safe).

    The decoder thread puts a frame's plane before the frame enters the stages; the encoder thread
    takes it by timestamp. A restored frame takes the plane of the latest source frame at or before
    its timestamp, so stages that add frames between two source frames reuse the earlier plane.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._planes: deque[tuple[int | None, np.ndarray]] = deque()

    def put(self, pts: int | None, plane: np.ndarray) -> None:
        with self._lock:
            self._planes.append((pts, plane))

    def take(self, pts: int | None) -> np.ndarray | None:
        with self._lock:
            if not self._planes:
                return None
            if pts is None:
                return self._planes.popleft()[1] if len(self._planes) > 1 else self._planes[0][1]
            while len(self._planes) > 1 and self._planes[1][0] is not None and self._planes[1][0] <= pts:
                self._planes.popleft()
            return self._planes[0][1]
