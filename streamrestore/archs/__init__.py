"""Network definitions that spandrel does not provide, and their registration with spandrel's detector.

Nothing is registered at import: ``register_architectures()`` adds them when a model is about to be
loaded (the ``model`` stage calls it), and calling it again changes nothing.
"""

from __future__ import annotations


def register_architectures() -> None:
    """Add UpConv7, CUNet and the seed SR networks (EDSR, RDN, SRResNet, ESPCN, SRCNN, VDSR, WDSR, LapSRN,
    DRRN, DRCN, SAN) to spandrel's main registry (idempotent). Each detects only its own exact key layout."""
    from spandrel import MAIN_REGISTRY, ArchSupport

    from .cunet import CUNetArch
    from .drcn import DRCNArch
    from .drrn import DRRNArch
    from .edsr import EDSRArch
    from .espcn import ESPCNArch
    from .lapsrn import LapSRNArch
    from .rdn import RDNArch
    from .san import SANArch
    from .srcnn import SRCNNArch
    from .srresnet import SRResNetArch
    from .upconv7 import UpConv7Arch
    from .vdsr import VDSRArch
    from .wdsr import WDSRArch

    MAIN_REGISTRY.add(
        ArchSupport.from_architecture(UpConv7Arch()),
        # Asked before RealCUGAN, whose detection also accepts a marked waifu2x CUNet ×2 (see .cunet).
        ArchSupport.from_architecture(CUNetArch(), before=("RealCUGAN",)),
        *(ArchSupport.from_architecture(arch()) for arch in (EDSRArch, RDNArch, SRResNetArch, ESPCNArch,
                                                                 SRCNNArch, VDSRArch, WDSRArch, LapSRNArch,
                                                                 DRRNArch, DRCNArch, SANArch)),
        ignore_duplicates=True,
    )
