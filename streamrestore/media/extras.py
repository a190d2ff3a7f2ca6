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
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

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
