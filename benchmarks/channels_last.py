"""Prints CPU seconds per frame with and without channels_last for random-weight networks (see plugins/neural.py).

    python benchmarks/channels_last.py [--threads N] [--repeats N]

Each network runs on one 320×240 frame (160×120 for the slower ones), both memory formats
interleaved, best of ``--repeats`` (other processes only ever make a run slower).
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from spandrel.architectures.Compact import Compact
from spandrel.architectures.ESRGAN import ESRGAN
from spandrel.architectures.RCAN import RCAN
from spandrel.architectures.SwinIR import SwinIR

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    from spandrel_extra_arches.architectures.MPRNet import MPRNet
    from spandrel_extra_arches.architectures.Restormer import Restormer

NETWORKS = {
    "Compact ×4 (64nf 16nc, animevideov3)": (lambda: Compact(num_feat=64, num_conv=16, upscale=4), 240, 320),
    "Compact ×4 (64nf 32nc, general-x4v3)": (lambda: Compact(num_feat=64, num_conv=32, upscale=4), 240, 320),
    "ESRGAN ×4 (32nf 4nb)": (lambda: ESRGAN(num_filters=32, num_blocks=4, scale=4), 120, 160),
    "SwinIR ×2 lightweight (60dim 4×6)": (lambda: SwinIR(img_size=64, embed_dim=60, depths=[6] * 4, num_heads=[6] * 4,
                                                         window_size=8, mlp_ratio=2.0, upscale=2,
                                                         upsampler="pixelshuffledirect"), 120, 160),
    "RCAN ×2 (64nf 2×4)": (lambda: RCAN(scale=2, n_resgroups=2, n_resblocks=4, n_feats=64), 120, 160),
    "Restormer (16dim)": (lambda: Restormer(dim=16, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1), 120, 160),
    "MPRNet (16nf)": (lambda: MPRNet(n_feat=16, scale_unetfeats=8, scale_orsnetfeats=8, num_cab=2), 120, 160),
}


def seconds(net: torch.nn.Module, pixels: torch.Tensor, channels_last: bool) -> float:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net.to(memory_format=fmt)
    pixels = pixels.clone(memory_format=fmt)
    with torch.inference_mode():
        start = time.perf_counter()
        net(pixels)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, best of {args.repeats}")
    for name, (make, height, width) in NETWORKS.items():
        net = make().eval()
        pixels = torch.rand(1, 3, height, width)
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.repeats + 1):  # the first round warms up both formats
            for channels_last in (False, True):
                times[channels_last].append(seconds(net, pixels, channels_last))
        plain, cl = min(times[False][1:]), min(times[True][1:])
        print(f"{name} at {width}×{height}: contiguous {plain:.3f} s/frame, channels_last {cl:.3f} s/frame "
              f"({plain / cl:.2f}× faster)", flush=True)


if __name__ == "__main__":
    main()
