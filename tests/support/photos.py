"""Photos and picture metrics the tests share: scikit-image's bundled photos, never downloaded."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import skimage.data as skdata

from streamrestore.training.data import excluded_digests

# The bundled photos that are not on the evaluation kits' exclusion list: the training tests' data.
TRAINING_PHOTOS = ("retina", "hubble_deep_field", "immunohistochemistry", "camera", "brick", "grass", "gravel", "moon")


def write_training_photos(folder: Path) -> Path:
    """TRAINING_PHOTOS shrunk to 160 px wide and written as RGB PNGs into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in TRAINING_PHOTOS:
        image = getattr(skdata, name)()
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        image = cv2.resize(image, (160, 160 * image.shape[0] // image.shape[1]), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"{name}.png"), image[..., ::-1])
    return folder


def held_out_astronaut() -> np.ndarray:
    """A 256×256 crop (face, helmet, flag) of a photo that no shipped model was trained on (asserted)."""
    source = Path(skdata.__file__).parent / "astronaut.png"
    assert hashlib.sha256(source.read_bytes()).hexdigest() in excluded_digests(), "not held out from training"
    return np.ascontiguousarray(skdata.astronaut()[20:276, 150:406])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)
