"""SAN (Dai et al. 2019, "Second-order Attention Network") in the daitao/SAN layout, with its spandrel support.

Layout followed: daitao/SAN ``TestCode/code/model/san.py`` (EDSR-style code base):

- ``sub_mean`` / ``add_mean``: EDSR's MeanShift 1×1 convs (DIV2K mean times ``rgb_range``: 255 in the
  released models, input and output on the 0..255 scale; the range is read back from the bias);
- ``head.0``: 3×3 conv, colours → ``n_feats``;
- ``non_local``: the region-level non-local block, applied to the four quadrants of the feature map
  separately, once before and once after the groups (the same weights): ``non_local.non_local.theta``,
  ``.g.0`` and ``.phi.0`` 1×1 convs to ``n_feats // 8`` channels and ``non_local.non_local.W`` back (no
  batch norm), embedded-Gaussian attention. The official block is built with ``sub_sample=False``, but its
  2-D branch rebinds that name to ``nn.Upsample`` (truthy) before testing it, so keys and values are
  max-pooled ×2 (``g`` and ``phi`` are ``Sequential(conv, MaxPool2d(2))``, hence the ``.0`` in their
  keys); this code does the same. ``non_local.soca`` exists in the file but is never run;
- ``RG.{i}``: the local-source residual attention groups: ``rcab.{j}.conv_first.{0,2}`` residual blocks
  (conv, ReLU, conv, plus the input), then ``soca`` (second-order channel attention: the centred covariance
  of the channels, its matrix square root by five Newton–Schulz iterations, the mean of its rows, then the
  ``conv_du.{0,2}`` bottleneck with ReLU and a sigmoid gates the channels), ``conv_last``, plus the
  group's input; ``RG.{i}.gamma`` is in the file and unused by the forward pass;
- the groups share a source skip: each group's output gets ``gamma`` × the first non-local output added;
- ``conv_last`` is in the file and unused by the forward pass (as in the official code);
- ``tail.0``: EDSR's Upsampler (conv ×4 + pixel shuffle ×2 per doubling, or conv ×9 + pixel shuffle ×3),
  ``tail.1``: 3×3 conv to colours.

Groups, blocks per group, width, reduction and scale are read from the shapes. The released models are
``n_resgroups`` 20, ``n_resblocks`` 10, ``n_feats`` 64, ``reduction`` 16.

Two deviations where the official forward depends on its implementation's limits, not on the weights:
the covariance is computed as a centred product (the official builds an M×M centring matrix, M = H×W, the
same value), in float32 whatever the input's precision; and where a feature map is 1000 pixels or more on
a side the official crops it to its central 1000 for the statistics, which this code does as a centre crop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from spandrel import Architecture, ImageModelDescriptor, StateDict
from spandrel.util import get_seq_len
from torch import nn

from .meanshift import RGB_RANGE, MeanShift, rgb_range_of

SQRTM_ITERATIONS = 5


def _conv(in_channels: int, out_channels: int, kernel: int = 3) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)


def covariance(x: torch.Tensor) -> torch.Tensor:
    """B×C×H×W → B×C×C: the channels' covariance over the pixels (divided by their count)."""
    flat = x.flatten(2)
    flat = flat - flat.mean(dim=2, keepdim=True)
    return flat @ flat.transpose(1, 2) / flat.shape[2]


def sqrtm_newton_schulz(a: torch.Tensor, iterations: int = SQRTM_ITERATIONS) -> torch.Tensor:
    """The matrix square root of symmetric positive semi-definite ``a`` (B×C×C) by the coupled Newton–Schulz
    iteration, pre-normalised by the trace and compensated after, as MPN-COV's ``SqrtmLayer``."""
    eye3 = 3.0 * torch.eye(a.shape[1], dtype=a.dtype, device=a.device).expand_as(a)
    trace = a.diagonal(dim1=1, dim2=2).sum(-1).view(-1, 1, 1)
    normed = a / trace
    zy = 0.5 * (eye3 - normed)
    if iterations < 2:
        return normed @ zy * trace.sqrt()
    y, z = normed @ zy, zy
    for _ in range(1, iterations - 1):
        zy = 0.5 * (eye3 - z @ y)
        y, z = y @ zy, zy @ z
    return 0.5 * y @ (eye3 - z @ y) * trace.sqrt()


class SOCA(nn.Module):
    """Second-order channel attention."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(nn.Conv2d(channels, reduced, 1), nn.ReLU(), nn.Conv2d(reduced, channels, 1),
                                     nn.Sigmoid())  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        top, left = max(0, (height - 1000) // 2), max(0, (width - 1000) // 2)
        stats = x[:, :, top : top + 1000, left : left + 1000].float()
        root = sqrtm_newton_schulz(covariance(stats))
        gate = self.conv_du(root.mean(dim=1).view(batch, channels, 1, 1).to(x.dtype))
        return gate * x


class NonLocal(nn.Module):
    """Embedded-Gaussian non-local block without batch norm; keys and values max-pooled ×2 (see the module)."""

    def __init__(self, channels: int, inter: int) -> None:
        super().__init__()
        self.inter = inter
        self.g = nn.Sequential(nn.Conv2d(channels, inter, 1), nn.MaxPool2d(2))
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Sequential(nn.Conv2d(channels, inter, 1), nn.MaxPool2d(2))
        self.W = nn.Conv2d(inter, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        g = self.g(x).flatten(2).transpose(1, 2)
        theta = self.theta(x).flatten(2).transpose(1, 2)
        phi = self.phi(x).flatten(2)
        y = torch.softmax(theta @ phi, dim=-1) @ g
        y = y.transpose(1, 2).reshape(batch, self.inter, height, width)
        return self.W(y) + x


class RegionNonLocal(nn.Module):
    """The non-local block applied to each quadrant of the feature map on its own (``Nonlocal_CA``)."""

    def __init__(self, channels: int, inter: int, reduced: int) -> None:
        super().__init__()
        self.soca = SOCA(channels, reduced)  # in the official file; its forward never calls it
        self.non_local = NonLocal(channels, inter)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2] // 2, x.shape[3] // 2
        top = torch.cat([self.non_local(x[:, :, :h, :w]), self.non_local(x[:, :, :h, w:])], dim=3)
        bottom = torch.cat([self.non_local(x[:, :, h:, :w]), self.non_local(x[:, :, h:, w:])], dim=3)
        return torch.cat([top, bottom], dim=2)


class ResidualBlock(nn.Module):
    def __init__(self, feats: int) -> None:
        super().__init__()
        self.conv_first = nn.Sequential(_conv(feats, feats), nn.ReLU(), _conv(feats, feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_first(x) + x


class LSRAG(nn.Module):
    def __init__(self, feats: int, reduced: int, blocks: int) -> None:
        super().__init__()
        self.rcab = nn.ModuleList(ResidualBlock(feats) for _ in range(blocks))
        self.soca = SOCA(feats, reduced)
        self.conv_last = _conv(feats, feats)
        self.gamma = nn.Parameter(torch.zeros(1))  # in the official file; unused there too

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for block in self.rcab:
            out = block(out)
        return self.conv_last(self.soca(out)) + x


def upsampler(scale: int, feats: int) -> nn.Sequential:
    if scale == 3:
        return nn.Sequential(_conv(feats, 9 * feats), nn.PixelShuffle(3))
    layers: list[nn.Module] = []
    for _ in range(int(math.log2(scale))):
        layers += [_conv(feats, 4 * feats), nn.PixelShuffle(2)]
    return nn.Sequential(*layers)


class SAN(nn.Module):
    def __init__(self, scale: int = 4, feats: int = 64, groups: int = 20, blocks: int = 10, reduction: int = 16,
                 colors: int = 3, rgb_range: float = RGB_RANGE) -> None:  # fmt: skip
        super().__init__()
        self.rgb_range = rgb_range
        self.sub_mean = MeanShift(-1, rgb_range)
        self.add_mean = MeanShift(1, rgb_range)
        self.head = nn.Sequential(_conv(colors, feats))
        self.gamma = nn.Parameter(torch.zeros(1))
        self.RG = nn.ModuleList(LSRAG(feats, feats // reduction, blocks) for _ in range(groups))
        self.conv_last = _conv(feats, feats)  # in the official file; its forward never calls it
        self.tail = nn.Sequential(upsampler(scale, feats), _conv(feats, colors))
        # The official builds the region non-local block with reduction 8 whatever n_feats and reduction are.
        self.non_local = RegionNonLocal(feats, feats // 8, feats // 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x * self.rgb_range))
        source = out = self.non_local(x)
        for group in self.RG:
            out = group(out) + self.gamma * source
        out = self.non_local(out) + x
        return self.add_mean(self.tail(out)) / self.rgb_range


def _scale(state_dict: StateDict) -> int:
    first = state_dict["tail.0.0.weight"].shape
    if first[0] == 9 * first[1]:
        return 3
    return 2 ** sum(1 for key in state_dict if key.startswith("tail.0.") and key.endswith(".weight"))


def _detect(state_dict: StateDict) -> bool:
    required = {"sub_mean.weight", "add_mean.weight", "head.0.weight", "gamma", "RG.0.rcab.0.conv_first.0.weight",
                "RG.0.soca.conv_du.0.weight", "RG.0.conv_last.weight", "non_local.non_local.theta.weight", "non_local.non_local.g.0.weight",
                "non_local.non_local.W.weight", "tail.0.0.weight", "tail.1.weight"}  # fmt: skip
    return required <= set(state_dict)


class SANArch(Architecture[SAN]):
    def __init__(self) -> None:
        super().__init__(id="SAN", name="SAN", detect=_detect)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[SAN]:
        colors, feats = state_dict["head.0.weight"].shape[1], state_dict["head.0.weight"].shape[0]
        groups = get_seq_len(state_dict, "RG")
        blocks = get_seq_len(state_dict, "RG.0.rcab")
        reduced = state_dict["RG.0.soca.conv_du.0.weight"].shape[0]
        scale = _scale(state_dict)
        model = SAN(scale, feats, groups, blocks, feats // reduced, colors, rgb_range_of(state_dict))
        return ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="SR",
            tags=[f"{feats}nf", f"{groups}g{blocks}b", f"x{scale}"],
            # The non-local attention's softmax over thousands of positions and the covariance overflow fp16.
            supports_half=False,
            supports_bfloat16=True,
            scale=scale,
            input_channels=colors,
            output_channels=colors,
        )
