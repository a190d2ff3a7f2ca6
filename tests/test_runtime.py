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


# -- the GPU path's rules, checked without a GPU (issue 16) --------------------------------------------
class RecordingTensor:
    """Stands in for a tensor on any device: records how ``Placement.move`` copies it."""

    def __init__(self, device: str) -> None:
        self.device = torch.device(device)
        self.copies: list[dict] = []

    def to(self, device, dtype, **options):
        self.copies.append({"device": torch.device(device), "dtype": dtype, **options})
        return self


def test_copies_are_asynchronous_only_towards_a_cuda_device() -> None:
    cpu, gpu0, gpu1 = torch.device("cpu"), torch.device("cuda", 0), torch.device("cuda", 1)
    assert runtime.non_blocking_for(cpu, gpu0)
    assert runtime.non_blocking_for(gpu0, gpu1)
    assert not runtime.non_blocking_for(gpu0, cpu)  # a CPU stage would read the bytes before they arrive
    assert not runtime.non_blocking_for(cpu, cpu)


def test_a_cuda_stage_followed_by_a_cpu_stage_waits_for_the_copy() -> None:
    from_gpu = RecordingTensor("cuda:0")
    runtime.Placement(torch.device("cpu"), torch.float32).move(from_gpu)
    assert from_gpu.copies == [{"device": torch.device("cpu"), "dtype": torch.float32, "non_blocking": False}]
    to_gpu = RecordingTensor("cpu")
    runtime.Placement(torch.device("cuda", 0), torch.float16).move(to_gpu)
    assert to_gpu.copies[0]["non_blocking"] is True


@pytest.fixture
def cuda_with_bf16(monkeypatch: pytest.MonkeyPatch) -> torch.device:
    """A CUDA device that runs float16 and bfloat16 natively (no GPU needed to plan for one)."""
    monkeypatch.setattr(runtime, "_native", lambda name, device: True)
    return torch.device("cuda", 0)


def test_precision_covers_the_output_depth(cuda_with_bf16: torch.device, monkeypatch: pytest.MonkeyPatch) -> None:
    bf16_only = Capabilities(dtypes=("bfloat16", "float32"), devices=("cpu", "cuda"))
    fp16_capable = Capabilities(dtypes=("float16", "bfloat16", "float32"), devices=("cpu", "cuda"))
    fp32_only = Capabilities(devices=("cpu", "cuda"))
    expected = {  # (stage, output bits) -> precision
        (bf16_only, 8): torch.bfloat16, (bf16_only, 10): torch.float32, (bf16_only, 16): torch.float32,
        (fp16_capable, 8): torch.float16, (fp16_capable, 10): torch.float16,
        (fp16_capable, 12): torch.float32, (fp16_capable, 16): torch.float32,  # float16 has 11 significant bits
        (fp32_only, 8): torch.float32, (fp32_only, 10): torch.float32,
    }
    for (caps, bits), dtype in expected.items():
        assert choose_dtype(caps, cuda_with_bf16, None, bits) == dtype, (caps.dtypes, bits)
    # The output depth reaches the decision through place() as well.
    monkeypatch.setattr(runtime, "cuda_available", lambda: True)
    assert runtime.place(bf16_only, None, None, 8) == runtime.Placement(torch.device("cuda"), torch.bfloat16)
    assert runtime.place(bf16_only, None, None, 10) == runtime.Placement(torch.device("cuda"), torch.float32)


def test_precision_falls_back_from_half_to_float32(cuda_with_bf16: torch.device) -> None:
    every = Capabilities(dtypes=("float16", "bfloat16", "float32"))
    no_bf16 = Capabilities(dtypes=("float16", "float32"))
    assert runtime.fallback_dtype(every, cuda_with_bf16, torch.float16) == torch.bfloat16
    assert runtime.fallback_dtype(every, cuda_with_bf16, torch.float16, output_bits=10) == torch.float32
    assert runtime.fallback_dtype(no_bf16, cuda_with_bf16, torch.float16) == torch.float32
    assert runtime.fallback_dtype(every, cuda_with_bf16, torch.bfloat16) == torch.float32
    assert runtime.fallback_dtype(every, cuda_with_bf16, torch.float32) is None


def test_bfloat16_on_cuda_counts_only_hardware_support(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []

    def newer(including_emulation: bool = True) -> bool:  # torch ≥ 2.4: a T4 emulates bf16, slowly
        calls.append({"including_emulation": including_emulation})
        return including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", newer)
    assert runtime.cuda_bf16_native() is False
    assert calls == [{"including_emulation": False}]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)  # older torch: no such argument
    assert runtime.cuda_bf16_native() is True


def test_pinned_buffers_are_capped_by_host_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    gib, frame = 2**30, 1080 * 1920 * 3
    # 1080p in, ×4 out, 8-bit, 6 batches in flight: 2 × (6.2 + 99.5) MB × 6 a frame; a quarter of 64 GiB.
    assert runtime.pinned_batch_cap(frame, frame * 16, 6, host_bytes=64 * gib) == 64 * gib // 4 // (2 * 17 * frame * 6)
    assert runtime.pinned_batch_cap(frame, frame * 16, 6, host_bytes=64 * gib) == 13
    assert runtime.pinned_batch_cap(frame, frame * 16, 6, host_bytes=2 * gib) == 1  # never below one frame
    # The planned CUDA batch takes the cap: plenty of device memory, little host memory.
    memory = FakeAllocator(monkeypatch, free=100 * gib, allocated=0, reserved=0)
    monkeypatch.setattr(runtime, "host_memory_bytes", lambda: 8 * gib)
    sizer = BatchSizer(None, torch.device("cuda", 0), scale=4, sample_bytes=1, in_flight=6)
    with sizer.measure(1, 1080, 1920):
        memory.peak += 2**20
    assert sizer.size == runtime.pinned_batch_cap(frame, frame * 16, 6, host_bytes=8 * gib) == 1
    sizer = BatchSizer(None, torch.device("cuda", 0), scale=1, sample_bytes=1, in_flight=6)
    with sizer.measure(1, 540, 960):
        memory.peak += 2**20
    assert sizer.size == runtime.MAX_AUTO_BATCH  # small frames: device and host both have room
