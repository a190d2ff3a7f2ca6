"""Checks, before the first frame, that a chain's frames fit: under a pixel cap and in the memory available.

A chain multiplies sizes (``resize:scale=8`` three times turns 64×48 into 32768×24576, 805 MP, about 10 GB
a copy in float32), and a model stage pads before its network and may work at a larger scale than it
outputs. Without a check such a run allocates until the kernel kills it. ``plan_frames`` walks the chain
with the input's size, asking each stage for the largest frame it holds (``Stage.working_pixels``: padding
and intermediate scales included), and ``check_frames`` refuses, with one line, a plan whose output or
working frames are over ``max_pixels``, or whose estimated memory is over what the system has available.

The default cap is ``DEFAULT_MAX_PIXELS`` = 16384×16384 (268 MP) per frame: 16K video, and any photo a
×4 upscale of a 60 MP camera picture, fit under it; the CLI's ``--max-pixels`` changes it (0: no cap, no
memory check). The memory estimate is ``BYTES_PER_WORKING_PIXEL`` per pixel of the largest working frame,
measured (benchmarks/RESULTS.md, "Output-size check").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..errors import TooLargeError
from ..stage import BuiltStage

DEFAULT_MAX_PIXELS = 16384 * 16384
BYTES_PER_WORKING_PIXEL = 48
"""Peak host memory per pixel of the largest working frame, beyond the process's base (float32 RGB is
12 bytes a copy; the stage's input, output and the conversions around it hold about four)."""


@dataclass(frozen=True)
class FramePlan:
    width: int  # of the output
    height: int
    working_pixels: int  # the largest frame any stage holds (padding and intermediate scales counted)

    @property
    def memory_bytes(self) -> int:
        return self.working_pixels * BYTES_PER_WORKING_PIXEL


def plan_frames(stages: Sequence[BuiltStage], height: int, width: int) -> FramePlan:
    """The output size of ``stages`` for a ``height``×``width`` input, and the largest frame held on the way."""
    peak = height * width
    for built in stages:
        stage = built.stage
        peak = max(peak, stage.working_pixels(height, width))
        scale = stage.capabilities.scale
        height, width = height * scale, width * scale
    return FramePlan(width, height, max(peak, height * width))


def check_frames(stages: Sequence[BuiltStage], height: int, width: int, max_pixels: int | None) -> FramePlan:
    """``plan_frames``, refused (``TooLargeError``) over ``max_pixels`` or the available memory; None/0: no check."""
    plan = plan_frames(stages, height, width)
    if not max_pixels:
        return plan
    size = f"{width}×{height} → {plan.width}×{plan.height}"
    if plan.width * plan.height > max_pixels:
        raise TooLargeError(f"the output would be {size} ({_mp(plan.width * plan.height)}), over the cap of "
                            f"{_mp(max_pixels)} a frame; use a smaller scale, or --max-pixels to raise the cap")
    if plan.working_pixels > max_pixels:
        raise TooLargeError(f"{size}: the chain works on frames of {_mp(plan.working_pixels)} (padding counted), "
                            f"over the cap of {_mp(max_pixels)}; use a smaller border or scale, or --max-pixels")
    available = available_memory()
    if available is not None and plan.memory_bytes > available:
        raise TooLargeError(f"{size} needs about {_gib(plan.memory_bytes)} of memory, and {_gib(available)} "
                            "is available; use a smaller scale, or --max-pixels 0 to try anyway")
    return plan


def available_memory() -> int | None:
    """Bytes the kernel says a new allocation can get without swapping (``MemAvailable``); None if unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _mp(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} MP"


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"
