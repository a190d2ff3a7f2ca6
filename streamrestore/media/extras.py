"""What a container holds beside the restored video, and how each piece reaches the output.

- **Cover art** (a video stream with the ``attached_pic`` disposition) is never the video to restore:
  its one packet is copied as cover art. MP4 keeps it as an ``attached_pic`` stream; Matroska
  stores a cover as an image *attachment* (that is how its demuxer presents one as a video stream),
  so there it is written back as one, byte for byte, under its file name and MIME type. Other
  muxers would drop it (MOV) or make it an ordinary stream (MPEG-TS, NUT), so they are refused.
- **Attachments** (fonts for ASS subtitles, images) are written back with name, MIME type and bytes.
- **Data streams** are copied packet for packet, except QuickTime timecode (``tmcd``) tracks: a muxer
  refuses to copy those, and makes its own from the video stream's ``timecode`` tag, so the timecode
  travels as that tag (MOV/MP4 write a ``tmcd`` track from it, Matroska a ``TIMECODE`` tag). A MOV/MP4
  chapter text track is not copied either: the chapters are, and the muxer writes its own track.
- **The video track's own labels** (language, title, handler name, default/forced...) are kept;
  tags that describe the old encoding (encoder, bit rate, statistics) are not.

A container that cannot hold one of these stops the run with a message naming one that can, as for
audio and subtitles: nothing is dropped silently. The one exception is a data stream that no muxer
can write at all: it is left out with a warning.

**A range** of the source (``streamrestore job --start/--duration/--frames``) keeps what the whole
file keeps, made true of the range (``in_range``): chapters that overlap it, cut to it and moved to
start at 0; the start timecode becomes the timecode of the range's first frame (the source's start
timecode plus the frames before the range, counted at the video's rate as a player counts them,
drop-frame included); cover art and attachments are kept whole.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import av
import av.error
from av.stream import Disposition

from ..errors import OutputError

_MATROSKA = {"matroska"}  # WebM allows neither attachments nor cover art
# Where to send a user whose output cannot hold a data stream, in order of preference.
_DATA_CONTAINERS = {"mpegts": "MPEG-TS (.ts)", "matroska": "Matroska (.mkv)", "mov": "QuickTime (.mov)",
                    "mp4": "MP4 (.mp4)"}
# Muxers that write an attached picture as cover art (MOV drops it, MPEG-TS and NUT make it a plain stream).
_COVER_FORMATS = {"mp4", "ipod"}
_COVER_MIME = {"mjpeg": "image/jpeg", "png": "image/png", "bmp": "image/bmp", "gif": "image/gif",
               "webp": "image/webp"}
# Tags that describe the source's encoding or its old statistics, true of the input only.
_STALE_TAGS = {"encoder", "vendor_id", "duration", "bps", "number_of_frames", "number_of_bytes",
               "_statistics_writing_app", "_statistics_writing_date_utc", "_statistics_tags"}


# repr=False: a stream's repr reads its container, which is closed by the time an error is shown.
@dataclass(repr=False)
class Cover:
    stream: av.stream.Stream
    payload: bytes | None
    """The picture's bytes (its one packet), when it was demuxed before the first video frame."""


@dataclass(repr=False)
class ContainerExtras:
    covers: list[Cover] = field(default_factory=list)
    attachments: list[av.stream.Stream] = field(default_factory=list)
    data: list[av.stream.Stream] = field(default_factory=list)
    """Data streams copied packet for packet (timecode tracks excluded: see ``timecode``)."""
    timecode: str | None = None
    video_tags: dict[str, str] = field(default_factory=dict)
    video_disposition: int = 0

    @property
    def demuxed(self) -> list[av.stream.Stream]:
        """The streams whose packets the reader must hand to the writer."""
        return [c.stream for c in self.covers] + self.data


def is_cover(stream: av.stream.Stream) -> bool:
    return stream.type == "video" and bool(int(stream.disposition) & int(Disposition.attached_pic))


def main_video(container: av.container.InputContainer) -> av.stream.Stream | None:
    """The first video stream that is real video (not cover art)."""
    return next((s for s in container.streams.video if not is_cover(s)), None)


def _tag(metadata: dict[str, str], name: str) -> str | None:
    """A tag by name in any case (Matroska upper-cases its tags; FFmpeg's muxers match any case)."""
    return next((value for key, value in metadata.items() if key.lower() == name), None)


def is_timecode_track(stream: av.stream.Stream) -> bool:
    return stream.type == "data" and _tag(stream.metadata, "timecode") is not None


def is_chapter_track(container: av.container.InputContainer, stream: av.stream.Stream) -> bool:
    """A QuickTime chapter text track: the muxer writes a new one from the chapters, which are copied."""
    return (stream.type == "data" and getattr(stream, "name", None) == "bin_data"
            and "mov" in container.format.name and bool(_chapters(container)))


def _chapters(container: av.container.InputContainer) -> list:
    try:
        return list(container.chapters())
    except (AttributeError, av.error.FFmpegError):
        return []


def _is_copied_data(container: av.container.InputContainer, stream: av.stream.Stream) -> bool:
    return stream.type == "data" and not is_timecode_track(stream) and not is_chapter_track(container, stream)


def copied_streams(container: av.container.InputContainer, video: av.stream.Stream) -> list[av.stream.Stream]:
    """Cover art and data streams, whose packets are copied (audio and subtitles are the reader's own)."""
    return [s for s in container.streams
            if s.index != video.index and (is_cover(s) or _is_copied_data(container, s))]


def no_video_message(container: av.container.InputContainer, label: str) -> str:
    if any(is_cover(s) for s in container.streams.video):
        return f"{label} has no video stream to restore, only cover art (an attached picture)"
    return f"{label} has no video stream"


def gather(container: av.container.InputContainer, video: av.stream.Stream,
           early_packets: list[av.Packet]) -> ContainerExtras:
    """Sort the container's other streams; ``early_packets`` are those demuxed before the first frame."""
    payloads = {p.stream.index: bytes(p) for p in early_packets if p.size > 0}
    extras = ContainerExtras()
    for stream in container.streams:
        if stream.index == video.index:
            continue
        if is_cover(stream):
            extras.covers.append(Cover(stream, payloads.get(stream.index)))
        elif stream.type == "attachment":
            extras.attachments.append(stream)
        elif _is_copied_data(container, stream):
            extras.data.append(stream)
    tracks = [_tag(s.metadata, "timecode") for s in container.streams if is_timecode_track(s)]
    extras.timecode = (_tag(video.metadata, "timecode") or next(iter(tracks), None)
                       or _tag(container.metadata, "timecode"))
    extras.video_tags = {k: v for k, v in _fresh_tags(video.metadata).items() if k.lower() != "timecode"}
    if extras.timecode:
        extras.video_tags["timecode"] = extras.timecode
    extras.video_disposition = int(video.disposition)
    return extras


def _fresh_tags(metadata: dict[str, str]) -> dict[str, str]:
    tags = {k: v for k, v in metadata.items() if k.lower().split("-")[0] not in _STALE_TAGS}
    if "title" not in tags and "name" in tags:
        tags["title"] = tags["name"]  # MP4/MOV report a track title as "name"; muxers write "title"
    return tags


def label_video(stream: av.stream.Stream, extras: ContainerExtras) -> None:
    """Give the output video stream the source video's tags and dispositions."""
    stream.metadata.update(extras.video_tags)
    stream.disposition = Disposition(extras.video_disposition & ~int(Disposition.attached_pic))


def add_streams(output: av.container.OutputContainer,
                extras: ContainerExtras) -> tuple[dict[int, av.stream.Stream], list[str]]:
    """Add cover art, attachments and data streams.

    Returns the streams that take copied packets (by source index), and warnings for data streams
    no container can hold.
    """
    fmt = output.format.name
    copies: dict[int, av.stream.Stream] = {}
    warnings: list[str] = []
    for cover in extras.covers:
        if fmt in _MATROSKA and cover.payload is not None:
            _attach(output, cover.stream, _cover_name(cover.stream), _cover_mime(cover.stream), cover.payload)
        elif fmt in _COVER_FORMATS:
            copies[cover.stream.index] = _copy(output, cover.stream, "cover art", ".mp4 or .mkv")
        else:
            raise OutputError(
                f"the output container ({fmt}) cannot carry the cover art #{cover.stream.index} "
                f"({_codec(cover.stream)}); choose a container that can (.mp4 or .mkv)"
            )
    for stream in extras.attachments:
        _attach(output, stream, stream.name or f"attachment{stream.index}", stream.mimetype or "application/octet-stream",
                bytes(stream.data))
    for stream in extras.data:
        if _muxer_accepts(fmt, stream):
            copies[stream.index] = _copy(output, stream, "data stream", ".ts")
            continue
        other = next((name for name in _DATA_CONTAINERS if name != fmt and _muxer_accepts(name, stream)), None)
        if other is not None:
            raise OutputError(
                f"the output container ({fmt}) cannot carry the data stream #{stream.index} "
                f"({_codec(stream)}); choose one that can: {_DATA_CONTAINERS[other]}"
            )
        # No muxer FFmpeg has can write it (e.g. an iPhone's "mebx" metadata track, which FFmpeg
        # does not know): refusing would refuse the file for ever, so it is left out, and said so.
        warnings.append(f"data stream #{stream.index} ({_codec(stream)}) cannot be written by any container "
                        "FFmpeg knows, and is left out")
    return copies, warnings


def _muxer_accepts(format_name: str, stream: av.stream.Stream) -> bool:
    """Whether the muxer writes a header with a copy of this data stream (tried in memory).

    Muxers take a codec-less data stream when it is added and refuse it only when the header is
    written, where the failure would look like the video encoder's.
    """
    try:
        with av.open(io.BytesIO(), mode="w", format=format_name) as probe:
            probe.add_stream_from_template(stream, opaque=True)
            probe.start_encoding()
    except (av.error.FFmpegError, ValueError):
        return False
    return True


def _copy(output: av.container.OutputContainer, source: av.stream.Stream, what: str,
          containers: str) -> av.stream.Stream:
    try:
        copy = output.add_stream_from_template(source, opaque=True)
    except (av.error.FFmpegError, ValueError) as error:
        raise OutputError(
            f"the output container ({output.format.name}) cannot carry the {what} #{source.index} "
            f"({_codec(source)}): {error}; choose a container that can ({containers})"
        ) from None
    copy.metadata.update(source.metadata)
    copy.disposition = source.disposition
    return copy


def _attach(output: av.container.OutputContainer, source: av.stream.Stream, name: str, mimetype: str,
            payload: bytes) -> None:
    if output.format.name not in _MATROSKA:
        raise OutputError(
            f"the output container ({output.format.name}) cannot carry the attachment {name!r} "
            f"(stream #{source.index}); choose Matroska (.mkv), which can"
        )
    attached = output.add_attachment(name, mimetype, payload)
    for key, value in source.metadata.items():
        if key not in ("filename", "mimetype"):
            attached.metadata[key] = value


def _codec(stream: av.stream.Stream) -> str:
    context = stream.codec_context
    if context is not None:
        return context.name
    return getattr(stream, "name", None) or stream.type


def _cover_mime(stream: av.stream.Stream) -> str:
    return stream.metadata.get("mimetype") or _COVER_MIME.get(_codec(stream), "application/octet-stream")


def _cover_name(stream: av.stream.Stream) -> str:
    if "filename" in stream.metadata:
        return stream.metadata["filename"]
    extension = {"image/jpeg": "jpg"}.get(_cover_mime(stream), _cover_mime(stream).split("/")[-1])
    return f"cover.{extension}"


# -- a range of the source ---------------------------------------------------------------------------
def in_range(extras: ContainerExtras | None, metadata: dict[str, str], chapters: list[dict[str, Any]],
             start: Fraction, end: Fraction | None, first_frame: Fraction, rate: Fraction | None,
             ) -> tuple[ContainerExtras | None, dict[str, str], list[dict[str, Any]]]:
    """The extras, container tags and chapters of the source's range ``[start, end)``.

    Times are seconds of the source's clock; ``first_frame`` is the time of the source's first video
    frame, which its start timecode names, and ``rate`` the video's average frame rate. Without a rate
    (or with a timecode that cannot be read) the timecode cannot be moved, and is dropped rather than
    left naming the wrong frame.
    """
    chapters = cut_chapters(chapters, start, end)
    if extras is None or extras.timecode is None:
        return extras, metadata, chapters
    moved = None
    if rate:
        # A player counts a timecode on at the nominal rate (24, 24000/1001, ...), not at a measured
        # average that a start offset or a rounded time base puts a little off it.
        nominal = min((Fraction(round(rate)), Fraction(round(rate) * 1000, 1001)), key=lambda r: abs(r - rate))
        moved = timecode_after(extras.timecode, nominal, round((start - first_frame) * nominal))
    tags = {k: v for k, v in extras.video_tags.items() if k.lower() != "timecode"}
    # The container's own TIMECODE tag (how ffmpeg stores -timecode in Matroska) names the same frame.
    metadata = {k: v for k, v in metadata.items() if k.lower() != "timecode" or moved is not None}
    for key in metadata:
        if key.lower() == "timecode":
            metadata[key] = moved
    if moved is not None:
        tags["timecode"] = moved
    return replace(extras, timecode=moved, video_tags=tags), metadata, chapters


def cut_chapters(chapters: list[dict[str, Any]], start: Fraction, end: Fraction | None) -> list[dict[str, Any]]:
    """The chapters that overlap ``[start, end)``, cut to it and moved to start at 0.

    A chapter that starts before the range starts at 0; one that ends after it ends at the range's end.
    """
    kept = []
    for chapter in chapters:
        unit = Fraction(chapter["time_base"])
        begin, finish = chapter["start"] * unit, chapter["end"] * unit
        if finish <= start or (end is not None and begin >= end):
            continue
        if end is not None:
            finish = min(finish, end)
        kept.append({**chapter, "start": round((max(begin, start) - start) / unit),
                     "end": round((finish - start) / unit)})
    return kept


_TIMECODE = re.compile(r"^(\d+):(\d+):(\d+)([:;.,])(\d+)$")


def timecode_after(timecode: str, rate: Fraction, frames: int) -> str | None:
    """The SMPTE timecode ``frames`` frames after ``timecode`` at ``rate`` (None: not a timecode).

    Counted as FFmpeg counts (``av_timecode``): at the rate rounded to whole frames per second, and a
    timecode written with ``;``/``.``/``,`` before the frames is drop-frame (frame numbers 0 and 1
    skipped at each minute but every tenth, per 30 fps), which needs a multiple of 30 fps. The hours
    wrap at 24.
    """
    found = _TIMECODE.match(timecode.strip())
    fps = round(rate)
    if found is None or fps <= 0:
        return None
    hours, minutes, seconds, separator, count = int(found[1]), int(found[2]), int(found[3]), found[4], int(found[5])
    drop = separator != ":"
    if drop and fps % 30:
        return None
    skipped = fps // 30 * 2 if drop else 0  # frame numbers skipped per minute
    elapsed_minutes = hours * 60 + minutes
    number = (elapsed_minutes * 60 + seconds) * fps + count - skipped * (elapsed_minutes - elapsed_minutes // 10)
    number = (number + frames) % (fps * 86400 - skipped * (1440 - 144))  # frames in a day
    if drop:  # back from a frame count to the numbers on the clock
        per_ten = fps * 600 - skipped * 9
        tens, rest = divmod(number, per_ten)
        number += 9 * skipped * tens + skipped * max(0, (rest - skipped) // (per_ten // 10))
    clock = (number // (fps * 3600), number // (fps * 60) % 60, number // fps % 60)
    return "{:02d}:{:02d}:{:02d}".format(*clock) + f"{separator}{number % fps:02d}"
