"""ESPCN (Shi et al. 2016) in the yjn870/ESPCN-pytorch layout, with its spandrel support.

Layout followed: yjn870/ESPCN-pytorch ``models.py`` — ``first_part.0`` (5×5, 64, Tanh), ``first_part.2``
(3×3, 32, Tanh), ``last_part.0`` (3×3 to channels·scale², then PixelShuffle). Widths, kernels, channels
(1 for the published Y-channel models; the stage then runs each colour plane through it) and the scale
(from the last conv's output channels) are read from the shapes. Unlike SRCNN, it takes the small image.
"""

from __future__ import annotations

import math

import torch
from spandrel import Architecture, ImageModelDescriptor, StateDict
from torch import nn

_KEYS = frozenset(f"{layer}.{kind}" for layer in ("first_part.0", "first_part.2", "last_part.0")
                  for kind in ("weight", "bias"))  # fmt: skip


class ESPCN(nn.Module):
    def __init__(self, scale: int = 3, channels: int = 1, widths: tuple[int, int] = (64, 32),
                 kernels: tuple[int, int, int] = (5, 3, 3)) -> None:  # fmt: skip
        super().__init__()
        self.scale = scale
        self.first_part = nn.Sequential(
            nn.Conv2d(channels, widths[0], kernels[0], padding=kernels[0] // 2), nn.Tanh(),
            nn.Conv2d(widths[0], widths[1], kernels[1], padding=kernels[1] // 2), nn.Tanh(),
        )  # fmt: skip
        self.last_part = nn.Sequential(
            nn.Conv2d(widths[1], channels * scale**2, kernels[2], padding=kernels[2] // 2), nn.PixelShuffle(scale)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_part(self.first_part(x))


def _scale(state_dict: StateDict) -> int:
    channels = state_dict["first_part.0.weight"].shape[1]
    return math.isqrt(state_dict["last_part.0.weight"].shape[0] // channels)


def _detect(state_dict: StateDict) -> bool:
    if set(state_dict) != _KEYS:
        return False
    channels = state_dict["first_part.0.weight"].shape[1]
    return _scale(state_dict) ** 2 * channels == state_dict["last_part.0.weight"].shape[0]


class ESPCNArch(Architecture[ESPCN]):
    def __init__(self) -> None:
        super().__init__(id="ESPCN", name="ESPCN", detect=_detect)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[ESPCN]:
        shapes = [state_dict[f"{layer}.weight"].shape for layer in ("first_part.0", "first_part.2", "last_part.0")]
        channels, scale = shapes[0][1], _scale(state_dict)
        model = ESPCN(scale, channels, (shapes[0][0], shapes[1][0]), tuple(shape[-1] for shape in shapes))
        return ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="SR" if scale > 1 else "Restoration",
            tags=[f"{shapes[0][0]}nf"],
            supports_half=True,
            supports_bfloat16=True,
            scale=scale,
            input_channels=channels,
            output_channels=channels,
        )
