"""IGNN (Zhou et al. 2020, "Cross-Scale Internal Graph Neural Network") in the sczhou/IGNN layout, with its
spandrel support. Pure PyTorch: no pyinn, no CUDA kernel.

Layout followed: sczhou/IGNN ``models/IGNN.py``, ``models/submodules.py`` and ``models/graph_agg.py``
(checkpoints: ``torch.save({"net_state_dict": DataParallel(net).state_dict(), "epoch_idx": …, …})``, so
the keys carry ``module.``; both wrappings are taken off here). ``s`` below is the graph's scale: the SR
scale, except ×4, which matches at ×2 and enlarges ×2 once more in its tail.

- ``sub_mean`` / ``add_mean``: EDSR's mean shift on the 0..255 scale (the range is read back from the bias);
- ``vggnet.sub_mean``, ``vggnet.model.{0,2}``: VGG19 up to relu1_2 (64 channels), the embedding the
  k-NN search runs on; the same module is in the file a second time as ``graph.embedcnn.…``;
- ``head.0``; ``body1.{i}.body.{0,2}`` and ``body2.{i}.body.{0,2}`` (residual blocks: conv, ReLU, conv,
  × ``res_scale`` 0.1, + input), ``body2.{last}.0`` a closing conv; ``fuse_b.{0,1}.0`` (conv+ReLU, conv);
  ``upsample.0`` (conv + pixel shuffle ×s); ``fuse_up.{0,1}.0`` (two conv+ReLU); ``tail``: ×4 has
  ``tail.0.0`` (conv + pixel shuffle ×2) and ``tail.1.0``, ×2/×3 only ``tail.0.0`` (conv to colours);
- ``gcn``: ``knn_downsample.{0,1,2}.0`` (5×5 stride-s conv+ReLU, conv+ReLU, conv), ``weightnet_lr`` and
  ``weightnet_hr`` (1×1 conv 64→64, a 1×1 residual block, 1×1 conv → 1).

The forward pass (the graph aggregation, as the official evaluation runs it):

1. the "son" image: the input cropped to a multiple of s and shrunk 1/s with MATLAB's antialiased bicubic
   ``imresize``, clamped to 0..255 (the official data loader makes it; here the network does);
2. both images through VGG; 3×3 patches at stride 2 of each embedding (zero-padded so the stride fits);
   for each patch of the input, the k nearest son patches by squared Euclidean distance, searched in a
   ``window``×``window`` block of son patches placed around the query (all of them when the son grid is
   no larger than the window in both directions);
3. ``diff``: per neighbour and VGG channel, the sum over the patch of |query − neighbour|, spread over
   the neighbour's 3s×3s high-resolution footprint;
4. the neighbours' patches of the body features (``body1``'s output) at the son scale are, seen at the
   input's scale, 3s×3s "high-resolution" patches: each is normalised to the mean and standard deviation
   of its query's 3×3 patch (AdaIN, unbiased variance, eps 1e-5), and the overlapping patches are
   averaged into a ×s feature map per neighbour;
5. per neighbour, the edge weights: ``weightnet_hr(diff)`` and ``weightnet_lr(avgpool_s(diff))``, a
   softmax over the k neighbours; the weighted sums give ``x1_hr`` (×s) and, through ``knn_downsample``,
   ``x1_lr``, fused into the trunk (``fuse_b``) and after its upsampling (``fuse_up``).

k (5), the window (30 patches) and ``res_scale`` (0.1) are the official configuration; the file does not
hold them. Width, blocks and scale are read from the shapes. Deviations: the official code switches the
window off for good (a global flag) once one image's son grid fits in it; here that is decided per call.
Ties between equally distant patches (flat areas) may be broken in another order. The official data
loader feeds the input on 0..255; ours takes 0..1, multiplied by the file's range.

Cost and framing: every input patch is compared with up to 900 son patches, and k full-resolution feature
maps are built, so memory grows as k × width × (s × frame)². The official test cuts each image into four
overlapping quarters (recursively, until each is under 40 000 input pixels) and runs them separately;
this network matches within the whole frame it is given, so large tiles (≥ 200 px, the official's) or the
whole frame keep its search area; small tiles shrink it (tiling is declared discouraged). An input whose
son grid is smaller than a 3×3 block of patches is padded (bottom/right) to the declared minimum.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from spandrel import Architecture, ImageModelDescriptor, ModelTiling, SizeRequirements, StateDict
from spandrel.util import get_seq_len
from torch import nn

from .meanshift import RGB_RANGE, MeanShift, rgb_range_of

NEIGHBOURS = 5
WINDOW = 30
RES_SCALE = 0.1
PATCH, STRIDE = 3, 2
EMBED = 64  # VGG19 relu1_2 channels: also the edge weight networks' input
QUERY_BLOCK = 16  # query patches per side handled at once in the k-NN search


def _conv(in_channels: int, out_channels: int, kernel: int = 3, relu: bool = True, stride: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel, stride, (kernel - 1) // 2)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class ResBlock(nn.Module):
    def __init__(self, feats: int, kernel: int = 3, res_scale: float = RES_SCALE) -> None:
        super().__init__()
        pad = (kernel - 1) // 2
        self.body = nn.Sequential(nn.Conv2d(feats, feats, kernel, padding=pad), nn.ReLU(),
                                  nn.Conv2d(feats, feats, kernel, padding=pad))  # fmt: skip
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * self.res_scale + x


class VGGEmbedding(nn.Module):
    """VGG19's first two convolutions (to relu1_2) on a 0..255 image, ImageNet-normalised."""

    def __init__(self) -> None:
        super().__init__()
        self.sub_mean = MeanShift(-1, 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        self.model = nn.Sequential(nn.Conv2d(3, EMBED, 3, padding=1), nn.ReLU(), nn.Conv2d(EMBED, EMBED, 3, padding=1),
                                   nn.ReLU())  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.sub_mean(x / 255.0))


class Graph(nn.Module):
    """Holds the embedding under the official name (``graph.embedcnn``); the search is ``knn``."""

    def __init__(self, embedding: VGGEmbedding) -> None:
        super().__init__()
        self.embedcnn = embedding


def _weightnet(res_scale: float) -> nn.Sequential:
    return nn.Sequential(_conv(EMBED, 64, 1, relu=False), ResBlock(64, 1, res_scale), _conv(64, 1, 1, relu=False))


class GCNBlock(nn.Module):
    def __init__(self, feats: int, scale: int, res_scale: float) -> None:
        super().__init__()
        self.knn_downsample = nn.Sequential(_conv(feats, feats, 5, stride=scale), _conv(feats, feats),
                                            _conv(feats, feats, relu=False))  # fmt: skip
        self.weightnet_lr = _weightnet(res_scale)
        self.weightnet_hr = _weightnet(res_scale)


# -- patches -------------------------------------------------------------------------------------------------
def _padding(size: int) -> tuple[int, int]:
    """(before, after) zero padding so that 3×3 patches at stride 2 tile ``size`` (the official split)."""
    total = -(size - PATCH) % STRIDE
    return total // 2, total - total // 2


def _patches(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int, int], tuple[int, int]]:
    """B×C×H×W -> B×(C·9)×L patches (C-major), the padding (top, bottom, left, right) and the grid."""
    (top, bottom), (left, right) = _padding(x.shape[-2]), _padding(x.shape[-1])
    padded = F.pad(x, (left, right, top, bottom))
    grid = ((padded.shape[-2] - PATCH) // STRIDE + 1, (padded.shape[-1] - PATCH) // STRIDE + 1)
    return F.unfold(padded, PATCH, stride=STRIDE), (top, bottom, left, right), grid


def _fold(patches: torch.Tensor, padding: tuple[int, int, int, int], height: int, width: int, s: int) -> torch.Tensor:
    """Overlapping 3s×3s patches (B×(C·9s²)×L) averaged (col2im / counts) into B×C×(s·height)×(s·width)."""
    top, bottom, left, right = (p * s for p in padding)
    size = (height * s + top + bottom, width * s + left + right)
    ones = torch.ones_like(patches[:1, : (PATCH * s) ** 2])
    counts = F.fold(ones, size, PATCH * s, stride=STRIDE * s)
    out = F.fold(patches, size, PATCH * s, stride=STRIDE * s) / counts
    return out[..., top : top + height * s, left : left + width * s]


def _window_starts(count: int, queries: int, window: int, s: int, device: torch.device) -> torch.Tensor:
    """First son patch of each query's window along one axis (the official index: query // 2 − window // s)."""
    return (torch.arange(queries, device=device) // 2 - window // s).clamp(0, count - window)


def knn(son: torch.Tensor, son_grid: tuple[int, int], query: torch.Tensor, query_grid: tuple[int, int], k: int,
        window: int, s: int) -> torch.Tensor:  # fmt: skip
    """Indices (B×M×k, into the son grid, row-major) of each query patch's k nearest son patches.

    ``son``: B×E×N and ``query``: B×E×M patch embeddings. The windows are searched a block of queries at a
    time: the block's son patches are the union of its windows, the others are masked out."""
    (n1, n2), (m1, m2) = son_grid, query_grid
    device = son.device
    if window >= n1 and window >= n2:  # the whole son grid for every query
        rows, cols = torch.zeros(m1, dtype=torch.long, device=device), torch.zeros(m2, dtype=torch.long, device=device)
        wr, wc = n1, n2
    else:
        wr = wc = min(window, n1, n2)
        rows, cols = _window_starts(n1, m1, wr, s, device), _window_starts(n2, m2, wc, s, device)
    son = son.float().reshape(son.shape[0], -1, n1, n2)
    query = query.float().reshape(query.shape[0], -1, m1, m2)
    out = torch.empty(son.shape[0], m1, m2, k, dtype=torch.long, device=device)
    for i0 in range(0, m1, QUERY_BLOCK):
        i1 = min(i0 + QUERY_BLOCK, m1)
        r0, r1 = int(rows[i0]), int(rows[i1 - 1]) + wr
        row_ok = (torch.arange(r0, r1, device=device) >= rows[i0:i1, None]) & (
            torch.arange(r0, r1, device=device) < rows[i0:i1, None] + wr)
        for j0 in range(0, m2, QUERY_BLOCK):
            j1 = min(j0 + QUERY_BLOCK, m2)
            c0, c1 = int(cols[j0]), int(cols[j1 - 1]) + wc
            col_ok = (torch.arange(c0, c1, device=device) >= cols[j0:j1, None]) & (
                torch.arange(c0, c1, device=device) < cols[j0:j1, None] + wc)
            q = query[:, :, i0:i1, j0:j1].flatten(2).transpose(1, 2)  # B×Q×E
            c = son[:, :, r0:r1, c0:c1].flatten(2)  # B×E×C
            distance = (q * q).sum(-1, keepdim=True) - 2 * q @ c + (c * c).sum(1, keepdim=True)
            allowed = (row_ok[:, None, :, None] & col_ok[None, :, None, :]).reshape(q.shape[1], -1)
            nearest = distance.masked_fill(~allowed, math.inf).topk(k, dim=-1, largest=False).indices
            width = c1 - c0
            index = (r0 + nearest // width) * n2 + c0 + nearest % width
            out[:, i0:i1, j0:j1] = index.reshape(-1, i1 - i0, j1 - j0, k)
    return out.flatten(1, 2)


def _gather(patches: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """B×F×N patches, B×M indices -> B×F×M."""
    return patches.gather(2, index[:, None, :].expand(-1, patches.shape[1], -1))


# -- MATLAB's imresize (the son image) ---------------------------------------------------------------------
def _cubic(x: torch.Tensor) -> torch.Tensor:
    a = x.abs()
    return ((1.5 * a**3 - 2.5 * a**2 + 1) * (a <= 1) + (-0.5 * a**3 + 2.5 * a**2 - 4 * a + 2) * ((a > 1) & (a <= 2)))


def _shrink_matrix(size: int, s: int, device: torch.device) -> torch.Tensor:
    """(size/s)×size matrix of MATLAB's antialiased bicubic 1/s (kernel widened s×, symmetric edges)."""
    out = size // s
    width = 4.0 * s
    u = torch.arange(1, out + 1, dtype=torch.float64) * s + 0.5 * (1 - s)
    taps = torch.floor(u - width / 2)[:, None] + torch.arange(math.ceil(width) + 2, dtype=torch.float64)
    weights = _cubic((u[:, None] - taps) / s) / s
    weights = weights / weights.sum(1, keepdim=True)
    mirror = torch.cat([torch.arange(size), torch.arange(size - 1, -1, -1)])
    source = mirror[torch.remainder(taps.long() - 1, 2 * size)]
    matrix = torch.zeros(out, size, dtype=torch.float64)
    matrix.scatter_add_(1, source, weights)
    return matrix.to(device)


def son_image(x: torch.Tensor, s: int) -> torch.Tensor:
    """The input (0..255) cropped to a multiple of ``s``, shrunk 1/s as MATLAB's ``imresize``, clamped."""
    h, w = x.shape[-2] // s * s, x.shape[-1] // s * s
    rows, cols = _shrink_matrix(h, s, x.device), _shrink_matrix(w, s, x.device)
    out = rows @ x[..., :h, :w].double() @ cols.T
    return out.clamp(0, 255).to(x.dtype)


class IGNN(nn.Module):
    def __init__(self, scale: int = 4, feats: int = 256, blocks: tuple[int, int] = (16, 16), colors: int = 3,
                 rgb_range: float = RGB_RANGE, neighbours: int = NEIGHBOURS, window: int = WINDOW,
                 res_scale: float = RES_SCALE) -> None:  # fmt: skip
        super().__init__()
        self.scale, self.rgb_range, self.k, self.window = scale, rgb_range, neighbours, window
        self.s = s = 2 if scale == 4 else scale  # the graph's scale
        self.sub_mean = MeanShift(-1, rgb_range)
        self.add_mean = MeanShift(1, rgb_range)
        self.vggnet = VGGEmbedding()
        self.graph = Graph(self.vggnet)  # the same module under a second name, as in the official file
        self.head = _conv(colors, feats, relu=False)
        self.body1 = nn.Sequential(*(ResBlock(feats, 3, res_scale) for _ in range(blocks[0])))
        self.gcn = GCNBlock(feats, s, res_scale)
        self.fuse_b = nn.Sequential(_conv(2 * feats, feats), _conv(feats, feats, relu=False))
        self.body2 = nn.Sequential(*(ResBlock(feats, 3, res_scale) for _ in range(blocks[1])),
                                   _conv(feats, feats, relu=False))  # fmt: skip
        self.upsample = nn.Sequential(nn.Conv2d(feats, s * s * feats, 3, padding=1), nn.PixelShuffle(s))
        self.fuse_up = nn.Sequential(_conv(2 * feats, feats), _conv(feats, feats))
        last = [_conv(feats, colors, relu=False)]
        if scale == 4:
            last.insert(0, nn.Sequential(nn.Conv2d(feats, 4 * feats, 3, padding=1), nn.PixelShuffle(2)))
        self.tail = nn.Sequential(*last)

    def aggregate(self, x: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Graph aggregation: (x1_lr, x1_hr) for the body features ``features`` of the 0..255 input ``x``."""
        s, k = self.s, self.k
        batch, feats, height, width = features.shape
        son_patches, _, son_grid = _patches(self.vggnet(son_image(x, s)))
        query_patches, padding, query_grid = _patches(self.vggnet(x))
        index = knn(son_patches, son_grid, query_patches, query_grid, k, self.window, s)  # B×M×k
        queries = query_patches.shape[-1]
        # The body features at the son scale (space-to-depth), as patches on the son grid: gathered, each
        # is the neighbour's 3s×3s patch at the input's scale.
        son_features = F.pixel_unshuffle(features[..., : height // s * s, : width // s * s], s)
        feature_patches = _patches(son_features)[0]
        centre = _patches(features)[0].reshape(batch, feats, PATCH * PATCH, queries)
        centre_mean, centre_std = centre.mean(2, keepdim=True), (centre.var(2, keepdim=True) + 1e-5).sqrt()
        lr, hr, weight_lr, weight_hr = [], [], [], []
        for n in range(k):
            picked = index[:, :, n]
            z = _gather(feature_patches, picked).reshape(batch, feats, s, s, PATCH, PATCH, queries)
            z = z.permute(0, 1, 4, 2, 5, 3, 6).reshape(batch, feats, (PATCH * s) ** 2, queries)
            z = (z - z.mean(2, keepdim=True)) / (z.var(2, keepdim=True) + 1e-5).sqrt() * centre_std + centre_mean
            hr_n = _fold(z.reshape(batch, -1, queries), padding, height, width, s)
            diff = (query_patches - _gather(son_patches, picked)).abs().reshape(batch, EMBED, PATCH * PATCH, queries)
            diff = diff.sum(2, keepdim=True).expand(-1, -1, (PATCH * s) ** 2, -1).to(features.dtype)
            diff = _fold(diff.reshape(batch, -1, queries), padding, height, width, s)
            hr.append(hr_n)
            lr.append(self.gcn.knn_downsample(hr_n))
            weight_hr.append(self.gcn.weightnet_hr(diff))
            weight_lr.append(self.gcn.weightnet_lr(F.avg_pool2d(diff, s)))
        weights_lr = torch.softmax(torch.stack(weight_lr, 1), dim=1)
        weights_hr = torch.softmax(torch.stack(weight_hr, 1), dim=1)
        return (torch.stack(lr, 1) * weights_lr).sum(1), (torch.stack(hr, 1) * weights_hr).sum(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.rgb_range
        x0 = self.head(self.sub_mean(x))
        x1 = self.body1(x0)
        x1_lr, x1_hr = self.aggregate(x, x1)
        x1 = self.fuse_b(torch.cat([x1, x1_lr], dim=1))
        x2 = self.body2(x1) + x0
        out = self.fuse_up(torch.cat([self.upsample(x2), x1_hr], dim=1))
        return self.add_mean(self.tail(out)) / self.rgb_range


def minimum_size(s: int, k: int = NEIGHBOURS) -> int:
    """Smallest input side with a son grid of at least ⌈√k⌉ patches a side (k candidates in any window)."""
    return s * STRIDE * math.ceil(math.sqrt(k))


def unwrap(state_dict: StateDict) -> StateDict:
    """The network's keys from an official checkpoint (``net_state_dict``, ``module.`` prefixes) or as is."""
    inner = state_dict.get("net_state_dict")
    if isinstance(inner, dict):
        state_dict = inner
    if state_dict and all(key.startswith("module.") for key in state_dict):
        state_dict = {key[len("module.") :]: value for key, value in state_dict.items()}
    return state_dict


_KEYS = ("sub_mean.weight", "add_mean.weight", "vggnet.model.0.weight", "vggnet.model.2.weight",
         "graph.embedcnn.model.0.weight", "head.0.weight", "body1.0.body.0.weight", "gcn.knn_downsample.0.0.weight",
         "gcn.weightnet_lr.0.0.weight", "gcn.weightnet_hr.2.0.weight", "fuse_b.1.0.weight", "fuse_up.1.0.weight",
         "upsample.0.weight", "tail.0.0.weight")  # fmt: skip


def _detect(state_dict: StateDict) -> bool:
    return all(key in unwrap(state_dict) for key in _KEYS)


class IGNNArch(Architecture[IGNN]):
    def __init__(self) -> None:
        super().__init__(id="IGNN", name="IGNN", detect=_detect)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[IGNN]:
        state_dict = unwrap(state_dict)
        feats, colors = state_dict["head.0.weight"].shape[:2]
        blocks = (get_seq_len(state_dict, "body1"), get_seq_len(state_dict, "body2") - 1)
        s = math.isqrt(state_dict["upsample.0.weight"].shape[0] // feats)
        scale = 4 if "tail.1.0.weight" in state_dict else s
        model = IGNN(scale, feats, blocks, colors, rgb_range_of(state_dict))
        return ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="SR",
            tags=[f"{feats}nf", f"{sum(blocks)}nb", f"x{scale}"],
            # The patch distances and the AdaIN statistics need float32.
            supports_half=False,
            supports_bfloat16=False,
            scale=scale,
            input_channels=colors,
            output_channels=colors,
            size_requirements=SizeRequirements(minimum=minimum_size(s)),
            tiling=ModelTiling.DISCOURAGED,  # the patch search sees only its tile
        )
