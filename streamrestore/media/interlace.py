"""Interlaced and telecined video: detection, the field policy, and the libavfilter graphs that apply it.

Most archive video is interlaced (VHS, DV, broadcast, DVD): each frame weaves two fields taken 1/50 s
(or 1/59.94 s) apart. Upscaling the woven frame bakes the combing in, so before the stages see a
picture the fields are dealt with here, the way FFmpeg and VapourSynth users do it:

- **Detection** (``detect``): the stream's field order, the frames' interlaced flags, and FFmpeg's
  ``idet`` over the first frames (for untagged or wrongly tagged files).
- **Deinterlacing** (``deinterlace`` at the head of a chain, or automatically): ``bwdif`` by default,
  at field rate (50i → 50p, every field becomes a frame) or frame rate.
- **Inverse telecine** (``ivtc``): ``fieldmatch`` rebuilds the film frames from the 3:2 pulldown,
  ``bwdif`` fixes the frames it could not match, ``decimate`` drops the one duplicate in five.
- **Keeping it interlaced** (``--interlaced keep``): ``separatefields`` gives the stages each field as
  a half-height picture, and the writer weaves the processed fields back (``FieldWeaver``).

These change the frame count on purpose, which a stage may never do, so they are not stages: they are
libavfilter graphs applied to the decoded frames in the source's own YUV, before RGB conversion
(``FrameFilter``, run by the reader), and the weave before encoding (run by the writer). Timestamps are
exact: a field-rate frame's second field sits half a frame later, in a time base that can say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import av
import av.error

from ..errors import ConfigError
from ..stage import Option

# AVFieldOrder: how the fields are stored and which is shown first.
FIELD_UNKNOWN, FIELD_PROGRESSIVE, FIELD_TT, FIELD_BB, FIELD_TB, FIELD_BT = range(6)
_DISPLAY_ORDER = {FIELD_TT: "tff", FIELD_BT: "tff", FIELD_BB: "bff", FIELD_TB: "bff"}
ORDER_NAMES = {"tff": "top field first", "bff": "bottom field first"}

_VIDEO_FORMATS = ("yuv", "nv", "uyvy", "yuyv", "yvyu", "p0", "p2", "y2", "gray")
"""Pixel formats interlaced video comes in (YUV, and grey for black-and-white captures)."""
IDET_FRAMES = 32
"""Frames ``idet`` looks at: enough for its multi-frame verdict to settle, few enough to decode ahead."""
INTERLACED_MODES = ("auto", "deinterlace", "keep", "progressive")
DEINTERLACERS = ("bwdif", "yadif", "w3fdif", "estdif")
FIELD_OPERATIONS = {
    "deinterlace": {
        "method": Option(str, "bwdif", "libavfilter deinterlacer", choices=DEINTERLACERS),
        "rate": Option(str, "field", "field: one frame per field (50i → 50p); frame: one per frame",
                       choices=("field", "frame")),
        "parity": Option(str, "auto", "field order: auto (detected), tff or bff", choices=("auto", "tff", "bff")),
        "deint": Option(str, "all", "all frames, or only those flagged interlaced", choices=("all", "interlaced")),
    },
    "ivtc": {
        "order": Option(str, "auto", "field order: auto (detected), tff or bff", choices=("auto", "tff", "bff")),
    },
}
FIELD_SUMMARIES = {
    "deinterlace": "deinterlace decoded frames (libavfilter; field rate doubles the frame count)",
    "ivtc": "inverse telecine: 3:2 pulldown back to film frames (fieldmatch + decimate; 4 frames of 5)",
}


# -- detection -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interlacing:
    """What the source is, and why we think so."""

    order: str
    """``tff``, ``bff`` or ``progressive``."""
    evidence: str
    combed: str | None = None
    """Tagged progressive, but ``idet`` finds most frames combed: the field order it sees (``tff``/``bff``).
    Not acted on automatically (synthetic pictures fool ``idet``); ``--interlaced deinterlace`` does."""

    @property
    def interlaced(self) -> bool:
        return self.order != "progressive"

    def describe(self) -> str:
        return f"{ORDER_NAMES.get(self.order, self.order)}; {self.evidence}"


def detect(stream_field_order: int, frames: list[av.VideoFrame], time_base: Fraction,
           rate: Fraction | None) -> Interlacing:
    """Interlaced or not, and the field order, from the stream's tag, the frames' flags and ``idet``.

    A tag saying interlaced is trusted (a static opening looks progressive to ``idet``, and missing a
    deinterlace bakes combing in for good). ``idet`` decides for untagged files and gives the field
    order where the tag does not. A progressive tag is trusted too, because synthetic pictures (FFmpeg's
    ``testsrc2``, for one) comb to ``idet`` on every frame; when nearly every frame it saw combs, that is
    reported (``combed``) and ``--interlaced deinterlace`` acts on it.
    """
    tagged = _DISPLAY_ORDER.get(stream_field_order)
    if tagged is None and frames and not frames[0].format.name.startswith(_VIDEO_FORMATS):
        # RGB and palette pictures (GIF, PNG, screen captures) are not interlaced; flat synthetic
        # colours are where idet errs most.
        return Interlacing("progressive", f"{frames[0].format.name} pictures")
    flagged = sum(f.interlaced_frame for f in frames)
    votes = idet_votes(frames, time_base, rate)
    combed = votes["tff"] + votes["bff"]
    idet_order = "tff" if votes["tff"] >= votes["bff"] else "bff"
    counts = f"idet: {votes['tff']} tff, {votes['bff']} bff, {votes['progressive']} progressive of {len(frames)} frames"
    if tagged is not None:
        return Interlacing(tagged, "stream tag")
    if frames and flagged * 2 > len(frames):
        return Interlacing(idet_order if combed else "tff", f"frame flags, order from {counts}")
    if stream_field_order == FIELD_PROGRESSIVE:
        suspect = combed >= 4 and combed * 4 >= len(frames) * 3
        return Interlacing("progressive", f"stream tag, but {counts}" if suspect else "stream tag",
                           idet_order if suspect else None)
    if combed >= 2 and combed >= 2 * votes["progressive"]:
        return Interlacing(idet_order, counts)
    return Interlacing("progressive", counts)


def idet_votes(frames: list[av.VideoFrame], time_base: Fraction, rate: Fraction | None) -> dict[str, int]:
    """``idet``'s multi-frame verdict per frame, counted: tff, bff, progressive, undetermined."""
    votes = {"tff": 0, "bff": 0, "progressive": 0, "undetermined": 0}
    if not frames:
        return votes
    graph = _graph(frames[0], time_base, rate, [("idet", {})])
    for frame in [*frames, None]:
        graph.push(frame)
        for out in _pull(graph):
            verdict = out.metadata.get("lavfi.idet.multiple.current_frame", "undetermined")
            votes[verdict if verdict in votes else "undetermined"] += 1
    return votes


# -- policy ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FieldOperation:
    """A ``deinterlace`` or ``ivtc`` element of a chain, its options checked."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)


def take_field_operations(requests: list[Any]) -> tuple[list[FieldOperation], list[Any]]:
    """Split a chain's requests into field operations (which must lead it) and stages."""
    operations: list[FieldOperation] = []
    stages: list[Any] = []
    for request in requests:
        if request.name not in FIELD_OPERATIONS:
            stages.append(request)
            continue
        where = f"{request.where}: " if request.where else ""
        if stages:
            raise ConfigError(f"{where}{request.name} works on the decoded fields and must come first in the chain")
        if operations:
            raise ConfigError(f"{where}only one of deinterlace and ivtc can be used (ivtc already deinterlaces "
                              "the frames it cannot match)")
        options = FIELD_OPERATIONS[request.name]
        unknown = sorted(set(request.settings) - set(options))
        if unknown:
            raise ConfigError(f"{where}{request.name} has no option {unknown[0]!r} (options: {', '.join(options)})")
        settings = {key: option.default for key, option in options.items()}
        settings.update({key: options[key].parse(request.name, key, value) for key, value in request.settings.items()})
        operations.append(FieldOperation(request.name, settings))
    return operations, stages


@dataclass(frozen=True)
class FieldPlan:
    """What happens to the fields: a filter on decoded frames, and the field order written on the output."""

    filters: list[tuple[str, dict[str, Any]]]
    """libavfilter graph applied by the reader ([] = none)."""
    rate: Fraction
    """Output frames per source frame (2 at field rate, 4/5 for IVTC, 1 otherwise)."""
    retime: Fraction | None = None
    """Seconds between output frames when they are re-timed evenly (IVTC), else None: the filter's pts."""
    field_split: bool = False
    """The reader hands the stages single fields (half height), which the writer weaves back."""
    output_order: str | None = None
    """``tff``/``bff``: the output is interlaced with this field order; None: progressive."""
    notice: str | None = None
    """One line for the user when the frames or their count change by design."""

    @property
    def time_base_divisor(self) -> int:
        return 2 if self.rate == 2 else 1


NO_FIELDS = FieldPlan([], Fraction(1))


def plan_fields(operations: list[FieldOperation], mode: str, source: Interlacing, touches_pixels: bool,
                rate: Fraction | None) -> FieldPlan:
    """Choose what to do with the fields: the user's operation, or the ``--interlaced`` policy."""
    if mode not in INTERLACED_MODES:
        raise ConfigError(f"--interlaced must be one of {', '.join(INTERLACED_MODES)}, got {mode!r}")
    if operations and mode == "keep":
        raise ConfigError(f"--interlaced keep keeps the fields, but the chain starts with {operations[0].name}")
    if operations:
        operation = operations[0]
        return _ivtc(operation, source, rate) if operation.name == "ivtc" else _deinterlace(operation, source, rate)
    if source.combed and mode == "deinterlace":
        source = Interlacing(source.combed, source.evidence)
    if not source.interlaced or mode == "progressive":
        return NO_FIELDS
    if mode == "keep":
        return FieldPlan(
            [("setfield", {"mode": source.order}), ("separatefields", {})], Fraction(2), field_split=True,
            output_order=source.order,
            notice=f"interlaced input ({source.describe()}): each field is processed as its own half-height "
                   f"picture and woven back; the output stays interlaced ({source.order})")
    if mode == "deinterlace" or touches_pixels:
        plan = _deinterlace(FieldOperation("deinterlace", _defaults("deinterlace")), source, rate)
        return replace(plan, notice=f"interlaced input ({source.describe()}): deinterlacing first with bwdif "
                                    f"at field rate, {_rates(rate, plan.rate)}; the output has twice the frames "
                                    "(--interlaced keep keeps it interlaced)")
    # Nothing changes the pixels (e.g. identity): the woven frames go through untouched and are written
    # interlaced where the source says so (idet alone is no reason to change how a file is coded).
    return FieldPlan([], Fraction(1), output_order=source.order if not source.evidence.startswith("idet") else None)


def _deinterlace(operation: FieldOperation, source: Interlacing, rate: Fraction | None) -> FieldPlan:
    settings = operation.settings
    field_rate = settings["rate"] == "field"
    parity = settings["parity"] if settings["parity"] != "auto" else (source.order if source.interlaced else "auto")
    options = {"mode": 1 if field_rate else 0, "parity": {"tff": 0, "bff": 1, "auto": -1}[parity],
               "deint": 0 if settings["deint"] == "all" else 1}
    factor = Fraction(2) if field_rate else Fraction(1)
    what = "field rate" if field_rate else "frame rate"
    count = "twice the frames" if field_rate else "the same number of frames"
    return FieldPlan([(settings["method"], options)], factor,
                     notice=f"deinterlacing with {settings['method']} at {what} ({parity}), "
                            f"{_rates(rate, factor)}; the output has {count}")


def _ivtc(operation: FieldOperation, source: Interlacing, rate: Fraction | None) -> FieldPlan:
    if not rate:
        raise ConfigError("ivtc needs a constant frame rate, and the source does not state one")
    order = operation.settings["order"]
    if order == "auto":
        order = source.order if source.interlaced else "auto"
    # FFmpeg's recommended chain: match fields, deinterlace what is still combed (orphan fields at
    # scene changes), then drop the duplicate of each cycle of five.
    filters = [("fieldmatch", {"order": order, "combmatch": "full"}),
               ("bwdif", {"mode": 0, "parity": -1, "deint": 1}), ("decimate", {})]
    factor = Fraction(4, 5)
    return FieldPlan(filters, factor, retime=1 / (rate * factor),
                     notice=f"inverse telecine (fieldmatch, decimate; {order}): {_rates(rate, factor)}; "
                            "one frame in five is a pulldown duplicate and is removed")


def _defaults(name: str) -> dict[str, Any]:
    return {key: option.default for key, option in FIELD_OPERATIONS[name].items()}


def _rates(rate: Fraction | None, factor: Fraction) -> str:
    if not rate:
        return f"frame rate ×{factor}"
    return f"{_fps(rate)} → {_fps(rate * factor)} fps"


def _fps(rate: Fraction) -> str:
    return f"{float(rate):.3f}".rstrip("0").rstrip(".")


# -- the reader's filter ---------------------------------------------------------------------------
def common_time_base(*bases: Fraction) -> Fraction:
    """The coarsest time base in which every tick of each of ``bases`` is a whole number."""
    numerator = math.gcd(*(b.numerator for b in bases))
    denominator = math.lcm(*(b.denominator for b in bases))
    return Fraction(numerator, denominator)


class FrameFilter:
    """A libavfilter graph over decoded frames (same pixel format out), with exact output timestamps.

    Output timestamps are in ``time_base``: the source's, halved when frames come at field rate (the
    deinterlacers put the second field's frame midway to the next frame, which needs the half tick).
    IVTC output is re-timed evenly from the first frame: n × 5/4 of a source frame.
    """

    def __init__(self, plan: FieldPlan, first: av.VideoFrame, time_base: Fraction, rate: Fraction | None,
                 sample_aspect_ratio: Fraction | None) -> None:
        self.plan = plan
        self.source_time_base = time_base
        self.time_base = time_base / plan.time_base_divisor
        if plan.retime is not None:
            self.time_base = common_time_base(time_base, plan.retime)
        self._graph = _graph(first, time_base, rate, plan.filters, sample_aspect_ratio)
        self._shape = (first.width, first.height, first.format.name)
        self._anchor: int | None = None
        self._emitted = 0

    def push(self, frame: av.VideoFrame) -> list[av.VideoFrame]:
        if self._anchor is None and frame.pts is not None:
            self._anchor = round(frame.pts * self.source_time_base / self.time_base)
        if (frame.width, frame.height, frame.format.name) != self._shape:
            # The graph was configured for the first frame; a resolution change mid-stream is scaled
            # back to it (as the reader does without a filter) rather than handed to a deinterlacer
            # that cannot take it.
            width, height, pix_fmt = self._shape
            pts = frame.pts
            frame = frame.reformat(width=width, height=height, format=pix_fmt)
            frame.pts = pts
        self._graph.push(frame)
        return [self._stamp(out) for out in _pull(self._graph)]

    def flush(self) -> list[av.VideoFrame]:
        self._graph.push(None)
        return [self._stamp(out) for out in _pull(self._graph)]

    def _stamp(self, frame: av.VideoFrame) -> av.VideoFrame:
        if self.plan.retime is not None and self._anchor is not None:
            frame.pts = self._anchor + round(self._emitted * self.plan.retime / self.time_base)
        elif frame.pts is not None:
            frame.pts = round(frame.pts * frame.time_base / self.time_base)
        frame.time_base = self.time_base
        self._emitted += 1
        return frame

    def describe(self, info: Any) -> Any:
        """The reader's ``VideoInfo`` as the filtered frames have it (time base, rate, count, size)."""
        rate = info.average_rate * self.plan.rate if info.average_rate else None
        count = round(info.frame_count * self.plan.rate) if info.frame_count else None
        height = info.height // 2 if self.plan.field_split else info.height
        return replace(info, time_base=self.time_base, average_rate=rate, frame_count=count,
                       frame_count_exact=False, height=height)


# -- the writer's weave ----------------------------------------------------------------------------
class FieldWeaver:
    """Before encoding: weaves processed fields back into frames, and flags frames interlaced.

    With ``weave`` the frames arriving are fields in display order (first, second, first, …); each pair
    becomes one frame at the first field's timestamp. Either way each frame leaves ``setfield`` flagged
    interlaced with the field order, which the encoder reads (x264 codes the fields in that order).
    """

    def __init__(self, order: str, weave: bool) -> None:
        self._filters: list[tuple[str, dict[str, Any]]] = []
        if weave:
            self._filters.append(("weave", {"first_field": "top" if order == "tff" else "bottom"}))
        self._filters.append(("setfield", {"mode": order}))
        self._graph: av.filter.Graph | None = None
        self._weave = weave
        self._stamps: list[tuple[int | None, Fraction]] = []
        self._fields = 0

    def push(self, frame: av.VideoFrame) -> list[av.VideoFrame]:
        if self._graph is None:
            self._graph = _graph(frame, frame.time_base, None, self._filters)
        if not self._weave or self._fields % 2 == 0:
            self._stamps.append((frame.pts, frame.time_base))
        self._fields += 1
        self._graph.push(frame)
        return self._take()

    def flush(self) -> list[av.VideoFrame]:
        if self._graph is None:
            return []
        self._graph.push(None)
        return self._take()

    def _take(self) -> list[av.VideoFrame]:
        out = _pull(self._graph)
        for frame in out:
            # weave counts time in its own (doubled) time base; the encoder would rescale from it
            frame.pts, frame.time_base = self._stamps.pop(0)
        return out


# -- libavfilter -----------------------------------------------------------------------------------
def _graph(first: av.VideoFrame, time_base: Fraction, rate: Fraction | None,
           filters: list[tuple[str, dict[str, Any]]], sample_aspect_ratio: Fraction | None = None) -> av.filter.Graph:
    graph = av.filter.Graph()
    source = {"video_size": f"{first.width}x{first.height}", "pix_fmt": str(int(first.format)),
              "time_base": str(time_base), "pixel_aspect": str(sample_aspect_ratio or Fraction(1))}
    if rate:
        source["frame_rate"] = str(rate)
    nodes = [graph.add("buffer", **source)]
    nodes += [graph.add(name, **{k: str(v) for k, v in options.items()}) for name, options in filters]
    nodes.append(graph.add("buffersink"))
    graph.link_nodes(*nodes).configure()
    return graph


def _pull(graph: av.filter.Graph) -> list[av.VideoFrame]:
    out = []
    while True:
        try:
            out.append(graph.vpull())
        except (av.error.BlockingIOError, av.error.EOFError):
            return out
