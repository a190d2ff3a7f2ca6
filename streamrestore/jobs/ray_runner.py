"""Runs segment tasks on a Ray cluster (``--ray auto|ADDRESS``); Ray schedules, retries and places them.

A task is the same ``SegmentTask`` a local worker runs: paths in, a piece file and a small result
out, so frames never enter Ray's object store. Every node must see the source, the job directory
and the output at the same paths (a shared filesystem: NFS, CephFS, Lustre…) and have streamrestore
installed. A task whose worker process or node dies is retried elsewhere (``max_retries``); its
half-written piece has a temporary name and is never listed. The manifest is written and the
pieces joined on the driver. GPU tasks ask for ``num_gpus=1`` (Ray sets CUDA_VISIBLE_DEVICES, so
the task's device is ``cuda``), CPU tasks for one CPU each.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from ..errors import ConfigError, StreamRestoreError
from .segment import PieceResult, SegmentTask, run_segment

MAX_RETRIES = 3


def _segment_task(task: SegmentTask) -> PieceResult:
    return run_segment(task)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'streamrestore[ray]'") from None
    return ray


def connect(address: str) -> None:
    """Join the cluster at ``address``; ``auto``: Ray's own rule (RAY_ADDRESS, else a new local instance)."""
    ray = _ray()
    if ray.is_initialized():
        return  # the caller's own driver (or a test) already connected
    ray.init(address=None if address == "auto" else address, include_dashboard=False,
             log_to_driver=False, configure_logging=False)


def run_on_ray(tasks: list[SegmentTask], address: str, finished: Callable[[PieceResult], None],
               on_frames: Callable[[int], None]) -> None:
    ray = _ray()
    connect(address)
    device = tasks[0].run.device if tasks else None
    gpu = device is not None and device.startswith("cuda")
    remote = ray.remote(num_cpus=0 if gpu else 1, num_gpus=1 if gpu else 0, max_retries=MAX_RETRIES)(_segment_task)
    if gpu:
        tasks = [dataclasses.replace(t, run=dataclasses.replace(t.run, device="cuda")) for t in tasks]
    # One torch thread per task: Ray runs as many tasks as the node has CPUs.
    one_thread = [dataclasses.replace(t, run=dataclasses.replace(t.run, cpu_threads=t.run.cpu_threads or 1))
                  for t in tasks]
    pending = {remote.remote(t): t for t in one_thread}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            task = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayTaskError as error:
                for other in pending:
                    ray.cancel(other)
                cause = error.cause if isinstance(getattr(error, "cause", None), StreamRestoreError) else None
                if cause is not None:
                    raise cause from None
                raise StreamRestoreError(f"a segment failed on the Ray cluster: {error}") from None
            finished(result)
            on_frames(task.segment.count)  # source frames, as the local runners count
