"""Calls one stage so that running out of device memory costs speed, never frames.

Out of device memory (``oom.is_out_of_memory``: torch's ``OutOfMemoryError``, and cuBLAS/cuDNN
allocation failures, which arrive as plain ``RuntimeError``) the batch is halved (a temporal batch
keeps each half's context frames) until a single frame does not fit; then, if the stage declares it
can be tiled, the frame is cut into overlapping tiles whose side is halved until they fit. Every call
goes through ``framing.call_framed``, which pads, tiles and crops as the stage declares. The limits
are kept while they work: after ``GROW_AFTER`` batches without a failure they are relaxed one step
(tiles doubled up to the run's ``--tile`` or whole frames, then the batch doubled up to its planned
size), so one transient failure does not halve throughput for the rest of the stream; a relaxed limit
that fails again doubles the wait before the next try. The parts that did run are kept and the rest
is retried, so every frame comes out exactly once, in order. A frame that fails even in the smallest
tile is an out-of-memory error for the caller to report.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..frames import FrameBatch
from ..stage import Capabilities
from .framing import call_framed
from .oom import is_out_of_memory, release_cached_memory

MIN_TILE = 64
"""Smallest tile side (input pixels) tried before giving up."""
GROW_AFTER = 8
"""Batches without running out of memory after which a limit is relaxed one step."""


class OutOfMemoryBackOff:
    """Runs ``process`` over a batch in as many calls as memory needs; returns (part, result) pairs."""

    def __init__(self, caps: Capabilities, process: Callable[[FrameBatch], object], tile: int = 0) -> None:
        self.caps = caps
        self.process = process
        self.frames: int | None = None
        """Most core frames per call since memory ran out (None: no limit yet)."""
        self.tile = tile if caps.tileable else 0
        """Tile side in input pixels: the run's ``--tile``, or since a single frame did not fit (0: whole)."""
        self.grow_after = GROW_AFTER
        self._requested_tile = self.tile  # what relaxing the tile grows back to
        self._failures = 0  # times memory ran out in this stream
        self._clean = 0  # batches since memory last ran out
        self._relaxed = False  # a limit was relaxed since memory last ran out
        self._planned = 0  # the largest batch seen: the batch size planned for the stream

    def __call__(self, batch: FrameBatch) -> list[tuple[FrameBatch, object]]:
        failures, self._planned = self._failures, max(self._planned, batch.core_count)
        results = self._run(batch)
        if self._failures == failures and (self.frames or self.tile != self._requested_tile):
            self._clean += 1
            if self._clean >= self.grow_after:
                self._relax(batch)
        return results

    def _run(self, batch: FrameBatch) -> list[tuple[FrameBatch, object]]:
        declared = None if self.caps.is_temporal else self.caps.max_batch  # a stage's own limit (spatial only)
        limit = min(n for n in (self.frames, declared, batch.core_count) if n)
        results: list[tuple[FrameBatch, object]] = []
        for start in range(0, batch.core_count, limit):
            results.extend(self._fit(core_window(batch, start, min(start + limit, batch.core_count))))
        return results

    def _out_of_memory(self) -> None:
        """Count a failure; a relaxed limit that failed again makes the next relaxation wait twice as long."""
        self._failures += 1
        self._clean = 0
        if self._relaxed:
            self.grow_after, self._relaxed = min(self.grow_after * 2, 1024), False
        release_cached_memory()

    def _relax(self, batch: FrameBatch) -> None:
        """One step back towards the run's tiles (or whole frames) and the planned batch."""
        if self.tile != self._requested_tile:
            grown = self.tile * 2
            if self._requested_tile:
                self.tile = min(grown, self._requested_tile)
            else:
                self.tile = 0 if grown >= max(batch.height, batch.width) else grown
        elif self.frames:
            self.frames = None if self.frames * 2 >= self._planned else self.frames * 2
        self._clean, self._relaxed = 0, True

    def _fit(self, part: FrameBatch) -> list[tuple[FrameBatch, object]]:
        try:
            return [(part, self._call(part))]
        except Exception as error:
            if not is_out_of_memory(error):
                raise
        self._out_of_memory()  # after the except block, whose traceback still holds the failed call's tensors
        if part.core_count > 1:
            half = part.core_count // 2
            self.frames = half if self.frames is None else min(self.frames, half)
            return self._run(part)  # again, in pieces of the new limit
        while True:
            self._shrink_tile(part)
            try:
                return [(part, self._call(part))]
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
            self._out_of_memory()

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
