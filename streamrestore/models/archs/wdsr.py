"""WDSR-A and WDSR-B (Yu et al. 2018) in the official wdsr_ntire2018 PyTorch layout, with its spandrel support.

Layout followed: JiahuiYu/wdsr_ntire2018 ``wdsr_a.py`` / ``wdsr_b.py`` (trained inside the EDSR-PyTorch
framework) — ``head.0`` (3×3), ``body.N.body.*`` (residual blocks), ``tail.0`` (3×3 to colours·scale²,
then PixelShuffle) and ``skip.0`` (5×5 from the input to colours·scale², PixelShuffle), the two branches
added. A WDSR-A block is ``body.0`` (3×3, widening) - ReLU - ``body.2`` (3×3); a WDSR-B block is ``body.0``
(1×1, widening ×6) - ReLU - ``body.2`` (1×1, linear low-rank ×0.8) - ``body.3`` (3×3). Every conv is
weight-normalised, so each is saved as ``weight_g``/``weight_v`` (or, with torch's newer parametrization,
``parametrizations.weight.original0/1``); files with plain ``weight`` keys (the norm removed) load too.
The block type, widths, depth, kernel sizes and scale are read from the shapes. Not in the weights:
``res_scale`` (1, EDSR-PyTorch's default) and the RGB mean the input is centred on (DIV2K's, the one the
authors' code takes as ``r_mean``/``g_mean``/``b_mean``).
"""

from __future__ import annotations

import math

import torch
from spandrel import Architecture, ImageModelDescriptor, StateDict
from spandrel.util import get_seq_len
from torch import nn

_DIV2K_MEAN = (0.4488, 0.4371, 0.4040)

# (magnitude, direction) key suffixes of a weight-normalised conv: torch.nn.utils.weight_norm, then
# torch.nn.utils.parametrizations.weight_norm. The direction is shaped like the weight itself.
_WEIGHT_NORM = ((".weight_g", ".weight_v"),
                (".parametrizations.weight.original0", ".parametrizations.weight.original1"))


def _conv(in_channels: int, out_channels: int, kernel: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)


def fold_weight_norm(state_dict: StateDict) -> StateDict:
    """The same state dict with each weight-normalised conv saved as its plain ``weight`` (g·v/‖v‖)."""
    out = {}
    for key, value in state_dict.items():
        for g_suffix, v_suffix in _WEIGHT_NORM:
            if key.endswith(g_suffix):
                break  # folded when its direction is met
            if key.endswith(v_suffix):
                base = key[: -len(v_suffix)]
                norm = torch.linalg.vector_norm(value, dim=tuple(range(1, value.dim())), keepdim=True)
                out[f"{base}.weight"] = state_dict[base + g_suffix] * value / norm
                break
        else:
            out[key] = value
    return out


def _shapes(state_dict: StateDict) -> dict[str, torch.Size]:
    """Every weight's shape under its plain name (``head.0.weight``), however it was saved; nothing computed."""
    shapes = {}
    for key, value in state_dict.items():
        for suffix in (".weight", *(v_suffix for _, v_suffix in _WEIGHT_NORM)):
            if key.endswith(suffix):
                shapes[f"{key[: -len(suffix)]}.weight"] = value.shape
    return shapes


class Block(nn.Module):
    """A residual block with wide activation: type "A" (3×3 wide, 3×3) or "B" (1×1 wide, 1×1 low-rank, 3×3)."""

    def __init__(self, kind: str, feats: int, widths: tuple[int, ...], kernel: int, res_scale: float) -> None:
        super().__init__()
        if kind == "A":
            layers = [_conv(feats, widths[0], kernel), nn.ReLU(True), _conv(widths[0], feats, kernel)]
        else:
            layers = [_conv(feats, widths[0], 1), nn.ReLU(True), _conv(widths[0], widths[1], 1),
                      _conv(widths[1], feats, kernel)]  # fmt: skip
        self.body = nn.Sequential(*layers)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


class WDSR(nn.Module):
    """Takes and returns RGB in [0, 1] (the official code: [0, 255], centred on the mean and divided by 127.5)."""

    def __init__(self, scale: int = 2, kind: str = "A", feats: int = 32, blocks: int = 16,
                 widths: tuple[int, ...] = (128,), kernel: int = 3, skip_kernel: int = 5,
                 res_scale: float = 1.0) -> None:  # fmt: skip
        super().__init__()
        self.scale, self.kind = scale, kind
        colors = len(_DIV2K_MEAN)
        self.register_buffer("mean", torch.tensor(_DIV2K_MEAN).view(1, colors, 1, 1), persistent=False)
        self.head = nn.Sequential(_conv(colors, feats, 3))
        self.body = nn.Sequential(*[Block(kind, feats, widths, kernel, res_scale) for _ in range(blocks)])
        self.tail = nn.Sequential(_conv(feats, colors * scale**2, 3), nn.PixelShuffle(scale))
        self.skip = nn.Sequential(_conv(colors, colors * scale**2, skip_kernel), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (255·x - 255·mean) / 127.5 = 2·(x - mean), and back.
        x = (x - self.mean) * 2
        x = self.tail(self.body(self.head(x))) + self.skip(x)
        return x / 2 + self.mean


_KEYS = ("head.0.weight", "body.0.body.0.weight", "body.0.body.2.weight", "tail.0.weight", "skip.0.weight")


def _detect(state_dict: StateDict) -> bool:
    shapes = _shapes(state_dict)
    if not all(key in shapes for key in _KEYS):
        return False
    # The official network centres its input on a 3-value mean: only RGB WDSR exists. The skip branch
    # (absent from EDSR and RCAN, which share head/body/tail) must end where the tail does.
    colors, tail, skip = shapes["head.0.weight"][1], shapes["tail.0.weight"], shapes["skip.0.weight"]
    return colors == 3 and skip[:2] == (tail[0], colors) and math.isqrt(tail[0] // colors) ** 2 * colors == tail[0]


class WDSRArch(Architecture[WDSR]):
    def __init__(self) -> None:
        super().__init__(id="WDSR", name="WDSR", detect=_detect)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[WDSR]:
        state_dict = fold_weight_norm(state_dict)
        feats, colors = state_dict["head.0.weight"].shape[:2]
        scale = math.isqrt(state_dict["tail.0.weight"].shape[0] // colors)
        kind = "B" if "body.0.body.3.weight" in state_dict else "A"
        widened = ("body.0.body.0.weight",) if kind == "A" else ("body.0.body.0.weight", "body.0.body.2.weight")
        widths = tuple(state_dict[key].shape[0] for key in widened)
        kernel = state_dict[f"body.0.body.{2 if kind == 'A' else 3}.weight"].shape[-1]
        blocks = get_seq_len(state_dict, "body")
        model = WDSR(scale, kind, feats, blocks, widths, kernel, state_dict["skip.0.weight"].shape[-1])
        return ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="SR" if scale > 1 else "Restoration",
            tags=[f"WDSR-{kind}", f"{feats}nf", f"{blocks}nb", f"expand{widths[0] / feats:g}"],
            supports_half=True,  # not measured; it works in units of 127.5, not EDSR's raw [0, 255]
            supports_bfloat16=True,
            scale=scale,
            input_channels=colors,
            output_channels=colors,
        )
