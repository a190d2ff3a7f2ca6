"""The library API: ``PreparedChain`` (a chain built once, for many images or videos), and the one-call
wrappers ``restore_video`` and ``restore_image``. The CLI and the web demo call these.

A ``PreparedChain`` is built from a chain (``"denoise,sr4"``, a preset, or a ``ChainPlan``) and
``RunSettings``: it parses and builds the stages once (an alias that repeats, ``sr4`` = ×2 twice, uses one
stage and so reads its weights once), says where each stage runs (``placements``), and restores an image
array, an image file (written atomically: a temporary file renamed into place) or a video.

Data path of a video: MediaReader (decode; deinterlace/IVTC/field split with libavfilter when the chain or
the interlacing policy asks, see ``media.interlace``; RGB at source precision) → ChainRunner (the stages,
``engine.chain``) → MediaWriter (RGB→YUV with the source's colour description, fields woven back for
``--interlaced keep``, encode at source timestamps, audio/subtitles copied) → OutputTarget (temporary file
renamed into place on success); the three run in their own threads (``engine.threads``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import av
import numpy as np

from .engine.budget import DEFAULT_MAX_PIXELS, check_frames
from .engine.chain import ChainRunner
from .engine.placement import Placement, configure_cpu_threads, cuda_available, place
from .engine.threads import StreamSettings, run_stream
from .errors import ConfigError, CorruptInputError
from .frames import FrameBatch, image_to_tensor, tensor_to_images
from .media import encoder
from .media import interlace
from .media.images import (IMAGE_SUFFIXES, check_image, is_image_path, read_image, read_picture, write_image,
                           write_picture)
from .media.output import OutputTarget, default_output_path
from .media.reader import MediaReader, VideoInfo
from .media.writer import EncodeSettings, MediaWriter, OutputVideo, choose_pix_fmt
from .presets import ChainPlan, join_pairs, parse_chain
from .presets import build_chain
from .registry import Registry
from .stage import BuiltStage

__all__ = ["IMAGE_SUFFIXES", "OutputSettings", "PreparedChain", "RestoreReport", "RunSettings", "is_image_path",
           "read_image", "restore_image", "restore_video", "write_image"]


@dataclass(frozen=True)
class RunSettings:
    """How a chain runs: where, in what precision, in what pieces. None: decided automatically."""

    device: str | None = None
    """auto/None, cpu, cuda or cuda:N (``engine.placement.place``)."""
    precision: str | None = None
    """None/auto, float32, float16, bfloat16 (``engine.placement.choose_dtype``)."""
    batch_size: int | None = None
    """Frames per batch; None: planned (``engine.placement.BatchSizer``)."""
    cpu_threads: int | None = None
    """torch's intra-op threads; None: every core."""
    tile: int = 0
    """Tile side in input pixels for every tileable stage (0: whole frames, tiled only after running out of
    memory); a chain element's own ``tile=`` wins."""
    content: str = "photo"
    """Which pretrained models the aliases use: photo or anime."""
    strict: bool = False
    """Damaged input is an error instead of being repaired."""
    timeout: float = 15.0
    """Seconds to wait on a network input."""
    max_pixels: int = DEFAULT_MAX_PIXELS
    """Largest output frame, and largest frame a stage works on (padding counted), in pixels; a chain over it,
    or needing more memory than is available, is refused before the first frame (``engine.budget``). 0: no
    check."""
    interlaced: str = "auto"
    """Interlaced input (``media.interlace``): auto deinterlaces (bwdif, field rate) before stages that change
    pixels, deinterlace always, keep processes each field and writes interlaced output, progressive ignores
    tags and idet. ``deinterlace``/``ivtc`` at the head of the chain override it."""


@dataclass(frozen=True)
class OutputSettings:
    """Where and how a video is written. Encoder fields left None come from the preset's ``output:``, then the
    defaults."""

    codec: str | None = None
    crf: float | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    encoder_threads: int | None = None
    format: str | None = None
    """Container for standard output (mpegts, matroska, mp4)."""
    overwrite: bool = False
    encoder_log: bool = False
    """Let encoders that log on their own (libx265) print their settings (``--debug``)."""


@dataclass(frozen=True)
class RestoreReport:
    output: str
    frames: int
    damaged_frames: int
    repaired_frames: int
    seconds: float
    width: int
    height: int
    pix_fmt: str
    color: str
    codec: str = ""
    warnings: tuple[str, ...] = ()
    """One line per repair of the input (timestamps that went back, frames resized mid-stream, …) and per
    thing the output cannot keep (HDR10+ metadata, …)."""
    source_frames: int = 0
    """Frames read from the source (``frames`` differs by design after deinterlacing or IVTC)."""


class PreparedChain:
    """A chain parsed and built once, with its run settings; restores images and videos (module docstring)."""

    def __init__(self, chain: str | ChainPlan = "", run: RunSettings | None = None,
                 registry: Registry | None = None) -> None:  # fmt: skip
        self.run = run or RunSettings()
        if self.run.batch_size is not None and self.run.batch_size < 1:
            raise ConfigError(f"--batch must be at least 1, got {self.run.batch_size}")
        if self.run.tile < 0:
            raise ConfigError(f"--tile must be 0 (whole frames) or a size in pixels, got {self.run.tile}")
        plan = parse_chain(chain) if isinstance(chain, str) else chain
        if registry is None:
            accelerated = self.run.device != "cpu" and cuda_available()
            registry = Registry(content=self.run.content, accelerated=accelerated)
        self.registry = registry
        # deinterlace/ivtc lead the chain but are not stages: the reader applies them to decoded frames.
        self.field_operations, stage_requests = interlace.take_field_operations(plan.stages)
        # The chain as it runs (joined aliases replaced), and one line per join for the user.
        self.plan, self.notices = join_pairs(replace(plan, stages=stage_requests), registry.joined)
        self.stages: list[BuiltStage] = build_chain(self.plan, registry)

    @property
    def placements(self) -> list[Placement]:
        """Where each stage computes, and in what precision (reads the weights of model stages)."""
        return [place(b.stage.capabilities, self.run.device, self.run.precision) for b in self.stages]

    @property
    def scale(self) -> int:
        return math.prod(b.stage.capabilities.scale for b in self.stages)

    def tiles(self) -> list[int]:
        """The tile side each stage runs in (0: whole frames): its element's ``tile=``, else the run's, for
        the stages that can be tiled."""
        return [(self.run.tile if b.tile is None else b.tile) if b.stage.capabilities.tileable else 0
                for b in self.stages]  # fmt: skip

    def runner(self, output_bits: int = 8, new_stream: bool = True) -> ChainRunner:
        """A fresh runner for one stream or image (per-stream state), over the stages built once; over 8
        ``output_bits`` no stage computes in a precision too coarse for them (``placement.choose_dtype``);
        ``new_stream=False`` keeps the stages' per-stream state (``ChainRunner``)."""
        return ChainRunner(self.stages, self.run.device, self.run.precision, self.run.tile, output_bits, new_stream)

    # -- images ------------------------------------------------------------------------------------
    def restore_array(self, image: np.ndarray) -> np.ndarray:
        """One H×W×3 RGB image (uint8 or uint16) -> the restored image, same dtype."""
        pixels = check_image(image)
        if self.field_operations:
            raise ConfigError("deinterlace and ivtc work on video fields, not on images")
        check_frames(self.stages, pixels.shape[0], pixels.shape[1], self.run.max_pixels)
        runner = self.runner(8 * pixels.dtype.itemsize)
        results = [runner.push(FrameBatch(image_to_tensor(pixels), (0,)))] + runner.flush()
        restored = [r for r in results if r is not None]
        return tensor_to_images(restored[0].pixels, pixels.dtype)[0]

    def restore_image_file(self, src: str | Path, dst: str | Path | None = None, overwrite: bool = False) -> np.ndarray:
        """Restore an image file into ``dst`` (default ``NAME.restored.png``), atomically; returns the image."""
        source = Path(src)
        destination = str(dst) if dst is not None else str(source.with_name(f"{source.stem}.restored.png"))
        target = OutputTarget(destination, str(src), overwrite=overwrite)
        picture = read_picture(source)  # upright (EXIF orientation), with its alpha plane if it has one
        restored = self.restore_array(picture.rgb)
        try:
            # Alpha (transparency) skips the stages and is resized to the restored picture.
            write_picture(target.temporary, restored, picture.alpha, suffix=Path(destination).suffix)
            target.commit()
        except BaseException:
            target.abort()
            raise
        return restored

    # -- video -------------------------------------------------------------------------------------
    def restore_video(
        self,
        src: str,
        dst: str | None = None,
        output: OutputSettings | None = None,
        on_start: Callable[[MediaReader], None] = lambda reader: None,
        on_frames: Callable[[int], None] = lambda count: None,
        on_notice: Callable[[str], None] = lambda message: None,
    ) -> RestoreReport:
        """Restore a video file, stream URL or ``-`` (stdin) into ``dst`` (default: ``NAME.restored.EXT``).

        ``on_start`` sees the opened reader (for a progress bar); ``on_frames`` is called with each count of
        frames written. The default codec follows the source's (``media.encoder``), and so does the default
        output's container when the input's cannot hold that codec (an animated GIF gives ``NAME.restored.mp4``).
        ``on_notice`` gets one line when the fields are deinterlaced, matched or kept (``media.interlace``).
        """
        output = output or OutputSettings()
        settings = encode_settings(self.plan.output, output)
        self.placements  # noqa: B018 - a bad --device or --precision fails before any file is touched
        # An explicit output is checked before the input is opened; the default one's container depends on
        # the encoder, which follows the source (default_output_path refuses stdin and URLs here).
        target = OutputTarget(dst, src, overwrite=output.overwrite, stream_format=output.format) if dst else None
        if target is None:
            default_output_path(src)
        configure_cpu_threads(self.run.cpu_threads)
        started = time.perf_counter()
        reader = MediaReader(src, timeout=self.run.timeout)
        try:
            fields = self.plan_fields(reader)
            reader.apply_fields(fields)
            if fields.notice:
                on_notice(fields.notice)
            info = reader.info
            check_frames(self.stages, info.height, info.width, self.run.max_pixels)
            settings = encoder.resolve(settings, info, reader.first_frame, encoder_log=output.encoder_log)
            if target is None:
                target = OutputTarget(default_output_path(src, settings.codec), src, overwrite=output.overwrite,
                                      stream_format=output.format)  # fmt: skip
            video = output_video(settings, info, self.scale, fields)
            width, height, out_fmt = video.width, video.height, video.pix_fmt
            depth = max(c.bits for c in av.VideoFormat(out_fmt).components)
            loading = time.perf_counter()
            runner = self.runner(depth)  # placed once the output depth is known
            started += time.perf_counter() - loading  # the clock leaves out moving the weights, as before
            writer = MediaWriter.for_source(target.temporary, target.format, video, settings, reader.describe(), container_options=target.container_options,
                                            label=target.destination)  # fmt: skip
            try:
                on_start(reader)
                run_stream(reader, runner, writer, np.dtype(np.uint16 if depth > 8 else np.uint8),
                           StreamSettings(batch_size=self.run.batch_size), on_frames)
                if self.run.strict and reader.damaged_frames:
                    raise CorruptInputError(f"{reader.damaged_frames} damaged frame(s) in the input (--strict)")
                writer.close()
            except BaseException:
                writer.abort()
                raise
            target.commit()
        except BaseException:
            if target is not None:
                target.abort()
            raise
        finally:
            reader.close()
        return RestoreReport(
            output=target.destination, frames=writer.frames_written, damaged_frames=reader.damaged_frames,
            repaired_frames=reader.repaired_frames, seconds=time.perf_counter() - started,
            width=width, height=height, pix_fmt=out_fmt, color=info.color.describe(), codec=settings.codec or "",
            warnings=tuple(reader.warnings() + writer.warnings), source_frames=reader.frames_read,
        )

    def plan_fields(self, reader: MediaReader) -> interlace.FieldPlan:
        """Detect interlacing on the first frames and choose what to do with the fields (``reader.apply_fields``
        applies it). A job decides this once, on the whole file, and every segment applies the same."""
        info = reader.info
        # No interlaced format is taller than 1080 lines: larger frames skip idet (and decoding far ahead).
        frames = reader.peek(interlace.IDET_FRAMES if info.height <= 1088 else 1)
        source = interlace.detect(reader.video.codec_context.field_order, frames, info.time_base, info.average_rate)
        touches_pixels = any(built.spec.name != "identity" for built in self.stages)
        return interlace.plan_fields(self.field_operations, self.run.interlaced, source, touches_pixels,
                                     info.average_rate)  # fmt: skip


def output_video(settings: EncodeSettings, info: VideoInfo, scale: int, fields: interlace.FieldPlan) -> OutputVideo:
    """The video stream written for frames described by ``info`` (after the field filter) restored at ``scale``:
    the pixel format is chosen per field when fields are woven back, the frame is then twice a field's height."""
    width, height = info.width * scale, info.height * scale
    pix_fmt = choose_pix_fmt(settings, info, width, height)
    if fields.field_split:
        height *= 2
    return OutputVideo(width, height, pix_fmt, info.color, info, fields.output_order, fields.field_split)


def encode_settings(preset_output: dict[str, Any], output: OutputSettings) -> EncodeSettings:
    """The encoder settings: the user's, else the preset's ``output:``, else the defaults."""
    given = {"codec": output.codec, "crf": output.crf, "preset": output.preset, "pix_fmt": output.pix_fmt,
             "threads": output.encoder_threads}  # fmt: skip
    values = {**preset_output, **{k: v for k, v in given.items() if v is not None}}
    settings = EncodeSettings(**{k: values[k] for k in ("codec", "crf", "preset", "pix_fmt", "threads") if k in values})
    if settings.crf is not None and not 0 <= settings.crf <= 63:
        raise ConfigError(f"--crf must be between 0 and 63, got {settings.crf:g}")
    return settings


# -- the one-call wrappers ---------------------------------------------------------------------------
def restore_video(
    src: str,
    dst: str | None = None,
    chain: str | ChainPlan = "",
    run: RunSettings | None = None,
    output: OutputSettings | None = None,
    *,
    registry: Registry | None = None,
    on_start: Callable[[MediaReader], None] = lambda reader: None,
    on_frames: Callable[[int], None] = lambda count: None,
    on_notice: Callable[[str], None] = lambda message: None,
) -> RestoreReport:
    """``PreparedChain(chain, run, registry).restore_video(src, dst, output, on_start, on_frames, on_notice)``."""
    return PreparedChain(chain, run, registry).restore_video(src, dst, output, on_start, on_frames, on_notice)


def restore_image(
    image: np.ndarray | str | Path,
    chain: str | ChainPlan = "",
    run: RunSettings | None = None,
    *,
    registry: Registry | None = None,
) -> np.ndarray:
    """Restore one H×W×3 RGB image (uint8 or uint16, or a path to one); returns the same dtype."""
    pixels = read_image(image) if isinstance(image, (str, Path)) else image
    return PreparedChain(chain, run, registry).restore_array(pixels)
