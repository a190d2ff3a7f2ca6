"""Runs a chain of stages over a stream of frame batches, supplying temporal context and flushing.

Each stage gets a ``StageNode``. A spatial stage processes whatever batch arrives. A temporal stage
needs ``frames_before`` earlier and ``frames_after`` later frames around each frame it outputs: its
node keeps that history, holds a frame back until enough later frames have arrived, pads the start
of the stream with copies of the first frame and the end with copies of the last (on ``flush``), so
frame count and order never change. Every result is checked against the contract (frame count, size
× scale) and a stage that raises or breaks it stops the run with its name, never dropping a frame.
Each stage is called through ``OutOfMemoryBackOff`` and ``framing``: the frame is padded, tiled (``--tile``
or after running out of memory) and cropped as the stage declares; out of device memory, it gets fewer
frames per call, then tiles, and the run goes on.

A stage computing in half precision has its first batch checked: NaN or infinity in the result (a
network whose activations overflow float16) moves the stage to the next precision (float16 →
bfloat16 → float32, ``placement.fallback_dtype``), says so in one warning line, and runs that batch
again. Nodes that share a stage (an alias that repeats) move with it.
"""

from __future__ import annotations

import logging

import torch

from .backoff import OutOfMemoryBackOff
from ..errors import ConfigError, StageFailedError, StreamRestoreError
from ..frames import FrameBatch
from ..stage import BuiltStage
from .oom import retry_after_release
from .placement import Placement, fallback_dtype, place

log = logging.getLogger(__name__)
_HALF = (torch.float16, torch.bfloat16)


class StageNode:
    def __init__(self, built: BuiltStage, placement: Placement, tile: int = 0, output_bits: int = 8,
                 new_stream: bool = True) -> None:
        self.name = built.name
        self.stage = built.stage
        self.caps = built.stage.capabilities
        self.placement = placement
        self.output_bits = output_bits
        self._check_finite = placement.dtype in _HALF  # the first batch in half precision is checked
        self.siblings: list[StageNode] = []
        """Other nodes running the same stage object (a repeated alias): they follow its precision."""
        tile = tile if built.tile is None else built.tile
        if tile and self.caps.tileable and tile < max(self.caps.tile_overlap, 8):
            raise ConfigError(f"stage {self.name!r}: tile ({tile}) must be at least 8 and at least the stage's "
                              f"tile_overlap ({self.caps.tile_overlap})")
        self.stage.to(placement.device, placement.dtype)
        if new_stream:
            self.stage.start_stream()
        self.calls = OutOfMemoryBackOff(self.caps, self.stage.process, tile)
        self._history: list[torch.Tensor] = []
        self._history_pts: list[int | None] = []
        self._started = False

    # -- streaming -------------------------------------------------------------------------------
    def push(self, batch: FrameBatch) -> FrameBatch | None:
        if not self.caps.is_temporal:
            return self._run(batch)
        frames = list(batch.pixels)
        pts = list(batch.pts)
        if not self._started:
            self._started = True
            frames = [frames[0]] * self.caps.frames_before + frames
            pts = [None] * self.caps.frames_before + pts
        self._history.extend(frames)
        self._history_pts.extend(pts)
        return self._drain()

    def flush(self) -> FrameBatch | None:
        if not self.caps.is_temporal or not self._history:
            return None
        # Frames still held back are those waiting for later context; the end of the stream gives
        # them copies of the last frame instead.
        self._history.extend([self._history[-1]] * self.caps.frames_after)
        self._history_pts.extend([None] * self.caps.frames_after)
        out = self._drain()
        self._history, self._history_pts = [], []
        return out

    def _drain(self) -> FrameBatch | None:
        before, after = self.caps.frames_before, self.caps.frames_after
        ready = len(self._history) - before - after
        if ready <= 0:
            return None
        window = FrameBatch(
            retry_after_release(lambda: torch.stack(self._history[: before + ready + after])),
            tuple(self._history_pts[: before + ready + after]),
            context_before=before,
            context_after=after,
        )
        # Keep the last `before` processed frames as history and the `after` frames still waiting.
        self._history = self._history[ready:]
        self._history_pts = self._history_pts[ready:]
        return self._run(window)

    # -- one call --------------------------------------------------------------------------------
    def _run(self, batch: FrameBatch) -> FrameBatch:
        result = self._compute(batch)
        if self._check_finite:
            self._check_finite = False
            first = self.placement.dtype
            while self.placement.dtype in _HALF and not bool(torch.isfinite(result.pixels).all()):
                self._fall_back()
                result = self._compute(batch)
            if self.placement.dtype != first:
                log.warning("stage %r: %s gave NaN or infinity on the first batch; it computes in %s instead",
                            self.name, _name(first), _name(self.placement.dtype))
        return result

    def _fall_back(self) -> None:
        device = self.placement.device
        dtype = fallback_dtype(self.caps, device, self.placement.dtype, self.output_bits) or torch.float32
        self.stage.to(device, dtype)
        self.stage.start_stream()  # the batch runs again from the start of the stream
        for node in (self, *self.siblings):
            node.placement, node._check_finite = Placement(device, dtype), False

    def _compute(self, batch: FrameBatch) -> FrameBatch:
        moved = FrameBatch(
            retry_after_release(lambda: self.placement.move(batch.pixels)), batch.pts, batch.context_before,
            batch.context_after,
        )
        try:
            with torch.inference_mode():
                results = self.calls(moved)
        except StreamRestoreError:
            raise
        except Exception as error:  # a plugin can fail in any way; name it, stop, drop nothing
            raise StageFailedError(f"stage {self.name!r} failed: {type(error).__name__}: {error}") from error
        checked = [self._check(part, result).pixels for part, result in results]
        pixels = retry_after_release(lambda: torch.cat(checked)) if len(checked) > 1 else checked[0]
        return FrameBatch(pixels.to(torch.float32), moved.core_pts)

    def _check(self, given: FrameBatch, result: object) -> FrameBatch:
        if not isinstance(result, FrameBatch):
            raise StageFailedError(f"stage {self.name!r} broke the contract: process() returned "
                                   f"{type(result).__name__}, not a FrameBatch")
        expected = (given.core_count, 3, given.height * self.caps.scale, given.width * self.caps.scale)
        if tuple(result.pixels.shape) != expected:
            raise StageFailedError(
                f"stage {self.name!r} broke the contract: returned frames of shape {tuple(result.pixels.shape)}, "
                f"expected {expected}"
            )
        return result


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class ChainRunner:
    """All stages in order; ``push`` a batch of decoded frames, ``flush`` at the end of the stream."""

    def __init__(self, chain: list[BuiltStage], device: str | None = None, precision: str | None = None,
                 tile: int = 0, output_bits: int = 8, new_stream: bool = True) -> None:  # fmt: skip
        """``tile``: the run's tile side for every tileable stage whose chain element sets none (0: whole frames).
        ``output_bits``: the depth the result is written at (``placement.choose_dtype``).
        ``new_stream``: the stages start a stream (``Stage.start_stream``); False keeps the per-stream state
        they learnt from an earlier runner (a job's segment primed on the file's first frames)."""
        self.nodes = [StageNode(built, place(built.stage.capabilities, device, precision, output_bits), tile,
                                output_bits, new_stream) for built in chain]  # fmt: skip
        for node in self.nodes:
            node.siblings = [other for other in self.nodes if other.stage is node.stage and other is not node]

    @property
    def input_placement(self) -> Placement:
        """Where the first stage computes (decoded frames are uploaded there); the CPU for no stages."""
        return self.nodes[0].placement if self.nodes else Placement(torch.device("cpu"), torch.float32)

    @property
    def accelerator(self) -> torch.device | None:
        """The first non-CPU device a stage computes on, if any (batch size is planned for it)."""
        return next((n.placement.device for n in self.nodes if n.placement.device.type != "cpu"), None)

    @property
    def scale(self) -> int:
        scale = 1
        for node in self.nodes:
            scale *= node.caps.scale
        return scale

    @property
    def latency_frames(self) -> int:
        """Frames a temporal chain holds back before the first output (bounded, not the clip length)."""
        return sum(node.caps.frames_after for node in self.nodes)

    def push(self, batch: FrameBatch) -> FrameBatch | None:
        return self._through(0, batch)

    def flush(self) -> list[FrameBatch]:
        """Flush each stage in order, pushing what it releases through the stages after it."""
        out = []
        for index, node in enumerate(self.nodes):
            released = node.flush()
            if released is not None:
                result = self._through(index + 1, released)
                if result is not None:
                    out.append(result)
        return out

    def _through(self, start: int, batch: FrameBatch | None) -> FrameBatch | None:
        for node in self.nodes[start:]:
            if batch is None:
                return None
            batch = node.push(batch)
        return batch
