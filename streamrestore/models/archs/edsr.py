"""EDSR (Lim et al. 2017), baseline and full, in the official EDSR-PyTorch layout, with its spandrel support.

Layout followed: sanghyun-son/EDSR-PyTorch ``model/edsr.py`` — ``sub_mean``/``add_mean`` (MeanShift, a
1×1 conv), ``head.0``, ``body.N.body.0``/``body.N.body.2`` (conv-ReLU-conv residual blocks), ``body.{n}``
(the trunk's last conv), ``tail.0.{0,2,…}`` (the upsampler: a conv before each PixelShuffle) and
``tail.1``. Everything is read from the shapes except two constants the published models share:
``res_scale`` (0.1 for the 256-feature "full" EDSR, 1 for the 64-feature baseline) and the pixel range
the network works in (``rgb_range``; 255 in every official model, read here from MeanShift's bias, which
is ``-rgb_range·mean``).
"""

from __future__ import annotations

import torch
from spandrel import Architecture, ImageModelDescriptor, StateDict
from spandrel.util import get_seq_len
from torch import nn


def upsampler(scale: int, feats: int) -> nn.Sequential:
    """EDSR-PyTorch's ``Upsampler``: conv + PixelShuffle(2) per factor of two, or one conv + PixelShuffle(3)."""
    layers: list[nn.Module] = []
    factors = [3] if scale == 3 else [2] * (scale.bit_length() - 1)
    for factor in factors:
        layers += [nn.Conv2d(feats, feats * factor * factor, 3, padding=1), nn.PixelShuffle(factor)]
    return nn.Sequential(*layers)


def upsampler_scale(state_dict: StateDict, prefix: str) -> int:
    """The factor of an ``upsampler`` saved under ``prefix``, from its convolutions' output widths."""
    scale, index = 1, 0
    while f"{prefix}.{index}.weight" in state_dict:
        out_channels, in_channels = state_dict[f"{prefix}.{index}.weight"].shape[:2]
        scale *= round((out_channels // in_channels) ** 0.5)
        index += 2
    return scale


class ResBlock(nn.Module):
    def __init__(self, feats: int, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(feats, feats, 3, padding=1), nn.ReLU(True),
                                  nn.Conv2d(feats, feats, 3, padding=1))  # fmt: skip
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


class EDSR(nn.Module):
    """Takes and returns images in [0, 1]; inside, pixels span [0, rgb_range] as in the official code."""

    def __init__(self, scale: int = 4, colors: int = 3, feats: int = 64, blocks: int = 16,
                 res_scale: float = 1.0, rgb_range: float = 255.0) -> None:  # fmt: skip
        super().__init__()
        self.scale, self.rgb_range = scale, rgb_range
        # MeanShift: fixed 1×1 convs; their values come from the weights file.
        self.sub_mean = nn.Conv2d(colors, colors, 1)
        self.add_mean = nn.Conv2d(colors, colors, 1)
        self.head = nn.Sequential(nn.Conv2d(colors, feats, 3, padding=1))
        self.body = nn.Sequential(*[ResBlock(feats, res_scale) for _ in range(blocks)],
                                  nn.Conv2d(feats, feats, 3, padding=1))  # fmt: skip
        self.tail = nn.Sequential(upsampler(scale, feats), nn.Conv2d(feats, colors, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x * self.rgb_range))
        x = self.tail(x + self.body(x))
        return self.add_mean(x) / self.rgb_range


_KEYS = ("sub_mean.weight", "add_mean.weight", "head.0.weight", "body.0.body.0.weight", "body.0.body.2.weight",
         "tail.0.0.weight", "tail.1.weight")  # fmt: skip


def _detect(state_dict: StateDict) -> bool:
    # RCAN shares sub_mean/head/tail names, but its body.0 is a residual group (body.0.body.0.body.0...).
    return all(key in state_dict for key in _KEYS) and "body.0.body.0.body.0.weight" not in state_dict


class EDSRArch(Architecture[EDSR]):
    def __init__(self) -> None:
        super().__init__(id="EDSR", name="EDSR", detect=_detect)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[EDSR]:
        colors, feats = state_dict["tail.1.weight"].shape[:2]
        blocks = get_seq_len(state_dict, "body") - 1  # the last is the trunk's closing conv
        scale = upsampler_scale(state_dict, "tail.0")
        # The published full EDSR (256 features) was trained with res_scale 0.1; the baseline with 1.
        res_scale = 0.1 if feats >= 256 else 1.0
        rgb_range = 255.0 if state_dict["sub_mean.bias"].abs().max() > 1 else 1.0
        model = EDSR(scale, colors, feats, blocks, res_scale, rgb_range)
        return ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="SR" if scale > 1 else "Restoration",
            tags=[f"{feats}nf", f"{blocks}nb", "full" if feats >= 256 else "baseline"],
            supports_half=False,  # not measured: activations span [0, 255]
            supports_bfloat16=True,
            scale=scale,
            input_channels=colors,
            output_channels=colors,
        )
