"""Splits a file's video into segments at keyframes, from its packet index alone (nothing decoded).

Every video packet is one frame (the reader's policy), so the sorted packet timestamps are the
frames in presentation order. A segment is a run of whole GOPs of about ``segment_seconds``; it
starts at a keyframe, owns the frames with ``start_pts <= pts < end_pts`` and is decoded from the
last keyframe at or before its first *context* frame: temporal stages see ``context_before``
frames before the segment and ``context_after`` after it (decoded and fed, never written), so
their output equals an unsegmented run's.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass
from fractions import Fraction

import av
import av.error

from ..errors import ConfigError, MediaError
from ..media.extras import main_video, no_video_message
from . import DEFAULT_SEGMENT_SECONDS


@dataclass(frozen=True)
class SourceIndex:
    """The video packet index of a file: presentation timestamps, keyframes and the time base."""

    pts: tuple[int, ...]
    """Every frame's pts, sorted (presentation order)."""
    keyframes: tuple[int, ...]
    """Presentation timestamps of the keyframes, sorted."""
    time_base: Fraction

    def seconds(self, pts: int) -> float:
        return float((pts - self.pts[0]) * self.time_base)


@dataclass(frozen=True)
class Segment:
    index: int
    first: int
    """Index (presentation order) of the segment's first frame."""
    count: int
    start_pts: int
    end_pts: int | None
    """Exclusive; None for the last segment of the file."""
    context_first: int
    """First frame fed to the stages (``first`` minus the warm-up before, clamped at 0)."""
    context_last: int
    """Last frame fed to the stages (inclusive)."""
    decode_from: int
    """pts of the keyframe to seek to."""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Segment:
        return cls(**data)


def index_source(path: str) -> SourceIndex:
    """Read the video packet index (demux only: seconds for an hour of video)."""
    try:
        container = av.open(path)
    except av.error.FFmpegError as error:
        raise MediaError(f"{path!r} is not a readable media file ({getattr(error, 'strerror', error)})") from None
    with container:
        video = main_video(container)  # never the cover art, which may come first
        if video is None:
            from ..errors import NoVideoStreamError

            raise NoVideoStreamError(no_video_message(container, repr(path)))
        stamps: list[int] = []
        keys: list[int] = []
        try:
            for packet in container.demux(video):
                if packet.size == 0:
                    continue
                if packet.pts is None:
                    raise MediaError(f"{path!r}: video packets without timestamps cannot be segmented; "
                                     "use `streamrestore run` (one stream) for this file")
                stamps.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
        except av.error.FFmpegError:
            pass  # a damaged tail: the reader's truncation check reports it where it matters
        time_base = video.time_base
    if not stamps:
        raise MediaError(f"{path!r}: no video packets")
    stamps.sort()
    if len(set(stamps)) != len(stamps):
        raise MediaError(f"{path!r}: two video frames share a timestamp; use `streamrestore run` for this file")
    keys = sorted(set(keys)) or [stamps[0]]
    if keys[0] != stamps[0]:
        keys.insert(0, stamps[0])  # decoding from the file's start always works
    return SourceIndex(tuple(stamps), tuple(keys), time_base)


def frame_range(index: SourceIndex, start: float | None = None, duration: float | None = None,
                frames: tuple[int, int] | None = None) -> tuple[int, int]:
    """``[first, end)`` frame indices for ``--start/--duration`` (seconds from the first frame) or ``--frames A:B``."""
    total = len(index.pts)
    if frames is not None:
        first, end = frames
        if not 0 <= first < end:
            raise ConfigError(f"--frames {first}:{end} needs 0 <= A < B")
        if first >= total:
            raise ConfigError(f"--frames {first}:{end} starts after the last frame ({total} frames)")
        return first, min(end, total)
    begin = 0.0 if start is None else start
    if not begin >= 0 or (duration is not None and not duration > 0):  # nan too
        raise ConfigError("--start must be >= 0 and --duration > 0")
    times = [index.seconds(p) for p in index.pts]
    first = bisect.bisect_left(times, begin - 1e-9)
    end = total if duration is None else bisect.bisect_left(times, begin + duration - 1e-9)
    if first >= total or end <= first:
        raise ConfigError(f"--start {begin:g} is past the end of the video ({times[-1]:.3f} s)")
    return first, end


def make_plan(index: SourceIndex, segment_seconds: float = DEFAULT_SEGMENT_SECONDS, context_before: int = 0,
              context_after: int = 0, span: tuple[int, int] | None = None) -> list[Segment]:
    """Segments of whole GOPs, each at least ``segment_seconds`` long (the last may be shorter)."""
    if not segment_seconds > 0:  # nan too: every comparison with it is false, so it would plan one segment
        raise ConfigError(f"--segment-seconds must be > 0, got {segment_seconds:g}")
    total = len(index.pts)
    first, end = span if span is not None else (0, total)
    rank = {pts: i for i, pts in enumerate(index.pts)}
    cuts = [first] + [rank[k] for k in index.keyframes if first < rank[k] < end]
    starts = [cuts[0]]
    for cut in cuts[1:]:
        if index.seconds(index.pts[cut]) - index.seconds(index.pts[starts[-1]]) >= segment_seconds - 1e-9:
            starts.append(cut)
    segments = []
    for number, begin in enumerate(starts):
        stop = starts[number + 1] if number + 1 < len(starts) else end
        context_first = max(0, begin - context_before)
        context_last = min(total - 1, stop - 1 + context_after)
        first_needed = index.pts[context_first]
        key = index.keyframes[bisect.bisect_right(index.keyframes, first_needed) - 1]
        segments.append(Segment(
            index=number, first=begin, count=stop - begin, start_pts=index.pts[begin],
            end_pts=index.pts[stop] if stop < total else None, context_first=context_first,
            context_last=context_last, decode_from=key,
        ))
    return segments
