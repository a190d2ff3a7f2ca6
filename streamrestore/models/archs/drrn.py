"""DRRN B1U25 (Tai et al. 2017) in the jt827859032/DRRN-pytorch layout, with its spandrel support.

Layout followed: jt827859032/DRRN-pytorch ``drrn.py`` — ``input`` (3×3 conv), one recursive block whose
two convs ``conv1`` and ``conv2`` (3×3) are shared by all its residual units, ``output`` (3×3 conv), no
biases and no batch norm; pre-activation (ReLU before each conv, the image's own included), each unit
adding the block's input back (local residual), and the network's input added to its output (global
residual). Width and channels (1 for the published Y-channel model; the stage runs each colour plane
through it) are read from the shapes. The number of units is not in the weights: that code runs 25
(B1U25, the paper's published model), and so does this one. DRRN refines a bicubically enlarged image,
like VDSR: see ``.preupscaled`` for its scale.
"""

from __future__ import annotations

import torch
from spandrel import Architecture, ImageModelDescriptor, StateDict
from torch import nn

from .preupscaled import SCALE_KEY, enlarge, split_scale

UNITS = 25
"""Residual units in the recursive block: fixed by the published code, not stored in its weights."""

_KEYS = frozenset({"input.weight", "conv1.weight", "conv2.weight", "output.weight"})


def _conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)


class DRRN(nn.Module):
    def __init__(self, channels: int = 1, feats: int = 128, units: int = UNITS, scale: int = 1) -> None:
        super().__init__()
        self.scale, self.units = scale, units
        self.input = _conv(channels, feats)
        self.conv1 = _conv(feats, feats)
        self.conv2 = _conv(feats, feats)
        self.output = _conv(feats, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = enlarge(x, self.scale)
        # The ReLU on the image matters only where bicubic enlargement undershot below 0.
        block_input = self.input(torch.relu(x))
        out = block_input
        for _ in range(self.units):  # the same two convs every time: the recursion
            out = self.conv2(torch.relu(self.conv1(torch.relu(out)))) + block_input
        return x + self.output(torch.relu(out))


def _detect(state_dict: StateDict) -> bool:
    if set(state_dict) - {SCALE_KEY} != _KEYS:
        return False
    shapes = {key: state_dict[key].shape for key in _KEYS}
    if not all(len(shape) == 4 and shape[-2:] == (3, 3) for shape in shapes.values()):
        return False
    # input: channels -> feats; conv1, conv2: feats -> feats; output: feats -> channels.
    feats, channels = shapes["input.weight"][:2]
    return (shapes["conv1.weight"][:2] == shapes["conv2.weight"][:2] == (feats, feats)
            and shapes["output.weight"][:2] == (channels, feats))


class DRRNArch(Architecture[DRRN]):
    def __init__(self) -> None:
        super().__init__(id="DRRN", name="DRRN", detect=_detect)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[DRRN]:
        scale, state_dict = split_scale(state_dict)
        feats, channels = state_dict["input.weight"].shape[:2]
        model = DRRN(channels, feats, UNITS, scale)
        return ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="SR" if scale > 1 else "Restoration",
            tags=[f"{feats}nf", f"B1U{UNITS}", f"x{scale}" if scale > 1 else "pre-upscaled"],
            supports_half=True,
            supports_bfloat16=True,
            scale=scale,
            input_channels=channels,
            output_channels=channels,
        )
