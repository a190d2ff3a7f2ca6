"""Telling that the device ran out of memory, and the one retry for allocations outside a stage.

torch raises ``torch.cuda.OutOfMemoryError`` for its own allocator, but cuBLAS and cuDNN report
their allocation failures as a plain ``RuntimeError`` whose message names the status; all of them
mean the same thing to the back-off (``streamrestore.backoff``), so they are recognised in one place.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import torch

T = TypeVar("T")

_ALLOCATION_FAILURES = ("CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED",
                        "CUDNN_STATUS_NOT_ENOUGH_WORKSPACE", "out of memory")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` means the device ran out of memory (torch's own error, or cuBLAS/cuDNN's)."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(mark in str(error) for mark in _ALLOCATION_FAILURES)


def retry_after_release(call: Callable[[], T]) -> T:
    """``call()``; out of device memory, release torch's cached blocks and call once more.

    For the allocations outside a stage (upload, quantisation, joining parts), which have no smaller
    unit to fall back to: the cache freed by a stage's back-off is usually enough.
    """
    try:
        return call()
    except Exception as error:
        if not is_out_of_memory(error):
            raise
    release_cached_memory()  # after the except block, whose traceback holds the failed call's tensors
    return call()


def release_cached_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
