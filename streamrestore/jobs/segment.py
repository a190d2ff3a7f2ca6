"""Restores one segment into its own piece: seek to a keyframe, decode, run the chain, encode.

A task is plain data ("this segment of this file, into this piece"): it reads the source and
writes the piece, so it runs the same in this process, a worker process or a Ray task, and frames
never travel between processes. Decoding, the field filter (deinterlace, IVTC, field split: the
plan the driver chose once for the file), alpha and the colour/HDR description are the
single-stream path's own: ``MediaReader`` reads the segment's span and ``MediaWriter.for_source``
encodes it, so a piece holds exactly the frames ``streamrestore run`` writes for those source
frames. The piece holds only the segment's own frames (the warm-up frames around it are decoded
and fed to the filter and the stages, never written), at the timestamps ``run`` gives them, in a
NUT file (it keeps any time base exactly). It is written under a temporary name and renamed when
complete, so a piece that exists is whole; its checksum goes into the manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import av
import numpy as np

from ..engine.chain import ChainRunner
from ..engine.threads import StreamSettings, run_stream
from ..errors import CorruptInputError, MediaError
from ..media.interlace import NO_FIELDS, FieldPlan
from ..media.reader import MediaReader, Span
from ..media.writer import EncodeSettings, MediaWriter
from ..restore import PreparedChain, RunSettings, output_video
from .plan import Segment

PIECE_FORMAT = "nut"


@dataclass(frozen=True)
class SegmentTask:
    source: str
    piece: str
    segment: Segment
    span: Span
    """The source frames decoded and fed (context included), and the window of them that reaches the stages."""
    chain: str
    """The chain as the user gave it (text or a preset's name): each process builds it from this."""
    run: RunSettings
    encode: EncodeSettings
    fields: FieldPlan = NO_FIELDS
    """The field filter the driver chose for the whole file (``PreparedChain.plan_fields``)."""
    primer: Span | None = None
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
    pts: tuple[int, ...] = ()
    """The written frames' timestamps in presentation order, in the output's time base (the source's, or the
    field filter's: a deinterlacer at field rate puts a frame between two source frames)."""


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
    """Restore ``task.segment`` into ``task.piece``; returns the piece's checksum and counts.

    ``on_frames`` counts source frames done (a field-rate segment writes two frames for each).
    """
    from ..engine.placement import configure_cpu_threads

    started, cpu_started = time.perf_counter(), time.process_time()
    task = dataclasses.replace(task, run=first_device(task.run))
    configure_cpu_threads(task.run.cpu_threads)
    prepared = built_chain(task.chain, task.run)
    seg = task.segment
    reader = _span_reader(task.source, task.fields, task.span)
    temporary = f"{task.piece}.{os.getpid()}.partial"
    try:
        video = output_video(task.encode, reader.info, prepared.scale, task.fields)
        depth = max(c.bits for c in av.VideoFormat(video.pix_fmt).components)
        runner = _primed_runner(task, prepared, depth) if task.primer is not None else prepared.runner(depth)
        # The piece carries the video alone: the join copies the source's other streams once.
        writer = MediaWriter.for_source(temporary, PIECE_FORMAT, video, task.encode, reader.describe().video_only())
        own = _OwnFrames(writer, seg, reader.source_info.time_base, reader.info.time_base, task.fields, on_frames)
        try:
            run_stream(reader, runner, own, np.dtype(np.uint16 if depth > 8 else np.uint8),
                       StreamSettings(batch_size=task.run.batch_size))
            if task.run.strict and reader.damaged_frames:
                raise CorruptInputError(f"{reader.damaged_frames} damaged frame(s) in segment {seg.index} (--strict)")
            writer.close()
            own.report()
            expected = seg.count * task.fields.rate / (2 if task.fields.field_split else 1)
            if expected.denominator == 1 and writer.frames_written != expected:  # IVTC: decimate decides
                raise MediaError(f"segment {seg.index}: wrote {writer.frames_written} of {expected} frames")
            digest, size = file_digest(temporary)
            os.replace(temporary, task.piece)
        except BaseException:
            writer.abort()
            _unlink(temporary)
            raise
    finally:
        reader.close()
    # Damage in the warm-up frames is the neighbouring segment's to count.
    damaged = sum(1 for pts in reader.damaged_pts if pts is not None and pts >= seg.start_pts
                  and (seg.end_pts is None or pts < seg.end_pts))
    return PieceResult(seg.index, digest, size, writer.frames_written, damaged,
                       time.perf_counter() - started, time.process_time() - cpu_started, own.written_pts())


def _span_reader(source: str, fields: FieldPlan, span: Span) -> MediaReader:
    reader = MediaReader(source)
    try:
        reader.apply_fields(fields)
        reader.read_span(span)
    except BaseException:
        reader.close()
        raise
    return reader


def _primed_runner(task: SegmentTask, prepared: PreparedChain, depth: int) -> ChainRunner:
    """A runner whose stages saw the file's first frames (and then forget them, keeping per-stream state)."""
    import torch

    from ..frames import FrameBatch, image_to_tensor

    assert task.primer is not None
    primer = prepared.runner(depth)
    reader = _span_reader(task.source, task.fields, task.primer)
    try:
        decoded = list(reader.frames(lambda packet: None))
    finally:
        reader.close()
    pixels = torch.cat([image_to_tensor(f.rgb) for f in decoded])
    primer.push(FrameBatch(pixels, tuple(f.pts for f in decoded)))
    primer.flush()
    # A new runner resets the nodes' frame history; the stages do not start a new stream, so they keep
    # what they learnt from the file's start (the stage contract calls start_stream once per stream).
    return prepared.runner(depth, new_stream=False)


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


class _OwnFrames:
    """The writer side of ``run_stream``: encodes the segment's own frames, drops the warm-up frames.

    A frame is the segment's own when its time is in ``[start, end)`` of the segment's source frames:
    after a field-rate deinterlacer both frames of a source frame are (the second sits half way to
    the next source frame), and with ``--interlaced keep`` both fields are.
    """

    def __init__(self, writer: MediaWriter, segment: Segment, source_time_base: Fraction, time_base: Fraction,
                 fields: FieldPlan, on_frames: Callable[[int], None]) -> None:
        self._writer, self._on_frames = writer, on_frames
        self._start = segment.start_pts * source_time_base
        self._end = None if segment.end_pts is None else segment.end_pts * source_time_base
        self._time_base = time_base
        self._per_source = fields.rate
        self._woven = fields.field_split
        self._pts: list[int] = []
        self._done = Fraction(0)
        self._reported = 0

    def copy_packet(self, packet: av.Packet) -> None:
        pass  # audio and subtitles are copied once, from the source, by the join

    def write_frame(self, rgb: np.ndarray, pts: int | None, alpha: np.ndarray | None = None) -> None:
        time = (pts or 0) * self._time_base
        if time < self._start or (self._end is not None and time >= self._end):
            return
        self._writer.write_frame(rgb, pts, alpha)
        self._pts.append(pts)
        self._done += 1 / self._per_source
        # Count what came out of the encoder, not what went in: x264 holds ~40 frames in its lookahead,
        # so counting inputs reports each segment's first 40 frames at once and nothing during its flush.
        encoded = self._writer.frames_encoded * (2 if self._woven else 1) / self._per_source
        self.report(min(self._done, encoded))

    def report(self, done: Fraction | None = None) -> None:
        """Report source frames done up to ``done`` (default: all written; after the encoder's flush)."""
        whole = int(self._done if done is None else done)
        if whole > self._reported:
            self._on_frames(whole - self._reported)
            self._reported = whole

    def written_pts(self) -> tuple[int, ...]:
        """The encoded frames' pts: a woven frame has its first field's."""
        return tuple(self._pts[::2] if self._woven else self._pts)
