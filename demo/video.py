"""The demo's video side, without Gradio: check an uploaded clip, pick a frame by time, restore a few seconds.

Frames are picked with decord (random access by frame index, built for this) when it is installed and can
decode the clip faithfully; PyAV (seek to the keyframe before, decode forward) serves what decord cannot:
sources above 8 bits (decord returns them reduced, wrongly), containers or codecs it fails to open. The
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

from streamrestore.errors import MediaError, NoVideoStreamError

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mkv", ".mov", ".ts", ".m2ts", ".mts", ".avi", ".webm")


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

    def describe(self) -> str:
        return (f"{self.name}: {self.width}×{self.height} {self.codec} {self.pix_fmt} ({self.bits}-bit), "
                f"{self.duration:.2f} s at {self.rate:.3g} fps, {self.frames} frames"
                f"{', audio' if self.has_audio else ''}")


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
            raise MediaError(f"{name} lasts {_duration(duration)}; this server takes clips up to "
                             f"{_duration(max_seconds)}")  # fmt: skip
        first = next((f for f in container.decode(stream)), None)
        if first is None:
            raise MediaError(f"{name} is damaged: no frame could be decoded")
        bits = max(c.bits for c in first.format.components)
    except av.error.FFmpegError as error:
        raise MediaError(f"{name} is damaged: {error}") from None
    finally:
        container.close()
    frames = stream.frames or max(1, round(duration * rate))
    return VideoUpload(Path(path), name, width, height, duration, rate, frames, context.name, first.format.name,
                       bits, bool(container.streams.audio))  # fmt: skip


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
            reader = self._decord(upload) if self.use_decord and upload.bits <= 8 else None
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
class Preview:
    before: Path  # the source's range, H.264 for the browser
    after: Path  # the restored range, H.264
    start: float
    frames: int
    seconds: float  # restoring the range took
    estimate: float  # seconds for the whole file at the same speed
    size: tuple[int, int]
    device: str
    chain: str

    def summary(self, upload: VideoUpload) -> str:
        width, height = self.size
        speed = self.frames / self.seconds if self.seconds else 0.0
        return (f"{self.frames} frames from {self.start:.2f} s → **{width}×{height}** in **{self.seconds:.2f} s** "
                f"({speed:.2f} fps) on **{self.device}**, chain `{self.chain or '(none)'}`  \n"
                f"whole file ({upload.frames} frames) at this speed: **about {_duration(self.estimate)}**")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


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
        """Restore up to ``preview_seconds`` around ``t`` (starting at most half of it before), as H.264 MP4s."""
        from streamrestore.demo.logic import _describe_device, format_chain
        from streamrestore.excerpt import restore_range
        from streamrestore.presets import parse_chain
        from streamrestore.restore import OutputSettings

        s = self.session.settings
        upload = self.inspect(path)
        seconds = min(float(seconds or s.preview_seconds), s.preview_seconds)
        if seconds <= 0:
            raise MediaError("choose a preview length above 0 s")
        start = max(0.0, min(float(t) - seconds / 2, upload.duration - seconds))
        plan = self.session._plan(chain, None)
        registry = self.session.registry(content)
        folder = self.session._result_folder()
        output = OutputSettings(codec="libx264", pix_fmt="yuv420p", crf=18, overwrite=True)
        total = max(1, round(seconds * upload.rate))
        with self.session._run_lock:
            prepared, loading = self.session.chains.get(plan, content, registry, self.session.run)
            ran, _ = self.session._describe(plan, prepared, loading)  # the tile each element runs in
            identity, _ = self.session.chains.get(parse_chain(""), content, registry, self.session.run)
            width, height = upload.width * prepared.scale, upload.height * prepared.scale
            if width * height > s.preview_pixels:
                raise MediaError(f"the preview would be {width}×{height} ({width * height / 1e6:.1f} MP); this "
                                 f"server previews at most {s.preview_pixels / 1e6:g} MP a frame; choose a "
                                 "smaller scale")  # fmt: skip
            stem = Path(upload.name).stem
            before = folder / f"{stem}.original.mp4"
            restore_range(identity, upload.path, before, start, seconds, output)
            done = [0]

            def count(frames: int) -> None:
                done[0] += frames
                progress(min(1.0, done[0] / total))

            after = folder / f"{stem}.preview.mp4"
            report = restore_range(prepared, upload.path, after, start, seconds, output, on_frames=count)
            device = _describe_device(prepared)
        per_frame = report.seconds / max(1, report.source_frames or report.frames)
        return upload, Preview(before, after, start, report.frames, report.seconds, per_frame * upload.frames,
                               (report.width, report.height), device, format_chain(ran))  # fmt: skip


def _read(path: Path) -> np.ndarray:
    from streamrestore.media.images import read_image

    return read_image(path)
