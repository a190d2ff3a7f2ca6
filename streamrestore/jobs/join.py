"""Joins the pieces into the output by remuxing packets (no re-encode) and copies the source's other streams.

Video packets keep their pts; their DTS are rebuilt for the whole stream as one continuous encoder
would have written them (``dts[i] = pts_sorted[i - delay]``): each piece's encoder started with its
own negative DTS, which would otherwise run backwards at every join when the codec reorders frames
(B-frames). Audio and subtitle packets come once, untouched, from the source; video and copied
packets are interleaved by time as they are written, so memory stays flat however long the file.
Colour description, rotation and sample aspect ratio are set from the source, as the single-stream
writer does.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator

import av
import av.error

from ..errors import MediaError
from ..media.reader import MediaReader
from ..media.interlace import FIELD_PROGRESSIVE
from ..media.writer import FIELD_ORDERS, EncodeSettings, MediaWriter, OutputVideo, describe_video_stream


@dataclass(frozen=True)
class Window:
    """A range cut: source times ``[start, end)`` in seconds, moved to start at 0 in the output."""

    start: Fraction
    end: Fraction | None


def join_pieces(source: str, pieces: list[str], frame_pts: list[list[int]], target: str,
                container_format: str | None, container_options: dict[str, str] | None = None,
                window: Window | None = None, video: OutputVideo | None = None) -> int:
    """Write ``target`` from ``pieces`` (in order) and the source's audio/subtitles; returns frames written.

    ``frame_pts`` are each piece's frames' timestamps, in presentation order: the pieces'
    own timestamps are mapped back onto them by rank, because a muxer may shift a piece's
    timestamps (NUT moves them so that a B-frame encoder's first, negative DTS becomes 0).
    ``video`` is the stream the pieces were encoded as (``restore.output_video``: its time base, field
    order and rate, which a field filter changes); None: the source's, as the pieces' size and format.
    """
    reader = MediaReader(source)
    try:
        stamps = [_source_pts(piece, expected) for piece, expected in zip(pieces, frame_pts, strict=True)]
        with av.open(pieces[0]) as first:
            template = first.streams.video[0]
            if video is None:
                video = OutputVideo(template.codec_context.width, template.codec_context.height,
                                    template.codec_context.pix_fmt or reader.info.pix_fmt, reader.info.color,
                                    reader.info)
            time_base = video.source.time_base
            chapters = [] if window is not None else _chapters(reader)
            writer = _JoinWriter(template, target, container_format, video, reader.passthrough,
                                 dict(reader.container.metadata), chapters, container_options)
        try:
            written = _mux_all(writer, reader, pieces, stamps, time_base, window)
            writer.close()
        except BaseException:
            writer.abort()
            raise
    finally:
        reader.close()
    return written


def _source_pts(piece: str, expected: list[int]) -> list[int]:
    """The source pts of each of the piece's packets, in decode order (the k-th earliest is the k-th frame)."""
    with av.open(piece) as container:
        own = [p.pts for p in container.demux(container.streams.video[0]) if p.size]
    if len(own) != len(expected) or len(set(own)) != len(own):
        raise MediaError(f"piece {piece!r} holds {len(own)} frames, its segment {len(expected)}; restart the job")
    rank = {pts: i for i, pts in enumerate(sorted(own))}
    return [expected[rank[pts]] for pts in own]


def _delay(stamps: list[int], ordered: list[int]) -> int:
    """Frames the encoder held back: the smallest shift that keeps every DTS at or below its pts."""
    rank = {pts: i for i, pts in enumerate(ordered)}
    return max(0, max(i - rank[pts] for i, pts in enumerate(stamps)))


def _mux_all(writer: _JoinWriter, reader: MediaReader, pieces: list[str], stamps: list[list[int]],
             time_base: Fraction, window: Window | None) -> int:
    flat = [pts for piece in stamps for pts in piece]
    ordered = sorted(flat)
    if len(set(ordered)) != len(ordered):
        raise MediaError("pieces overlap (two frames with one timestamp); restart the job")
    delay = _delay(flat, ordered)
    step = ordered[1] - ordered[0] if len(ordered) > 1 else 1
    shift = round(window.start / time_base) if window is not None else 0

    def dts(i: int) -> int:
        return ordered[i - delay] if i >= delay else ordered[0] - (delay - i) * step

    def video() -> Iterator[tuple[Fraction, av.Packet]]:
        i = 0
        for piece, piece_pts in zip(pieces, stamps):
            with av.open(piece) as container:
                stream = container.streams.video[0]
                packets = (p for p in container.demux(stream) if p.size)
                for packet, pts in zip(packets, piece_pts):
                    duration = packet.duration
                    packet.time_base = time_base
                    packet.pts = pts - shift
                    packet.dts = dts(i) - shift
                    if duration:
                        packet.duration = max(1, round(duration * stream.time_base / time_base))
                    i += 1
                    yield packet.dts * time_base, packet

    merged = _merge(video(), _copied(reader, window))
    frames = 0
    for is_video, packet in merged:
        if is_video:
            writer.mux_video(packet)
            frames += 1
        else:
            writer.copy_packet(packet)
    return frames


def _copied(reader: MediaReader, window: Window | None) -> Iterator[tuple[Fraction, av.Packet]]:
    """The source's audio/subtitle packets in file order (cut to ``window`` and moved to start at 0)."""
    if not reader.passthrough:
        return
    with av.open(reader.source) as container:
        wanted = [container.streams[s.index] for s in reader.passthrough]
        try:
            for packet in container.demux(*wanted):
                if not packet.size:
                    continue
                time = (packet.pts if packet.pts is not None else packet.dts or 0) * packet.time_base
                if window is not None:
                    if time < window.start or (window.end is not None and time >= window.end):
                        continue
                    offset = round(window.start / packet.time_base)
                    packet.pts = None if packet.pts is None else packet.pts - offset
                    packet.dts = None if packet.dts is None else packet.dts - offset
                    time -= window.start
                yield time, packet  # same stream index as the reader's: the key the writer copies by
        except av.error.FFmpegError:
            return  # a damaged tail: what was readable is copied, as in the single-stream path


def _merge(video: Iterator[tuple[Fraction, av.Packet]],
           copied: Iterator[tuple[Fraction, av.Packet]]) -> Iterator[tuple[bool, av.Packet]]:
    """Both packet sequences, each in its own order, interleaved by time (the muxer buffers less)."""
    v, c = next(video, None), next(copied, None)
    while v is not None or c is not None:
        if c is None or (v is not None and v[0] <= c[0]):
            yield True, v[1]
            v = next(video, None)
        else:
            yield False, c[1]
            c = next(copied, None)


def _chapters(reader: MediaReader) -> list[Any]:
    try:
        return list(reader.container.chapters())
    except (AttributeError, av.error.FFmpegError):
        return []


class _JoinWriter(MediaWriter):
    """The single-stream writer with the video stream copied from a piece instead of encoded."""

    def __init__(self, template: av.stream.Stream, *args: Any) -> None:
        self._template = template
        super().__init__(*args[:3], EncodeSettings(), *args[3:])

    def _add_video(self, video: OutputVideo, settings: EncodeSettings) -> av.video.stream.VideoStream:
        source = video.source
        stream = self.container.add_stream_from_template(self._template)
        stream.time_base = source.time_base
        describe_video_stream(stream, video)
        # As the encoder's stream says them: the frame rate (of woven frames: half the field rate) and
        # the field order (interlaced output, ``--interlaced keep``).
        rate = source.average_rate / 2 if video.woven and source.average_rate else source.average_rate
        if rate:
            stream.codec_context.framerate = rate
        stream.codec_context.field_order = FIELD_ORDERS.get(video.field_order, FIELD_PROGRESSIVE)
        self._output = video
        self._time_base = source.time_base
        return stream

    def mux_video(self, packet: av.Packet) -> None:
        packet.stream = self._video
        self._mux([packet])

    def close(self) -> None:
        with self._lock:
            try:
                self.container.close()
            except av.error.FFmpegError as error:
                from ..media.writer import _output_error

                raise _output_error(self.container.name, error) from None
