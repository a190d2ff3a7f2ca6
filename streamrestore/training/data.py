"""Training data: a folder of clean images → seeded random patches (with flips/rot90) and a held-back validation set.

Images whose file sha256 is in ``exclude_sha256.txt`` (the evaluation kits' source photos) are skipped,
so that scores on the kits stay honest. Note it is the *file* digest: a re-encoded copy of a kit photo
is not caught.

The validation split is a deterministic rule that ignores file names and listing order: images are ranked
by their file sha256 and the first ``max(1, round(n × val_fraction))`` are held back (at least one stays
for training). A training batch is a pure function of (seed, step): sample ``step × batch + i`` draws its
image, crop, flip/rotation and degradation from ``default_rng([seed, sample])``. So resuming needs no
data-loader state, and any step's batch can be rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import torch

from streamrestore.errors import ConfigError, InputNotFoundError
from streamrestore.models.weights import sha256_file

from .degrade import LOWRES_TASKS, Settings, degrade, resize, scale_of, to_u8

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def excluded_digests() -> frozenset[str]:
    text = resources.files("streamrestore.training").joinpath("exclude_sha256.txt").read_text()
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#"))


@dataclass(frozen=True)
class Split:
    train: tuple[Path, ...]
    validation: tuple[Path, ...]
    excluded: tuple[Path, ...]


def split_folder(folder: str | Path, val_fraction: float = 0.1, exclude: frozenset[str] | None = None) -> Split:
    """The images under ``folder`` (recursively), less the excluded ones, split into training and validation."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputNotFoundError(f"--data {folder}: no such folder")
    exclude = excluded_digests() if exclude is None else exclude
    ranked, excluded = [], []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        digest = sha256_file(path)
        if digest in exclude:
            excluded.append(path)
        else:
            ranked.append((digest, path))
    if len(ranked) < 2:
        raise ConfigError(f"--data {folder}: {len(ranked)} usable image(s) ({len(excluded)} excluded); need at least 2")
    ranked.sort()
    held = min(len(ranked) - 1, max(1, round(len(ranked) * val_fraction)))
    paths = [path for _, path in ranked]
    return Split(tuple(paths[held:]), tuple(paths[:held]), tuple(excluded))


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # 8-bit BGR, grey expanded to three channels
    if image is None:
        raise ConfigError(f"{path}: not an image OpenCV can read")
    return np.ascontiguousarray(image[..., ::-1])


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 H×W×3 arrays → a float32 B×3×H×W batch in 0..1."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255)


MAX_REDRAWS = 20
"""With ``min_detail``, how many more crops a sample may draw before it keeps a flat one."""


def detail(image: np.ndarray) -> float:
    """Mean absolute step between neighbouring pixels of the channel mean, across and down (0..255 scale)."""
    grey = image.astype(np.float32).mean(axis=2)
    return float(np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean())


class Patches:
    """Seeded training batches of (degraded, clean) patches, and the fixed validation pairs."""

    def __init__(self, split: Split, task: str, patch: int, seed: int, settings: Settings = Settings(),
                 val_size: int = 128, upstream: Callable[[np.ndarray], np.ndarray] | None = None) -> None:  # fmt: skip
        self.task, self.scale, self.seed, self.settings = task, scale_of(task), seed, settings
        self.upstream = upstream  # what runs on each degraded input first (training.upstream), or nothing
        if patch % self.scale:
            raise ConfigError(f"--patch {patch} is not a multiple of the task's scale ×{self.scale}")
        self.patch = patch
        self.images = [image for image in map(read_rgb, split.train) if min(image.shape[:2]) >= patch]
        if not self.images:
            raise ConfigError(f"no training image is at least {patch}×{patch} pixels")
        self.validation = [self._validation_pair(read_rgb(path), val_size, index)
                           for index, path in enumerate(split.validation)]  # fmt: skip

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        clean = self._clean_patch(rng)
        for _ in range(MAX_REDRAWS if self.settings.min_detail > 0 else 0):
            if detail(clean) >= self.settings.min_detail:
                break
            clean = self._clean_patch(rng)  # flat (sky, wall): little to learn from for a deblurrer's gate
        return self._input(degrade(clean, self.task, int(rng.integers(2**63)), self.settings)), clean

    def _clean_patch(self, rng: np.random.Generator) -> np.ndarray:
        image = self.images[int(rng.integers(len(self.images)))]
        side = self.patch
        shrink = self.settings.video_shrink if self.task in LOWRES_TASKS else self.settings.patch_shrink
        if shrink != (1.0, 1.0):  # low-resolution content, or denser detail: a larger crop shrunk to the patch
            side = min(round(self.patch * rng.uniform(*shrink)), *image.shape[:2])
        top = int(rng.integers(image.shape[0] - side + 1))
        left = int(rng.integers(image.shape[1] - side + 1))
        clean = image[top : top + side, left : left + side]
        if side != self.patch:
            method = ("area", "bicubic")[int(rng.integers(2))]
            clean = to_u8(resize(clean.astype(np.float32), (self.patch, self.patch), method))
        if rng.random() < 0.5:
            clean = clean[:, ::-1]
        return np.ascontiguousarray(np.rot90(clean, int(rng.integers(4))))

    def _input(self, degraded: np.ndarray) -> np.ndarray:
        return degraded if self.upstream is None else self.upstream(degraded)

    def batch(self, step: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [self.sample(step * size + i) for i in range(size)]
        return to_tensor([lq for lq, _ in pairs]), to_tensor([gt for _, gt in pairs])

    def _validation_pair(self, image: np.ndarray, size: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        # The centre crop, at most size×size and a multiple of the scale, degraded with a fixed seed.
        height, width = (min(size, n) // self.scale * self.scale for n in image.shape[:2])
        top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
        clean = np.ascontiguousarray(image[top : top + height, left : left + width])
        lq = self._input(degrade(clean, self.task, 1_000_003 * (index + 1), self.settings))
        return to_tensor([lq]), to_tensor([clean])
