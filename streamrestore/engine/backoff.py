"""Calls one stage so that running out of device memory costs speed, never frames.

On ``torch.cuda.OutOfMemoryError`` the batch is halved (a temporal batch keeps each half's context
frames) until a single frame does not fit; then, if the stage declares it can be tiled, the frame is
cut into overlapping tiles whose side is halved until they fit. Every call goes through
``framing.call_framed``, which pads, tiles and crops as the stage declares. Both limits
are kept for the rest of the stream, so one failure is paid once. The parts that did run are kept and
the rest is retried, so every frame comes out exactly once, in order. A frame that fails even in the
smallest tile is an out-of-memory error for the caller to report.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..frames import FrameBatch
from ..stage import Capabilities
from .framing import call_framed

MIN_TILE = 64
"""Smallest tile side (input pixels) tried before giving up."""


class OutOfMemoryBackOff:
    """Runs ``process`` over a batch in as many calls as memory needs; returns (part, result) pairs."""

    def __init__(self, caps: Capabilities, process: Callable[[FrameBatch], object], tile: int = 0) -> None:
        self.caps = caps
        self.process = process
        self.frames: int | None = None
        """Most core frames per call since memory ran out (None: no limit yet)."""
        self.tile = tile if caps.tileable else 0
        """Tile side in input pixels: the run's ``--tile``, or since a single frame did not fit (0: whole)."""

    def __call__(self, batch: FrameBatch) -> list[tuple[FrameBatch, object]]:
        declared = None if self.caps.is_temporal else self.caps.max_batch  # a stage's own limit (spatial only)
        limit = min(n for n in (self.frames, declared, batch.core_count) if n)
        results: list[tuple[FrameBatch, object]] = []
        for start in range(0, batch.core_count, limit):
            results.extend(self._fit(core_window(batch, start, min(start + limit, batch.core_count))))
        return results

    def _fit(self, part: FrameBatch) -> list[tuple[FrameBatch, object]]:
        try:
            return [(part, self._call(part))]
        except torch.cuda.OutOfMemoryError:
            pass  # released after the except block, whose traceback still holds the failed call's tensors
        _release_cached_memory()
        if part.core_count > 1:
            half = part.core_count // 2
            self.frames = half if self.frames is None else min(self.frames, half)
            return self(part)  # again, in pieces of the new limit
        while True:
            self._shrink_tile(part)
            try:
                return [(part, self._call(part))]
            except torch.cuda.OutOfMemoryError:
                pass
            _release_cached_memory()

    def _shrink_tile(self, part: FrameBatch) -> None:
        if not self.caps.tileable:
            raise torch.cuda.OutOfMemoryError(f"out of device memory on one {part.width}×{part.height} frame, and "
                                              "the stage cannot be tiled; use a smaller model or the CPU")
        tile = (self.tile or max(part.height, part.width)) // 2
        if tile < max(MIN_TILE, self.caps.tile_overlap):
            tried = f"{self.tile}-pixel tiles" if self.tile else f"one {part.width}×{part.height} frame"
            raise torch.cuda.OutOfMemoryError(f"out of device memory even on {tried}; use a smaller model or the CPU")
        self.tile = tile

    def _call(self, part: FrameBatch) -> object:
        return call_framed(self.process, part, self.caps, self.tile)


def core_window(batch: FrameBatch, start: int, stop: int) -> FrameBatch:
    """Core frames ``start:stop`` of ``batch`` with the context frames they need."""
    if start == 0 and stop == batch.core_count:
        return batch
    end = stop + batch.context_before + batch.context_after
    return FrameBatch(batch.pixels[start:end], batch.pts[start:end], batch.context_before, batch.context_after)


def _release_cached_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
