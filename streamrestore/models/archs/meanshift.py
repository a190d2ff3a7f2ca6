"""EDSR's MeanShift, as the EDSR-family code bases (EDSR-PyTorch, SAN, IGNN) build it, and the value range a
checkpoint of theirs was trained on.

``sub_mean``/``add_mean`` are fixed 1×1 convolutions: the identity divided by ``std``, and a bias of
±``rgb_range`` × ``mean`` / ``std``. The networks work on the 0..``rgb_range`` scale (``--rgb_range``: 255 in
every released model), which a file records only through that bias.
"""

from __future__ import annotations

import torch
from spandrel import StateDict
from torch import nn

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)
RGB_RANGE = 255.0


class MeanShift(nn.Conv2d):
    def __init__(self, sign: int, rgb_range: float = RGB_RANGE, mean=DIV2K_MEAN, std=(1.0, 1.0, 1.0)) -> None:
        super().__init__(3, 3, 1)
        std_t = torch.tensor(std)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1) / std_t.view(3, 1, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(mean) / std_t)
        self.requires_grad_(False)


def rgb_range_of(state_dict: StateDict) -> float:
    """The value range read back from ``sub_mean``'s bias (-rgb_range × the DIV2K mean); 255 if it says nothing."""
    rgb_range = round(-float(state_dict["sub_mean.bias"][0]) / DIV2K_MEAN[0], 3)
    return rgb_range if rgb_range > 0 else RGB_RANGE
