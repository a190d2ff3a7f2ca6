"""HDR10 static metadata (mastering display and content light level) from the source to the encoder.

The decoder attaches this metadata to every frame (from the bitstream's SEI, or from the container's
stream-level side data), so it is read from the first frame. PyAV cannot set side data on frames or
streams, so it reaches the output through the encoder's own HDR options, which write it into the
bitstream where players and ffprobe find it on the frames: x265's ``master-display``/``max-cll``,
x264's ``mastering-display``/``cll`` and SVT-AV1's ``mastering-display``/``content-light``. Other encoders cannot write it: the run
says so in a warning instead of dropping it silently. Dynamic metadata (HDR10+, Dolby Vision) is
per-scene and tied to the source's pictures; it is never carried, and a source that has it gets a
warning.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction

import av
from av.sidedata.sidedata import Type

_DYNAMIC = {Type.DYNAMIC_HDR_PLUS: "HDR10+", Type.DOVI_RPU_BUFFER: "Dolby Vision",
            Type.DOVI_METADATA: "Dolby Vision", Type.DYNAMIC_HDR_VIVID: "HDR Vivid"}
_HDR10_PARAMS = {"libx265": "x265-params", "libx264": "x264-params", "libsvtav1": "svtav1-params"}


@dataclass(frozen=True)
class MasteringDisplay:
    """SMPTE ST 2086: the mastering display's primaries and white point (CIE 1931 xy), luminance (cd/m²)."""

    red: tuple[Fraction, Fraction]
    green: tuple[Fraction, Fraction]
    blue: tuple[Fraction, Fraction]
    white: tuple[Fraction, Fraction]
    min_luminance: Fraction
    max_luminance: Fraction


@dataclass(frozen=True)
class HdrMetadata:
    mastering: MasteringDisplay | None
    light_level: tuple[int, int] | None
    """(MaxCLL, MaxFALL) in cd/m²."""
    dynamic: tuple[str, ...] = ()
    """Kinds of dynamic metadata found in the source (never carried)."""


def read_hdr(frame: av.VideoFrame) -> HdrMetadata | None:
    mastering = light = None
    dynamic: list[str] = []
    for data in list(frame.side_data):  # iterate the list: the mapping's own iterator breaks on repeated types
        if data.type == Type.MASTERING_DISPLAY_METADATA:
            mastering = _mastering(bytes(data))
        elif data.type == Type.CONTENT_LIGHT_LEVEL:
            light = struct.unpack("=II", bytes(data)[:8])
        elif data.type in _DYNAMIC and _DYNAMIC[data.type] not in dynamic:
            dynamic.append(_DYNAMIC[data.type])
    if mastering is None and light is None and not dynamic:
        return None
    return HdrMetadata(mastering, light, tuple(dynamic))


def _mastering(raw: bytes) -> MasteringDisplay | None:
    # AVMasteringDisplayMetadata: display_primaries[3][2] (R, G, B; x, y), white_point[2],
    # min_luminance, max_luminance as AVRational {int num, den}, then has_primaries, has_luminance.
    values = struct.unpack("=20i2i", raw[:88])
    rationals = [Fraction(values[i], values[i + 1]) if values[i + 1] else Fraction(0) for i in range(0, 20, 2)]
    has_primaries, has_luminance = values[20], values[21]
    if not (has_primaries and has_luminance):
        return None
    r = tuple(rationals[0:2])
    g = tuple(rationals[2:4])
    b = tuple(rationals[4:6])
    return MasteringDisplay(r, g, b, tuple(rationals[6:8]), rationals[8], rationals[9])  # type: ignore[arg-type]


def encoder_options(codec: str, hdr: HdrMetadata | None, options: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The encoder options that write ``hdr``'s static metadata, and the warnings for what cannot be kept."""
    if hdr is None:
        return options, []
    warnings = []
    if hdr.dynamic:
        kinds = " and ".join(hdr.dynamic)
        warnings.append(f"the source's {kinds} dynamic metadata is not carried to the output "
                        "(static HDR10 metadata is, where the encoder can write it)")
    if codec not in _HDR10_PARAMS:
        if hdr.mastering or hdr.light_level:
            warnings.append(f"{codec} cannot write the source's HDR10 mastering-display/light-level metadata; "
                            "use --codec libx265 (or libx264, libsvtav1) to keep it")
        return options, warnings
    key = _HDR10_PARAMS[codec]
    static = {"libx265": _x265, "libx264": _x264, "libsvtav1": _svtav1}[codec](hdr)
    merged = dict(options)
    # The user's own parameters come last, so anything they set explicitly wins.
    merged[key] = ":".join(static + ([options[key]] if options.get(key) else []))
    if not merged[key]:
        del merged[key]
    return merged, warnings


def _st2086(m: MasteringDisplay) -> str:
    """x265's and x264's notation: chromaticity in units of 0.00002, luminance in 0.0001 cd/m²."""

    def xy(point: tuple[Fraction, Fraction]) -> str:
        return f"({round(point[0] * 50000)},{round(point[1] * 50000)})"

    luminance = f"L({round(m.max_luminance * 10000)},{round(m.min_luminance * 10000)})"
    return f"G{xy(m.green)}B{xy(m.blue)}R{xy(m.red)}WP{xy(m.white)}{luminance}"


def _x264(hdr: HdrMetadata) -> list[str]:
    params = [f"mastering-display={_st2086(hdr.mastering)}"] if hdr.mastering is not None else []
    if hdr.light_level is not None:
        params.append(f"cll={hdr.light_level[0]},{hdr.light_level[1]}")
    return params


def _x265(hdr: HdrMetadata) -> list[str]:
    params = [f"master-display={_st2086(hdr.mastering)}"] if hdr.mastering is not None else []
    if hdr.light_level is not None:
        params.append(f"max-cll={hdr.light_level[0]},{hdr.light_level[1]}")
    # Repeat the headers (and with them these SEI) at every keyframe, so a seek finds them too.
    return params + (["repeat-headers=1"] if params else [])


def _svtav1(hdr: HdrMetadata) -> list[str]:
    params = []
    if hdr.mastering is not None:
        m = hdr.mastering

        def xy(point: tuple[Fraction, Fraction]) -> str:
            return f"({float(point[0]):.5f},{float(point[1]):.5f})"

        params.append(f"mastering-display=G{xy(m.green)}B{xy(m.blue)}R{xy(m.red)}WP{xy(m.white)}"
                      f"L({float(m.max_luminance):.4f},{float(m.min_luminance):.4f})")
    if hdr.light_level is not None:
        params.append(f"content-light={hdr.light_level[0]},{hdr.light_level[1]}")
    return params
