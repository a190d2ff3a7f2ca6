"""Where and in what precision each stage runs, decided in one place from its declared capabilities.

The rule: a stage runs on CUDA when a GPU is present and the stage declares it can, otherwise on the
CPU; it computes in its first declared precision that the device supports (fp16/bf16 on CUDA where
the stage allows it, fp32 on the CPU). ``device="cpu"`` forces the CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .errors import ConfigError
from .stage import Capabilities

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Placement:
    device: torch.device
    dtype: torch.dtype

    def move(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.to(self.device, self.dtype, non_blocking=True)


def cuda_available() -> bool:
    return torch.cuda.is_available()


def place(caps: Capabilities, requested: str | None = None) -> Placement:
    """Choose device and dtype for a stage with these capabilities."""
    if requested not in (None, "auto", "cpu", "cuda") and not str(requested).startswith("cuda:"):
        raise ConfigError(f"--device must be auto, cpu or cuda[:N], got {requested!r}")
    wants_cuda = requested not in (None, "auto", "cpu")
    if wants_cuda and not cuda_available():
        raise ConfigError(f"--device {requested} asked for, but no CUDA device is available")
    use_cuda = "cuda" in caps.devices and cuda_available() and requested != "cpu"
    device = torch.device(requested if wants_cuda else "cuda") if use_cuda else torch.device("cpu")
    dtype = torch.float32
    if device.type == "cuda":
        for name in caps.dtypes:
            if name == "bfloat16" and not torch.cuda.is_bf16_supported():
                continue
            dtype = _DTYPES[name]
            break
    return Placement(device, dtype)


def configure_cpu_threads(threads: int | None = None) -> int:
    """Use every core for torch's intra-op work unless told otherwise (decode/encode run beside it)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    count = max(1, threads or cores)
    torch.set_num_threads(count)
    return count
