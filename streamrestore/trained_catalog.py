"""The weights this project trained itself and ships inside the streamrestore package, by name.

Each file lies in ``streamrestore/models/`` (float16 safetensors in the architecture's official key
layout, so the loader detects it like any user checkpoint) and is pinned here by sha256. How each was
trained — data, degradations, steps, device, time — and what it scores is in the README's model cards;
the exact settings are also in each file's safetensors metadata (``streamrestore.train.*``).
"""

from __future__ import annotations

from typing import NamedTuple

from .weights import ModelEntry, PackagedFile

_LICENCE = "MIT (trained by streamrestore on Debian wallpapers and scikit-image photos)"


class Shipped(NamedTuple):
    name: str
    filename: str  # in streamrestore/models/
    sha256: str
    arch: str
    scale: int
    task: str
    description: str


_SHIPPED: list[Shipped] = [
    Shipped("denoise-nafnet16", "denoise-nafnet16.safetensors",
            "a6dce43fd540c84cce7ac4b3934e12df517077a9f257b7991856319f4ca2dbbd", "NAFNet", 1, "denoise",
            "blind denoiser: Gaussian σ 0–50, film grain, 4:2:0 video and JPEG'd noise (NAFNet width 16, 3.9 M)"),
    # Not a default: on the kit it gains +1.9 dB on Gaussian blur (the unsharp mask gains +2.85) and +0.3 dB on
    # camera shake (where the unsharp mask loses 2 dB). README, model cards.
    Shipped("deblur-nafnet16", "deblur-nafnet16.safetensors",
            "35aceb5605b1b4a71a02bc60a4c8013f114b3c433441b4d2f3fac526f0df5626", "NAFNet", 1, "deblur",
            "blind deblur: Gaussian, motion and camera-shake kernels (NAFNet width 16, 3.9 M)"),
    Shipped("oldfilm-compact48", "oldfilm-compact48.safetensors",
            "3e6ab8139cee1b90f750257a06d1a636c0a8d520fc11268f6033c796baee5ce8", "Compact", 4, "oldfilm",
            "old film ×4: blur, downscale, grain/noise and compression, twice (Compact 48×12, 0.27 M)"),
]


def trained_entries() -> list[ModelEntry]:
    return [
        ModelEntry(name=s.name, description=s.description, filename=s.filename, sha256=s.sha256, licence=_LICENCE,
                   packaged=PackagedFile("streamrestore", f"models/{s.filename}"), arch=s.arch, scale=s.scale,
                   task=s.task, content="photo")  # fmt: skip
        for s in _SHIPPED
    ]
