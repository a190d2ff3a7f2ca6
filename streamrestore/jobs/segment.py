"""Restores one segment into its own piece: seek to a keyframe, decode, run the chain, encode.

A task is plain data ("this segment of this file, into this piece"): it reads the source and
writes the piece, so it runs the same in this process, a worker process or a Ray task, and frames
never travel between processes. The piece holds only the segment's own frames (the warm-up frames
around it are decoded and fed to the stages, never written), at their source timestamps, in a NUT
file (it keeps any time base exactly). It is written under a temporary name and renamed when
complete, so a piece that exists is whole; its checksum goes into the manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import av
import av.error
import numpy as np

from ..engine.chain import ChainRunner
from ..engine.threads import StreamSettings, run_stream
from ..errors import CorruptInputError, MediaError
from ..media.color import frame_to_rgb
from ..media.reader import DecodedFrame, MediaReader, VideoInfo
from ..media.writer import EncodeSettings, MediaWriter, OutputVideo
from ..restore import PreparedChain, RunSettings
from .plan import Segment

PIECE_FORMAT = "nut"


@dataclass(frozen=True)
class SegmentTask:
    source: str
    piece: str
    segment: Segment
    pts: tuple[int, ...]
    """Timestamps of the frames fed to the stages (context included), in presentation order."""
    chain: str
    """The chain as the user gave it (text or a preset's name): each process builds it from this."""
    run: RunSettings
    encode: EncodeSettings
    pix_fmt: str
    primer_pts: tuple[int, ...] = ()
    """The file's first frames (as many as the chain looks ahead, plus one) when the segment is not at the
    start: run through the chain first so per-stream state (an automatic strength estimated on the
    stream's first frame) is the file's, not the segment's."""


@dataclass(frozen=True)
class PieceResult:
    index: int
    sha256: str
    bytes: int
    frames: int
    damaged_frames: int
    seconds: float
    cpu_seconds: float


_BUILT: dict[tuple[str, RunSettings], PreparedChain] = {}
"""Chains already built in this process (model weights load once per worker, not once per segment)."""


def first_device(run: RunSettings) -> RunSettings:
    """``run`` for one worker: a device list (``cuda:0,cuda:1``, one per worker) gives its first device."""
    if run.device and "," in run.device:
        return dataclasses.replace(run, device=run.device.split(",")[0])
    return run


def built_chain(chain: str, run: RunSettings) -> PreparedChain:
    if (chain, run) not in _BUILT:
        _BUILT.clear()
        _BUILT[chain, run] = PreparedChain(chain, run)
    return _BUILT[chain, run]


def remember_chain(chain: str, run: RunSettings, prepared: PreparedChain) -> None:
    """Reuse a chain the driver already built (one-worker runs in the driver's own process)."""
    _BUILT.clear()
    _BUILT[chain, run] = prepared


def run_segment(task: SegmentTask, on_frames: Callable[[int], None] = lambda count: None) -> PieceResult:
    """Restore ``task.segment`` into ``task.piece``; returns the piece's checksum and counts."""
    from ..engine.placement import configure_cpu_threads

    started, cpu_started = time.perf_counter(), time.process_time()
    task = dataclasses.replace(task, run=first_device(task.run))
    configure_cpu_threads(task.run.cpu_threads)
    prepared = built_chain(task.chain, task.run)
    probe = MediaReader(task.source)
    info = probe.info
    probe.close()
    runner = _primed_runner(task, prepared, info) if task.primer_pts else prepared.runner()
    seg = task.segment
    core = set(task.pts[seg.first - seg.context_first: seg.first - seg.context_first + seg.count])
    temporary = f"{task.piece}.{os.getpid()}.partial"
    video = OutputVideo(info.width * runner.scale, info.height * runner.scale, task.pix_fmt, info.color, info)
    writer = MediaWriter(temporary, PIECE_FORMAT, video, task.encode, [])
    decoder = _SegmentDecoder(task.source, info, seg.decode_from, task.pts)
    depth = max(c.bits for c in av.VideoFormat(task.pix_fmt).components)
    try:
        run_stream(decoder, runner, _CoreOnly(writer, core, on_frames), np.dtype(np.uint16 if depth > 8 else np.uint8),
                   StreamSettings(batch_size=task.run.batch_size))
        if task.run.strict and decoder.damaged_frames:
            raise CorruptInputError(f"{decoder.damaged_frames} damaged frame(s) in segment {seg.index} (--strict)")
        writer.close()
        if writer.frames_written != seg.count:
            raise MediaError(f"segment {seg.index}: wrote {writer.frames_written} of {seg.count} frames")
        digest, size = file_digest(temporary)
        os.replace(temporary, task.piece)
    except BaseException:
        writer.abort()
        _unlink(temporary)
        raise
    return PieceResult(seg.index, digest, size, writer.frames_written, decoder.damaged_frames,
                       time.perf_counter() - started, time.process_time() - cpu_started)


def _primed_runner(task: SegmentTask, prepared: PreparedChain, info: VideoInfo) -> ChainRunner:
    """A runner whose stages saw the file's first frames (and then forget them, keeping per-stream state)."""
    import torch

    from ..frames import FrameBatch, image_to_tensor

    primer = prepared.runner()
    decoded = list(_SegmentDecoder(task.source, info, task.primer_pts[0], task.primer_pts).frames(lambda p: None))
    pixels = torch.cat([image_to_tensor(f.rgb) for f in decoded])
    primer.push(FrameBatch(pixels, tuple(f.pts for f in decoded)))
    primer.flush()
    # A new runner resets the nodes' frame history; start_stream is held back so the stages keep
    # what they learnt from the file's start (the stage contract calls it once per stream).
    held = list({id(b.stage): b.stage for b in prepared.stages}.values())  # a stage used twice (sr4 = ×2 twice) once
    for stage in held:
        stage.start_stream = _no_op  # instance attribute: shadows the method for this one call
    try:
        return prepared.runner()
    finally:
        for stage in held:
            del stage.start_stream


def _no_op() -> None:
    pass


def file_digest(path: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _CoreOnly:
    """The writer side of ``run_stream``: encodes the segment's own frames, drops the warm-up frames."""

    def __init__(self, writer: MediaWriter, core: set[int], on_frames: Callable[[int], None]) -> None:
        self._writer, self._core, self._on_frames = writer, core, on_frames

    def copy_packet(self, packet: av.Packet) -> None:
        pass  # audio and subtitles are copied once, from the source, by the join

    def write_frame(self, rgb: np.ndarray, pts: int | None, alpha: np.ndarray | None = None) -> None:
        if pts in self._core:
            self._writer.write_frame(rgb, pts, alpha)
            self._on_frames(1)


class _SegmentDecoder:
    """The reader side of ``run_stream``: exactly the frames with timestamps ``wanted``, in order.

    Seeks to the keyframe ``decode_from`` and decodes on until every wanted frame came out. A wanted
    frame the decoder never produces (a damaged packet) is replaced by the previous frame at its own
    timestamp, as ``MediaReader`` does for a whole file.
    """

    def __init__(self, source: str, info: VideoInfo, decode_from: int, wanted: tuple[int, ...]) -> None:
        self.source, self.info, self.decode_from, self.wanted = source, info, decode_from, wanted
        self.damaged_frames = 0

    def frames(self, on_packet: Callable[[av.Packet], None]) -> Iterator[DecodedFrame]:
        decoded = self._decode(seek=True)
        first = next(decoded, None)
        if first is not None and first.pts is not None and first.pts > self.wanted[0]:
            # The demuxer's seek landed after the keyframe we asked for (a sparse index): start over
            # from the beginning of the file, which always decodes.
            decoded.close()
            decoded = self._decode(seek=False)
            first = next(decoded, None)
        rgb_format = "rgb48le" if self.info.bit_depth > 8 else "rgb24"
        position = 0
        last: np.ndarray | None = None
        pending = [first] if first is not None else []
        for frame in _chain(pending, decoded):
            pts = frame.pts
            if pts is None or pts < self.wanted[position]:
                continue  # pre-roll between the keyframe and the first wanted frame
            rgb = frame_to_rgb(frame, self.info.color, rgb_format).to_ndarray()
            while position < len(self.wanted) and self.wanted[position] < pts:
                yield self._repair(last if last is not None else rgb, position)
                position += 1
            if position == len(self.wanted):
                break
            if self.wanted[position] == pts:
                last = rgb
                position += 1
                yield DecodedFrame(rgb, pts)
            if position == len(self.wanted):
                break
        decoded.close()
        while position < len(self.wanted):
            if last is None:
                raise MediaError(f"{self.source!r}: no decodable frame in a segment")
            yield self._repair(last, position)
            position += 1

    def _repair(self, rgb: np.ndarray, position: int) -> DecodedFrame:
        self.damaged_frames += 1
        return DecodedFrame(rgb, self.wanted[position], repaired=True)

    def _decode(self, seek: bool) -> Iterator[av.VideoFrame]:
        container = av.open(self.source)
        try:
            video = container.streams.video[0]
            video.thread_type = "AUTO"
            if seek:
                container.seek(self.decode_from, stream=video, backward=True)
            for packet in container.demux(video):
                try:
                    yield from video.decode(packet if packet.size else None)
                except (av.error.InvalidDataError, av.error.PatchWelcomeError, av.error.UndefinedError):
                    continue
                except EOFError:
                    return
            try:
                yield from video.decode(None)
            except EOFError:
                return
        finally:
            container.close()


def _chain(first: list, rest: Iterator) -> Iterator:
    yield from first
    yield from rest
