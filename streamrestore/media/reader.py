"""Opens an input (file, stdin or network URL) and yields its video frames as RGB arrays, in order.

Audio, subtitle, cover-art and data packets are handed untouched to a callback as they are demuxed,
so they can be copied packet for packet while the video goes through the stages (``media.extras``
sorts the streams; ``media.alpha`` explains the alpha plane a frame may carry).

Damaged input policy: every video packet the container carries becomes exactly one output frame.
A packet the decoder cannot turn into a frame (corrupt data) is replaced by a copy of the previous
good frame at that packet's own timestamp, and counted in ``damaged_frames``; frames the decoder
flags as corrupt (concealed errors) are kept as decoded and counted too. An input that ends before
the frames its container announces is reported as truncated.

What a player shows is what is read: an MP4/MOV edit list (a cut made with ``-c copy``) hides the
frames before its start, which are decoded only as references and never come out of the decoder;
they are not counted as announced frames. Timestamps that go back (files joined end to end) are
repaired on the packets (``timeline.TimestampRepair``). Frames whose size differs from the first
frame's (a resolution change mid-stream) are scaled to the first frame's size and counted in
``resized_frames``. A frame the decoder returns but cannot be converted is a ``MediaError``.

A ``FrameFilter`` (``media.interlace``: deinterlace, IVTC, field split) may be set before reading: it
sees every decoded frame, repairs included, in the source's YUV, and what it returns is converted to
RGB instead; ``info`` then describes its output, and the completeness check still counts the source.

A job's segment reads a *span* (``read_span``): decoding starts at a keyframe, exactly the listed
source frames are read (repaired as above) and fed to the filter, and only the frames whose time
falls in the span's delivery window come out — the frames at its edges give a deinterlacer the
neighbours it has in a whole-file read, and are then dropped.
"""

from __future__ import annotations

import bisect
import itertools
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterator

import av
import av.error
import numpy as np

from av.video.reformatter import Interpolation

from ..errors import InputNotFoundError, MediaError, NoVideoStreamError, TruncatedInputError
from .alpha import has_alpha, rgba_format, split
from .color import ColorDescription, describe_source, frame_to_rgb
from .extras import ContainerExtras, copied_streams, gather, main_video, no_video_message
from .hdr import HdrMetadata, read_hdr
from .timeline import TimestampRepair

from .interlace import FieldPlan, FrameFilter

STDIO = "-"
_NETWORK_PREFIXES = ("tcp://", "udp://", "rtp://", "rtsp://", "rtmp://", "http://", "https://", "srt://")


@dataclass(frozen=True)
class VideoInfo:
    """What the writer and the progress bar need to know about the source video."""

    width: int
    height: int
    time_base: Fraction
    average_rate: Fraction | None
    frame_count: int | None
    """Frames announced by the container, or estimated from duration × rate (None: unknown)."""
    frame_count_exact: bool
    pix_fmt: str
    bit_depth: int
    color: ColorDescription
    rotation: int
    sample_aspect_ratio: Fraction | None
    codec: str
    profile: str | None = None
    """The codec profile as FFmpeg names it (``High``, ``Main 10``, ``4444``), if known."""
    hdr: HdrMetadata | None = None
    """HDR10 static metadata, and which dynamic metadata the source has (None: none)."""
    alpha: bool = False
    """The source has an alpha plane; frames carry it beside the RGB picture (``media.alpha``)."""


@dataclass(frozen=True)
class Span:
    """Part of the video, for a job's segment: what to decode, and which of its frames come out."""

    keyframe: int
    """pts of the keyframe decoding starts from (frames before ``pts[0]`` are decoded, not read)."""
    pts: tuple[int, ...]
    """The source frames read (and fed to the filter), sorted: every one comes out or is repaired."""
    deliver_from: int
    """Frames (after the filter) before this source time are dropped..."""
    deliver_until: int | None = None
    """...and those at or after this one (None: none)."""


@dataclass(frozen=True)
class SourceDescription:
    """What a writer copies from the source container: its streams to copy, its tags and its chapters."""

    info: VideoInfo
    copy_streams: list
    """The audio and subtitle streams (PyAV streams), copied packet for packet."""
    metadata: dict[str, str]
    chapters: list
    extras: ContainerExtras | None = None
    """Cover art, attachments, data streams, timecode and the video's labels (``media.extras``)."""

    def video_only(self) -> SourceDescription:
        """The video's description alone, nothing to copy (a job's piece: the join copies the rest once)."""
        return SourceDescription(self.info, [], {}, [], None)


@dataclass(frozen=True)
class DecodedFrame:
    rgb: np.ndarray
    """H×W×3 RGB, uint8 for 8-bit sources and uint16 for deeper ones."""
    pts: int | None
    repaired: bool = False
    alpha: np.ndarray | None = None
    """H×W alpha plane, same dtype as ``rgb`` (None: the source has no alpha)."""


def is_network_url(source: str) -> bool:
    return source.startswith(_NETWORK_PREFIXES)


class MediaReader:
    """One input container: its video stream, the streams to copy, and a frame generator."""

    def __init__(self, source: str, timeout: float = 15.0) -> None:
        self.source = source
        self.damaged_frames = 0
        self.damaged_pts: list[int | None] = []
        """Source timestamps of the damaged frames (a job counts its segments' own)."""
        self.repaired_frames = 0
        self.frames_read = 0
        self.resized_frames = 0
        self.retimed_frames = 0
        self.timeline = TimestampRepair()
        self._read_error: av.error.FFmpegError | None = None
        self._timeout = timeout
        self._flushed = False
        self.video_filter: FrameFilter | None = None
        self._span: Span | None = None
        self.container = _open_input(source, timeout)
        try:
            video = main_video(self.container)
            if video is None:
                raise NoVideoStreamError(no_video_message(self.container, _label(source)))
            self.video = video
            self.video.thread_type = "AUTO"
            self.passthrough = [
                s for s in self.container.streams if s.type in ("audio", "subtitle") and s.index != self.video.index
            ]
            self._first = self._first_frame()
            self.info = self._describe(self._first)
            self.source_info = self.info
            self.extras: ContainerExtras = gather(self.container, self.video, self._early_packets)
        except BaseException:
            self.container.close()
            raise

    def describe(self) -> SourceDescription:
        """The source as a writer needs it (``MediaWriter.for_source``)."""
        try:
            chapters = list(self.container.chapters())
        except (AttributeError, av.error.FFmpegError):
            chapters = []
        return SourceDescription(self.info, list(self.passthrough), dict(self.container.metadata), chapters,
                                 self.extras)

    def apply_fields(self, plan: FieldPlan) -> None:
        """Set the filter ``plan`` calls for (``interlace.plan_fields``), if any."""
        if plan.filters:
            info = self.source_info
            self.set_video_filter(FrameFilter(plan, self.first_frame, info.time_base, info.average_rate,
                                              info.sample_aspect_ratio))

    def read_span(self, span: Span) -> None:
        """Read only ``span`` (module doc): seek to its keyframe; ``frames`` then yields its frames alone.

        Where the demuxer's seek lands after the keyframe (a sparse index), the file is read from its
        start instead, which always decodes.
        """
        self._span = span
        self._early_packets, self._pending_frames, self._pending_pts = [], [], []
        self._flushed = False
        self.timeline = TimestampRepair()
        self.container.seek(span.keyframe, stream=self.video, backward=True)
        self.video.codec_context.flush_buffers()
        demuxed = self.container.demux(self.video)
        first = next(demuxed, None)
        if first is not None and first.pts is not None and first.pts > span.keyframe:
            self.container.close()
            self.container = _open_input(self.source, self._timeout)
            self.video = self.container.streams[self.video.index]
            self.video.thread_type = "AUTO"
            demuxed, first = self.container.demux(self.video), None
        self._demuxed = itertools.chain([first] if first is not None else [], demuxed)

    # -- opening ---------------------------------------------------------------------------------
    def _first_frame(self) -> av.VideoFrame:
        """Decode ahead to the first frame: colour, rotation and size come from it, not from guesses."""
        self._demuxed = self.container.demux(
            self.video, *self.passthrough, *copied_streams(self.container, self.video))
        self._early_packets: list[av.Packet] = []
        self._pending_frames: list[av.VideoFrame] = []
        self._pending_pts: list[int] = []
        for packet in self._safe_demux():
            if packet.stream.index != self.video.index:
                self._early_packets.append(packet)
                continue
            frames = self._decode(packet)
            if frames:
                self._pending_frames.extend(frames)
                return frames[0]
        for frame in self._decode(None):
            self._pending_frames.append(frame)
        if not self._pending_frames:
            if self.source == STDIO and self._read_error is not None:
                # A plain MP4 on a pipe opens (its index is read on the way past the media data) and
                # then fails on the first read, which would need a seek back: say why and what to send.
                raise MediaError(_open_failure(self.source, self._read_error, self._timeout))
            raise MediaError(f"{_label(self.source)}: no decodable video frame")
        return self._pending_frames[0]

    def _describe(self, first: av.VideoFrame) -> VideoInfo:
        stream = self.video
        rate = stream.average_rate or stream.guessed_rate
        count = _presented_frames(stream)
        exact = count is not None
        if count is None and rate:
            seconds = None
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif self.container.duration:
                seconds = self.container.duration / av.time_base
            if seconds:
                count = max(1, round(seconds * float(rate)))
        bits = max(c.bits for c in first.format.components)
        return VideoInfo(
            width=first.width,
            height=first.height,
            time_base=stream.time_base or Fraction(1, 90000),
            average_rate=Fraction(rate) if rate else None,
            frame_count=count,
            frame_count_exact=exact,
            pix_fmt=first.format.name,
            bit_depth=bits,
            color=describe_source(first),
            rotation=int(first.rotation or 0),
            sample_aspect_ratio=stream.sample_aspect_ratio,
            codec=stream.codec_context.name,
            profile=stream.codec_context.profile,
            hdr=read_hdr(first),
            # GIF's one-colour palette transparency (decoded as bgra) is flattened as before, not carried.
            alpha=has_alpha(first.format.name) and stream.codec_context.name != "gif",
        )

    # -- decoding --------------------------------------------------------------------------------
    def _safe_demux(self) -> Iterator[av.Packet]:
        # Pull with next() rather than `yield from`: closing this wrapper (as _first_frame does when
        # it stops early) must not close PyAV's demux generator, which frames() continues.
        while True:
            try:
                packet = next(self._demuxed)
            except StopIteration:
                return
            except av.error.FFmpegError as error:
                # A read error part-way (truncated file, dropped connection) ends the input; the
                # frame count check at the end says whether frames are missing.
                self._read_error = error
                return
            self.timeline.fix(packet)
            yield packet

    def _decode(self, packet: av.Packet | None) -> list[av.VideoFrame]:
        if packet is not None and packet.size == 0:
            # The demuxer's empty end-of-stream packet flushes the decoder just as None does. It must
            # count as the flush: a clip shorter than the decoder's delay meets it in _first_frame,
            # and a second flush afterwards would raise EOFError.
            packet = None
        if packet is None:
            if self._flushed:
                return []  # FFmpeg answers a second flush with EOF
            self._flushed = True
        else:
            if packet.pts is not None and not packet.is_discard and packet.size > 0:
                bisect.insort(self._pending_pts, packet.pts)
        try:
            return list(self.video.decode(packet))
        except av.error.EOFError:
            return []
        except av.error.FFmpegError:
            # Corrupt data (InvalidData, and whatever else a decoder answers a bad packet with): the
            # packet stays in _pending_pts and is repaired when a later frame passes it.
            return []

    def peek(self, count: int) -> list[av.VideoFrame]:
        """Decode ahead until ``count`` frames wait (fewer if the input ends); ``frames`` still yields them."""
        if len(self._pending_frames) < count:
            for packet in self._safe_demux():
                if packet.stream.index != self.video.index:
                    if packet.size > 0:
                        self._early_packets.append(packet)
                    continue
                self._pending_frames.extend(self._decode(packet))
                if len(self._pending_frames) >= count:
                    break
            else:
                self._pending_frames.extend(self._decode(None))
        return self._pending_frames[:count]

    def set_video_filter(self, video_filter: FrameFilter) -> None:
        """Apply a libavfilter graph (deinterlace, IVTC, field split) to decoded frames, before RGB.

        It may change the frame count and timing: ``info`` then describes the filtered frames, while
        the completeness check keeps counting the source's.
        """
        self.video_filter = video_filter
        self.info = video_filter.describe(self.source_info)

    def frames(self, on_packet: Callable[[av.Packet], None]) -> Iterator[DecodedFrame]:
        """Yield every video frame (repairing damaged ones) and pass other packets to ``on_packet``."""
        try:
            yield from self._frames(on_packet)
        except av.error.FFmpegError as error:
            # Whatever FFmpeg still answers while reading is about the input, never an internal error.
            raise MediaError(f"{_label(self.source)}: cannot read the input: {_reason(error, self._timeout)}") from None

    def _frames(self, on_packet: Callable[[av.Packet], None]) -> Iterator[DecodedFrame]:
        rgb_format = "rgb48le" if self.info.bit_depth > 8 else "rgb24"
        if self.info.alpha:
            rgb_format = rgba_format(self.info.bit_depth > 8)
        source = self.source_info
        span = self._span
        window = None
        if span is not None:
            until = None if span.deliver_until is None else span.deliver_until * source.time_base
            window = (span.deliver_from * source.time_base, until)
        finished = False
        last: av.VideoFrame | None = None
        last_pts: int | None = None
        converted: tuple[av.VideoFrame | None, np.ndarray | None] = (None, None)

        def to_rgb(frame: av.VideoFrame, pts: int | None, repaired: bool = False) -> DecodedFrame:
            nonlocal converted
            if converted[0] is not frame:  # a repair repeats the previous frame: convert it once
                converted = (frame, self._to_rgb(frame, rgb_format))
            if self.info.alpha:  # the alpha plane travels beside the picture (media.alpha)
                rgb, alpha = split(converted[1])
                return DecodedFrame(rgb, pts, repaired, alpha=alpha)
            return DecodedFrame(converted[1], pts, repaired)

        def wanted(pts: int | None, time_base: Fraction) -> bool:
            """Whether a frame (after the filter) is in a span's delivery window."""
            if window is None:
                return True
            time = (pts or 0) * time_base
            return window[0] <= time and (window[1] is None or time < window[1])

        def deliver(frame: av.VideoFrame, pts: int | None, repaired: bool = False) -> Iterator[DecodedFrame]:
            if self.video_filter is None:
                if wanted(pts, source.time_base):
                    yield to_rgb(frame, pts, repaired)
                return
            frame.pts = pts  # the graph keeps its own reference: a repair may re-send this frame
            for out in self.video_filter.push(frame):
                if wanted(out.pts, out.time_base):
                    yield to_rgb(out, out.pts)

        def in_span(pts: int | None) -> bool:
            return span is None or (pts is not None and span.pts[0] <= pts <= span.pts[-1])

        def emit(frame: av.VideoFrame) -> Iterator[DecodedFrame]:
            nonlocal last, last_pts, finished
            pts = frame.pts
            if pts is None and last_pts is not None and source.average_rate:
                pts = last_pts + round(1 / (source.average_rate * source.time_base))
            for lost in self._take_lost(pts):
                if in_span(lost):  # (a span's frames before its first are decoded only as references)
                    yield from self._repair(last if last is not None else frame, lost, deliver)
            if span is not None and not in_span(pts):
                if pts is not None and pts > span.pts[-1]:
                    finished = True  # the span is read: stop decoding
                else:
                    last, last_pts = frame, pts  # a frame decoded only as a reference
                return
            if pts is not None and last_pts is not None and pts <= last_pts:
                # Two frames at one time (or going back) cannot be encoded: one tick after the last.
                pts = last_pts + 1
                self.retimed_frames += 1
            if frame.is_corrupt:
                self.damaged_frames += 1
                self.damaged_pts.append(pts)
            last, last_pts = frame, pts
            self.frames_read += 1
            yield from deliver(frame, pts)

        for packet in self._early_packets:
            on_packet(packet)
        self._early_packets = []
        for frame in self._pending_frames:
            yield from emit(frame)
        self._pending_frames = []
        for packet in self._safe_demux():
            if finished:
                break
            if packet.stream.index != self.video.index:
                if packet.size > 0:
                    on_packet(packet)
                continue
            for frame in self._decode(packet if packet.size > 0 else None):
                yield from emit(frame)
        if not finished:
            for frame in self._decode(None):
                yield from emit(frame)
        if last is not None:
            for lost in self._take_lost(None):
                if in_span(lost):
                    yield from self._repair(last, lost, deliver)
        if self.video_filter is not None:
            for out in self.video_filter.flush():
                if wanted(out.pts, out.time_base):
                    yield to_rgb(out, out.pts)
        self._check_complete()

    def _to_rgb(self, frame: av.VideoFrame, rgb_format: str) -> np.ndarray:
        """The frame as RGB at the first frame's size (a resolution change mid-stream is scaled back)."""
        info = self.info
        try:
            if (frame.width, frame.height) != (info.width, info.height):
                frame = frame.reformat(width=info.width, height=info.height, interpolation=_RESIZE_FLAGS)
                self.resized_frames += 1
            return frame_to_rgb(frame, info.color, rgb_format).to_ndarray()
        except (av.error.FFmpegError, ValueError) as error:
            time = "" if frame.pts is None or frame.time_base is None else f" at {float(frame.pts * frame.time_base):.3f} s"
            raise MediaError(f"{_label(self.source)}: cannot convert a {frame.format.name} {frame.width}×{frame.height} "
                             f"frame{time} to RGB: {error}") from None

    @property
    def first_frame(self) -> av.VideoFrame:
        """The first decoded frame (its side data describes the source: HDR10 metadata, …)."""
        return self._first

    def warnings(self) -> list[str]:
        """One line per repair that changed what the input said (shown by the CLI after the run)."""
        notes = []
        jumps = self.timeline.describe()
        if jumps:
            notes.append(jumps)
        if self.resized_frames:
            notes.append(f"the input changes resolution mid-stream: {self.resized_frames} frame(s) scaled "
                         f"(Lanczos) to the first frame's {self.info.width}×{self.info.height}")
        if self.retimed_frames:
            notes.append(f"{self.retimed_frames} frame(s) of the input share a timestamp with the frame before; "
                         "each was moved one time-base tick later")
        return notes

    def _take_lost(self, pts: int | None) -> list[int]:
        """Timestamps of packets that should have become frames before ``pts`` (all, at the end)."""
        if pts is None:
            lost, self._pending_pts = self._pending_pts, []
            return lost
        cut = bisect.bisect_left(self._pending_pts, pts)
        lost = self._pending_pts[:cut]
        # The frame at `pts` itself has arrived: drop its packet (and exact duplicates) from pending.
        end = bisect.bisect_right(self._pending_pts, pts)
        del self._pending_pts[:end]
        return lost

    def _repair(self, frame: av.VideoFrame, pts: int, deliver: Callable) -> Iterator[DecodedFrame]:
        self.damaged_frames += 1
        self.damaged_pts.append(pts)
        self.repaired_frames += 1
        self.frames_read += 1
        yield from deliver(frame, pts, True)

    def _check_complete(self) -> None:
        if self._span is not None:
            if self.frames_read < len(self._span.pts):
                raise TruncatedInputError(f"{_label(self.source)}: {self.frames_read} of the {len(self._span.pts)} "
                                          "frames of a segment are readable")
            return
        expected = self.source_info.frame_count if self.source_info.frame_count_exact else None
        if expected is not None and self.frames_read < expected:
            raise TruncatedInputError(
                f"{_label(self.source)} is truncated: {self.frames_read} of {expected} frames are readable"
            )
        if self._read_error is not None and expected is None:
            reason = _reason(self._read_error, self._timeout)
            raise TruncatedInputError(f"{_label(self.source)}: reading stopped early: {reason}")

    def close(self) -> None:
        self.container.close()


_RESIZE_FLAGS = Interpolation.LANCZOS | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT


def _presented_frames(stream: av.video.stream.VideoStream) -> int | None:
    """Frames the container announces that a player shows: an edit list's hidden frames do not count.

    The MP4/MOV demuxer keeps the samples before an edit list's start (they are needed as references)
    and flags them ``discard`` in the index; the decoder drops their frames.
    """
    count = stream.frames or None
    if count is None:
        return None
    entries = stream.index_entries
    if len(entries) == count:
        count -= sum(1 for entry in entries if entry.is_discard)
    return count or None


def _label(source: str) -> str:
    return "standard input" if source == STDIO else repr(source)


def _open_input(source: str, timeout: float) -> av.container.InputContainer:
    if source == STDIO:
        target = "pipe:0"
    elif is_network_url(source):
        target = source
    else:
        if not os.path.exists(source):
            raise InputNotFoundError(f"input not found: {source!r}")
        if os.path.isdir(source):
            raise MediaError(f"input {source!r} is a directory, not a media file")
        target = source
    try:
        # Old files carry tags in Latin-1 or worse: a wrong byte becomes U+FFFD rather than an error.
        return av.open(target, mode="r", timeout=(timeout, timeout), metadata_errors="replace")
    except av.error.FFmpegError as error:
        raise MediaError(_open_failure(source, error, timeout)) from None


def _reason(error: av.error.FFmpegError, timeout: float) -> str:
    if isinstance(error, av.error.ExitError):
        # PyAV's timeout interrupts FFmpeg, which then reports only "Immediate exit requested".
        return f"no data for {timeout:g} s (--timeout)"
    return getattr(error, "strerror", None) or str(error)


def _open_failure(source: str, error: av.error.FFmpegError, timeout: float) -> str:
    reason = _reason(error, timeout)
    if source == STDIO:
        return (
            f"cannot read standard input as media ({reason}); a plain MP4 keeps its index at the end, which "
            "a pipe cannot seek to: send MPEG-TS, Matroska or fragmented MP4 instead "
            "(e.g. ffmpeg -i in.mp4 -c copy -f mpegts -)"
        )
    if is_network_url(source):
        return f"cannot open stream {source!r}: {reason}"
    return f"{source!r} is not a readable media file ({reason})"
