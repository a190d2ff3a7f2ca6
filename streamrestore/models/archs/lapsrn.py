"""LapSRN (Lai et al. 2017) in the twtygqyy/pytorch-LapSRN layout, ×2/×4/×8, with its spandrel support.

Layout followed: twtygqyy/pytorch-LapSRN ``lapsrn.py`` — ``conv_input`` (3×3, no bias, LeakyReLU 0.2),
then one pyramid level per factor of two, k = 1, 2, …: ``convt_F{k}.0.cov_block`` (sic; the feature
branch: 3×3 conv + LeakyReLU, ten times, then a 4×4 stride-2 transposed conv + LeakyReLU, all without
bias), ``convt_R{k}`` (3×3 conv to the residual image) and ``convt_I{k}`` (4×4 stride-2 transposed conv
enlarging the image); each level's image is ``convt_I{k}(previous image) + convt_R{k}(features)``. The
official ``Net`` has two levels (×4) and returns every level's image; this one returns the last. The
number of levels (so the scale), the depth and width of a level and the channels are read from the
shapes. The published model works on luma (1 channel, [0, 1]); as for VDSR, the stage runs each RGB
plane through it. That repository publishes a pickled model object; its ``.state_dict()`` has these keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from spandrel import Architecture, ImageModelDescriptor, StateDict
from torch import nn


def _enlarge(channels: int) -> nn.ConvTranspose2d:
    # Kernel 4, stride 2, padding 1: exactly twice the size, odd sizes included.
    return nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1, bias=False)


class FeatureLevel(nn.Module):
    def __init__(self, feats: int, depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Conv2d(feats, feats, 3, padding=1, bias=False), nn.LeakyReLU(0.2, True)]
        self.cov_block = nn.Sequential(*layers, _enlarge(feats), nn.LeakyReLU(0.2, True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cov_block(x)


class LapSRN(nn.Module):
    def __init__(self, scale: int = 4, channels: int = 1, feats: int = 64, depth: int = 10) -> None:
        super().__init__()
        self.scale = scale
        self.levels = scale.bit_length() - 1
        self.conv_input = nn.Conv2d(channels, feats, 3, padding=1, bias=False)
        for level in range(1, self.levels + 1):
            # Attribute names (not a ModuleList) so that the keys are the official ones.
            self.add_module(f"convt_I{level}", _enlarge(channels))
            self.add_module(f"convt_R{level}", nn.Conv2d(feats, channels, 3, padding=1, bias=False))
            self.add_module(f"convt_F{level}", nn.Sequential(FeatureLevel(feats, depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, image = F.leaky_relu(self.conv_input(x), 0.2), x
        for level in range(1, self.levels + 1):
            features = getattr(self, f"convt_F{level}")(features)
            image = getattr(self, f"convt_I{level}")(image) + getattr(self, f"convt_R{level}")(features)
        return image


def _levels(state_dict: StateDict) -> int:
    levels = 0
    while f"convt_I{levels + 1}.weight" in state_dict:
        levels += 1
    return levels


def _depth(state_dict: StateDict) -> int:
    """Convs in a level's feature branch: ``cov_block`` holds (conv, LeakyReLU) pairs, then the transposed conv."""
    weights = 0
    while f"convt_F1.0.cov_block.{2 * weights}.weight" in state_dict:
        weights += 1
    return weights - 1


def _expected_keys(levels: int, depth: int) -> set[str]:
    keys = {"conv_input.weight"}
    for level in range(1, levels + 1):
        keys |= {f"convt_I{level}.weight", f"convt_R{level}.weight"}
        keys |= {f"convt_F{level}.0.cov_block.{2 * i}.weight" for i in range(depth + 1)}
    return keys


def _detect(state_dict: StateDict) -> bool:
    levels, depth = _levels(state_dict), _depth(state_dict)
    if levels < 1 or depth < 1 or set(state_dict) != _expected_keys(levels, depth):
        return False
    # The stride and padding of the transposed convs are not in the file; only the 4×4 kernel fits them.
    return state_dict["convt_I1.weight"].shape[-2:] == (4, 4)


class LapSRNArch(Architecture[LapSRN]):
    def __init__(self) -> None:
        super().__init__(id="LapSRN", name="LapSRN", detect=_detect)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[LapSRN]:
        feats, channels = state_dict["conv_input.weight"].shape[:2]
        scale, depth = 2 ** _levels(state_dict), _depth(state_dict)
        model = LapSRN(scale, channels, feats, depth)
        return ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="SR",
            tags=[f"{feats}nf", f"{depth}d"],
            supports_half=True,
            supports_bfloat16=True,
            scale=scale,
            input_channels=channels,
            output_channels=channels,
        )
