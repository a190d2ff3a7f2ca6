"""RDN (Zhang et al. 2018) in the EDSR-PyTorch layout, with its spandrel support.

Layout followed: sanghyun-son/EDSR-PyTorch ``model/rdn.py`` (the one the RDN authors' PyTorch port
uses) — ``SFENet1``/``SFENet2``, ``RDBs.N.convs.M.conv.0`` (dense conv + ReLU, its output concatenated),
``RDBs.N.LFF`` (1×1 local fusion), ``GFF.0`` (1×1) and ``GFF.1`` (global fusion), ``UPNet.0/2`` for
×2/×3 (conv, PixelShuffle(r), conv) or ``UPNet.0/2/4`` for ×4 (two conv + PixelShuffle(2) steps).
G0, G, the number of blocks D and of convs per block C, the kernel size and the scale are read from the
shapes. The EDSR-PyTorch framework feeds pixels in [0, 255] (``rgb_range``); that constant is not in the
weights, and 255 is what every published model used.
"""

from __future__ import annotations

import torch
from spandrel import Architecture, ImageModelDescriptor, StateDict
from spandrel.util import get_seq_len
from torch import nn


def _conv(in_channels: int, out_channels: int, kernel: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel, padding=(kernel - 1) // 2)


class DenseConv(nn.Module):
    def __init__(self, in_channels: int, growth: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv(in_channels, growth, kernel), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.conv(x)), 1)


class RDB(nn.Module):
    def __init__(self, g0: int, growth: int, convs: int, kernel: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(*[DenseConv(g0 + i * growth, growth, kernel) for i in range(convs)])
        self.LFF = nn.Conv2d(g0 + convs * growth, g0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LFF(self.convs(x)) + x


class RDN(nn.Module):
    """Takes and returns images in [0, 1]; inside, pixels span [0, rgb_range] as in the official code."""

    def __init__(self, scale: int = 2, colors: int = 3, g0: int = 64, growth: int = 64, blocks: int = 16,
                 convs: int = 8, kernel: int = 3, rgb_range: float = 255.0) -> None:  # fmt: skip
        super().__init__()
        self.scale, self.rgb_range = scale, rgb_range
        self.SFENet1 = _conv(colors, g0, kernel)
        self.SFENet2 = _conv(g0, g0, kernel)
        self.RDBs = nn.ModuleList([RDB(g0, growth, convs, kernel) for _ in range(blocks)])
        self.GFF = nn.Sequential(nn.Conv2d(blocks * g0, g0, 1), _conv(g0, g0, kernel))
        if scale == 4:
            up = [_conv(g0, growth * 4, kernel), nn.PixelShuffle(2),
                  _conv(growth, growth * 4, kernel), nn.PixelShuffle(2)]  # fmt: skip
        else:
            up = [_conv(g0, growth * scale * scale, kernel), nn.PixelShuffle(scale)]
        self.UPNet = nn.Sequential(*up, _conv(growth, colors, kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shallow = self.SFENet1(x * self.rgb_range)
        x = self.SFENet2(shallow)
        outs = []
        for block in self.RDBs:
            x = block(x)
            outs.append(x)
        return self.UPNet(self.GFF(torch.cat(outs, 1)) + shallow) / self.rgb_range


_KEYS = ("SFENet1.weight", "SFENet2.weight", "RDBs.0.convs.0.conv.0.weight", "RDBs.0.LFF.weight", "GFF.0.weight",
         "GFF.1.weight", "UPNet.0.weight", "UPNet.2.weight")  # fmt: skip


def _detect(state_dict: StateDict) -> bool:
    return all(key in state_dict for key in _KEYS)


class RDNArch(Architecture[RDN]):
    def __init__(self) -> None:
        super().__init__(id="RDN", name="RDN", detect=_detect)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[RDN]:
        g0, colors, kernel = (state_dict["SFENet1.weight"].shape[i] for i in (0, 1, 3))
        growth = state_dict["RDBs.0.convs.0.conv.0.weight"].shape[0]
        blocks = get_seq_len(state_dict, "RDBs")
        convs = get_seq_len(state_dict, "RDBs.0.convs")
        if "UPNet.4.weight" in state_dict:
            scale = 4
        else:
            scale = round((state_dict["UPNet.0.weight"].shape[0] // growth) ** 0.5)
        model = RDN(scale, colors, g0, growth, blocks, convs, kernel)
        return ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="SR" if scale > 1 else "Restoration",
            tags=[f"{g0}G0", f"{growth}G", f"{blocks}D", f"{convs}C"],
            supports_half=False,  # not measured: activations span [0, 255]
            supports_bfloat16=True,
            scale=scale,
            input_channels=colors,
            output_channels=colors,
        )
