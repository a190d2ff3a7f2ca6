"""IGNN against the official code: sczhou/IGNN's own module, built small with random weights, and ours loaded
from its DataParallel checkpoint, on the same images. Also the CPU cost of the full configuration.

    python benchmarks/ignn_official.py /path/to/IGNN            # a clone of github.com/sczhou/IGNN
    python benchmarks/ignn_official.py /path/to/IGNN --timing   # + seconds per frame, full model (CPU)

The official code needs pyinn and a CUDA kernel; neither is used here. pyinn's im2col/col2im are
stood in for by torch's unfold/fold (the same functions: B×C×kh×kw×oh×ow patches), the module runs in
train mode under no_grad, whose distance path (all distances, then the window gathered) needs no kernel,
torchvision's VGG19 is built without its download (the weights are the file's), easydict is a small
stand-in, and ``Tensor.get_device`` answers "cpu" for the official index cache. The son image is made by
the official ``utils/imresize.py`` for the official module, and by ours for ours. Prints one line per case:
the largest difference of the outputs on the 0..1 scale, and whether the official global window flag was
left switched off (it is, after any image whose son grid fits in the window).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

STUBS = {
    "easydict.py": '''
class EasyDict(dict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as error:
            raise AttributeError(name) from error
    def __setattr__(self, name, value):
        self[name] = value
''',
    "pyinn.py": '''
import torch.nn.functional as F
def im2col(x, kernel, stride, padding):
    b, c, h, w = x.shape
    oh = (h + 2 * padding[0] - kernel[0]) // stride[0] + 1
    ow = (w + 2 * padding[1] - kernel[1]) // stride[1] + 1
    return F.unfold(x, kernel, padding=padding, stride=stride).view(b, c, kernel[0], kernel[1], oh, ow)
def col2im(x, kernel, stride, padding):
    b, c, kh, kw, oh, ow = x.shape
    size = ((oh - 1) * stride[0] + kh - 2 * padding[0], (ow - 1) * stride[1] + kw - 2 * padding[1])
    return F.fold(x.reshape(b, c * kh * kw, oh * ow), size, kernel, padding=padding, stride=stride)
''',
    "matmul_cuda.py": "",
}
CASES = ((4, 30, (29, 37)), (4, 4, (32, 30)), (3, 30, (22, 25)), (3, 3, (40, 38)), (2, 30, (24, 27)), (2, 5, (41, 35)))


def compare(official_root: Path) -> None:
    import torchvision

    stubs = Path(tempfile.mkdtemp(prefix="ignn-stubs-"))
    for name, text in STUBS.items():
        (stubs / name).write_text(text)
    sys.path[:0] = [str(stubs), str(official_root)]
    vgg19 = torchvision.models.vgg19
    torchvision.models.vgg19 = lambda pretrained=False, **_: vgg19(weights=None)
    torch.Tensor.get_device = lambda self: self.device.index if self.is_cuda else "cpu"
    from config import cfg  # the official configuration module
    from utils.imresize import imresize

    from streamrestore.models.archs.ignn import IGNNArch

    cfg.NETWORK.N_FEATURE, cfg.NETWORK.N_RESBLOCK = 8, 3
    for scale, window, size in CASES:
        cfg.CONST.SCALE, cfg.NETWORK.WINDOW_SIZE, cfg.NETWORK.WITH_WINDOW = scale, window, True
        import models.IGNN as official_ignn

        torch.manual_seed(scale + window)
        official = official_ignn.IGNN().double()
        with torch.no_grad():
            for name, param in official.named_parameters():
                if param.dim() == 4 and "mean" not in name:
                    param.mul_(0.5)  # keep a random deep network off saturation
        official.train()
        s = 2 if scale == 4 else scale
        x = torch.rand(1, 3, *size, dtype=torch.float64) * 255
        crop = x[0, :, : size[0] // s * s, : size[1] // s * s].float()
        x_son = (imresize(crop / 255.0, 1.0 / s) * 255).clamp(0, 255)[None].double()
        checkpoint = {"epoch_idx": 1, "net_state_dict": {f"module.{k}": v for k, v in official.state_dict().items()}}
        ours = IGNNArch().load(checkpoint).model.double().eval()
        ours.window = window
        with torch.no_grad():
            expected, got = official(x_son, x) / 255, ours(x / 255)
        print(f"x{scale} window {window:2d} {size[0]}×{size[1]}: max |ours − official| = "
              f"{(got - expected).abs().max().item():.1e}; official window flag left {cfg.NETWORK.WITH_WINDOW}")


def timing() -> None:
    from streamrestore.models.archs.ignn import IGNN

    net = IGNN(4).eval()  # the released configuration: 256 features, 32 blocks, ×4
    for size in ((48, 48), (96, 96)):
        x = torch.rand(1, 3, *size)
        with torch.inference_mode():
            net(x[..., :24, :24])
            wall, cpu = time.perf_counter(), time.process_time()
            net(x)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"IGNN ×4 full, {size[0]}×{size[1]} input, {torch.get_num_threads()} threads: {wall:.1f} s wall, "
              f"{cpu:.1f} CPU s per frame")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("official", type=Path, help="a clone of github.com/sczhou/IGNN")
    parser.add_argument("--timing", action="store_true", help="also time the full ×4 model on the CPU")
    args = parser.parse_args()
    compare(args.official)
    if args.timing:
        timing()


if __name__ == "__main__":
    main()
