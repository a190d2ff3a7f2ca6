"""The video encoder a run uses when ``--codec`` is not given, and the options that go with each encoder.

The source's own codec decides, so that a file comes back in the family it was delivered in:

    HEVC -> libx265 (10/12-bit kept; the source's HDR10 metadata in its SEI: ``media.hdr``)
    ProRes -> prores_ks (the source's profile: 422 HQ stays HQ, 4444 stays 4444)
    FFV1 -> ffv1 (level 3 with slice CRCs, every frame a keyframe: the archival settings)
    H.264 and everything else (MPEG-2, DV, VP9, GIF, ...) -> libx264

libx265 prints its settings on stderr through its own logger (not FFmpeg's), about 25 lines per run;
they are silenced (``log-level=error``) unless the run asks for encoder logs (``--debug``).
"""

from __future__ import annotations

from dataclasses import replace

import av
import av.error

from .reader import VideoInfo
from .writer import EncodeSettings

SOURCE_ENCODERS = {"hevc": "libx265", "prores": "prores_ks", "ffv1": "ffv1"}
FALLBACK_ENCODER = "libx264"

# The source's ProRes profile as FFmpeg's decoder names it -> prores_ks's profile option.
_PRORES_PROFILES = {"Proxy": "proxy", "LT": "lt", "Standard": "standard", "HQ": "hq", "4444": "4444",
                    "4444XQ": "4444xq", "XQ": "4444xq"}


def default_codec(source_codec: str) -> str:
    """The encoder that follows ``source_codec`` (a decoder name such as ``hevc``), see the module doc."""
    return SOURCE_ENCODERS.get(source_codec, FALLBACK_ENCODER)


def resolve(settings: EncodeSettings, source: VideoInfo, first_frame: av.VideoFrame | None, *,
            encoder_log: bool = False) -> EncodeSettings:
    """``settings`` with the codec chosen (when None) and the per-encoder options added.

    Options the user gave win over the ones added here.
    """
    codec = settings.codec or default_codec(source.codec)
    options = dict(settings.options)
    following = settings.codec is None
    if codec == "libx265":
        params = _x265_params(first_frame, quiet=not encoder_log)
        given = options.get("x265-params")
        options["x265-params"] = _merge_params(params, given)
    elif codec == "prores_ks" and following and source.codec == "prores":
        profile = _PRORES_PROFILES.get(str(source.profile or ""))
        if profile:
            options.setdefault("profile", profile)
    elif codec == "ffv1":
        options.setdefault("level", "3")
        options.setdefault("slicecrc", "1")
        options.setdefault("g", "1")
    return replace(settings, codec=codec, options=options)


def _merge_params(ours: dict[str, str], given: str | None) -> str:
    merged = dict(ours)
    for item in (given or "").split(":"):
        if item:
            key, _, value = item.partition("=")
            merged[key] = value
    return ":".join(f"{k}={v}" if v else k for k, v in merged.items())


def _x265_params(first_frame: av.VideoFrame | None, quiet: bool) -> dict[str, str]:
    # The source's HDR10 metadata is added by the writer for every encoder that can carry it (media.hdr).
    return {"log-level": "error"} if quiet else {}


def container_accepts(filename: str, codec: str) -> bool:
    """Whether the muxer FFmpeg picks for ``filename`` can hold a ``codec`` video stream.

    Asked without writing anything: PyAV checks the muxer's codec list when a stream is added, and
    opens the file only when the header is written.
    """
    try:
        with av.open(filename, mode="w") as probe:
            probe.add_stream(codec)
            name = probe.format.name
    except (ValueError, av.error.FFmpegError):
        return False
    # These muxers list no codecs, so PyAV lets any stream in; they write raw pictures only.
    return name not in _RAW_ONLY_MUXERS or codec == "rawvideo"


_RAW_ONLY_MUXERS = {"yuv4mpegpipe", "rawvideo"}
