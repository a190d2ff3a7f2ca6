"""Runs decode, the stage chain and encode at the same time (``run_stream``), with bounded queues between them.

    decoder thread ──frames──▶ [queue] ──▶ main thread: batch → stages ──▶ [queue] ──▶ encoder thread
         └── audio/subtitle packets, copied straight to the muxer ───────────────────────────┘

PyAV releases the GIL while decoding and encoding, so the three overlap; the queues are bounded,
so memory stays flat however long the input is, and a frame leaves the pipeline as soon as the
stages release it (the pipeline never waits for the end of the input). A failure in any thread stops
the others and is raised in the caller's thread; Ctrl-C in the caller's thread does the same.

Frames cross to the first stage's device and back through ``Transfer`` (pinned memory and a copy
stream on CUDA, so copies overlap compute; plain conversions on the CPU). The encoder thread waits
for a batch's copy only when it encodes it. Batch size comes from ``BatchSizer`` (``--batch``, else
measured on the first batch). A batch whose upload runs out of device memory is uploaded and run in
halves.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..frames import FrameBatch
from ..media.alpha import AlphaTrack
from ..media.reader import DecodedFrame, MediaReader
from ..media.writer import MediaWriter
from .chain import ChainRunner
from .oom import is_out_of_memory, release_cached_memory, retry_after_release
from .placement import BatchSizer
from .transfer import Transfer

_END = object()
_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class StreamSettings:
    batch_size: int | None = None
    """Frames per batch; None: measured on the first batch (``placement.BatchSizer``)."""
    queue_frames: int = 16
    """Decoded frames waiting for the stages (bounds host memory together with batch_size)."""
    queue_batches: int = 4
    """Restored batches waiting for the encoder (a batch's quantised pixels, in host memory)."""


class _Stopped(Exception):
    """Raised inside a worker when another part of the pipeline failed or the user interrupted."""


class _Workers:
    """The threads of one run: a shared stop flag, the first failure, and queue access that stops with it."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.failures: list[BaseException] = []

    def put(self, q: queue.Queue, item: Any) -> None:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                q.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue

    def get(self, q: queue.Queue, block: bool = True) -> Any:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                return q.get(timeout=_POLL_SECONDS) if block else q.get_nowait()
            except queue.Empty:
                if not block:
                    raise
                continue

    def worker(self, name: str, body: Callable[[], None]) -> threading.Thread:
        def run() -> None:
            try:
                body()
            except _Stopped:
                pass
            except BaseException as error:  # handed to the caller's thread, which raises it
                self.failures.append(error)
                self.stop.set()

        thread = threading.Thread(target=run, name=f"streamrestore-{name}", daemon=True)
        thread.start()
        return thread


def run_stream(
    reader: MediaReader,
    runner: ChainRunner,
    writer: MediaWriter,
    output_dtype: np.dtype,
    settings: StreamSettings = StreamSettings(),
    on_frames: Callable[[int], None] = lambda count: None,
) -> None:
    """Push every frame of ``reader`` through ``runner`` into ``writer``; raises the first failure."""
    pipe = _Workers()
    decoded: queue.Queue = queue.Queue(maxsize=settings.queue_frames)
    restored: queue.Queue = queue.Queue(maxsize=settings.queue_batches)
    first = runner.input_placement
    transfer = Transfer(first.device, first.dtype)
    sizer = BatchSizer(settings.batch_size, runner.accelerator, scale=runner.scale,
                       sample_bytes=np.dtype(output_dtype).itemsize, in_flight=settings.queue_batches + 2)
    accelerator = runner.accelerator

    # Alpha planes bypass the stages (which see RGB) and meet their pictures again in the writer.
    alphas = AlphaTrack()

    def decode() -> None:
        for frame in reader.frames(writer.copy_packet):
            if frame.alpha is not None:
                alphas.put(frame.pts, frame.alpha)
            pipe.put(decoded, frame)
        pipe.put(decoded, _END)

    def encode() -> None:
        if accelerator is not None and accelerator.type == "cuda":
            # The thread's current device is GPU 0 otherwise: waiting on an event of cuda:1 would create
            # a context there.
            torch.cuda.set_device(accelerator)
        while (item := pipe.get(restored)) is not _END:
            download, stamps = item
            for image, pts in zip(download.images(), stamps):
                writer.write_frame(image, pts, alphas.take(pts))
            on_frames(len(stamps))

    threads: list[threading.Thread] = []
    try:
        # Start the workers inside the try: Ctrl-C while the second one starts must still stop the
        # first before the caller closes the containers it is decoding from (FFmpeg would crash).
        threads.append(pipe.worker("decode", decode))
        threads.append(pipe.worker("encode", encode))
        for frames in _batches(pipe, decoded, sizer):
            for batch in _uploaded(transfer, frames):
                with sizer.measure(len(batch), batch.height, batch.width):
                    result = runner.push(batch)
                if result is not None:
                    pipe.put(restored, (transfer.download(result.pixels, output_dtype), result.pts))
        for result in runner.flush():
            pipe.put(restored, (transfer.download(result.pixels, output_dtype), result.pts))
        pipe.put(restored, _END)
        for thread in threads:
            while thread.is_alive():
                thread.join(_POLL_SECONDS)
    except _Stopped:
        pass
    except BaseException:
        pipe.stop.set()
        _join(threads)
        raise
    if pipe.failures:
        _join(threads)
        raise pipe.failures[0]


def _batches(pipe: _Workers, decoded: queue.Queue, sizer: BatchSizer) -> Iterator[list[DecodedFrame]]:
    """Group decoded frames into batches: wait for one, then take what is ready, up to ``sizer.size``."""
    finished = False
    while not finished:
        frames: list[DecodedFrame] = []
        item = pipe.get(decoded)
        while item is not _END:
            frames.append(item)
            if len(frames) == sizer.size:
                break
            try:
                item = pipe.get(decoded, block=False)
            except queue.Empty:
                break
        finished = item is _END
        if frames:
            yield frames


def _uploaded(transfer: Transfer, frames: list[DecodedFrame]) -> Iterator[FrameBatch]:
    """``frames`` on the first stage's device as one batch, or in halves where that does not fit."""
    def upload() -> FrameBatch:
        return FrameBatch(transfer.upload([f.rgb for f in frames]), tuple(f.pts for f in frames))

    if len(frames) == 1:
        yield retry_after_release(upload)
        return
    try:
        batch = upload()
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        batch = None  # released after the except block, whose traceback holds the failed upload
    if batch is not None:
        yield batch
        return
    release_cached_memory()
    half = len(frames) // 2
    yield from _uploaded(transfer, frames[:half])
    yield from _uploaded(transfer, frames[half:])


def _join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(timeout=5)
