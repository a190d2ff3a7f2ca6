"""Networks that refine an image already enlarged by bicubic interpolation (SRCNN, VDSR, DRRN): their scale.

Their weights are the same whatever factor they were trained for (SRCNN ×2, ×3 and ×4 files differ only
in values), so the scale cannot be read from the shapes. A file may say it in one extra key,
``SCALE_KEY``, holding a 0-d integer tensor (our exporter writes it; spandrel's Real-CUGAN ``pro`` key
is the same idea): the network then enlarges its input bicubically by that factor itself, so that a
stage maps H×W to sH×sW like any other SR network. An official file without the key loads with scale 1
and expects an input that is already enlarged (chain ``resize`` before it).

The enlargement is PyTorch's bicubic (a = -0.75) without antialiasing, where the papers used MATLAB's
``imresize`` (a = -0.5): close, not identical.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from spandrel import StateDict

SCALE_KEY = "scale"
"""An optional key: the factor the network's input is to be enlarged by (0-d integer tensor)."""


def split_scale(state_dict: StateDict) -> tuple[int, StateDict]:
    """The declared scale (1 if none) and the state dict without its key."""
    if SCALE_KEY not in state_dict:
        return 1, state_dict
    scale = int(state_dict[SCALE_KEY])
    if not 1 <= scale <= 16:
        raise ValueError(f"{SCALE_KEY!r} key says scale {scale}; expected 1 to 16")
    return scale, {key: value for key, value in state_dict.items() if key != SCALE_KEY}


def enlarge(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic ×scale, as the networks' training inputs were made; identity at scale 1."""
    if scale == 1:
        return x
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
