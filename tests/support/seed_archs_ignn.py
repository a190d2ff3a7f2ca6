"""IGNN as sczhou/IGNN defines it, written out independently of streamrestore.models.archs.ignn: the key
layout its ``IGNN()`` module has (``official_shapes``) and a slow, loop-based forward pass over a state dict
(``reference_forward``), for tests/test_seed_archs_ignn.py.

The reference follows the official code's semantics step by step but not its mechanics: the son image by
the training kit's numpy MATLAB ``imresize``; each query patch's window of candidates listed and ranked
one query at a time in float64; each neighbour's high-resolution patch read straight from the body
features by coordinates (no pixel-unshuffle, no gather); the overlapping patches summed into a canvas
with a count, one patch at a time.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from streamrestore.training.degrade import matlab_imresize


def official_shapes(feats: int, blocks: tuple[int, int], scale: int) -> dict[str, tuple[int, ...]]:
    """Every key of sczhou/IGNN's ``IGNN()`` state dict (cfg N_FEATURE, N_RESBLOCK split //2, SCALE) with its shape."""
    s = 2 if scale == 4 else scale
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, out: int, inp: int, kernel: int = 3) -> None:
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (out, inp, kernel, kernel), (out,)

    for name in ("sub_mean", "add_mean"):
        conv(name, 3, 3, 1)
    for vgg in ("vggnet", "graph.embedcnn"):  # Graph(embedcnn=self.vggnet): the same module twice
        conv(f"{vgg}.sub_mean", 3, 3, 1)
        conv(f"{vgg}.model.0", 64, 3)
        conv(f"{vgg}.model.2", 64, 64)
    conv("head.0", feats, 3)
    for i in range(blocks[0]):
        conv(f"body1.{i}.body.0", feats, feats)
        conv(f"body1.{i}.body.2", feats, feats)
    for i in range(blocks[1]):
        conv(f"body2.{i}.body.0", feats, feats)
        conv(f"body2.{i}.body.2", feats, feats)
    conv(f"body2.{blocks[1]}.0", feats, feats)
    conv("gcn.knn_downsample.0.0", feats, feats, 5)
    conv("gcn.knn_downsample.1.0", feats, feats)
    conv("gcn.knn_downsample.2.0", feats, feats)
    for net in ("gcn.weightnet_lr", "gcn.weightnet_hr"):
        conv(f"{net}.0.0", 64, 64, 1)
        conv(f"{net}.1.body.0", 64, 64, 1)
        conv(f"{net}.1.body.2", 64, 64, 1)
        conv(f"{net}.2.0", 1, 64, 1)
    conv("fuse_b.0.0", feats, 2 * feats)
    conv("fuse_b.1.0", feats, feats)
    conv("upsample.0", s * s * feats, feats)
    conv("fuse_up.0.0", feats, 2 * feats)
    conv("fuse_up.1.0", feats, feats)
    if scale == 4:
        conv("tail.0.0", 4 * feats, feats)
        conv("tail.1.0", 3, feats)
    else:
        conv("tail.0.0", 3, feats)
    return shapes


def _conv(sd: dict, name: str, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
    weight = sd[f"{name}.weight"].double()
    return F.conv2d(x, weight, sd[f"{name}.bias"].double(), stride=stride, padding=(weight.shape[-1] - 1) // 2)


def _res(sd: dict, name: str, x: torch.Tensor, res_scale: float) -> torch.Tensor:
    return _conv(sd, f"{name}.body.2", F.relu(_conv(sd, f"{name}.body.0", x))) * res_scale + x


def _vgg(sd: dict, x: torch.Tensor) -> torch.Tensor:
    x = _conv(sd, "vggnet.sub_mean", x / 255.0)
    return F.relu(_conv(sd, "vggnet.model.2", F.relu(_conv(sd, "vggnet.model.0", x))))


def _split(size: int) -> int:
    """Zero rows/columns added before the image so that 3×3 patches at stride 2 fit (the smaller half)."""
    return (-(size - 3) % 2) // 2


def _grid(size: int) -> int:
    return (size + (-(size - 3) % 2) - 3) // 2 + 1


def _patch(x: torch.Tensor, row: int, col: int, before: tuple[int, int]) -> torch.Tensor:
    """The 3×3 patch whose padded top-left corner is (2·row, 2·col), zeros outside ``x`` (C×H×W)."""
    return _window(x, 2 * row - before[0], 2 * col - before[1], 3)


def _window(x: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    """``x``[:, top : top + size, left : left + size] (C×H×W), zeros where that lies outside ``x``."""
    out = torch.zeros(x.shape[0], size, size, dtype=x.dtype)
    rows = range(max(top, 0), min(top + size, x.shape[1]))
    cols = range(max(left, 0), min(left + size, x.shape[2]))
    if rows and cols:
        out[:, rows.start - top : rows.stop - top, cols.start - left : cols.stop - left] = \
            x[:, rows.start : rows.stop, cols.start : cols.stop]
    return out


def reference_graph(sd: dict, x: torch.Tensor, features: torch.Tensor, s: int, k: int, window: int,
                    res_scale: float) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(x1_lr, x1_hr) of the official ``GCNBlock`` after ``Graph``, for one 0..255 image ``x`` (1×3×H×W)."""
    _, _, height, width = x.shape
    feats = features.shape[1]
    crop = x[0, :, : height // s * s, : width // s * s].permute(1, 2, 0).numpy()
    son = matlab_imresize(crop, (height // s, width // s)).clip(0, 255)
    son = torch.from_numpy(np.ascontiguousarray(son)).permute(2, 0, 1)[None]
    xe, ye = _vgg(sd, son)[0], _vgg(sd, x.double())[0]
    y = features[0].double()
    n1, n2, m1, m2 = _grid(xe.shape[1]), _grid(xe.shape[2]), _grid(height), _grid(width)
    son_before, query_before = (_split(xe.shape[1]), _split(xe.shape[2])), (_split(height), _split(width))
    son_patches = {(r, c): _patch(xe, r, c, son_before) for r in range(n1) for c in range(n2)}
    # The canvas covers the padded input × s; k feature maps and k diff maps, with one count per pixel.
    canvas_h, canvas_w = ((m1 - 1) * 2 + 3) * s, ((m2 - 1) * 2 + 3) * s
    hr = torch.zeros(k, feats, canvas_h, canvas_w, dtype=torch.float64)
    diffs = torch.zeros(k, 64, canvas_h, canvas_w, dtype=torch.float64)
    count = torch.zeros(canvas_h, canvas_w, dtype=torch.float64)
    # y at the son grid, zero outside the part of y that pixel-unshuffles (height // s · s rows).
    usable = y[:, : height // s * s, : width // s * s]
    for i in range(m1):
        for j in range(m2):
            query = _patch(ye, i, j, query_before)
            if window >= n1 and window >= n2:
                candidates = list(son_patches)
            else:
                w = min(window, n1, n2)
                top = min(max(i // 2 - w // s, 0), n1 - w)
                left = min(max(j // 2 - w // s, 0), n2 - w)
                candidates = [(r, c) for r in range(top, top + w) for c in range(left, left + w)]
            distance = [float(((query - son_patches[rc]) ** 2).sum()) for rc in candidates]
            nearest = [candidates[n] for n in np.argsort(distance, kind="stable")[:k]]
            centre = _patch(y, i, j, query_before).reshape(feats, 9)
            centre_mean, centre_std = centre.mean(1), (centre.var(1) + 1e-5).sqrt()
            rows = slice(2 * s * i, 2 * s * i + 3 * s)
            cols = slice(2 * s * j, 2 * s * j + 3 * s)
            for n, (r, c) in enumerate(nearest):
                # The son patch's pixels, seen at the input's scale: s× its corner, 3s pixels a side.
                patch = _window(usable, s * (2 * r - son_before[0]), s * (2 * c - son_before[1]), 3 * s)
                flat = patch.reshape(feats, -1)
                normed = (flat - flat.mean(1, keepdim=True)) / (flat.var(1, keepdim=True) + 1e-5).sqrt()
                patch = (normed * centre_std[:, None] + centre_mean[:, None]).reshape(feats, 3 * s, 3 * s)
                hr[n, :, rows, cols] += patch
                diffs[n, :, rows, cols] += (query - son_patches[r, c]).abs().sum((1, 2))[:, None, None]
            count[rows, cols] += 1
    top, left = query_before[0] * s, query_before[1] * s
    hr = (hr / count)[:, :, top : top + height * s, left : left + width * s]
    diffs = (diffs / count)[:, :, top : top + height * s, left : left + width * s]

    def weightnet(name: str, d: torch.Tensor) -> torch.Tensor:
        d = _conv(sd, f"gcn.{name}.0.0", d)
        d = _res(sd, f"gcn.{name}.1", d, res_scale)
        return _conv(sd, f"gcn.{name}.2.0", d)

    lr = []
    for n in range(k):
        h = F.relu(_conv(sd, "gcn.knn_downsample.0.0", hr[n : n + 1], stride=s))
        h = F.relu(_conv(sd, "gcn.knn_downsample.1.0", h))
        lr.append(_conv(sd, "gcn.knn_downsample.2.0", h))
    pooled = F.avg_pool2d(diffs, s)
    weight_lr = torch.softmax(torch.cat([weightnet("weightnet_lr", pooled[n : n + 1]) for n in range(k)]), 0)
    weight_hr = torch.softmax(torch.cat([weightnet("weightnet_hr", diffs[n : n + 1]) for n in range(k)]), 0)
    return (torch.cat(lr) * weight_lr).sum(0, keepdim=True), (hr * weight_hr).sum(0, keepdim=True)


def reference_forward(sd: dict, image: torch.Tensor, scale: int, k: int = 5, window: int = 30,
                      res_scale: float = 0.1) -> torch.Tensor:  # fmt: skip
    """The official ``IGNN.forward(x_son, x)`` for one 0..1 RGB image (1×3×H×W), the son image made as its
    data loader does; output on 0..1, float64."""
    s = 2 if scale == 4 else scale
    x = image.double() * 255
    blocks1 = len({key.split(".")[1] for key in sd if key.startswith("body1.")})
    blocks2 = len({key.split(".")[1] for key in sd if key.startswith("body2.")}) - 1
    x0 = _conv(sd, "head.0", _conv(sd, "sub_mean", x))
    x1 = x0
    for i in range(blocks1):
        x1 = _res(sd, f"body1.{i}", x1, res_scale)
    x1_lr, x1_hr = reference_graph(sd, x, x1, s, k, window, res_scale)
    x1 = _conv(sd, "fuse_b.1.0", F.relu(_conv(sd, "fuse_b.0.0", torch.cat([x1, x1_lr], 1))))
    x2 = x1
    for i in range(blocks2):
        x2 = _res(sd, f"body2.{i}", x2, res_scale)
    x2 = _conv(sd, f"body2.{blocks2}.0", x2) + x0
    up = F.pixel_shuffle(_conv(sd, "upsample.0", x2), s)
    out = F.relu(_conv(sd, "fuse_up.1.0", F.relu(_conv(sd, "fuse_up.0.0", torch.cat([up, x1_hr], 1)))))
    if scale == 4:
        out = _conv(sd, "tail.1.0", F.pixel_shuffle(_conv(sd, "tail.0.0", out), 2))
    else:
        out = _conv(sd, "tail.0.0", out)
    return _conv(sd, "add_mean", out) / 255
