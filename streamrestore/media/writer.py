"""Encodes restored RGB frames at their source timestamps and copies every other stream untouched.

Audio and subtitle packets are remuxed as they are (payloads bit-identical, language and title kept);
the video stream keeps the source's time base, per-frame timestamps (VFR included), colour tags,
rotation and sample aspect ratio; it is tagged progressive, or, when the fields were kept, interlaced
with the source's field order (fields woven back and frames flagged by ``interlace.FieldWeaver``).
Two threads feed one output container (copied packets from the decoder thread, encoded packets from
the encoder thread), so muxing goes through a lock; FFmpeg's interleaving muxer puts the packets in
order.
"""

from __future__ import annotations

import errno
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import av.error
import numpy as np
from av.bitstream import BitStreamFilterContext

from ..errors import ConfigError, DiskFullError, MediaError, OutputError
from . import alpha as alpha_plane
from .color import ColorDescription, is_rgb_format, rgb_to_frame
from .extras import ContainerExtras, add_streams, label_video
from .hdr import encoder_options
from .interlace import FIELD_BB, FIELD_PROGRESSIVE, FIELD_TT, FieldWeaver
from .reader import SourceDescription, VideoInfo

DEFAULT_CODEC = "libx264"  # when no codec is given at all; restore_video follows the source (media.encoder)
DEFAULT_CRF = 18
DEFAULT_PRESET = "medium"
_CRF_CODECS = {"libx264", "libx265", "libsvtav1", "libvpx-vp9", "libaom-av1"}
_PRESET_CODECS = {"libx264", "libx265", "libsvtav1"}


@dataclass(frozen=True)
class EncodeSettings:
    """The user's encoder choices; None means 'derive a sensible value from the source'."""

    codec: str | None = None
    """None: follow the source (``media.encoder.resolve``)."""
    crf: float | None = DEFAULT_CRF
    preset: str | None = DEFAULT_PRESET
    pix_fmt: str | None = None
    threads: int = 0
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputVideo:
    """Everything the video encoder is opened with."""

    width: int
    height: int
    pix_fmt: str
    color: ColorDescription
    source: VideoInfo
    field_order: str | None = None
    """``tff``/``bff``: encode interlaced with this field order (``interlace.FieldWeaver``); None: progressive."""
    woven: bool = False
    """Frames arrive as single fields (half height, field rate) to be woven in pairs."""

    @property
    def frame_rate(self) -> Fraction | None:
        """The output's nominal rate (what a muxer's timecode track counts in): the source's, per woven pair."""
        rate = self.source.average_rate
        return rate / 2 if self.woven and rate else rate


def choose_pix_fmt(settings: EncodeSettings, source: VideoInfo, width: int, height: int) -> str:
    """Keep the source's chroma layout and bit depth where the codec allows; never fail on odd sizes."""
    codec = settings.codec or DEFAULT_CODEC
    supported = _codec_formats(codec)
    if settings.pix_fmt is not None:
        if supported and settings.pix_fmt not in supported:
            raise ConfigError(
                f"--pix-fmt {settings.pix_fmt} is not supported by {codec} (supported: {', '.join(supported)})"
            )
        if _subsampled(settings.pix_fmt) and (width % 2 or height % 2):
            raise ConfigError(
                f"--pix-fmt {settings.pix_fmt} needs an even frame size, but the output is {width}×{height}; "
                "use a 4:4:4 format (e.g. yuv444p)"
            )
        return settings.pix_fmt
    if source.alpha:
        return alpha_plane.choose_pix_fmt(settings.codec, supported, source.bit_depth, width, height)
    deep = source.bit_depth > 8
    if is_rgb_format(source.pix_fmt):
        layout = "444" if codec == "ffv1" else "420"
    elif "444" in source.pix_fmt:
        layout = "444"
    elif "422" in source.pix_fmt or source.pix_fmt in ("nv16", "yuyv422", "uyvy422"):
        layout = "422"
    else:
        layout = "420"
    if layout != "444" and (width % 2 or height % 2):
        # 4:2:0 and 4:2:2 need even sizes; 4:4:4 keeps the exact frame size instead of cropping a pixel.
        layout = "444"
    if not deep:
        wanted = f"yuv{layout}p"
        if not supported or wanted in supported:
            return wanted
    else:
        # The source's depth (12-bit ProRes 4444, 16-bit PNG), else the nearest deeper one, else shallower.
        depths = sorted((9, 10, 12, 14, 16), key=lambda d: (d < source.bit_depth, abs(d - source.bit_depth)))
        for depth in depths:
            wanted = f"yuv{layout}p{depth}le"
            if not supported or wanted in supported:
                return wanted
    same_depth = [f for f in supported if f.startswith("yuv") and (_bits(f) > 8) == deep]
    for candidate in same_depth + list(supported):
        if not _subsampled(candidate) or (width % 2 == 0 and height % 2 == 0):
            return candidate
    return supported[0]


def _bits(pix_fmt: str) -> int:
    return max(c.bits for c in av.VideoFormat(pix_fmt).components)


def _subsampled(pix_fmt: str) -> bool:
    return any(tag in pix_fmt for tag in ("420", "422", "nv12", "nv21", "nv16", "411", "410"))


def _codec_formats(codec: str) -> list[str]:
    try:
        found = av.codec.Codec(codec, "w")
    except (av.error.FFmpegError, ValueError):
        raise ConfigError(f"unknown encoder {codec!r} (e.g. libx264, libx265, ffv1, libsvtav1)") from None
    if found.type != "video":
        raise ConfigError(f"{codec!r} is not a video encoder")
    return [f.name for f in (found.video_formats or [])]


def describe_video_stream(stream: av.video.stream.VideoStream, video: OutputVideo) -> None:
    """Tag an output video stream with the source's colour description, sample aspect ratio and rotation."""
    context = stream.codec_context
    if not is_rgb_format(video.pix_fmt):
        context.colorspace = video.color.matrix
        context.color_range = video.color.range
    context.color_primaries = video.color.primaries
    context.color_trc = video.color.transfer
    if video.source.sample_aspect_ratio:
        context.sample_aspect_ratio = video.source.sample_aspect_ratio
    if video.source.rotation:
        stream.set_display_rotation(video.source.rotation)


class MediaWriter:
    """One output container: a video encoder plus copies of the source's audio and subtitle streams."""

    def __init__(
        self,
        target: str,
        container_format: str | None,
        video: OutputVideo,
        settings: EncodeSettings,
        copy_streams: list[av.stream.Stream],
        container_metadata: dict[str, str] | None = None,
        chapters: list[Any] | None = None,
        container_options: dict[str, str] | None = None,
        extras: ContainerExtras | None = None,
        label: str | None = None,
    ) -> None:
        """``label``: the name errors give the output (the destination, not the temporary file)."""
        self._lock = threading.Lock()
        self._label = label or target
        self._filters: dict[int, BitStreamFilterContext] = {}
        self.frames_written = 0
        self.frames_encoded = 0
        """Video packets out of the encoder: frames really done (an encoder holds tens of frames in its lookahead)."""
        self.warnings: list[str] = []
        """What the output cannot keep of the source (said once, never silently dropped)."""
        try:
            self.container = av.open(target, mode="w", format=container_format, options=container_options or {})
        except av.error.FFmpegError as error:
            raise _output_error(target, error) from None
        except ValueError as error:
            raise OutputError(f"cannot write {target!r}: {error}") from None
        try:
            # Video first, then the copied streams in source order, as players and most sources expect.
            self._video = self._add_video(video, settings)
            self._copies = {s.index: self._add_copy(s) for s in copy_streams}
            if extras is not None:
                label_video(self._video, extras)
                copies, warnings = add_streams(self.container, extras)
                self._copies.update(copies)
                self.warnings += warnings
            if container_metadata:
                self.container.metadata.update(container_metadata)
            if chapters:
                self.container.set_chapters(chapters)
            # Open every encoder and write the header now, before two threads start muxing: PyAV
            # would otherwise do it lazily in whichever thread muxes first, racing the encoder.
            self.container.start_encoding()
        except av.error.FFmpegError as error:
            self.container.close()
            if isinstance(error, OSError):
                # start_encoding() also creates the output file: a path that cannot be written (or a
                # full disk) is an output problem, not a bad encoder setting.
                raise _output_error(target, error) from None
            raise ConfigError(f"cannot start the {settings.codec} encoder with these settings: {error}") from None
        except BaseException:
            self.container.close()
            raise

    @classmethod
    def for_source(cls, target: str, container_format: str | None, video: OutputVideo, settings: EncodeSettings,
                   source: SourceDescription, container_options: dict[str, str] | None = None,
                   label: str | None = None, **own: Any) -> MediaWriter:  # fmt: skip
        """A writer that carries ``source``'s audio, subtitles, tags, chapters and the rest of its container
        (cover art, attachments, data, timecode: ``media.extras``), from ``MediaReader.describe()``.

        The one door for what an output keeps of its source: ``run`` and the jobs' join (a subclass whose
        video is copied from a piece; ``own`` are its own keyword arguments) both come through here.
        """
        return cls(target, container_format, video, settings, source.copy_streams, source.metadata, source.chapters,
                   container_options=container_options, label=label, extras=source.extras, **own)

    def _add_copy(self, source: av.stream.Stream) -> av.stream.Stream:
        try:
            copy = self.container.add_stream_from_template(source)
        except (av.error.FFmpegError, ValueError) as error:
            raise OutputError(
                f"the output container ({self.container.format.name}) cannot carry {source.type} stream "
                f"#{source.index} ({source.codec_context.name}): {error}; choose a container that can carry it (Matroska .mkv carries almost any stream)"
            ) from None
        if (source.codec_context.name == "aac" and not source.codec_context.extradata
                and self.container.format.name in _RAW_AAC_FORMATS):
            # ADTS AAC (MPEG-TS, .aac) repeats its configuration in every packet header instead of
            # the stream's extradata. Matroska and MP4 need it in their header; to a file FFmpeg goes
            # back and fills it in at the end, but on a pipe it cannot, and refuses to start. The
            # fragmented MP4 muxer also rejects ADTS packets, so strip the headers here as FFmpeg's
            # automatic aac_adtstoasc does for a file: the AAC payload itself is untouched.
            config = _aac_config(source.codec_context)
            if config is not None:
                if self.container.name.startswith("pipe:"):
                    # Only where the muxer never goes back: to a file, the filter's first packet hands the
                    # configuration to the muxer, and a header written with it already makes Matroska
                    # rewrite its track entry at the end over a different size (a corrupt Tracks element).
                    copy.codec_context.extradata = config
                self._filters[source.index] = BitStreamFilterContext("aac_adtstoasc", source)
        copy.metadata.update(source.metadata)
        if "title" not in source.metadata and "name" in source.metadata:
            # The MP4/MOV demuxer reports a track's title as "name", but muxers (MP4's included)
            # write only "title": without this the title is dropped.
            copy.metadata["title"] = source.metadata["name"]
        copy.disposition = source.disposition
        return copy

    def _add_video(self, video: OutputVideo, settings: EncodeSettings) -> av.video.stream.VideoStream:
        source = video.source
        options, hdr_warnings = encoder_options(settings.codec or DEFAULT_CODEC, source.hdr, dict(settings.options))
        self.warnings += hdr_warnings
        if settings.crf is not None and settings.codec in _CRF_CODECS:
            options.setdefault("crf", f"{settings.crf:g}")
        if settings.preset is not None and settings.codec in _PRESET_CODECS:
            options.setdefault("preset", settings.preset)
        codec = settings.codec or DEFAULT_CODEC
        rate = video.frame_rate
        if video.field_order:
            # Interlaced coding (x264: MBAFF, field order from each frame's flags, which the weaver sets).
            options.setdefault("flags", "+ildct+ilme")
        try:
            stream = self.container.add_stream(codec, rate=rate, options=options)
        except ValueError as error:  # PyAV's "'gif' format does not support 'libx264' codec"
            raise ConfigError(
                f"the {self.container.format.name} container of {self._label!r} cannot hold {codec} video ({error}); "
                "choose another output name (.mkv, .mp4) or another --codec"
            ) from None
        stream.time_base = source.time_base
        context = stream.codec_context
        context.width, context.height = video.width, video.height
        context.pix_fmt = video.pix_fmt
        context.time_base = source.time_base
        if rate:
            context.framerate = rate
        context.field_order = FIELD_ORDERS.get(video.field_order, FIELD_PROGRESSIVE)
        context.thread_count = settings.threads
        describe_video_stream(stream, video)
        self._output = video
        self._alpha = alpha_plane.has_alpha(video.pix_fmt)
        self._time_base = source.time_base
        self._weaver = FieldWeaver(video.field_order, video.woven) if video.field_order else None
        return stream

    # -- writing ---------------------------------------------------------------------------------
    def copy_packet(self, packet: av.Packet) -> None:
        """Mux an untouched packet from a copied source stream."""
        target = self._copies.get(packet.stream.index)
        if target is None:
            return
        if packet.is_discard and self.container.format.name not in _EDIT_LIST_FORMATS:
            # Audio before an MP4 edit list's start (a cut made with -c copy): an MP4/MOV output keeps
            # it behind an edit list of its own, as the source did; any other container would play it.
            return
        adts = self._filters.get(packet.stream.index)
        origin = _describe_packet(packet)  # before the packet is moved onto the output stream
        packets = adts.filter(packet) if adts is not None else [packet]
        for copied in packets:
            copied.stream = target
        self._mux(packets, copied_from=origin)

    def write_frame(self, rgb: np.ndarray, pts: int | None, alpha: np.ndarray | None = None) -> None:
        """Encode one H×W×3 RGB frame (uint8 or uint16) at its source timestamp.

        ``alpha`` is the source frame's alpha plane (any size and depth), written when the output
        format has alpha (``media.alpha``).
        """
        rgb_format = "rgb48le" if rgb.dtype == np.uint16 else "rgb24"
        if self._alpha:
            rgb, rgb_format = alpha_plane.merge(rgb, alpha), alpha_plane.rgba_format(rgb.dtype == np.uint16)
            frame = av.VideoFrame.from_ndarray(rgb, format=rgb_format)
        else:
            frame = rgb_frame(rgb, rgb_format, self._output.pix_fmt)
        frame = rgb_to_frame(frame, self._output.color, self._output.pix_fmt)
        frame.pts = pts
        frame.time_base = self._time_base
        for ready in self._weaver.push(frame) if self._weaver is not None else [frame]:
            self._encode(ready)

    def _encode(self, frame: av.VideoFrame | None) -> None:
        try:
            packets = self._video.encode(frame)
        except av.error.FFmpegError as error:
            raise _output_error(self._label, error) from None
        self._mux(packets)
        self.frames_encoded += len(packets)
        if frame is not None:
            self.frames_written += 1

    def _mux(self, packets: list[av.Packet], copied_from: str | None = None) -> None:
        if not packets:
            return
        with self._lock:
            try:
                self.container.mux(packets)
            except av.error.FFmpegError as error:
                if copied_from is not None and error.errno == errno.EINVAL:
                    # The muxer refuses a copied packet's timestamps: the input's fault, not the output's.
                    raise _refused_copy(copied_from, error) from None
                raise _output_error(self._label, error) from None

    def close(self) -> None:
        """Flush the encoder and finish the container (writes the index)."""
        try:
            for ready in self._weaver.flush() if self._weaver is not None else []:
                self._encode(ready)
            self._encode(None)
        finally:
            with self._lock:
                try:
                    self.container.close()
                except av.error.FFmpegError as error:
                    raise _output_error(self._label, error) from None

    def abort(self) -> None:
        with self._lock:
            try:
                self.container.close()
            except (av.error.FFmpegError, OSError):
                pass  # the partial output is deleted by the caller; its trailer does not matter


FIELD_ORDERS = {"tff": FIELD_TT, "bff": FIELD_BB}
_EDIT_LIST_FORMATS = {"mov", "mp4", "ipod", "3gp", "3g2", "ismv", "f4v", "psp"}
_RAW_AAC_FORMATS = {"matroska", "webm", "mp4", "mov", "ipod", "3gp", "3g2", "ismv", "f4v"}
_AAC_OBJECT_TYPES = {"Main": 1, "LC": 2, "SSR": 3, "LTP": 4}  # the profiles an ADTS header can state
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
_AAC_CHANNEL_CONFIGS = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 8: 7}


def rgb_frame(rgb: np.ndarray, rgb_format: str, pix_fmt: str) -> av.VideoFrame:
    """An RGB frame for ``rgb`` that the conversion to ``pix_fmt`` reads from.

    ``from_ndarray`` copies the picture while holding the GIL (3–9 ms at 2160p, which stalls the
    stage thread); a contiguous array can be wrapped instead (``from_numpy_buffer``, 0.04 ms), since
    the conversion to ``pix_fmt`` writes a new frame. Where no conversion happens (the output is this
    very RGB format) the encoder would get the caller's memory, so it gets a copy as before.
    """
    if rgb_format != pix_fmt and rgb.flags.c_contiguous and rgb.dtype.byteorder in ("=", "|", "<"):
        return av.VideoFrame.from_numpy_buffer(rgb, format=rgb_format)
    return av.VideoFrame.from_ndarray(rgb, format=rgb_format)


def _aac_config(context: Any) -> bytes | None:
    """The 2-byte AudioSpecificConfig of an ADTS stream, or None where the parameters leave it ambiguous.

    HE-AAC in ADTS signals SBR implicitly, so its reported rate and channels are not the core's: those
    (and channel layouts given by a PCE) are left to FFmpeg.
    """
    object_type = _AAC_OBJECT_TYPES.get(context.profile)
    channels = _AAC_CHANNEL_CONFIGS.get(context.channels)
    if object_type is None or channels is None or context.sample_rate not in _AAC_RATES:
        return None
    bits = object_type << 11 | _AAC_RATES.index(context.sample_rate) << 7 | channels << 3
    return bits.to_bytes(2, "big")


def _output_error(target: str, error: Exception) -> OutputError:
    if getattr(error, "errno", None) == errno.ENOSPC:
        return DiskFullError(f"disk full while writing {target!r}")
    reason = getattr(error, "strerror", None) or str(error)
    return OutputError(f"cannot write {target!r}: {reason}")


def _describe_packet(packet: av.Packet) -> str:
    when = "" if packet.pts is None or packet.time_base is None else f" at {float(packet.pts * packet.time_base):.3f} s"
    return f"{packet.stream.type} stream #{packet.stream.index} has a packet{when}"


def _refused_copy(origin: str, error: av.error.FFmpegError) -> MediaError:
    return MediaError(
        f"the input's {origin} whose timestamps cannot follow the previous packet's "
        f"({error.strerror or error}); remux the input first, e.g. ffmpeg -fflags +genpts -i IN -c copy OUT.mkv"
    )

