"""Recognising out-of-device-memory errors (torch's, cuBLAS's, cuDNN's) and the one retry outside stages."""

from __future__ import annotations

import pytest
import torch

from streamrestore.engine import oom
from streamrestore.engine.oom import is_out_of_memory, retry_after_release


@pytest.mark.parametrize("error", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
    RuntimeError("cuDNN error: CUDNN_STATUS_NOT_ENOUGH_WORKSPACE"),
    RuntimeError("CUDA error: out of memory"),
])
def test_allocation_failures_are_out_of_memory(error: Exception) -> None:
    assert is_out_of_memory(error)


@pytest.mark.parametrize("error", [
    RuntimeError("CUDA error: an illegal memory access was encountered"),
    RuntimeError("cuDNN error: CUDNN_STATUS_BAD_PARAM"),
    ValueError("out of memory"),  # only runtime errors come from the allocators
    MemoryError(),
])
def test_other_errors_are_not(error: Exception) -> None:
    assert not is_out_of_memory(error)


def test_an_allocation_is_retried_once_after_releasing_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    released: list[bool] = []
    monkeypatch.setattr(oom, "release_cached_memory", lambda: released.append(True))
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED")
        return "done"

    assert retry_after_release(flaky) == "done"
    assert len(attempts) == 2 and released == [True]

    def always() -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        retry_after_release(always)

    def broken() -> None:
        raise RuntimeError("shape mismatch")

    released.clear()
    with pytest.raises(RuntimeError, match="shape mismatch"):
        retry_after_release(broken)
    assert released == []  # other errors are not retried
