"""DRCN (Kim et al. 2016, "Deeply-Recursive Convolutional Network") in the icpm/super-resolution layout,
with its spandrel support.

The authors published MatConvNet code only; the PyTorch layout people load is icpm/super-resolution's
``DRCN/model.py``: ``embedding_layer`` (two 3×3 convs, each followed by a ReLU: keys ``.0`` and ``.2``),
``conv_block.0`` (one 3×3 conv + ReLU, the recursion: the same weights applied ``recursions`` times),
``reconstruction_layer`` (two 3×3 convs without an activation between them: ``.0`` and ``.1``), all with
biases. Every recursion's features go through the shared reconstruction; the outputs are averaged with
the weights ``w`` (normalised by their sum, the paper's recursive supervision ensemble) and the network's
input is added (skip connection). Width and channels (1 for the published Y-channel model; the stage runs
each colour plane through it) are read from the shapes.

That code keeps ``w`` as a plain tensor, not in the state dict, initialised to equal weights over 16
recursions (its trainer's ``num_recursions``). A file may carry it as a ``w`` key (the paper learns it):
its length is then the number of recursions and its values the weights; without it, 16 equal ones.
DRCN refines a bicubically enlarged image, like VDSR: see ``.preupscaled`` for its scale.
"""

from __future__ import annotations

import torch
from spandrel import Architecture, ImageModelDescriptor, StateDict
from torch import nn

from .preupscaled import SCALE_KEY, enlarge, split_scale

RECURSIONS = 16
"""Recursions when the file has no ``w`` key: icpm/super-resolution's trainer default."""

_CONVS = ("embedding_layer.0", "embedding_layer.2", "conv_block.0", "reconstruction_layer.0",
          "reconstruction_layer.1")  # fmt: skip
_KEYS = frozenset(f"{conv}.{part}" for conv in _CONVS for part in ("weight", "bias"))


def _conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


class DRCN(nn.Module):
    def __init__(self, channels: int = 1, feats: int = 64, recursions: int = RECURSIONS, scale: int = 1) -> None:
        super().__init__()
        self.scale, self.recursions = scale, recursions
        self.embedding_layer = nn.Sequential(_conv(channels, feats), nn.ReLU(), _conv(feats, feats), nn.ReLU())
        self.conv_block = nn.Sequential(_conv(feats, feats), nn.ReLU())
        self.reconstruction_layer = nn.Sequential(_conv(feats, feats), _conv(feats, channels))
        self.w = nn.Parameter(torch.full((recursions,), 1.0 / recursions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = enlarge(x, self.scale)
        h = self.embedding_layer(x)
        total = torch.zeros_like(x)
        for d in range(self.recursions):
            h = self.conv_block(h)  # the same conv every time: the recursion
            total = total + self.reconstruction_layer(h) * self.w[d]
        return total / self.w.sum() + x


def _detect(state_dict: StateDict) -> bool:
    if set(state_dict) - {SCALE_KEY, "w"} != _KEYS:
        return False
    if "w" in state_dict and state_dict["w"].dim() != 1:
        return False
    shapes = {conv: state_dict[f"{conv}.weight"].shape for conv in _CONVS}
    if not all(len(shape) == 4 and shape[-2:] == (3, 3) for shape in shapes.values()):
        return False
    feats, channels = shapes["embedding_layer.0"][:2]
    return (shapes["embedding_layer.2"][:2] == shapes["conv_block.0"][:2] == (feats, feats)
            and shapes["reconstruction_layer.0"][:2] == (feats, feats)
            and shapes["reconstruction_layer.1"][:2] == (channels, feats))  # fmt: skip


class DRCNArch(Architecture[DRCN]):
    def __init__(self) -> None:
        super().__init__(id="DRCN", name="DRCN", detect=_detect)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[DRCN]:
        scale, state_dict = split_scale(state_dict)
        feats, channels = state_dict["embedding_layer.0.weight"].shape[:2]
        state_dict = dict(state_dict)
        if "w" not in state_dict:  # icpm's files: equal weights over its 16 recursions
            state_dict["w"] = torch.full((RECURSIONS,), 1.0 / RECURSIONS)
        recursions = state_dict["w"].shape[0]
        model = DRCN(channels, feats, recursions, scale)
        return ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="SR" if scale > 1 else "Restoration",
            tags=[f"{feats}nf", f"D{recursions}", f"x{scale}" if scale > 1 else "pre-upscaled"],
            supports_half=True,
            supports_bfloat16=True,
            scale=scale,
            input_channels=channels,
            output_channels=channels,
        )
