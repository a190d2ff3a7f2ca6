"""SRCNN (Dong et al. 2014/2016), 9-1-5 or 9-5-5, in the yjn870/SRCNN-pytorch layout, with its spandrel support.

Layout followed: yjn870/SRCNN-pytorch ``models.py`` — ``conv1`` (9×9, 64), ``conv2`` (5×5 or 1×1, 32),
``conv3`` (5×5), ReLU after the first two, padding k//2 so the size is kept. Kernel sizes, widths and
channels (1 for the published Y-channel models; the stage then runs each colour plane through it) are
read from the shapes. SRCNN refines a bicubically enlarged image: see ``.preupscaled`` for its scale.
"""

from __future__ import annotations

import torch
from spandrel import Architecture, ImageModelDescriptor, StateDict
from torch import nn

from .preupscaled import SCALE_KEY, enlarge, split_scale


def _conv(weight_shape: torch.Size) -> nn.Conv2d:
    out_channels, in_channels, kernel = weight_shape[0], weight_shape[1], weight_shape[-1]
    return nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)


class SRCNN(nn.Module):
    def __init__(self, channels: int = 1, widths: tuple[int, int] = (64, 32), kernels: tuple[int, int, int] = (9, 5, 5),
                 scale: int = 1) -> None:  # fmt: skip
        super().__init__()
        self.scale = scale
        self.conv1 = nn.Conv2d(channels, widths[0], kernels[0], padding=kernels[0] // 2)
        self.conv2 = nn.Conv2d(widths[0], widths[1], kernels[1], padding=kernels[1] // 2)
        self.conv3 = nn.Conv2d(widths[1], channels, kernels[2], padding=kernels[2] // 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv1(enlarge(x, self.scale)))
        return self.conv3(self.relu(self.conv2(x)))


_KEYS = frozenset(f"conv{i}.{kind}" for i in (1, 2, 3) for kind in ("weight", "bias"))


def _detect(state_dict: StateDict) -> bool:
    if set(state_dict) - {SCALE_KEY} != _KEYS:
        return False
    shapes = [state_dict[f"conv{i}.weight"].shape for i in (1, 2, 3)]
    # A chain of three same-size (odd-kernel) convs that ends with as many channels as it began.
    return (all(len(shape) == 4 and shape[-1] % 2 == 1 for shape in shapes)
            and shapes[0][1] == shapes[2][0] and shapes[0][0] == shapes[1][1] and shapes[1][0] == shapes[2][1])


class SRCNNArch(Architecture[SRCNN]):
    def __init__(self) -> None:
        super().__init__(id="SRCNN", name="SRCNN", detect=_detect)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[SRCNN]:
        scale, state_dict = split_scale(state_dict)
        shapes = [state_dict[f"conv{i}.weight"].shape for i in (1, 2, 3)]
        channels = shapes[0][1]
        kernels = tuple(shape[-1] for shape in shapes)
        model = SRCNN(channels, (shapes[0][0], shapes[1][0]), kernels, scale)
        return ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="SR" if scale > 1 else "Restoration",
            tags=["-".join(map(str, kernels)), f"x{scale}" if scale > 1 else "pre-upscaled"],
            supports_half=True,
            supports_bfloat16=True,
            scale=scale,
            input_channels=channels,
            output_channels=channels,
        )
