"""Image files: read as a viewer shows them (EXIF orientation applied), alpha and 16-bit kept; written
losslessly; the one list of image suffixes.

A path whose suffix is in ``IMAGE_SUFFIXES`` is restored as an image by the CLI (and the library), any
other input as a video.

OpenCV reads the pixels (8 or 16 bit, with alpha) but applies EXIF orientation only when it may also
drop alpha and depth, so the orientation tag is read here (JPEG APP1, PNG ``eXIf``, WebP ``EXIF``;
OpenCV's TIFF reader turns TIFFs itself) and applied to the pixels, alpha included. The alpha plane is handed back beside the RGB
picture: stages see RGB only, and the writer resizes the plane to the restored size
(``media.alpha.merge``), as for video.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError, InputNotFoundError, MediaError
from .alpha import merge

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
ALPHA_SUFFIXES = {".png", ".tif", ".tiff", ".webp"}
_ORIENTATION_TAG = 0x0112
_HEAD_BYTES = 1 << 20  # the orientation tag sits in the first segments of every format read here


@dataclass(frozen=True)
class Picture:
    rgb: np.ndarray
    """H×W×3 RGB, uint8 or uint16, turned upright."""
    alpha: np.ndarray | None
    """H×W alpha plane of the same dtype, turned the same way (None: opaque image)."""


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as H×W×3 RGB (8 or 16 bit), upright; grey is expanded, alpha left out
    (``read_picture`` returns it too)."""
    return check_image(read_picture(path).rgb)


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB image losslessly (PNG keeps 16-bit)."""
    write_picture(path, image)


def check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise MediaError(f"expected an H×W×3 RGB image, got {getattr(image, 'shape', type(image).__name__)}")
    if image.dtype not in (np.uint8, np.uint16):
        raise MediaError(f"expected 8- or 16-bit samples, got {image.dtype}")
    return image


def read_picture(path: str | Path) -> Picture:
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"input not found: {str(path)!r}")
    try:
        return _picture(path)
    except cv2.error as error:  # OpenCV's answer to images it cannot take (too large, odd channel counts)
        raise MediaError(f"{str(path)!r} is not a readable image ({str(error).strip().splitlines()[-1]})") from None


def _picture(path: Path) -> Picture:
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if data is None:
        raise MediaError(f"{str(path)!r} is not a readable image")
    data = orient(data, exif_orientation(path))
    if data.ndim == 2:
        return Picture(cv2.cvtColor(data, cv2.COLOR_GRAY2RGB), None)
    if data.shape[2] == 2:  # grey + alpha
        return Picture(cv2.cvtColor(np.ascontiguousarray(data[..., 0]), cv2.COLOR_GRAY2RGB),
                       np.ascontiguousarray(data[..., 1]))
    if data.shape[2] == 4:
        return Picture(cv2.cvtColor(data, cv2.COLOR_BGRA2RGB), np.ascontiguousarray(data[..., 3]))
    return Picture(cv2.cvtColor(data, cv2.COLOR_BGR2RGB), None)


def write_picture(path: str | Path, rgb: np.ndarray, alpha: np.ndarray | None = None, *,
                  suffix: str | None = None) -> None:
    """Write losslessly where the format allows (PNG keeps 16-bit), with ``alpha`` resized to ``rgb``."""
    suffix = (suffix or Path(path).suffix).lower()
    if alpha is None:
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif suffix not in ALPHA_SUFFIXES:
        raise ConfigError(f"the image has an alpha channel (transparency), which {suffix or 'this format'} cannot "
                          "store; write .png (or .tif, .webp) to keep it")
    else:
        pixels = cv2.cvtColor(merge(rgb, alpha), cv2.COLOR_RGBA2BGRA)
    if not cv2.imwrite(str(path), pixels):
        raise MediaError(f"cannot write image {str(path)!r}")


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1–8) so the image stands as the camera meant it."""
    turned = {
        2: lambda p: p[:, ::-1],
        3: lambda p: p[::-1, ::-1],
        4: lambda p: p[::-1],
        5: lambda p: p.swapaxes(0, 1),
        6: lambda p: np.rot90(p, -1),
        7: lambda p: p.swapaxes(0, 1)[::-1, ::-1],
        8: lambda p: np.rot90(p, 1),
    }.get(orientation)
    return np.ascontiguousarray(turned(pixels)) if turned else pixels


def exif_orientation(path: Path) -> int:
    """The EXIF orientation tag (1 when there is none or it cannot be read)."""
    with open(path, "rb") as file:
        head = file.read(_HEAD_BYTES)
    exif = _exif_block(head)
    if exif is None:
        return 1
    try:
        orientation = _tiff_orientation(exif)
    except (struct.error, IndexError):
        return 1  # a damaged EXIF block: show the pixels as stored, as viewers do
    return orientation if 1 <= orientation <= 8 else 1


def _exif_block(head: bytes) -> bytes | None:
    if head[:2] == b"\xff\xd8":  # JPEG: segments up to the scan; EXIF is an APP1 "Exif\0\0" segment
        at = 2
        while at + 4 <= len(head) and head[at] == 0xFF and head[at + 1] != 0xDA:
            length = struct.unpack(">H", head[at + 2 : at + 4])[0]
            segment = head[at + 4 : at + 2 + length]
            if head[at + 1] == 0xE1 and segment[:6] == b"Exif\x00\x00":
                return segment[6:]
            at += 2 + length
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        at = 8
        while at + 8 <= len(head):
            length, kind = struct.unpack(">I4s", head[at : at + 8])
            if kind == b"eXIf":
                return head[at + 8 : at + 8 + length]
            if kind in (b"IDAT", b"IEND"):
                return None
            at += 12 + length
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        at = 12
        while at + 8 <= len(head):
            kind, length = struct.unpack("<4sI", head[at : at + 8])
            if kind == b"EXIF":
                block = head[at + 8 : at + 8 + length]
                return block[6:] if block[:6] == b"Exif\x00\x00" else block
            at += 8 + length + (length & 1)
        return None
    return None  # TIFF: OpenCV's TIFF reader turns the picture itself


def _tiff_orientation(tiff: bytes) -> int:
    order = "<" if tiff[:2] == b"II" else ">"
    ifd = struct.unpack(order + "I", tiff[4:8])[0]
    count = struct.unpack(order + "H", tiff[ifd : ifd + 2])[0]
    for entry in range(count):
        at = ifd + 2 + 12 * entry
        tag, kind = struct.unpack(order + "HH", tiff[at : at + 4])
        if tag == _ORIENTATION_TAG and kind == 3:  # SHORT
            return struct.unpack(order + "H", tiff[at + 8 : at + 10])[0]
    return 1
