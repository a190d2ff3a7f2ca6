"""Network definitions that spandrel does not provide, and their architecture entries for the loader.

Nothing is registered anywhere at import: ``our_architectures()`` returns the entries, which
``models.loader`` adds to its own copy of spandrel's registry (spandrel's global one is left alone).
"""

from __future__ import annotations


def our_architectures() -> list:
    """``ArchSupport`` entries for UpConv7, CUNet and the seed SR networks (EDSR, RDN, SRResNet, ESPCN, SRCNN,
    VDSR, WDSR, LapSRN, DRRN, DRCN, SAN, IGNN) and the gated deblur. Each detects only its own exact key layout."""
    from spandrel import ArchSupport

    from .cunet import CUNetArch
    from .drcn import DRCNArch
    from .drrn import DRRNArch
    from .edsr import EDSRArch
    from .ignn import IGNNArch
    from .espcn import ESPCNArch
    from .gated_deblur import GatedDeblurArch
    from .lapsrn import LapSRNArch
    from .rdn import RDNArch
    from .san import SANArch
    from .srcnn import SRCNNArch
    from .srresnet import SRResNetArch
    from .upconv7 import UpConv7Arch
    from .vdsr import VDSRArch
    from .wdsr import WDSRArch

    return [
        ArchSupport.from_architecture(UpConv7Arch()),
        # Asked before RealCUGAN, whose detection also accepts a marked waifu2x CUNet ×2 (see .cunet).
        ArchSupport.from_architecture(CUNetArch(), before=("RealCUGAN",)),
        *(ArchSupport.from_architecture(arch()) for arch in (EDSRArch, RDNArch, SRResNetArch, ESPCNArch,
                                                             SRCNNArch, VDSRArch, WDSRArch, LapSRNArch, DRRNArch,
                                                             DRCNArch, SANArch, IGNNArch, GatedDeblurArch)),
    ]
