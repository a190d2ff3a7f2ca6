"""Synthesises small test clips with PyAV and reads media back the way a player or ffprobe would.

Pictures are real photographs (scikit-image's bundled ``astronaut``, ``chelsea``, ``coffee``) panned a
few pixels per frame, so consecutive frames differ and colour/scaling errors show. ``make_clip`` writes
any codec, pixel format, colour tags, timestamps (VFR included), rotation, audio and subtitle streams,
chapters, container metadata and deliberately garbled packets; the readers below (``video_frames``,
``packets``, ``player_rgb``, ``planes``) are what the tests compare inputs and outputs with.

Shared by the media test modules: keep these signatures stable.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import av
import cv2
import numpy as np
from av.subtitles.subtitle import SubtitleSet
from av.video.reformatter import ColorRange, Colorspace, Interpolation

PHOTOS = ("astronaut", "chelsea", "coffee")

# FFmpeg's AVColorSpace values that matter here (frame.colorspace reads back as these ints).
MATRIX_BT709, MATRIX_UNSPECIFIED, MATRIX_SMPTE170M = 1, 2, 6
RANGE_UNSPECIFIED, RANGE_LIMITED, RANGE_FULL = 0, 1, 2

_ENCODE_FLAGS = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INP
_DECODE_FLAGS = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
_SWS_MATRIX = {1: Colorspace.ITU709, 5: Colorspace.ITU601, 6: Colorspace.ITU601, 7: Colorspace.SMPTE240M,
               9: Colorspace.BT2020, 10: Colorspace.BT2020}


@dataclass(frozen=True)
class Colour:
    """A colour description as FFmpeg enum values (matrix, range, primaries, transfer)."""

    matrix: int
    range: int
    primaries: int
    transfer: int

    @property
    def swscale_matrix(self) -> Colorspace:
        return _SWS_MATRIX.get(self.matrix, Colorspace.ITU601)

    @property
    def swscale_range(self) -> ColorRange:
        return ColorRange.JPEG if self.range == RANGE_FULL else ColorRange.MPEG


BT601 = Colour(MATRIX_SMPTE170M, RANGE_LIMITED, 6, 6)
BT709 = Colour(MATRIX_BT709, RANGE_LIMITED, 1, 1)


# -- pictures --------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _photo_float(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)().astype(np.float32) / 255.0


def photo(name: str = "astronaut", width: int = 320, height: int = 240, shift: int = 0,
          dtype: type = np.uint8) -> np.ndarray:
    """An H×W×3 RGB crop of a scikit-image photo, panned ``shift`` pixels right and down.

    The photo is scaled (bicubic, in float) to cover the frame plus a margin for panning, so a
    ``uint16`` picture has genuine detail below the 8-bit step rather than 8-bit values × 257.
    """
    source = _photo_float(name)
    margin = max(shift, 0) + 16
    h, w = source.shape[:2]
    zoom = max((width + margin) / w, (height + margin) / h)
    size = (max(width + margin, round(w * zoom)), max(height + margin, round(h * zoom)))
    big = cv2.resize(source, size, interpolation=cv2.INTER_CUBIC)
    top = (size[1] - height - margin) // 2 + shift
    left = (size[0] - width - margin) // 2 + shift
    crop = np.clip(big[top:top + height, left:left + width], 0.0, 1.0)
    peak = np.iinfo(dtype).max
    return np.ascontiguousarray(np.rint(crop * peak).astype(dtype))


def panned_frames(count: int, width: int = 320, height: int = 240, name: str = "astronaut", step: int = 3,
                  dtype: type = np.uint8) -> list[np.ndarray]:
    """``count`` pictures of one photo, each panned ``step`` pixels further than the last."""
    return [photo(name, width, height, i * step, dtype) for i in range(count)]


def camera_pan(count: int, width: int, height: int, name: str = "astronaut", step: tuple[float, float] = (1.5, 0.75)
               ) -> list[np.ndarray]:  # fmt: skip
    """``count`` frames of a camera gliding over a photo by a fraction of a pixel more each frame (``step``, x and y).

    Every frame starts off the pixel grid, so each is resampled as much as the others (a first frame left sharp
    would differ from all its neighbours by the interpolation's blur, as no real camera's does)."""
    margin = int(np.ceil(count * max(step))) + 8
    scene = photo(name, width + margin, height + margin).astype(np.float32)
    frames = []
    for index in range(count):
        move = np.float32([[1, 0, (index + 0.4) * step[0]], [0, 1, (index + 0.4) * step[1]]])
        moved = cv2.warpAffine(scene, move, (width + margin, height + margin), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
        frames.append(np.clip(np.rint(moved[:height, :width]), 0, 255).astype(np.uint8))
    return frames


# -- streams to add --------------------------------------------------------------------------------
@dataclass(frozen=True)
class AudioTrack:
    """An audio stream for ``make_clip``: a tone from ``start`` seconds for ``seconds``."""

    codec: str = "aac"
    language: str | None = None
    title: str | None = None
    sample_rate: int = 48000
    seconds: float = 1.0
    start: float = 0.0
    frequency: float = 440.0


@dataclass(frozen=True)
class SubtitleTrack:
    """A text subtitle stream for ``make_clip``: ``cues`` are (start s, end s, text).

    ``codec`` is an FFmpeg subtitle encoder: ``subrip`` or ``ass`` (Matroska), ``mov_text`` (MP4).
    """

    codec: str = "subrip"
    cues: tuple[tuple[float, float, str], ...] = ((0.1, 0.4, "Hello"), (0.5, 0.8, "World"))
    language: str | None = None
    title: str | None = None


ASS_HEADER = (
    "[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n"
    "[V4+ Styles]\nFormat: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, "
    "Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, "
    "Alignment, MarginL, MarginR, MarginV, Encoding\n"
    "Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0\n\n"
    "[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
)


@dataclass
class Clip:
    """What ``make_clip`` wrote: the file, the RGB pictures it was made from, and the video timestamps."""

    path: str
    pictures: list[np.ndarray]
    pts: list[int]
    time_base: Fraction
    colour: Colour
    garbled: list[int] = field(default_factory=list)
    """Indices (decode order) of the video packets that were damaged on purpose."""

    @property
    def times(self) -> list[Fraction]:
        return [p * self.time_base for p in self.pts]


def make_clip(
    path: str | Path,
    pictures: Sequence[np.ndarray],
    *,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    rate: Fraction | int = 24,
    time_base: Fraction | None = None,
    pts: Sequence[int] | None = None,
    video_start: float = 0.0,
    colour: Colour = BT601,
    tagged: bool = True,
    rotation: int = 0,
    audio: Iterable[AudioTrack] = (),
    subtitles: Iterable[SubtitleTrack] = (),
    metadata: dict[str, str] | None = None,
    chapters: Sequence[tuple[float, float, str]] = (),
    container_options: dict[str, str] | None = None,
    format: str | None = None,
    garble: Iterable[int] = (),
    blank: bool = False,
) -> Clip:
    """Encode ``pictures`` (H×W×3 RGB, uint8 or uint16) into ``path`` and return what was written.

    Video: converted to ``pix_fmt`` with ``colour``'s matrix and range; tagged with it unless
    ``tagged`` is False. Timestamps: ``pts`` in ``time_base`` units (default: one frame per 1/``rate``
    s, time base 1/(rate×100)), shifted by ``video_start`` seconds. ``rotation`` sets a display matrix.
    ``chapters`` are (start s, end s, title). ``garble`` (H.264 only) lists video packet indices
    whose slice data is replaced by noise (the decoder conceals the damage and flags the frame
    corrupt), or with ``blank`` by a lone H.264 access unit delimiter (no picture at all: the
    decoder returns no frame for that packet). Timestamps and flags of those packets are kept.
    Streams are added in the order video, audio tracks, subtitle tracks.
    """
    path = str(path)
    rate = Fraction(rate)
    if time_base is None:
        time_base = Fraction(1, rate.numerator * 100) if rate.denominator == 1 else Fraction(1, 90000)
    if pts is None:
        pts = [round(i / rate / time_base) for i in range(len(pictures))]
    offset = round(Fraction(video_start).limit_denominator(10**6) / time_base)
    pts = [p + offset for p in pts]
    garble = sorted(set(garble))
    rng = np.random.default_rng(1234)

    encoder_options = dict(options or {})
    if codec in ("libx264", "libx265"):
        encoder_options.setdefault("preset", "ultrafast")

    container = av.open(path, "w", format=format, options=container_options or {})
    video = container.add_stream(codec, rate=rate, options=encoder_options)
    height, width = pictures[0].shape[:2]
    video.width, video.height, video.pix_fmt = width, height, pix_fmt
    video.time_base = time_base
    video.codec_context.time_base = time_base
    if tagged:
        video.codec_context.colorspace = colour.matrix
        video.codec_context.color_range = colour.range
        video.codec_context.color_primaries = colour.primaries
        video.codec_context.color_trc = colour.transfer
    if rotation:
        video.set_display_rotation(rotation)
    audio_streams = []
    for track in audio:
        stream = container.add_stream(track.codec, rate=track.sample_rate)
        stream.layout = "mono"
        _label(stream, track.language, track.title)
        audio_streams.append((stream, track))
    subtitle_streams = []
    for track in subtitles:
        stream = container.add_stream(track.codec)
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.codec_context.subtitle_header = ASS_HEADER.encode()
        _label(stream, track.language, track.title)
        subtitle_streams.append((stream, track))
    if metadata:
        container.metadata.update(metadata)
    if chapters:
        container.set_chapters([
            {"id": i + 1, "start": round(start * 1000), "end": round(end * 1000), "time_base": Fraction(1, 1000),
             "metadata": {"title": title}}
            for i, (start, end, title) in enumerate(chapters)
        ])
    container.start_encoding()

    written = 0

    def mux_video(packets: list[av.Packet]) -> None:
        nonlocal written
        for packet in packets:
            if written in garble and packet.size:
                packet = _garbled(packet, video, rng, blank)
            written += 1
            container.mux(packet)

    for picture, stamp in zip(pictures, pts):
        frame = rgb_frame(picture, pix_fmt, colour)
        if not tagged:
            frame.colorspace, frame.color_range = MATRIX_UNSPECIFIED, RANGE_UNSPECIFIED
            frame.color_primaries = frame.color_trc = 2
        frame.pts, frame.time_base = stamp, time_base
        mux_video(video.encode(frame))
    mux_video(video.encode(None))

    for stream, track in audio_streams:
        _write_tone(container, stream, track)
    for stream, track in subtitle_streams:
        for start, end, text in track.cues:
            cue = SubtitleSet.create(
                text=f"0,0,Default,,0,0,0,,{text}".encode(), start=0, end=round((end - start) * 1000),
                pts=round(start * 1000))
            packet = stream.codec_context.encode_subtitle(cue)
            packet.stream, packet.time_base = stream, Fraction(1, 1000)
            packet.pts = packet.dts = round(start * 1000)
            packet.duration = round((end - start) * 1000)
            container.mux(packet)
    container.close()
    return Clip(path, [np.asarray(p) for p in pictures], list(pts), time_base, colour, garble)


def _garbled(packet: av.Packet, stream: av.stream.Stream, rng: np.random.Generator, blank: bool) -> av.Packet:
    data = bytes(packet)
    if blank:
        # libx264 emits Annex B (start codes); the MP4 and Matroska muxers convert to length prefixes.
        # NAL type 9 is an access unit delimiter: valid, but carries no picture.
        data = b"\x00\x00\x00\x01\x09\xf0"
    else:
        # Keep the first bytes (NAL length or start code, NAL header) so demuxers and parsers still
        # pass the packet on, as with corruption on disk; the slice data is noise.
        data = data[:8] + rng.integers(0, 256, len(data) - 8, dtype=np.uint8).tobytes()
    junk = av.Packet(data)
    junk.pts, junk.dts, junk.time_base, junk.stream = packet.pts, packet.dts, packet.time_base, stream
    junk.is_keyframe = packet.is_keyframe
    return junk


def rgb_frame(picture: np.ndarray, pix_fmt: str, colour: Colour = BT601) -> av.VideoFrame:
    """An RGB picture (uint8 or uint16) as a ``pix_fmt`` frame, converted with ``colour``'s matrix and range."""
    rgb = av.VideoFrame.from_ndarray(picture, format="rgb48le" if picture.dtype == np.uint16 else "rgb24")
    if pix_fmt.startswith(("rgb", "gbr", "bgr")):
        return rgb.reformat(format=pix_fmt)
    return rgb.reformat(format=pix_fmt, src_color_range=ColorRange.JPEG, dst_colorspace=colour.swscale_matrix,
                        dst_color_range=colour.swscale_range, interpolation=_ENCODE_FLAGS)


def _label(stream: av.stream.Stream, language: str | None, title: str | None) -> None:
    if language:
        stream.metadata["language"] = language
    if title:
        stream.metadata["title"] = title


def _write_tone(container: av.container.OutputContainer, stream: av.stream.Stream, track: AudioTrack) -> None:
    rate = track.sample_rate
    count = round(track.seconds * rate)
    t = np.arange(count) / rate
    samples = (0.3 * np.sin(2 * np.pi * track.frequency * t)).astype(np.float32)[None, :]
    start = round(track.start * rate)
    for first in range(0, count, 1024):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, first:first + 1024]), format="fltp",
                                           layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start + first, Fraction(1, rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


# -- reading back ----------------------------------------------------------------------------------
def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def video_frames(path: str | Path) -> list[av.VideoFrame]:
    """Every decodable frame of the first video stream, in presentation order (a packet the decoder
    rejects is skipped, as a player would)."""
    frames: list[av.VideoFrame] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            try:
                frames.extend(stream.decode(packet))
            except av.error.InvalidDataError:
                continue
    return frames


def frame_times(frames: Iterable[av.VideoFrame]) -> list[Fraction]:
    """Presentation times in seconds (pts × time base), exact."""
    return [frame.pts * frame.time_base for frame in frames]


def video_times(path: str | Path) -> list[Fraction]:
    return frame_times(video_frames(path))


@dataclass(frozen=True)
class PacketInfo:
    pts: Fraction | None
    """Presentation time in seconds."""
    duration: Fraction
    sha256: str
    keyframe: bool


def packets(path: str | Path) -> dict[int, list[PacketInfo]]:
    """Non-empty packets of every stream, keyed by stream index, in file order."""
    found: dict[int, list[PacketInfo]] = {}
    with av.open(str(path)) as container:
        for stream in container.streams:
            found[stream.index] = []
        for packet in container.demux():
            if packet.size == 0:
                continue  # the demuxer's end-of-stream marker
            tb = packet.time_base
            found[packet.stream.index].append(PacketInfo(
                None if packet.pts is None else packet.pts * tb, (packet.duration or 0) * tb,
                hashlib.sha256(bytes(packet)).hexdigest(), packet.is_keyframe))
    return found


def streams(path: str | Path) -> list[dict[str, object]]:
    """Per stream: index, type, codec name and metadata, as ffprobe would list them."""
    with av.open(str(path)) as container:
        return [{"index": s.index, "type": s.type, "codec": s.codec_context.name if s.codec_context else None,
                 "metadata": dict(s.metadata), "frames": s.frames} for s in container.streams]


def player_rgb(frame: av.VideoFrame, matrix: int | None = None) -> np.ndarray:
    """Decode a frame to 8-bit RGB as a player does: with the frame's own matrix and range tags.

    Untagged frames decode as BT.601 (what the scorer does). ``matrix`` overrides the frame's tag,
    to show what a wrong matrix costs. Mirrors ``_frame_to_rgb`` of the shared scorer.
    """
    if frame.format.name.startswith(("rgb", "bgr", "gbr")):
        return frame.to_ndarray(format="rgb24")
    chosen = int(frame.colorspace) if matrix is None else matrix
    full = frame.format.name.startswith("yuvj") or int(frame.color_range) == RANGE_FULL
    out = frame.reformat(format="rgb24", src_colorspace=_SWS_MATRIX.get(chosen, Colorspace.ITU601),
                         src_color_range=ColorRange.JPEG if full else ColorRange.MPEG,
                         dst_color_range=ColorRange.JPEG, interpolation=_DECODE_FLAGS)
    return out.to_ndarray()


def planes(frame: av.VideoFrame) -> list[np.ndarray]:
    """The frame's planes as 2-D arrays (uint16 for formats deeper than 8 bits), without line padding."""
    deep = max(c.bits for c in frame.format.components) > 8
    dtype = np.dtype("<u2") if deep else np.uint8
    result = []
    for plane in frame.planes:
        rows = np.frombuffer(bytes(plane), np.uint8).reshape(plane.height, plane.line_size)
        result.append(rows.view(dtype)[:, :plane.width] if deep else rows[:, :plane.width])
    return result


def mean_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))))


# -- Debian's ffmpeg and ffprobe commands (the way such files are made and checked in the field) ----
def ffmpeg(*args: object) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *map(str, args)], check=True, timeout=60)


def probe(path: str | Path, what: str = "streams") -> list[dict]:
    """ffprobe's view of the ``streams`` (type, codec, dispositions, tags) or the ``chapters``."""
    out = subprocess.run(["ffprobe", "-v", "error", f"-show_{what}", "-of", "json", str(path)],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    return json.loads(out).get(what, [])


def packet_hashes(path: str | Path) -> dict[int, list[str]]:
    """The SHA-256 of every non-empty packet, per stream index, in file order."""
    with av.open(str(path)) as container:
        hashes: dict[int, list[str]] = {}
        for packet in container.demux():
            if packet.size:
                hashes.setdefault(packet.stream.index, []).append(hashlib.sha256(bytes(packet)).hexdigest())
    return hashes


# -- the command-line tests' clips ----------------------------------------------------------------
STREAM_RATE = 24


def make_stream_clip(
    path: Path,
    fmt: str | None = None,
    frames: int = 24,
    size: tuple[int, int] = (64, 48),
    audio: bool = True,
    video: bool = True,
    options: dict[str, str] | None = None,
    noise: bool = False,
) -> Path:
    """H.264 (+ AAC mono) clip: a gradient with a moving bar, or random noise (large, incompressible)."""
    width, height = size
    rng = np.random.default_rng(7)
    with av.open(str(path), "w", format=fmt, options=options or {}) as container:
        if video:
            stream = container.add_stream("libx264", rate=STREAM_RATE, options={"preset": "ultrafast", "crf": "10"})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if audio:
            sound = container.add_stream("aac", rate=48000)
            sound.layout = "mono"
        samples = 0
        for index in range(frames):
            if video:
                if noise:
                    picture = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                else:
                    picture = np.zeros((height, width, 3), np.uint8)
                    picture[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)
                    picture[..., 1] = (index * 9) % 256
                    picture[:, (index * 3) % width] = 255
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                frame.pts, frame.time_base = index, Fraction(1, STREAM_RATE)
                container.mux(stream.encode(frame))
            while audio and samples < (index + 1) * 48000 // STREAM_RATE:
                chunk = av.AudioFrame.from_ndarray(np.full((1, 1024), 0.1, np.float32), format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 48000, samples
                samples += 1024
                container.mux(sound.encode(chunk))
        if video:
            container.mux(stream.encode(None))
        if audio:
            container.mux(sound.encode(None))
    return path


# -- interlaced, telecined, alpha and HDR10 clips ---------------------------------------------------
# Made as archive captures and masters are made: with the ffmpeg command's interlace/telecine filters
# and x265's HDR10 options (needs the ffmpeg command), alpha with PyAV.
HDR10_MASTER_DISPLAY = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"


def ffmpeg(*args: str) -> None:
    import subprocess

    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True, timeout=120)


def interlaced_clip(path: Path, frames: int = 12, size: tuple[int, int] = (160, 120), gop: int = 4,
                    audio: bool = True) -> Path:
    """A white bar moving 6 px per field over black, woven top field first into 25i by FFmpeg's ``interlace``
    from 50p; H.264 coded interlaced (MP4 tags the field order), B-frames, a keyframe every ``gop`` frames."""
    width, height = size
    seconds = f"{2 * frames / 50}"
    sources = ["-f", "lavfi", "-t", seconds, "-i", f"color=c=black:size={width}x{height}:rate=50",
               "-f", "lavfi", "-t", seconds, "-i", f"color=c=white:size={width // 10}x{height * 2 // 3}:rate=50"]
    if audio:
        sources += ["-f", "lavfi", "-t", seconds, "-i", "sine=frequency=440:sample_rate=48000"]
    ffmpeg(*sources, "-filter_complex", f"[0][1]overlay=x='{width // 8}+t*300':y={height // 6}:eval=frame,"
           "interlace=scan=tff", *(["-map", "2:a", "-c:a", "aac"] if audio else []), "-c:v", "libx264",
           "-crf", "10", "-flags", "+ilme+ildct", "-top", "1", "-g", str(gop), "-bf", "2", "-pix_fmt", "yuv420p",
           str(path))
    return path


def telecined_clip(path: Path, frames: int = 30, size: tuple[int, int] = (160, 120), gop: int = 5) -> Path:
    """FFmpeg's ``testsrc2`` film at 24p through 3:2 pulldown (``telecine``) to 30i, H.264 coded interlaced."""
    width, height = size
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=24", "-vf",
           "telecine=first_field=top:pattern=23", "-frames:v", str(frames), "-c:v", "libx264", "-crf", "4",
           "-flags", "+ilme+ildct", "-top", "1", "-g", str(gop), "-pix_fmt", "yuv420p", str(path))
    return path


def alpha_clip(path: Path, codec: str = "png", pix_fmt: str = "rgba", frames: int = 4,
               size: tuple[int, int] = (64, 48)) -> Path:
    """A gradient picture under an alpha plane (an opaque disc moving 2 px a frame, fading to transparent)."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for k in range(frames):
            distance = np.hypot(yy - height / 2, xx - width / 2 - 2 * k)
            alpha = np.rint(np.clip((1 - (distance - 10) / 6) * 255, 0, 255))
            rgba = np.dstack([(xx * 4) % 256, (yy * 5) % 256, np.full_like(xx, 60 + 20 * k), alpha]).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(rgba, format="rgba").reformat(format=pix_fmt)
            frame.pts, frame.time_base = k, Fraction(1, 24)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def hdr10_clip(path: Path, frames: int = 4, size: int = 64, keyint: int | None = None) -> Path:
    """An HDR10 master: x265 Main 10, BT.2020/PQ, mastering display and content light level in its SEI."""
    params = ("log-level=error:hdr-opt=1:repeat-headers=1:colorprim=bt2020:transfer=smpte2084:"
              f"colormatrix=bt2020nc:master-display={HDR10_MASTER_DISPLAY}:max-cll=1000,400")
    if keyint is not None:
        params += f":keyint={keyint}:min-keyint={keyint}"
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}x{size}:rate=24", "-frames:v", str(frames), "-c:v", "libx265",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p10le", "-color_primaries", "bt2020", "-color_trc",
           "smpte2084", "-colorspace", "bt2020nc", "-x265-params", params, str(path))
    return path
