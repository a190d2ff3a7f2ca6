"""SRResNet / the SRGAN generator (Ledig et al. 2017) in the sgrvinod layout, with its spandrel support.

Layout followed: sgrvinod/a-PyTorch-Tutorial-to-Super-Resolution ``models.py`` — ``conv_block1``
(9×9 conv + PReLU), ``residual_blocks.N.conv_block1`` (conv, BN, PReLU) and ``.conv_block2`` (conv, BN),
``conv_block2`` (conv, BN; global residual), ``subpixel_convolutional_blocks.N`` (``conv`` to 4·n,
PixelShuffle(2), ``prelu``), ``conv_block3`` (9×9 conv + Tanh). The SRGAN ``Generator`` wraps the same
network as ``net``; its ``net.`` prefix is accepted. As in that code, the input is normalised with
ImageNet's mean and deviation and the output spans [-1, 1]; the module takes and returns [0, 1].
"""

from __future__ import annotations

import torch
from spandrel import Architecture, ImageModelDescriptor, StateDict
from spandrel.util import get_seq_len
from torch import nn

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class ConvolutionalBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel: int, batch_norm: bool,
                 activation: nn.Module | None) -> None:  # fmt: skip
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        if activation is not None:
            layers.append(activation)
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_block(x)


class ResidualBlock(nn.Module):
    def __init__(self, feats: int, kernel: int) -> None:
        super().__init__()
        self.conv_block1 = ConvolutionalBlock(feats, feats, kernel, True, nn.PReLU())
        self.conv_block2 = ConvolutionalBlock(feats, feats, kernel, True, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block2(self.conv_block1(x))


class SubPixelBlock(nn.Module):
    def __init__(self, feats: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(feats, feats * 4, kernel, padding=kernel // 2)
        self.pixel_shuffle = nn.PixelShuffle(2)
        self.prelu = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.pixel_shuffle(self.conv(x)))


class SRResNet(nn.Module):
    def __init__(self, scale: int = 4, colors: int = 3, feats: int = 64, blocks: int = 16, large_kernel: int = 9,
                 small_kernel: int = 3) -> None:  # fmt: skip
        super().__init__()
        self.scale = scale
        self.conv_block1 = ConvolutionalBlock(colors, feats, large_kernel, False, nn.PReLU())
        self.residual_blocks = nn.Sequential(*[ResidualBlock(feats, small_kernel) for _ in range(blocks)])
        self.conv_block2 = ConvolutionalBlock(feats, feats, small_kernel, True, None)
        self.subpixel_convolutional_blocks = nn.Sequential(
            *[SubPixelBlock(feats, small_kernel) for _ in range(scale.bit_length() - 1)]
        )
        self.conv_block3 = ConvolutionalBlock(feats, colors, large_kernel, False, nn.Tanh())
        self.register_buffer("mean", torch.tensor(_MEAN[:colors]).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD[:colors]).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_block1((x - self.mean) / self.std)
        x = self.conv_block2(self.residual_blocks(x)) + x
        return (self.conv_block3(self.subpixel_convolutional_blocks(x)) + 1) / 2


_KEYS = ("conv_block1.conv_block.0.weight", "residual_blocks.0.conv_block1.conv_block.1.running_mean",
         "conv_block2.conv_block.1.weight", "subpixel_convolutional_blocks.0.conv.weight",
         "conv_block3.conv_block.0.weight")  # fmt: skip


def _unwrap(state_dict: StateDict) -> StateDict:
    """The SRGAN Generator's keys (``net.…``) -> SRResNet's."""
    if all(key.startswith("net.") for key in state_dict):
        return {key[len("net.") :]: value for key, value in state_dict.items()}
    return state_dict


def _detect(state_dict: StateDict) -> bool:
    return all(key in _unwrap(state_dict) for key in _KEYS)


class SRResNetArch(Architecture[SRResNet]):
    def __init__(self) -> None:
        super().__init__(id="SRResNet", name="SRResNet / SRGAN generator", detect=_detect)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[SRResNet]:
        state_dict = _unwrap(state_dict)
        feats, colors, large_kernel = (state_dict["conv_block1.conv_block.0.weight"].shape[i] for i in (0, 1, 3))
        small_kernel = state_dict["conv_block2.conv_block.0.weight"].shape[-1]
        blocks = get_seq_len(state_dict, "residual_blocks")
        scale = 2 ** get_seq_len(state_dict, "subpixel_convolutional_blocks")
        model = SRResNet(scale, colors, feats, blocks, large_kernel, small_kernel)
        return ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="SR",
            tags=[f"{feats}nf", f"{blocks}nb"],
            supports_half=True,
            supports_bfloat16=True,
            scale=scale,
            input_channels=colors,
            output_channels=colors,
        )
