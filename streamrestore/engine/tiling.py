"""Runs a per-image function over overlapping tiles of a frame and blends the seams (for frames that do not fit).

The frame is cut into a grid of *cores* of at most ``tile`` pixels (rounded up to ``align``), of
equal sizes so that the last one is not a sliver (unless that rounding leaves one). Each core is run
with ``overlap`` pixels of real neighbouring image around it as context, and its output is used up
to ``overlap / 2`` pixels past its own edges, where it is cross-faded into its neighbour with a
raised-cosine ramp centred on the seam. So every output pixel that is kept lies at least
``overlap / 2`` input pixels inside the tile that produced it: a network whose receptive field is
smaller than that gives the same pixels tiled as whole, and one that looks further (channel
attention, global pooling) shows no hard seam, only a soft transition.

Tiles keep the image's own edges where they reach them, so a network pads exactly as it would for the
whole frame there. ``align`` makes every tile start on a multiple of it (a window-attention network
sees the same window grid as on the whole frame).
"""

from __future__ import annotations

import math
from typing import Callable

import torch


def run_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    pixels: torch.Tensor,
    tile: int,
    overlap: int,
    scale: int,
    align: int = 1,
) -> torch.Tensor:
    """``fn`` over tiles of ``pixels`` (N×C×H×W) -> N×C'×(H·scale)×(W·scale), seams blended.

    ``tile`` is the most input pixels a tile's core spans per side, ``overlap`` the context each
    tile gets beyond its core (and twice the width of the blended band); ``fn`` must map an
    N×C×h×w tensor to N×C'×(h·scale)×(w·scale) for any h, w it is given.
    """
    if tile < 1 or overlap < 0:
        raise ValueError(f"tile must be ≥ 1 and overlap ≥ 0, got tile={tile}, overlap={overlap}")
    if tile < overlap:
        # Each core must be as wide as the blended bands on its two sides.
        raise ValueError(f"tile ({tile}) must be at least the overlap ({overlap})")
    height, width = pixels.shape[-2:]
    rows = _cores(height, tile, align)
    cols = _cores(width, tile, align)
    if len(rows) == 1 and len(cols) == 1:
        return fn(pixels)
    context = _round_up(overlap, align)
    band = overlap / 2
    out = weights = None
    for top, bottom in rows:
        y0, y1 = max(0, top - context), min(height, bottom + context)
        wy = _ramp(y0, y1, top, bottom, height, band, scale, pixels)
        for left, right in cols:
            x0, x1 = max(0, left - context), min(width, right + context)
            result = fn(pixels[..., y0:y1, x0:x1])
            if out is None:
                out = pixels.new_zeros((*result.shape[:2], height * scale, width * scale), dtype=torch.float32)
                weights = pixels.new_zeros((height * scale, width * scale), dtype=torch.float32)
            wx = _ramp(x0, x1, left, right, width, band, scale, pixels)
            weight = wy[:, None] * wx[None, :]
            out[..., y0 * scale : y1 * scale, x0 * scale : x1 * scale] += result.to(torch.float32) * weight
            weights[y0 * scale : y1 * scale, x0 * scale : x1 * scale] += weight
    # The ramps of neighbouring tiles sum to one, so this only guards against rounding.
    return (out / weights).to(pixels.dtype)


def _cores(length: int, tile: int, align: int) -> list[tuple[int, int]]:
    """Split [0, length) into equal cores of at most ``tile`` (rounded to ``align``) pixels."""
    count = math.ceil(length / tile)
    size = _round_up(math.ceil(length / count), align)
    return [(start, min(length, start + size)) for start in range(0, length, size)]


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _ramp(
    start: int, stop: int, core_start: int, core_stop: int, length: int, band: float, scale: int,
    like: torch.Tensor,
) -> torch.Tensor:
    """Weights along one axis for the output of input span [start, stop) whose core is [core_start, core_stop).

    1 inside the core, falling to 0 across a band of ±``band`` around each seam with another tile
    (none at the image's own edges), as ``0.5 + 0.5·sin(π·d / 2·band)`` of the signed distance ``d``
    into the core: neighbouring tiles' weights are mirror images and sum to 1 at every pixel.
    """
    centres = (torch.arange(start * scale, stop * scale, device=like.device, dtype=torch.float32) + 0.5) / scale
    weight = torch.ones_like(centres)
    for seam, inward in ((core_start, 1.0), (core_stop, -1.0)):
        if seam in (0, length):
            continue
        distance = (centres - seam) * inward
        if band > 0:
            ramp = 0.5 + 0.5 * torch.sin(torch.clamp(distance / band, -1.0, 1.0) * (math.pi / 2))
        else:
            ramp = (distance > 0).to(torch.float32)
        weight = weight * ramp
    return weight
