"""Runs segment tasks on this machine: in this process (one worker) or in a pool of worker processes.

Each worker process has its own decoder, chain and encoder (the chain is built once per process
and kept for its following segments) and ``cores / workers`` torch threads. Worker processes are
started with ``spawn``: torch and FFmpeg threads do not survive ``fork``. Frame counts come back
through a queue for the one progress display; pieces come back as files, results as small records.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sys
import queue as queues
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Callable

from ..engine.placement import cpu_cores
from .segment import PieceResult, SegmentTask, run_segment

_progress: multiprocessing.Queue | None = None
_device: str | None = None


def run_here(tasks: list[SegmentTask], finished: Callable[[PieceResult], None],
             on_frames: Callable[[int], None]) -> None:
    for task in tasks:
        finished(run_segment(task, on_frames))


def _start_worker(progress: multiprocessing.Queue, devices: list[str], counter, parent: int) -> None:
    global _progress, _device
    die_with(parent)
    _progress = progress
    if devices:
        with counter.get_lock():
            _device = devices[counter.value % len(devices)]
            counter.value += 1


def die_with(parent: int) -> None:
    """End this worker when the driver ends, even by ``kill -9``: orphaned workers otherwise finish the
    segments already queued to them and then wait forever, each holding its chain (and GPU memory)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the driver died before the line above took effect
        os._exit(1)


def _work(task: SegmentTask) -> PieceResult:
    if _device is not None:
        task = dataclasses.replace(task, run=dataclasses.replace(task.run, device=_device))
    progress = _progress
    return run_segment(task, (lambda count: progress.put(count)) if progress is not None else (lambda count: None))


def run_in_processes(tasks: list[SegmentTask], workers: int, finished: Callable[[PieceResult], None],
                     on_frames: Callable[[int], None]) -> None:
    """Run ``tasks`` on ``workers`` processes; pieces are recorded as they finish; the first error is raised
    after the running segments stopped (the finished ones stay in the manifest)."""
    context = multiprocessing.get_context("spawn")
    progress = context.Queue()
    device = tasks[0].run.device if tasks else None
    devices = device.split(",") if device and "," in device else []
    counter = context.Value("i", 0)
    threads = max(1, cpu_cores() // workers)
    tasks = [dataclasses.replace(t, run=dataclasses.replace(t.run, cpu_threads=t.run.cpu_threads or threads))
             for t in tasks]
    error: BaseException | None = None
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(progress, devices, counter, os.getpid())) as pool:
        pending: set[Future] = {pool.submit(_work, task) for task in tasks}
        try:
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(progress, on_frames)
                for future in done:
                    try:
                        finished(future.result())
                    except BaseException as failure:  # keep the first; stop handing out segments
                        if error is None:
                            error = failure
                            for other in pending:
                                other.cancel()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    _drain(progress, on_frames)
    if error is not None:
        raise error


def _drain(progress: multiprocessing.Queue, on_frames: Callable[[int], None]) -> None:
    total = 0
    while True:
        try:
            total += progress.get_nowait()
        except queues.Empty:
            break
    if total:
        on_frames(total)
