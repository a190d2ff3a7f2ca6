"""Image files: read one as H×W×3 RGB (8 or 16 bit), write one losslessly; the one list of image suffixes.

A path whose suffix is in ``IMAGE_SUFFIXES`` is restored as an image by the CLI (and the library), any
other input as a video.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import InputNotFoundError, MediaError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as H×W×3 RGB (8 or 16 bit); grey is expanded, alpha dropped."""
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"input not found: {str(path)!r}")
    try:
        data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
        if data is None:
            raise MediaError(f"{str(path)!r} is not a readable image")
        return check_image(_to_rgb(data))
    except cv2.error as error:  # OpenCV's answer to images it cannot take (too large, odd channel counts)
        raise MediaError(f"{str(path)!r} is not a readable image ({str(error).strip().splitlines()[-1]})") from None


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB image losslessly (PNG keeps 16-bit)."""
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise MediaError(f"cannot write image {str(path)!r}")


def _to_rgb(data: np.ndarray) -> np.ndarray:
    if data.ndim == 2:
        return cv2.cvtColor(data, cv2.COLOR_GRAY2RGB)
    if data.shape[2] == 4:
        return cv2.cvtColor(data, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(data, cv2.COLOR_BGR2RGB)


def check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise MediaError(f"expected an H×W×3 RGB image, got {getattr(image, 'shape', type(image).__name__)}")
    if image.dtype not in (np.uint8, np.uint16):
        raise MediaError(f"expected 8- or 16-bit samples, got {image.dtype}")
    return image
