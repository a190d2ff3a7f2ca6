"""Runtime planning: batch size from memory (CUDA arithmetic checked with a stand-in allocator), CPU threads."""

from __future__ import annotations

import pytest
import torch

from streamrestore.engine import placement as runtime
from streamrestore.errors import ConfigError
from streamrestore.engine.placement import BatchSizer, choose_batch, choose_dtype, configure_cpu_threads, cpu_batch
from streamrestore.stage import Capabilities


def test_choose_batch_fits_the_headroom_and_stays_in_range() -> None:
    gib = 2**30
    assert choose_batch(10 * gib, gib) == 7  # 70 % of 10 GiB at 1 GiB a frame
    assert choose_batch(10 * gib, 20 * gib) == 1  # never below one frame (back-off tiles if needed)
    assert choose_batch(100 * gib, 2**20) == runtime.MAX_AUTO_BATCH
    assert choose_batch(gib, 0) == runtime.MAX_AUTO_BATCH


def test_cpu_batches_hold_about_a_megapixel() -> None:
    assert cpu_batch(360, 640) == 4
    assert cpu_batch(720, 1280) == 1
    assert cpu_batch(2160, 3840) == 1
    assert cpu_batch(8, 8) == 4


def test_a_requested_batch_is_kept_and_checked() -> None:
    sizer = BatchSizer(3)
    with sizer.measure(3, 360, 640):
        pass
    assert sizer.size == 3
    with pytest.raises(ConfigError, match="at least 1"):
        BatchSizer(0)


def test_cpu_batch_is_planned_after_one_frame() -> None:
    sizer = BatchSizer(None, None)
    assert sizer.size == 1
    with sizer.measure(1, 360, 640):
        pass
    assert sizer.size == 4


class FakeAllocator:
    """Stands in for torch.cuda's memory queries: a run allocates ``frame_bytes`` per frame."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, free: int, allocated: int, reserved: int) -> None:
        self.free, self.allocated, self.reserved, self.peak = free, allocated, reserved, allocated
        for name in ("reset_peak_memory_stats", "memory_allocated", "max_memory_allocated", "mem_get_info",
                     "memory_reserved"):
            monkeypatch.setattr(torch.cuda, name, getattr(self, name))

    def reset_peak_memory_stats(self, device: torch.device) -> None:
        self.peak = self.allocated

    def memory_allocated(self, device: torch.device) -> int:
        return self.allocated

    def max_memory_allocated(self, device: torch.device) -> int:
        return self.peak

    def mem_get_info(self, device: torch.device) -> tuple[int, int]:
        return self.free, 80 * 2**30

    def memory_reserved(self, device: torch.device) -> int:
        return self.reserved


def test_cuda_batch_comes_from_the_first_batch_footprint(monkeypatch: pytest.MonkeyPatch) -> None:
    mib = 2**20
    memory = FakeAllocator(monkeypatch, free=1000 * mib, allocated=300 * mib, reserved=500 * mib)
    sizer = BatchSizer(None, torch.device("cuda", 0))
    with sizer.measure(1, 1080, 1920):
        memory.peak += 100 * mib  # one frame needed 100 MiB at its peak
    # free 1000 MiB + 200 MiB cached by torch, 70 % of it at 100 MiB a frame.
    assert sizer.size == 8


def test_cuda_batch_waits_for_a_batch_that_computed_something(monkeypatch: pytest.MonkeyPatch) -> None:
    mib = 2**20
    memory = FakeAllocator(monkeypatch, free=1000 * mib, allocated=0, reserved=0)
    sizer = BatchSizer(None, torch.device("cuda", 0))
    with sizer.measure(1, 64, 64):
        pass  # a temporal stage held its first frame back
    assert sizer.size == 1
    with sizer.measure(1, 64, 64):
        memory.peak += 100 * mib
    assert sizer.size == 7  # 700 MiB of room at 100 MiB a frame
    with sizer.measure(7, 64, 64):
        memory.peak += 10 * mib
    assert sizer.size == 7  # planned once, then kept


def test_cpu_threads_follow_the_cores_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
        assert runtime.cpu_cores() == 3
        assert configure_cpu_threads() == 3 and torch.get_num_threads() == 3
        assert configure_cpu_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_cpu_computes_in_float32_unless_a_native_precision_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    halfable = Capabilities(dtypes=("float16", "bfloat16", "float32"))
    assert choose_dtype(halfable, cpu) == torch.float32
    assert choose_dtype(halfable, cpu, "float32") == torch.float32
    with pytest.raises(ConfigError, match="float16 is not native on cpu"):
        choose_dtype(halfable, cpu, "float16")
    with pytest.raises(ConfigError, match="--precision must be"):
        choose_dtype(halfable, cpu, "fp8")
    monkeypatch.setattr(runtime, "_native", lambda name, device: name in ("float32", "bfloat16"))
    assert choose_dtype(halfable, cpu, "bfloat16") == torch.bfloat16
    assert choose_dtype(Capabilities(), cpu, "bfloat16") == torch.float32  # a stage that cannot stays in float32
