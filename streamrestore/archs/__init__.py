"""Network definitions that spandrel does not provide, and their registration with spandrel's detector.

Nothing is registered at import: ``register_architectures()`` adds them when a model is about to be
loaded (the ``model`` stage calls it), and calling it again changes nothing.
"""

from __future__ import annotations


def register_architectures() -> None:
    """Add UpConv7 and CUNet to spandrel's main registry (idempotent)."""
    from spandrel import MAIN_REGISTRY, ArchSupport

    from .cunet import CUNetArch
    from .upconv7 import UpConv7Arch

    MAIN_REGISTRY.add(
        ArchSupport.from_architecture(UpConv7Arch()),
        # Asked before RealCUGAN, whose detection also accepts a marked waifu2x CUNet ×2 (see .cunet).
        ArchSupport.from_architecture(CUNetArch(), before=("RealCUGAN",)),
        ignore_duplicates=True,
    )
