"""The library API: ``restore_video`` and ``restore_image``. The CLI and the web demo call these.

Data path of ``restore_video``: MediaReader (decode, RGB at source precision) → ChainRunner (the
stages) → MediaWriter (RGB→YUV with the source's colour description, encode at source timestamps,
audio/subtitles copied) → OutputTarget (temporary file renamed into place on success).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import av
import cv2
import numpy as np

from . import engine
from .errors import ConfigError, CorruptInputError, InputNotFoundError, MediaError
from .frames import FrameBatch, image_to_tensor, tensor_to_images
from .media.reader import MediaReader
from .media.writer import EncodeSettings, MediaWriter, OutputVideo, choose_pix_fmt
from .output import OutputTarget, default_output_path
from .presets import BuiltStage, ChainPlan, build_chain, parse_chain
from .registry import Registry
from .runner import ChainRunner
from .runtime import configure_cpu_threads, cuda_available, place

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}


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


def prepare_chain(
    chain: str | ChainPlan, registry: Registry | None = None, content: str = "photo", device: str | None = None
) -> tuple[ChainPlan, list[BuiltStage]]:
    """Parse and build a chain; aliases follow ``content`` and whether the run will use a GPU."""
    plan = parse_chain(chain) if isinstance(chain, str) else chain
    if registry is None:
        registry = Registry(content=content, accelerated=device != "cpu" and cuda_available())
    return plan, build_chain(plan, registry)


def restore_video(
    src: str,
    dst: str | None = None,
    chain: str | ChainPlan = "",
    *,
    overwrite: bool = False,
    codec: str | None = None,
    crf: float | None = None,
    preset: str | None = None,
    pix_fmt: str | None = None,
    encoder_threads: int | None = None,
    format: str | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    cpu_threads: int | None = None,
    precision: str | None = None,
    strict: bool = False,
    timeout: float = 15.0,
    content: str = "photo",
    registry: Registry | None = None,
    on_start: Callable[[MediaReader], None] = lambda reader: None,
    on_frames: Callable[[int], None] = lambda count: None,
) -> RestoreReport:
    """Restore a video file, stream URL or ``-`` (stdin) into ``dst`` (default: ``NAME.restored.EXT``).

    Encoder arguments left as None come from the preset's ``output:`` section, then the defaults.
    ``strict`` makes damaged input an error instead of repairing it. ``on_start`` sees the opened
    reader (for a progress bar); ``on_frames`` is called with each count of frames written.
    ``batch_size`` None plans it (``runtime.BatchSizer``); ``cpu_threads`` None gives torch every core;
    ``precision`` None is ``runtime.choose_dtype``'s automatic choice.
    """
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch must be at least 1, got {batch_size}")
    plan, built = prepare_chain(chain, registry, content, device)
    settings = _encode_settings(plan.output, codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt,
                                threads=encoder_threads)
    for stage in built:  # a bad --device or --precision fails before any file is touched
        place(stage.stage.capabilities, device, precision)
    target = OutputTarget(dst or default_output_path(src), src, overwrite=overwrite, stream_format=format)
    configure_cpu_threads(cpu_threads)
    started = time.perf_counter()
    reader = MediaReader(src, timeout=timeout)
    try:
        info = reader.info
        scale = math.prod(b.stage.capabilities.scale for b in built)
        width, height = info.width * scale, info.height * scale
        out_fmt = choose_pix_fmt(settings, info, width, height)
        depth = max(c.bits for c in av.VideoFormat(out_fmt).components)
        # Placed once the output depth is known: over 8 bits no stage computes in bfloat16.
        loading = time.perf_counter()
        runner = ChainRunner(built, device, precision, output_bits=depth)
        started += time.perf_counter() - loading  # the clock leaves out moving the weights, as before
        writer = MediaWriter(
            target.temporary, target.format, OutputVideo(width, height, out_fmt, info.color, info), settings,
            reader.passthrough, dict(reader.container.metadata), _chapters(reader),
            container_options=target.container_options,
        )
        try:
            on_start(reader)
            engine.run(reader, runner, writer, np.dtype(np.uint16 if depth > 8 else np.uint8),
                       engine.EngineSettings(batch_size=batch_size), on_frames)
            if strict and reader.damaged_frames:
                raise CorruptInputError(f"{reader.damaged_frames} damaged frame(s) in the input (--strict)")
            writer.close()
        except BaseException:
            writer.abort()
            raise
        target.commit()
    except BaseException:
        target.abort()
        raise
    finally:
        reader.close()
    return RestoreReport(
        output=target.destination, frames=writer.frames_written, damaged_frames=reader.damaged_frames,
        repaired_frames=reader.repaired_frames, seconds=time.perf_counter() - started,
        width=width, height=height, pix_fmt=out_fmt, color=info.color.describe(),
    )


def _encode_settings(preset_output: dict[str, Any], **given: Any) -> EncodeSettings:
    values = {**preset_output, **{k: v for k, v in given.items() if v is not None}}
    settings = EncodeSettings(**{k: values[k] for k in ("codec", "crf", "preset", "pix_fmt", "threads") if k in values})
    if settings.crf is not None and not 0 <= settings.crf <= 63:
        raise ConfigError(f"--crf must be between 0 and 63, got {settings.crf:g}")
    return settings


def _chapters(reader: MediaReader) -> list[Any]:
    try:
        return list(reader.container.chapters())
    except (AttributeError, av.error.FFmpegError):
        return []


# -- images ----------------------------------------------------------------------------------------
def restore_image(
    image: np.ndarray | str | Path,
    chain: str | ChainPlan = "",
    *,
    device: str | None = None,
    content: str = "photo",
    registry: Registry | None = None,
    stages: list[BuiltStage] | None = None,
) -> np.ndarray:
    """Restore one H×W×3 RGB image (uint8 or uint16, or a path to one); returns the same dtype.

    ``stages`` lets a caller that restores many images (the web demo) build the chain once.
    """
    pixels = read_image(image) if isinstance(image, (str, Path)) else _check_image(image)
    built = stages if stages is not None else prepare_chain(chain, registry, content, device)[1]
    runner = ChainRunner(built, device)
    results = [runner.push(FrameBatch(image_to_tensor(pixels), (0,)))] + runner.flush()
    restored = [r for r in results if r is not None]
    return tensor_to_images(restored[0].pixels, pixels.dtype)[0]


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as H×W×3 RGB (8 or 16 bit); grey is expanded, alpha dropped."""
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"input not found: {str(path)!r}")
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if data is None:
        raise MediaError(f"{str(path)!r} is not a readable image")
    return _check_image(_to_rgb(data))


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB image losslessly (PNG keeps 16-bit)."""
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise MediaError(f"cannot write image {str(path)!r}")


def _to_rgb(data: np.ndarray) -> np.ndarray:
    if data.ndim == 2:
        return cv2.cvtColor(data, cv2.COLOR_GRAY2RGB)
    if data.shape[2] == 4:
        return cv2.cvtColor(data, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(data, cv2.COLOR_BGR2RGB)


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise MediaError(f"expected an H×W×3 RGB image, got {getattr(image, 'shape', type(image).__name__)}")
    if image.dtype not in (np.uint8, np.uint16):
        raise MediaError(f"expected 8- or 16-bit samples, got {image.dtype}")
    return image
