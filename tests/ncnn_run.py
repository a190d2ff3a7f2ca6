"""Reference runner for tests: a converted ncnn graph run layer by layer as ncnn would (used only by the ncnn tests).

"Exactly" matters at the frame border: the wrappers pad the frame (Real-ESRGAN reflects 10 px,
waifu2x replicates its network's border, Real-CUGAN reflects inside spandrel's forward) and crop the
result, so a module run on the bare frame differs from ncnn in a band along every edge.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamrestore.errors import WeightsError
from streamrestore.models.ncnn_convert import ConvertedModel


class ResizeOutput(nn.Module):
    """Runs a network, then resizes its output bicubically to ``scale`` x the input size.

    realesr-animevideov3 x2/x3 are the x4 network followed by an in-graph bicubic downscale.
    """

    def __init__(self, net: nn.Module, scale: int) -> None:
        super().__init__()
        self.net = net
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[2] * self.scale, x.shape[3] * self.scale)
        # Passing the size (not a factor) makes PyTorch use in/out as the step, as ncnn does.
        return F.interpolate(self.net(x), size=size, mode="bicubic", align_corners=False)


def build_module(converted: ConvertedModel) -> nn.Module:
    """An eval-mode float32 module for ``converted`` (spandrel for the archs it knows)."""
    if converted.arch in ("UpConv7", "CUNet"):
        from streamrestore.models.archs.waifu2x import CUNet, UpConv7

        if converted.arch == "UpConv7":
            module: nn.Module = UpConv7()
        else:
            module = CUNet(converted.scale, se=converted.options.get("se", True))
        module.load_state_dict(converted.state_dict, strict=True)
        return module.eval()

    import spandrel

    # spandrel edits the dict it is given (RealCUGAN rewrites "pro"), so hand it a copy.
    descriptor = spandrel.ModelLoader().load_from_state_dict(dict(converted.state_dict))
    net_scale = converted.net_scale or converted.scale
    if descriptor.architecture.id != converted.arch or descriptor.scale != net_scale:
        raise WeightsError(
            f"{converted.name}: spandrel reads it as {descriptor.architecture.id} x{descriptor.scale},"
            f" expected {converted.arch} x{net_scale}"
        )
    module = descriptor.model
    if net_scale != converted.scale:
        module = ResizeOutput(module, converted.scale)
    return module.eval()


def run_like_ncnn(module: nn.Module, image: np.ndarray, converted: ConvertedModel,
                  channels_last: bool = False) -> np.ndarray:
    """Restore one HxWx3 uint8 RGB image with the wrapper's padding, crop and rounding."""
    h, w = image.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255
    pad = 0 if converted.pads_inside else converted.pad
    if pad:
        m = converted.size_multiple
        x = F.pad(x, (pad, pad + (-w) % m, pad, pad + (-h) % m), mode=converted.pad_mode)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        y = module(x)
    s = converted.scale
    # Valid-convolution nets (waifu2x) eat part of the padding themselves; crop what is left.
    eaten, rest = divmod(x.shape[2] * s - y.shape[2], 2 * s)
    top = (pad - eaten) * s
    if rest or top < 0 or y.shape[2] < top + h * s or y.shape[3] < top + w * s:
        raise WeightsError(f"{converted.name}: output {tuple(y.shape)} does not fit input {h}x{w}")
    y = y[0, :, top : top + h * s, top : top + w * s]
    # ncnn rounds half up when it converts back to 8 bits.
    y = torch.floor(y.clamp(0, 1) * 255 + 0.5)
    return y.permute(1, 2, 0).to(torch.uint8).numpy()
