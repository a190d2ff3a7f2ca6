"""Joins the pieces into the output by remuxing packets (no re-encode) and copies the rest of the source once.

The output is written by the single-stream writer, built the way ``run`` builds it
(``MediaWriter.for_source`` with the reader's ``SourceDescription``): the same audio, subtitle, cover-art
and data streams, attachments, chapters, timecode, tags, languages and dispositions, decided in one
place (``media.writer``, ``media.extras``). Only the video stream differs: copied from the first
piece instead of opened as an encoder.

Video packets keep their pts; their DTS are rebuilt for the whole stream as one continuous encoder
would have written them (``dts[i] = pts_sorted[i - delay]``): each piece's encoder started with its
own negative DTS, which would otherwise run backwards at every join when the codec reorders frames
(B-frames). Audio, subtitle, cover-art and data packets come once, untouched, from the source; video
and copied packets are interleaved by time as they are written, so memory stays flat however long
the file. A range (``Window``) keeps what overlaps it, moved to start at 0 (``media.extras.in_range``:
chapters cut to it, the timecode of its first frame).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator

import av
import av.error

from ..errors import MediaError
from ..media.extras import in_range
from ..media.interlace import FIELD_PROGRESSIVE
from ..media.reader import MediaReader, SourceDescription
from ..media.writer import FIELD_ORDERS, EncodeSettings, MediaWriter, OutputVideo, describe_video_stream


@dataclass(frozen=True)
class Window:
    """A range cut: source times ``[start, end)`` in seconds, moved to start at 0 in the output."""

    start: Fraction
    end: Fraction | None


def join_pieces(source: str, pieces: list[str], frame_pts: list[list[int]], target: str,
                container_format: str | None, container_options: dict[str, str] | None = None,
                window: Window | None = None, video: OutputVideo | None = None) -> int:
    """Write ``target`` from ``pieces`` (in order) and the rest of the source; returns frames written.

    ``frame_pts`` are each piece's frames' timestamps, in presentation order: the pieces'
    own timestamps are mapped back onto them by rank, because a muxer may shift a piece's
    timestamps (NUT moves them so that a B-frame encoder's first, negative DTS becomes 0).
    ``video`` is the stream the pieces were encoded as (``restore.output_video``: its time base, field
    order and rate, which a field filter changes); None: the source's, as the pieces' size and format.
    """
    reader = MediaReader(source)
    try:
        stamps = [_source_pts(piece, expected) for piece, expected in zip(pieces, frame_pts, strict=True)]
        described = reader.describe()
        if window is not None:
            described = _in_window(described, reader, window)
        with av.open(pieces[0]) as first:
            template = first.streams.video[0]
            if video is None:
                video = OutputVideo(template.codec_context.width, template.codec_context.height,
                                    template.codec_context.pix_fmt or reader.info.pix_fmt, reader.info.color,
                                    reader.info)
            time_base = video.source.time_base
            writer = _JoinWriter.for_source(target, container_format, video, EncodeSettings(), described,
                                            container_options, template=template)
        try:
            written = _mux_all(writer, described, reader.source, pieces, stamps, time_base, window)
            writer.close()
        except BaseException:
            writer.abort()
            raise
    finally:
        reader.close()
    return written


def check_output(source: str, target: str, container_format: str | None, video: OutputVideo,
                 settings: EncodeSettings, container_options: dict[str, str] | None = None) -> None:
    """Open ``target`` as ``run`` would (the pieces' encoder, the source's streams and extras), then remove it.

    An output that cannot hold a stream or an extra of the source (ASS subtitles or fonts in MP4,
    cover art in MOV...) is refused before any segment is restored, with ``run``'s message, rather
    than at the join, hours later.
    """
    reader = MediaReader(source)
    try:
        MediaWriter.for_source(target, container_format, video, settings, reader.describe(), container_options).abort()
    finally:
        reader.close()
        try:
            os.unlink(target)
        except FileNotFoundError:
            pass


def _in_window(described: SourceDescription, reader: MediaReader, window: Window) -> SourceDescription:
    """What the range keeps of the container: chapters cut to it, the timecode of its first frame."""
    first = reader.first_frame
    start_time = first.pts * first.time_base if first.pts is not None and first.time_base else window.start
    extras, metadata, chapters = in_range(described.extras, described.metadata, described.chapters, window.start,
                                          window.end, start_time, reader.source_info.average_rate)
    return dataclasses.replace(described, extras=extras, metadata=metadata, chapters=chapters)


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


def _mux_all(writer: _JoinWriter, described: SourceDescription, source: str, pieces: list[str],
             stamps: list[list[int]], time_base: Fraction, window: Window | None) -> int:
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

    merged = _merge(video(), _copied(described, source, window))
    frames = 0
    for is_video, packet in merged:
        if is_video:
            writer.mux_video(packet)
            frames += 1
        else:
            writer.copy_packet(packet)
    return frames


def _copied(described: SourceDescription, source: str,
            window: Window | None) -> Iterator[tuple[Fraction, av.Packet]]:
    """The source's packets that the writer copies (audio, subtitles, cover art, data), in file order.

    In a range they are cut to the window and moved to start at 0, except cover art: its one picture
    belongs to the whole file, and is kept at time 0.
    """
    covers = {c.stream.index for c in described.extras.covers} if described.extras is not None else set()
    indices = [s.index for s in described.copy_streams]
    if described.extras is not None:
        indices += [s.index for s in described.extras.demuxed]
    if not indices:
        return
    with av.open(source) as container:
        wanted = [container.streams[i] for i in indices]
        try:
            for packet in container.demux(*wanted):
                if not packet.size:
                    continue
                time = (packet.pts if packet.pts is not None else packet.dts or 0) * packet.time_base
                if window is not None:
                    if packet.stream.index in covers:
                        packet.pts = packet.dts = 0
                        time = Fraction(0)
                    elif time < window.start or (window.end is not None and time >= window.end):
                        continue
                    else:
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


class _JoinWriter(MediaWriter):
    """The single-stream writer with the video stream copied from a piece instead of encoded."""

    def __init__(self, *args: Any, template: av.stream.Stream, **kwargs: Any) -> None:
        self._template = template
        super().__init__(*args, **kwargs)

    def _add_video(self, video: OutputVideo, settings: EncodeSettings) -> av.video.stream.VideoStream:
        source = video.source
        stream = self.container.add_stream_from_template(self._template)
        stream.time_base = source.time_base
        describe_video_stream(stream, video)
        # As the encoder's stream says them: the frame rate (of woven frames: half the field rate; MOV/MP4
        # also count a timecode track in it) and the field order (interlaced output, ``--interlaced keep``).
        if video.frame_rate:
            stream.codec_context.framerate = video.frame_rate
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
