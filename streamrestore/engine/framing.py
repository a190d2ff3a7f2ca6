"""The one place where a frame is padded, tiled and cropped around a stage's ``process`` call.

A stage declares what it needs in its ``Capabilities`` (``border`` and ``border_mode``, ``size_multiple``,
``tileable``, ``tile_overlap``, ``tile_align``) and only computes; ``call_framed`` does the rest, in this
order: pad ``border`` pixels on every side (by ``border_mode``); pad the bottom and right to a multiple of
``size_multiple``; call the stage on the whole padded frame, or on tiles of it on the aligned grid
(``tiling.run_tiled``); crop the result back to the frame × scale.

Padding rule (both steps): reflection, unless the frame has no more pixels than are added, in which case
the edge is replicated (reflection is undefined there). A network that pads inside itself by zeros (NAFNet
pads to 16) would otherwise draw a dark line along the bottom and right edges; declaring its multiple here
is what keeps the edges clean.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..frames import FrameBatch
from ..stage import Capabilities
from .tiling import run_tiled


def pad(pixels: torch.Tensor, caps: Capabilities) -> torch.Tensor:
    """``pixels`` (N×C×H×W) with the stage's border around and bottom/right padding to its multiple."""
    border = caps.border
    if border:
        mode = caps.border_mode if border < min(pixels.shape[-2:]) else "replicate"
        pixels = F.pad(pixels, (border, border, border, border), mode=mode)
    multiple = caps.size_multiple
    height, width = pixels.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        pixels = F.pad(pixels, (0, pad_w, 0, pad_h), mode=mode)
    return pixels


def crop(pixels: torch.Tensor, caps: Capabilities, height: int, width: int) -> torch.Tensor:
    """The part of a padded frame's result that belongs to the ``height``×``width`` frame."""
    start, scale = caps.border * caps.scale, caps.scale
    if pixels.shape[-2:] == (height * scale, width * scale):
        return pixels
    return pixels[..., start : start + height * scale, start : start + width * scale]


def call_framed(process: Callable[[FrameBatch], object], batch: FrameBatch, caps: Capabilities,
                tile: int = 0) -> object:  # fmt: skip
    """``process`` on ``batch`` padded as ``caps`` asks (in tiles of ``tile`` input pixels when > 0), cropped.

    Returns what ``process`` returned (a FrameBatch, cropped) so that the caller checks the contract; a
    result that is not a FrameBatch is passed back untouched.
    """
    height, width = batch.height, batch.width
    padded = pad(batch.pixels, caps)
    if tile and caps.tileable:
        def on_tile(pixels: torch.Tensor) -> torch.Tensor:
            result = process(FrameBatch(pixels, batch.pts, batch.context_before, batch.context_after))
            if not isinstance(result, FrameBatch):
                raise TypeError(f"process() returned {type(result).__name__}, not a FrameBatch")
            return result.pixels

        align = max(caps.size_multiple, caps.tile_align)
        out = run_tiled(on_tile, padded, tile, caps.tile_overlap, caps.scale, align)
        return FrameBatch(crop(out, caps, height, width), batch.core_pts)
    if padded is batch.pixels:
        return process(batch)
    result = process(FrameBatch(padded, batch.pts, batch.context_before, batch.context_after))
    expected = (batch.core_count, 3, padded.shape[-2] * caps.scale, padded.shape[-1] * caps.scale)
    if not isinstance(result, FrameBatch) or tuple(result.pixels.shape) != expected:
        return result  # the caller reports the broken contract
    return FrameBatch(crop(result.pixels, caps, height, width), result.pts)
