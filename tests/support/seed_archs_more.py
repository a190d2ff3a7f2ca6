"""The second batch of seed-architecture cases (WDSR A/B, LapSRN, DRRN) and ``claimed_by``.

Shared by tests/test_seed_archs_more.py and tests/test_seed_archs_san_drcn.py."""


import copy
import warnings

import spandrel
import torch

from streamrestore.models.loader import architecture_registry
from streamrestore.models.archs.drrn import DRRN
from streamrestore.models.archs.lapsrn import LapSRN
from streamrestore.models.archs.preupscaled import SCALE_KEY
from streamrestore.models.archs.wdsr import WDSR

from support import seed_archs as earlier  # the photo crop, weight calming and first cases

HEIGHT, WIDTH = earlier.HEIGHT, earlier.WIDTH  # 29×37
NEW = {"WDSR", "LapSRN", "DRRN"}
SEED = {"EDSR", "RDN", "SRResNet", "ESPCN", "SRCNN", "VDSR"} | NEW


def weight_normed(net: torch.nn.Module, parametrized: bool = False) -> torch.nn.Module:
    """``net`` with every conv weight-normalised as the official WDSR builds it, and each direction
    tensor rescaled per output channel, so that v differs from the weight it stands for."""
    net = copy.deepcopy(net)
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            if parametrized:
                torch.nn.utils.parametrizations.weight_norm(module)
                direction = module.parametrizations.weight.original1
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)  # the old API the official code uses
                    torch.nn.utils.weight_norm(module)
                direction = module.weight_v
            with torch.no_grad():
                direction.mul_(torch.rand(direction.shape[0], 1, 1, 1) + 0.5)
    return net


def lapsrn(scale: int, depth: int) -> LapSRN:
    net = earlier.calm(LapSRN(scale, feats=8, depth=depth))
    # The official initialisation: each image-enlarging transposed conv starts as a bilinear ×2.
    bilinear = torch.tensor([0.25, 0.75, 0.75, 0.25])
    with torch.no_grad():
        for level in range(1, net.levels + 1):
            getattr(net, f"convt_I{level}").weight.copy_(torch.outer(bilinear, bilinear).view(1, 1, 4, 4))
    return net


Case = earlier.Case

CASES = [
    Case("wdsr-a-x2", "WDSR", 2, lambda: weight_normed(earlier.calm(WDSR(2, "A", 8, 2, (32,)))), channels=3),
    Case("wdsr-b-x3", "WDSR", 3, lambda: weight_normed(earlier.calm(WDSR(3, "B", 8, 2, (48, 6)))), channels=3),
    Case("wdsr-b-x2-parametrized", "WDSR", 2,
         lambda: weight_normed(earlier.calm(WDSR(2, "B", 8, 1, (24, 6))), parametrized=True), channels=3),
    Case("wdsr-a-x4-plain-weights", "WDSR", 4, lambda: earlier.calm(WDSR(4, "A", 8, 1, (16,))), channels=3),
    Case("lapsrn-x2", "LapSRN", 2, lambda: lapsrn(2, 2), channels=1),
    Case("lapsrn-x4", "LapSRN", 4, lambda: lapsrn(4, 3), channels=1),
    Case("lapsrn-x8", "LapSRN", 8, lambda: lapsrn(8, 1), channels=1),
    Case("drrn-x3", "DRRN", 3, lambda: earlier.calm(DRRN(1, 8, scale=3)), extra={SCALE_KEY: torch.tensor(3)},
         channels=1),
    Case("drrn-pre-upscaled", "DRRN", 1, lambda: earlier.calm(DRRN(1, 8)), channels=1),
]
IDS = [case.name for case in CASES]


def claimed_by(state_dict: dict) -> set[str]:
    """Every registered architecture whose detector accepts ``state_dict`` (ours and the extras included)."""
    state_dict = spandrel.canonicalize_state_dict(state_dict)
    return {support.architecture.id for support in architecture_registry()[0].architectures() if support.detect(state_dict)}
