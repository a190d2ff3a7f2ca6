"""The demo's video side, without Gradio: check an uploaded clip, pick a frame by time, restore a few seconds.

Frames are picked with decord (random access by frame index, built for this) when it is installed and can
decode the clip faithfully; PyAV (seek to the keyframe before, decode forward) serves what decord cannot:
sources above 8 bits (decord returns them reduced, wrongly), interlaced sources (its RGB conversion differs
from PyAV's by up to 111/255 on them), codecs whose decoding is not bit-exact by their standard (MPEG-4
Part 2 in AVI, MPEG-2, MJPEG: decord's own FFmpeg rounds its IDCT differently, 1/255 here and there), and
containers or codecs it fails to open. The
picked frame is RGB as PyAV's ``to_ndarray(format="rgb24")`` gives it (``rgb48le`` above 8 bits, so a 10-bit
source is restored at its precision), the frame shown at time t being the last one at or before t.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from streamrestore.durations import format_duration
from streamrestore.errors import MediaError, NoVideoStreamError, TooLargeError
from streamrestore.media.interlace import FIELD_PROGRESSIVE, FIELD_UNKNOWN
from streamrestore.restore import OutputSettings, RunSettings

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mkv", ".mov", ".ts", ".m2ts", ".mts", ".avi", ".webm")
DECORD_CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "av1"})
"""Codecs whose standard fixes the decoded pixels exactly, so decord's FFmpeg and PyAV's give the same frame."""
PREVIEW_ENCODER = {"codec": "libx264", "pix_fmt": "yuv420p", "crf": 18.0}
"""What the browser plays: ``streamrestore job … --codec libx264 --pix-fmt yuv420p --crf 18``."""


@dataclass(frozen=True)
class VideoUpload:
    path: Path
    name: str
    width: int
    height: int
    duration: float  # seconds
    rate: float  # average frames per second
    frames: int  # counted by the container, else duration × rate
    codec: str
    pix_fmt: str
    bits: int
    has_audio: bool
    interlaced: bool = False  # the stream's field order, or the first frame's flag, says so

    def describe(self) -> str:
        return (f"{self.name}: {self.width}×{self.height} {self.codec} {self.pix_fmt} ({self.bits}-bit"
                f"{', interlaced' if self.interlaced else ''}), {self.duration:.2f} s at {self.rate:.3g} fps, "
                f"{self.frames} frames{', audio' if self.has_audio else ''}")


def check_video(path: str | Path, name: str, max_pixels: int, max_seconds: float) -> VideoUpload:
    """Open an upload with PyAV, check its kind, size and length, and decode its first frame."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError):
        raise MediaError(f"{name} is not a video this server can read (MP4, MKV, MOV, TS, AVI, WebM)") from None
    try:
        if not container.streams.video:
            raise NoVideoStreamError(f"{name} has no video stream")
        stream = container.streams.video[0]
        context = stream.codec_context
        width, height = context.width, context.height
        if not width or not height:
            raise MediaError(f"{name} is not a video this server can read (no picture size)")
        if width * height > max_pixels:
            raise MediaError(f"{name} is {width}×{height} ({width * height / 1e6:.1f} MP); this server takes at "
                             f"most {max_pixels / 1e6:g} MP")  # fmt: skip
        rate = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
        if duration > max_seconds:
            raise MediaError(f"{name} lasts {format_duration(duration)}; this server takes clips up to "
                             f"{format_duration(max_seconds)}")  # fmt: skip
        first = next((f for f in container.decode(stream)), None)
        if first is None:
            raise MediaError(f"{name} is damaged: no frame could be decoded")
        bits = max(c.bits for c in first.format.components)
        interlaced = first.interlaced_frame or context.field_order not in (FIELD_UNKNOWN, FIELD_PROGRESSIVE)
    except av.error.FFmpegError as error:
        raise MediaError(f"{name} is damaged: {error}") from None
    finally:
        container.close()
    frames = stream.frames or max(1, round(duration * rate))
    return VideoUpload(Path(path), name, width, height, duration, rate, frames, context.name, first.format.name,
                       bits, bool(container.streams.audio), bool(interlaced))  # fmt: skip


@dataclass(frozen=True)
class PickedFrame:
    pixels: np.ndarray  # H×W×3 RGB, uint8 (uint16 above 8 bits)
    time: float  # the frame's time, seconds from the first frame
    index: int  # its index from the first frame
    backend: str  # "decord" or "PyAV"
    seconds: float  # how long picking it took


class FramePicker:
    """Picks frames of one clip at a time; keeps decord's reader (and its frame index) for the last clip."""

    def __init__(self, use_decord: bool = True) -> None:
        self.use_decord = use_decord
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._reader = None
        self._times: np.ndarray | None = None

    def pick(self, upload: VideoUpload, t: float) -> PickedFrame:
        started = time.perf_counter()
        with self._lock:
            faithful = upload.bits <= 8 and not upload.interlaced and upload.codec in DECORD_CODECS
            reader = self._decord(upload) if self.use_decord and faithful else None
            if reader is not None:
                index = max(0, int(np.searchsorted(self._times, t + 1e-6, side="right")) - 1)
                pixels = reader[index].asnumpy()
                picked = PickedFrame(pixels, float(self._times[index]), index, "decord", 0.0)
            else:
                picked = pyav_frame(upload.path, t, upload.bits)
        return PickedFrame(picked.pixels, picked.time, picked.index, picked.backend, time.perf_counter() - started)

    def close(self) -> None:
        with self._lock:
            self._reader = self._path = self._times = None

    def _decord(self, upload: VideoUpload):
        if self._path == upload.path:
            return self._reader
        self._reader = self._path = self._times = None
        try:
            import decord
        except ImportError:
            return None
        try:
            reader = decord.VideoReader(str(upload.path), ctx=decord.cpu(0), num_threads=1)
            stamps = reader.get_frame_timestamp(range(len(reader)))[:, 0]
        except Exception:  # noqa: BLE001 - decord raises its own untyped errors; PyAV is the fallback
            return None
        if not len(reader):
            return None
        self._reader, self._path, self._times = reader, upload.path, np.asarray(stamps) - stamps[0]
        return reader


def pyav_frame(path: str | Path, t: float, bits: int = 8) -> PickedFrame:
    """The last frame at or before ``t`` s (from the first frame): seek to the keyframe before, decode forward."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        tb = stream.time_base
        first = stream.start_time
        if first is None:
            first = next(f.pts for f in container.decode(stream) if f.pts is not None)
        target = first + int(t / tb + 1e-6 / tb)
        container.seek(target, stream=stream, backward=True)
        chosen = None
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            if frame.pts > target and chosen is not None:
                break
            chosen = frame
        if chosen is None:
            raise MediaError(f"{Path(path).name} has no frame at {t:.3f} s")
        pixels = chosen.to_ndarray(format="rgb48le" if bits > 8 else "rgb24")
        seconds = float((chosen.pts - first) * tb)
        return PickedFrame(pixels, seconds, round(seconds * float(stream.average_rate or 25)), "PyAV", 0.0)


# -- compare and preview, over the image demo's session (its shared chains, lock and work directory) ------
@dataclass(frozen=True)
class Compared:
    frame: PickedFrame
    original: Path  # 8-bit previews at one size (nearest-neighbour enlargement): the same zoom for all three
    restored: list[Path]
    outputs: list[Path]  # the restored frames, lossless PNG at the source's bit depth
    summaries: list[str]

    def summary(self) -> str:
        lines = [f"frame {self.frame.index} at {self.frame.time:.3f} s, picked by {self.frame.backend}"]
        lines += [f"**{label}**: {text}" for label, text in zip("AB", self.summaries)]
        return "  \n".join(lines)


@dataclass(frozen=True)
class Estimate:
    """A whole-file run's time from a preview: steady seconds per frame × frames, plus the fixed costs.

    A run pays some costs once: planning (the packet index), reading the weights, the first batch's
    warm-up (a batch of one frame while the batch size is measured, ``engine.placement.BatchSizer``) and
    the join. Dividing the whole preview by its frames spread them over every frame of the file. Here the
    rate is the preview's from its first frame out to its last; what that rate does not account for, plus
    the time the server took to read the weights (the preview reuses them; a new run reads them again), is
    the fixed part.
    """

    seconds: float
    per_frame: float
    fixed: float

    @classmethod
    def measure(cls, started: float, finished: float, written: list[float], frames: float,
                loading: float = 0.0) -> Estimate:  # fmt: skip
        """``written``: the clock at each frame the preview wrote, between ``started`` and ``finished``;
        ``frames``: the whole run's frames out; ``loading``: seconds reading the weights took."""
        total = finished - started
        steady = (written[-1] - written[0]) / (len(written) - 1) if len(written) > 1 else total
        fixed = loading + max(0.0, total - steady * len(written))
        return cls(fixed + steady * frames, steady, fixed)


@dataclass(frozen=True)
class Preview:
    before: Path  # the source's range, H.264 for the browser (the range restored with the empty chain)
    after: Path  # the restored range, H.264
    start: float
    frames: int
    seconds: float  # the range restore took, all of it (planning, loading, warm-up, join)
    estimate: Estimate  # the whole file's run, from the preview's measured speed
    size: tuple[int, int]
    device: str
    chain: str  # as it ran: `streamrestore job IN --chain CHAIN --start S --duration D` gives the same frames

    def summary(self, upload: VideoUpload) -> str:
        width, height = self.size
        e = self.estimate
        return (f"{self.frames} frames from {self.start:.2f} s → **{width}×{height}** in **{self.seconds:.2f} s** "
                f"on **{self.device}**, chain `{self.chain or '(none)'}`  \n"
                f"whole file ({upload.frames} frames) at this speed: **about {format_duration(e.seconds)}** "
                f"({e.per_frame:.3f} s/frame after the first batch, plus {e.fixed:.1f} s to start and finish)")


class VideoSession:
    """What the video part of the page does: check a clip, pick a frame, compare two chains, preview a range."""

    def __init__(self, session) -> None:  # a logic.DemoSession
        self.session = session
        self.picker = FramePicker()

    def inspect(self, path: str | Path) -> VideoUpload:
        from streamrestore.demo.logic import safe_name

        s = self.session.settings
        return check_video(path, safe_name(str(path), "video"), s.max_pixels, s.max_video_seconds)

    def pick(self, path: str | Path, t: float) -> tuple[VideoUpload, PickedFrame, Path]:
        from streamrestore.demo.logic import _write_preview

        upload = self.inspect(path)
        frame = self.picker.pick(upload, max(0.0, float(t)))
        shown = self.session._result_folder() / f"frame-{frame.index}.png"
        _write_preview(shown, frame.pixels)
        return upload, frame, shown

    def compare(self, path: str | Path, t: float, chains: list[str], content: str = "photo") -> Compared:
        import cv2

        from streamrestore.demo.logic import Upload, _write_preview

        upload, frame, _ = self.pick(path, t)
        still = Upload(f"{Path(upload.name).stem}-{frame.index}.png", upload.codec, frame.pixels)
        results = [self.session.restore_upload(still, chain, None, content) for chain in chains]
        width = max(r.size[0] for r in results)
        height = max(r.size[1] for r in results)
        folder = self.session._result_folder()
        shown = []
        for label, pixels in [("original", frame.pixels)] + [(f"chain-{k}", _read(r.output)) for k, r in
                                                               zip("ab", results)]:  # fmt: skip
            shown.append(folder / f"{label}.png")
            _write_preview(shown[-1], cv2.resize(pixels, (width, height), interpolation=cv2.INTER_NEAREST))
        outputs = []
        for k, r in zip("AB", results):  # distinct names for the two downloads
            outputs.append(r.output.with_name(f"{r.output.stem}.{k}.png"))
            r.output.rename(outputs[-1])
        summaries = [f"`{r.chain or '(none)'}` {r.size[0]}×{r.size[1]}, **{r.seconds:.2f} s**/frame on "
                     f"**{r.device}**" for r in results]  # fmt: skip
        return Compared(frame, shown[0], shown[1:], outputs, summaries)

    def preview(self, path: str | Path, t: float, chain: str, seconds: float, content: str = "photo",
                progress=lambda fraction: None) -> tuple[VideoUpload, Preview]:  # fmt: skip
        """Restore up to ``preview_seconds`` around ``t`` (starting at most half of it before), as H.264 MP4s.

        Both clips are the library's range restore (``streamrestore.jobs``, as ``streamrestore job --start
        --duration``): "before" with the empty chain, "after" with the chain as it runs here (its tiles
        written out), so the command line with that chain and ``PREVIEW_ENCODER`` gives the same frames.
        """
        from streamrestore.demo.logic import _describe_device, format_chain, on_page
        from streamrestore.engine.budget import check_frames
        from streamrestore.jobs import Job

        s = self.session.settings
        upload = self.inspect(path)
        seconds = min(float(seconds or s.preview_seconds), s.preview_seconds)
        if seconds <= 0:
            raise MediaError("choose a preview length above 0 s")
        start = max(0.0, min(float(t) - seconds / 2, upload.duration - seconds))
        plan = self.session._plan(chain, None)
        registry = self.session.registry(content)
        folder = self.session._result_folder()
        stem = Path(upload.name).stem
        before, after = folder / f"{stem}.original.mp4", folder / f"{stem}.preview.mp4"
        with self.session._run_lock:
            prepared, loading = self.session.chains.get(plan, content, registry, self.session.run)
            ran, _ = self.session._describe(plan, prepared, loading)  # the tile each element runs in
            try:
                check_frames(prepared.stages, upload.height, upload.width, s.preview_pixels)
            except TooLargeError as error:
                raise TooLargeError(f"preview: {on_page(error, 'choose a smaller scale')}") from error
            options = preview_options(prepared.run, start, seconds)
            Job(str(upload.path), str(before), "", options).run()
            written: list[float] = []
            started = time.perf_counter()  # planning counts: a whole-file run plans too
            progress(0.0)
            # The shared chain (its weights read once for every request), as `chain` with `prepared.run`.
            job = Job(str(upload.path), str(after), format_chain(plan), options, prepared)
            expected = max(1, job.status().frames)

            def count(frames: int) -> None:
                written.extend([time.perf_counter()] * frames)
                progress(min(1.0, len(written) / expected))

            report = job.run(on_frames=count)
            finished = time.perf_counter()
            device = _describe_device(prepared)
        with av.open(str(after)) as output:
            size = (output.streams.video[0].width, output.streams.video[0].height)
        # Frames out per frame in: 2 where an interlaced source is restored at field rate.
        estimate = Estimate.measure(started, finished, written or [finished], upload.frames * report.frames / expected,
                                    self.session.chains.build_seconds(plan, content))  # fmt: skip
        return upload, Preview(before, after, start, report.frames, finished - started, estimate, size, device,
                               format_chain(ran))  # fmt: skip


def preview_options(run: RunSettings, start: float, seconds: float):
    """The preview's range and encoder settings as a ``JobOptions`` (one worker: a preview is one segment)."""
    from streamrestore.jobs import JobOptions

    return JobOptions(run=run, output=OutputSettings(**PREVIEW_ENCODER), workers=1, start=start, duration=seconds)


def _read(path: Path) -> np.ndarray:
    from streamrestore.media.images import read_image

    return read_image(path)
