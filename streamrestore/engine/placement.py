"""Where and in what precision each stage runs, decided in one place from its declared capabilities.

The rule: a stage runs on CUDA when a GPU is present and the stage declares it can, otherwise on the
CPU; it computes in its first declared precision that the device supports (fp16/bf16 on CUDA where
the stage allows it, fp32 on the CPU). ``device="cpu"`` forces the CPU.

Batch size (``BatchSizer``): ``--batch N`` is taken as given. Otherwise the first batch is one frame;
on CUDA its peak memory is the per-frame footprint, and later batches take as many frames as fit in
``HEADROOM`` of the free device memory (at most ``MAX_AUTO_BATCH``); on the CPU a batch holds about
``CPU_BATCH_PIXELS`` input pixels. Running out of memory later is handled per stage (``backoff``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

import torch

from ..errors import ConfigError
from ..stage import Capabilities

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Placement:
    device: torch.device
    dtype: torch.dtype

    def move(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.to(self.device, self.dtype, non_blocking=True)


def cuda_available() -> bool:
    return torch.cuda.is_available()


def place(caps: Capabilities, requested: str | None = None, precision: str | None = None) -> Placement:
    """Choose device and dtype for a stage with these capabilities (``precision``: see ``choose_dtype``)."""
    if requested not in (None, "auto", "cpu", "cuda") and not str(requested).startswith("cuda:"):
        raise ConfigError(f"--device must be auto, cpu or cuda[:N], got {requested!r}")
    wants_cuda = requested not in (None, "auto", "cpu")
    if wants_cuda and not cuda_available():
        raise ConfigError(f"--device {requested} asked for, but no CUDA device is available")
    use_cuda = "cuda" in caps.devices and cuda_available() and requested != "cpu"
    device = torch.device(requested if wants_cuda else "cuda") if use_cuda else torch.device("cpu")
    return Placement(device, choose_dtype(caps, device, precision))


def choose_dtype(caps: Capabilities, device: torch.device, precision: str | None = None) -> torch.dtype:
    """``auto``: the stage's first declared dtype the device runs natively on CUDA, float32 on the CPU.

    A named precision applies to the stages that declare it (the others compute in float32) and must
    be native to the device: bfloat16 on a CPU needs AVX512-BF16 or AMX (Compact ×4 end to end 1.6×
    faster than float32 on an AVX512-BF16 CPU, its 8-bit output 58 dB PSNR-Y from float32's, max
    difference 9/255: benchmarks/RESULTS.md). Opt-in: the CPU default stays float32.
    """
    if precision in (None, "auto"):
        candidates = caps.dtypes if device.type == "cuda" else ("float32",)
        return next((_DTYPES[n] for n in candidates if _native(n, device)), torch.float32)
    if precision not in _DTYPES:
        raise ConfigError(f"--precision must be auto, {', '.join(_DTYPES)}; got {precision!r}")
    if not _native(precision, device):
        raise ConfigError(f"--precision {precision} is not native on {device.type} here; use auto or float32")
    return _DTYPES[precision] if precision in caps.dtypes else torch.float32


def _native(name: str, device: torch.device) -> bool:
    if name == "float32":
        return True
    if device.type == "cuda":
        return name == "float16" or torch.cuda.is_bf16_supported()
    # float16 on the CPU and bfloat16 without AVX512-BF16/AMX are emulated: slower than float32.
    return name == "bfloat16" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def configure_cpu_threads(threads: int | None = None) -> int:
    """Use every core for torch's intra-op work unless told otherwise (decode/encode run beside it)."""
    count = max(1, threads or cpu_cores())
    torch.set_num_threads(count)
    return count


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


MAX_AUTO_BATCH = 16
HEADROOM = 0.7
"""Share of free device memory an automatic batch may plan to use (the rest absorbs fragmentation)."""
CPU_BATCH_PIXELS = 1 << 20
"""CPU batches: frames up to about a megapixel of input in all (4 frames at 640×360, 1 at 1080p)."""


def choose_batch(free_bytes: int, frame_bytes: float, limit: int = MAX_AUTO_BATCH) -> int:
    """Frames per batch that fit ``HEADROOM`` of ``free_bytes`` at ``frame_bytes`` each (1..limit)."""
    if frame_bytes <= 0:
        return limit
    return max(1, min(limit, int(free_bytes * HEADROOM // frame_bytes)))


def cpu_batch(height: int, width: int) -> int:
    return max(1, min(4, CPU_BATCH_PIXELS // max(1, height * width)))


class BatchSizer:
    """Frames per batch: ``requested`` when given, else measured on the first batch (see the module doc)."""

    def __init__(self, requested: int | None = None, accelerator: torch.device | None = None) -> None:
        if requested is not None and requested < 1:
            raise ConfigError(f"--batch must be at least 1, got {requested}")
        self.size = requested or 1
        self._planned = requested is not None
        self._cuda = accelerator if accelerator is not None and accelerator.type == "cuda" else None

    @contextlib.contextmanager
    def measure(self, frames: int, height: int, width: int) -> Iterator[None]:
        """Wrap the first batch's run; afterwards ``size`` is the planned batch size."""
        if self._planned:
            yield
            return
        if self._cuda is None:
            yield
            self.size, self._planned = cpu_batch(height, width), True
            return
        # CUDA: NOT YET MEASURED ON A GPU. The allocator's peak is tracked as kernels are queued, so
        # no synchronisation is needed; memory torch has cached but not handed out counts as free.
        torch.cuda.reset_peak_memory_stats(self._cuda)
        before = torch.cuda.memory_allocated(self._cuda)
        yield
        peak = torch.cuda.max_memory_allocated(self._cuda) - before
        if peak > 0:  # a temporal stage may hold its first frames back and compute nothing yet
            free, _ = torch.cuda.mem_get_info(self._cuda)
            cached = torch.cuda.memory_reserved(self._cuda) - torch.cuda.memory_allocated(self._cuda)
            self.size, self._planned = choose_batch(free + cached, peak / frames), True
