"""Where and in what precision each stage runs, decided in one place from its declared capabilities.

The rule: a stage runs on CUDA when a GPU is present and the stage declares it can, otherwise on the
CPU; it computes in its first declared precision that the device supports (fp16/bf16 on CUDA where
the stage allows it, fp32 on the CPU). ``device="cpu"`` forces the CPU. A precision is chosen
automatically only if its significant bits cover the output's depth: bfloat16 (8 bits) reaches only
every 4th 10-bit code in the bright half, float16 (11 bits) every 2nd 12-bit one (banding;
benchmarks/precision.py). So 8-bit outputs may use either, 10-bit ones float16, deeper ones float32.

Batch size (``BatchSizer``): ``--batch N`` is taken as given. Otherwise the first batch is one frame;
on CUDA its peak memory is the per-frame footprint, and later batches take as many frames as fit in
``HEADROOM`` of the free device memory (at most ``MAX_AUTO_BATCH``); on the CPU a batch holds about
``CPU_BATCH_PIXELS`` input pixels. Running out of memory later is handled per stage (``backoff``).
An automatic CUDA batch is also capped so that the pinned host buffers of the batches in flight stay
within ``PINNED_SHARE`` of the host's memory (page-locked memory cannot be swapped out).
"""

from __future__ import annotations

import contextlib
import inspect
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
        return pixels.to(self.device, self.dtype, non_blocking=non_blocking_for(pixels.device, self.device))


def non_blocking_for(source: torch.device, target: torch.device) -> bool:
    """Whether a copy from ``source`` to ``target`` may return before it has happened.

    Only towards a CUDA device, where the next kernels are queued behind the copy on the same stream.
    Towards the CPU a non-blocking copy hands back (pinned) memory the GPU has not written yet: a CPU
    stage after a CUDA one would read garbage or the previous batch.
    """
    return torch.device(target).type == "cuda"


def cuda_available() -> bool:
    return torch.cuda.is_available()


def place(caps: Capabilities, requested: str | None = None, precision: str | None = None,
          output_bits: int = 8) -> Placement:
    """Choose device and dtype for a stage with these capabilities (``precision``, ``output_bits``: see
    ``choose_dtype``)."""
    if requested not in (None, "auto", "cpu", "cuda") and not str(requested).startswith("cuda:"):
        raise ConfigError(f"--device must be auto, cpu or cuda[:N], got {requested!r}")
    wants_cuda = requested not in (None, "auto", "cpu")
    if wants_cuda and not cuda_available():
        raise ConfigError(f"--device {requested} asked for, but no CUDA device is available")
    use_cuda = "cuda" in caps.devices and cuda_available() and requested != "cpu"
    device = torch.device(requested if wants_cuda else "cuda") if use_cuda else torch.device("cpu")
    return Placement(device, choose_dtype(caps, device, precision, output_bits))


def choose_dtype(caps: Capabilities, device: torch.device, precision: str | None = None,
                 output_bits: int = 8) -> torch.dtype:
    """``auto``: the stage's first declared dtype the device runs natively on CUDA, float32 on the CPU;
    only one whose significant bits cover ``output_bits`` (see the module doc).

    A named precision applies to the stages that declare it (the others compute in float32) and must
    be native to the device: bfloat16 on a CPU needs AVX512-BF16 or AMX (Compact ×4 end to end 1.6×
    faster than float32 on an AVX512-BF16 CPU, its 8-bit output 58 dB PSNR-Y from float32's, max
    difference 9/255: benchmarks/RESULTS.md). Opt-in: the CPU default stays float32.
    """
    if precision in (None, "auto"):
        candidates = caps.dtypes if device.type == "cuda" else ("float32",)
        candidates = tuple(n for n in candidates if _SIGNIFICANT_BITS[n] >= output_bits)
        return next((_DTYPES[n] for n in candidates if _native(n, device)), torch.float32)
    if precision not in _DTYPES:
        raise ConfigError(f"--precision must be auto, {', '.join(_DTYPES)}; got {precision!r}")
    if not _native(precision, device):
        raise ConfigError(f"--precision {precision} is not native on {device.type} here; use auto or float32")
    return _DTYPES[precision] if precision in caps.dtypes else torch.float32


_SIGNIFICANT_BITS = {"float32": 24, "float16": 11, "bfloat16": 8}
_FALLBACK = {torch.float16: "bfloat16", torch.bfloat16: "float32"}


def fallback_dtype(caps: Capabilities, device: torch.device, failed: torch.dtype, output_bits: int = 8) -> torch.dtype | None:
    """The next precision after ``failed`` gave non-finite values (float16 → bfloat16 → float32); None after float32.

    bfloat16 only where the stage declares it, the device runs it natively and the output has 8 bits.
    """
    name = _FALLBACK.get(failed)
    while name == "bfloat16" and (name not in caps.dtypes or not _native(name, device)
                                  or _SIGNIFICANT_BITS[name] < output_bits):
        name = _FALLBACK[torch.bfloat16]
    return None if name is None else _DTYPES[name]


def _native(name: str, device: torch.device) -> bool:
    if name == "float32":
        return True
    if device.type == "cuda":
        return name == "float16" or cuda_bf16_native()
    # float16 on the CPU and bfloat16 without AVX512-BF16/AMX are emulated: slower than float32.
    return name == "bfloat16" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def cuda_bf16_native() -> bool:
    """bfloat16 in hardware (Ampere and later); T4/V100 only emulate it, slower than float32."""
    if "including_emulation" in inspect.signature(torch.cuda.is_bf16_supported).parameters:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.cuda.is_bf16_supported()  # older torch: counts no emulation


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


PINNED_SHARE = 0.25
"""Share of the host's physical memory the pinned upload and download buffers may take together."""


def host_memory_bytes() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def pinned_batch_cap(in_frame_bytes: int, out_frame_bytes: int, in_flight: int, host_bytes: int | None = None) -> int:
    """Most frames per batch whose pinned buffers (``in_flight`` batches each way) fit ``PINNED_SHARE`` of the host.

    torch's caching host allocator rounds each block up to a power of two, so a frame may cost twice its bytes.
    """
    host = host_memory_bytes() if host_bytes is None else host_bytes
    per_frame = 2 * (in_frame_bytes + out_frame_bytes) * max(1, in_flight)
    return max(1, int(host * PINNED_SHARE // max(1, per_frame)))


def cpu_batch(height: int, width: int) -> int:
    return max(1, min(4, CPU_BATCH_PIXELS // max(1, height * width)))


class BatchSizer:
    """Frames per batch: ``requested`` when given, else measured on the first batch (see the module doc)."""

    def __init__(self, requested: int | None = None, accelerator: torch.device | None = None, *,
                 scale: int = 1, sample_bytes: int = 1, in_flight: int = 6) -> None:
        if requested is not None and requested < 1:
            raise ConfigError(f"--batch must be at least 1, got {requested}")
        self.size = requested or 1
        self._planned = requested is not None
        self._cuda = accelerator if accelerator is not None and accelerator.type == "cuda" else None
        self._pinned = (scale, sample_bytes, in_flight)
        """Output scale, bytes per sample and batches in flight each way: the pinned-memory cap's inputs."""

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
            scale, sample_bytes, in_flight = self._pinned
            frame_bytes = height * width * 3 * sample_bytes
            limit = min(MAX_AUTO_BATCH, pinned_batch_cap(frame_bytes, frame_bytes * scale * scale, in_flight))
            self.size, self._planned = choose_batch(free + cached, peak / frames, limit), True
