"""VDSR (Kim et al. 2016) in the twtygqyy/pytorch-vdsr layout, with its spandrel support.

Layout followed: twtygqyy/pytorch-vdsr ``vdsr.py`` — ``input`` (3×3 conv, no bias, ReLU),
``residual_layer.N.conv`` (18 conv-ReLU blocks, no bias), ``output`` (3×3 conv, no bias), and the
input added back (global residual). Depth, width and channels (1 for the published Y-channel model;
the stage runs each colour plane through it) are read from the shapes. That repository publishes a
pickled model object; its ``.state_dict()`` has these keys. VDSR refines a bicubically enlarged image:
see ``.preupscaled`` for its scale.
"""

from __future__ import annotations

import torch
from spandrel import Architecture, ImageModelDescriptor, StateDict
from spandrel.util import get_seq_len
from torch import nn

from .preupscaled import SCALE_KEY, enlarge, split_scale


class ConvReLU(nn.Module):
    def __init__(self, feats: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(feats, feats, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


class VDSR(nn.Module):
    def __init__(self, channels: int = 1, feats: int = 64, layers: int = 18, scale: int = 1) -> None:
        super().__init__()
        self.scale = scale
        self.input = nn.Conv2d(channels, feats, 3, padding=1, bias=False)
        self.residual_layer = nn.Sequential(*[ConvReLU(feats) for _ in range(layers)])
        self.output = nn.Conv2d(feats, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = enlarge(x, self.scale)
        return x + self.output(self.residual_layer(torch.relu(self.input(x))))


def _detect(state_dict: StateDict) -> bool:
    if not {"input.weight", "output.weight", "residual_layer.0.conv.weight"} <= set(state_dict):
        return False
    layers = get_seq_len(state_dict, "residual_layer")
    expected = {"input.weight", "output.weight", *(f"residual_layer.{i}.conv.weight" for i in range(layers))}
    return set(state_dict) - {SCALE_KEY} == expected


class VDSRArch(Architecture[VDSR]):
    def __init__(self) -> None:
        super().__init__(id="VDSR", name="VDSR", detect=_detect)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[VDSR]:
        scale, state_dict = split_scale(state_dict)
        feats, channels = state_dict["input.weight"].shape[:2]
        layers = get_seq_len(state_dict, "residual_layer")
        model = VDSR(channels, feats, layers, scale)
        return ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="SR" if scale > 1 else "Restoration",
            tags=[f"{feats}nf", f"{layers + 2}conv", f"x{scale}" if scale > 1 else "pre-upscaled"],
            supports_half=True,
            supports_bfloat16=True,
            scale=scale,
            input_channels=channels,
            output_channels=channels,
        )
