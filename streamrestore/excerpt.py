"""Restore a time range of a video: ``restore_range(prepared, src, dst, start, duration)``.

The range is cut first into a lossless intermediate (FFV1 in Matroska, the source's pixel format and colour
tags, timestamps from 0; audio cut to the same range as AAC), decoding from the keyframe before ``start``,
and that excerpt then goes through ``PreparedChain.restore_video`` unchanged: one pipeline, so the frames
of a range restore are the frames a whole-file run gives for that range (up to the chain's temporal context
at the edges of the range). Used by the web demo's preview; the archive jobs may replace the intermediate
with a seek in the reader.

Times are seconds from the video stream's first frame. Frames whose time lies in [start, start + duration)
are kept; audio is cut to the audio frame (about 20 ms) nearest each edge.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av

from .errors import ConfigError, MediaError
from .restore import OutputSettings, PreparedChain, RestoreReport

AUDIO_CODEC = "aac"


@dataclass(frozen=True)
class Excerpt:
    path: Path
    frames: int
    start: float  # the first kept frame's time, seconds from the stream's first frame
    duration: float


def cut_excerpt(src: str | Path, dst: str | Path, start: float, duration: float) -> Excerpt:
    """Write frames [start, start + duration) of ``src``'s first video stream, and its first audio stream cut to
    the same range, into ``dst`` (Matroska: FFV1 video, lossless, source pixel format and colour tags)."""
    if start < 0 or duration <= 0:
        raise ConfigError(f"a range needs start ≥ 0 and duration > 0, got {start:g} and {duration:g}")
    try:
        source = av.open(str(src))
    except av.error.FFmpegError as error:
        raise MediaError(f"{Path(src).name}: cannot open: {error}") from None
    try:
        if not source.streams.video:
            raise MediaError(f"{Path(src).name} has no video stream")
        video = source.streams.video[0]
        audio = source.streams.audio[0] if source.streams.audio else None
        tb = video.time_base
        first = _first_pts(source, video)
        begin, end = first + round(Fraction(start).limit_denominator(10**6) / tb), \
            first + round(Fraction(start + duration).limit_denominator(10**6) / tb)  # fmt: skip
        source.seek(begin, stream=video, backward=True, any_frame=False)
        with av.open(str(dst), "w", format="matroska") as out:
            vout = out.add_stream("ffv1", rate=video.average_rate or 24)
            context = video.codec_context
            vout.width, vout.height, vout.pix_fmt = context.width, context.height, context.pix_fmt
            vout.time_base = tb
            for name in ("color_primaries", "color_range", "color_trc", "colorspace", "field_order",
                         "sample_aspect_ratio"):  # fmt: skip
                value = getattr(context, name, None)
                if value is not None:
                    try:
                        setattr(vout.codec_context, name, value)
                    except (AttributeError, TypeError, ValueError):
                        pass  # not settable in this PyAV: the reader's idet and defaults decide
            aout = resampler = None
            if audio is not None:
                aout = out.add_stream(AUDIO_CODEC, rate=audio.codec_context.sample_rate or 48000)
                aout.layout = audio.codec_context.layout.name if audio.codec_context.layout else "stereo"
                resampler = av.AudioResampler(format="fltp", layout=aout.layout, rate=aout.rate, frame_size=1024)
            kept, first_kept = 0, None
            streams = [video] + ([audio] if audio is not None else [])
            for packet in source.demux(streams):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    continue  # a damaged packet: the restore's reader reports damage in whole-file runs
                for frame in frames:
                    if frame.pts is None:
                        continue
                    if packet.stream is video:
                        if frame.pts < begin:
                            continue
                        if frame.pts >= end:
                            break
                        first_kept = frame.pts if first_kept is None else first_kept
                        frame.pts, frame.time_base = frame.pts - begin, tb
                        frame.pict_type = av.video.frame.PictureType.NONE
                        out.mux(vout.encode(frame))
                        kept += 1
                    else:
                        t = frame.pts * frame.time_base - first * tb
                        if t < Fraction(start).limit_denominator(10**6) or t >= start + duration:
                            continue
                        frame.pts = None
                        for chunk in resampler.resample(frame):
                            out.mux(aout.encode(chunk))
                if packet.stream is video and packet.pts is not None and packet.pts >= end + 16 * (
                        packet.duration or 1):  # fmt: skip
                    break  # past the range (with a margin for reordered frames)
            out.mux(vout.encode(None))
            if aout is not None:
                for chunk in resampler.resample(None):
                    out.mux(aout.encode(chunk))
                out.mux(aout.encode(None))
    except av.error.FFmpegError as error:
        raise MediaError(f"{Path(src).name}: cannot cut {start:g}–{start + duration:g} s: {error}") from None
    finally:
        source.close()
    if not kept:
        raise MediaError(f"{Path(src).name} has no frame between {start:g} and {start + duration:g} s")
    return Excerpt(Path(dst), kept, float((first_kept - first) * tb), duration)


def _first_pts(source: av.container.InputContainer, video: av.video.stream.VideoStream) -> int:
    """The first decoded frame's timestamp (the stream's start time when the container knows it)."""
    if video.start_time is not None:
        return video.start_time
    for frame in source.decode(video):
        if frame.pts is not None:
            source.seek(0)
            return frame.pts
    raise MediaError("the video stream has no frame")


def restore_range(prepared: PreparedChain, src: str | Path, dst: str | Path, start: float, duration: float,
                  output: OutputSettings | None = None, on_start: Callable = lambda reader: None,
                  on_frames: Callable[[int], None] = lambda count: None) -> RestoreReport:  # fmt: skip
    """Restore frames [start, start + duration) of ``src`` into ``dst`` with a prepared chain (module docstring)."""
    folder = Path(tempfile.mkdtemp(prefix="streamrestore-range-", dir=Path(dst).parent))
    try:
        excerpt = cut_excerpt(src, folder / "excerpt.mkv", start, duration)
        return prepared.restore_video(str(excerpt.path), str(dst), output, on_start, on_frames)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
