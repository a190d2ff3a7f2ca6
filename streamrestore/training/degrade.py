"""Seeded synthetic degradations: a clean RGB uint8 patch in, the low-quality input a network learns from out.

Every random choice comes from ``numpy.random.default_rng(seed)``, so one (patch, task, seed) always
gives the same bytes (OpenCV's JPEG encoder is deterministic too), and different seeds differ.

Tasks, and what each draws (ranges in ``Settings``, on the 0..255 scale):

- ``denoise``: additive Gaussian noise, σ uniform in ``noise_sigma``; colour noise, or the same noise on
  all three channels (luma-only) with probability ``gray_noise_p``; with probability ``grain_p`` the noise
  is film grain (spatially correlated: white noise blurred by σ 0.5–1.2 px, rescaled to the drawn σ). Then,
  as in decoded video, with probability ``chroma_420_p`` a round trip through 4:2:0 chroma (the noise on
  chroma is averaged away) and with probability ``noise_jpeg_p`` JPEG at a quality in ``noise_jpeg_quality``.
- ``deblur``: one kernel — Gaussian (σ uniform in ``blur_sigma``), a straight motion streak, or a curved
  camera-shake path (a smooth random walk), the motion ones ``motion_length`` pixels long at any angle,
  with odds ``blur_odds``; reflect padding at the edges; then, with probability ``blur_noise_p``, faint
  Gaussian noise (σ up to ``blur_noise_sigma``), as real footage always has some.
- ``jpeg``: OpenCV JPEG (4:2:0) at a quality uniform in ``jpeg_quality``.
- ``sr2``/``sr3``/``sr4``: downscale by the factor, ``resize`` = "area" (cv2.INTER_AREA) or "bicubic"
  (MATLAB's antialiased imresize, the one the evaluation kits use). Nothing random.
- ``oldfilm`` (×4): second order, as Real-ESRGAN: twice blur → resize → noise/grain → JPEG; the first
  round resizes by a random factor, the second to exactly a quarter; the second round is milder.
- ``oldvideo`` (×1): what "noise" means in old, small video, for a denoiser that runs before an upscaler. With
  probability ``video_p`` the patch is low-resolution footage (the loader shrinks the clean patch by ×1–4,
  so detail is as dense as in a 192×108 frame; see ``LOWRES_TASKS``): light blur (σ up to
  ``video_blur_sigma``, half the time), monochrome film grain or Gaussian noise (σ in ``video_noise_sigma``;
  luma-only with probability ``video_gray_p``, else chroma noise too), then with probability ``video_h264_p``
  real H.264: ``video_frames`` frames of the patch, each with its own noise (grain is new in every frame),
  through libx264 4:2:0 at a crf in ``video_crf`` and back, one of the decoded frames kept (an I, P or B
  frame: their blocks and smearing differ); otherwise 4:2:0 chroma
  and, with probability ``video_jpeg_p``, JPEG at a quality in ``video_jpeg_quality``. Otherwise (``video_p``)
  the ``denoise`` degradation, so the Gaussian-noise figures are kept.
- ``oldvideo4`` (×4): old, small video at a quarter of the clean patch, for an upscaler that runs after a
  denoiser (train it with ``--after`` that chain: it then learns from what the denoiser leaves): downscale
  by 4 (``resize``), then with probability ``video_p`` the old-video damage of ``oldvideo`` (light blur, grain
  or noise, H.264 or 4:2:0 and JPEG); otherwise the clean quarter, as ``sr4``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from streamrestore.errors import ConfigError

SCALES = {"denoise": 1, "deblur": 1, "jpeg": 1, "sr2": 2, "sr3": 3, "sr4": 4, "oldfilm": 4, "oldvideo": 1,
          "oldvideo4": 4}
# Tasks whose clean patches the loader may shrink first (low-resolution content); see data.Patches.sample.
LOWRES_TASKS = ("oldvideo",)
TASKS = tuple(SCALES)
RESIZE_METHODS = ("area", "bicubic")  # OpenCV's area filter; MATLAB's antialiased bicubic imresize


@dataclass(frozen=True)
class Settings:
    """Ranges the degradations draw from (uniform, both ends included)."""

    noise_sigma: tuple[float, float] = (1.0, 50.0)
    gray_noise_p: float = 0.3
    grain_p: float = 0.15
    chroma_420_p: float = 0.3
    noise_jpeg_p: float = 0.25
    noise_jpeg_quality: tuple[int, int] = (60, 95)
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    motion_length: tuple[float, float] = (3.0, 20.0)
    blur_odds: tuple[float, float, float] = (0.4, 0.2, 0.4)  # Gaussian, straight streak, camera shake
    blur_noise_p: float = 0.3
    blur_noise_sigma: float = 2.0
    jpeg_quality: tuple[int, int] = (20, 95)
    resize: str = "area"  # or "bicubic" (MATLAB-like)
    kernel_size: int = 25  # odd; Gaussian and motion kernels are this wide
    video_p: float = 0.5  # oldvideo: share of old-video patches (the rest: the denoise degradation)
    video_shrink: tuple[float, float] = (1.0, 4.0)  # oldvideo: the loader shrinks clean patches by this
    patch_shrink: tuple[float, float] = (1.0, 1.0)  # the other tasks: the same, when asked (--shrink)
    min_detail: float = 0.0  # clean patches flatter than this (mean step between neighbours, 0..255) are drawn again
    video_blur_sigma: float = 0.8
    video_noise_sigma: tuple[float, float] = (3.0, 20.0)
    video_jpeg_p: float = 0.85
    video_jpeg_quality: tuple[int, int] = (20, 75)
    video_gray_p: float = 0.3  # oldvideo: share of Gaussian noise that is luma-only (the rest is chroma noise too)
    video_h264_p: float = 0.8  # oldvideo: share of old-video patches compressed by H.264 (the rest: JPEG)
    video_crf: tuple[int, int] = (20, 32)
    video_frames: int = 3


def scale_of(task: str) -> int:
    if task not in SCALES:
        raise ConfigError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
    return SCALES[task]


def degrade(clean: np.ndarray, task: str, seed: int, settings: Settings = Settings()) -> np.ndarray:
    """The degraded uint8 RGB input for ``clean`` (H×W×3 uint8, H and W multiples of the task's scale)."""
    scale = scale_of(task)
    height, width = clean.shape[:2]
    if height % scale or width % scale:
        raise ConfigError(f"a {width}×{height} patch is not a multiple of ×{scale} ({task})")
    rng = np.random.default_rng(seed)
    image = clean.astype(np.float32)
    if task == "denoise":
        image = _noisy(image, rng, settings)
    elif task == "deblur":
        image = convolve(image, random_kernel(rng, settings))
        if rng.random() < settings.blur_noise_p:
            image = add_noise(image, rng, (0.0, settings.blur_noise_sigma), settings.gray_noise_p)
    elif task == "jpeg":
        image = jpeg(image, int(rng.integers(settings.jpeg_quality[0], settings.jpeg_quality[1] + 1)))
    elif task == "oldfilm":
        image = _old_film(image, rng, settings)
    elif task == "oldvideo":
        image = _old_video(image, rng, settings) if rng.random() < settings.video_p else _noisy(image, rng, settings)
    elif task == "oldvideo4":
        image = resize(image, (height // scale, width // scale), settings.resize)
        if rng.random() < settings.video_p:
            image = _old_video(image, rng, settings)
    else:
        image = resize(image, (height // scale, width // scale), settings.resize)
    return to_u8(image)


def _noisy(image: np.ndarray, rng: np.random.Generator, settings: Settings) -> np.ndarray:
    if rng.random() < settings.grain_p:
        image = add_grain(image, rng, settings.noise_sigma)
    else:
        image = add_noise(image, rng, settings.noise_sigma, settings.gray_noise_p)
    if rng.random() < settings.chroma_420_p:
        image = chroma_420(image)
    if rng.random() < settings.noise_jpeg_p:
        image = jpeg(image, int(rng.integers(settings.noise_jpeg_quality[0], settings.noise_jpeg_quality[1] + 1)))
    return image


def _old_video(image: np.ndarray, rng: np.random.Generator, settings: Settings) -> np.ndarray:
    if rng.random() < 0.5:
        image = convolve(image, gaussian_kernel(rng.uniform(0.3, settings.video_blur_sigma), settings.kernel_size))
    noise = _video_noise(rng, settings)
    if rng.random() < settings.video_h264_p:
        return _through_h264(image, rng, settings, noise)
    image = chroma_420(noise(image))
    if rng.random() < settings.video_jpeg_p:
        image = jpeg(image, int(rng.integers(settings.video_jpeg_quality[0], settings.video_jpeg_quality[1] + 1)))
    return image


def _video_noise(rng: np.random.Generator, settings: Settings) -> Callable[[np.ndarray], np.ndarray]:
    """One draw of old video's noise — grain or Gaussian, its σ, luma or chroma — that adds fresh noise each call
    (grain is new in every frame; its kind and strength are not)."""
    sigma = float(rng.uniform(*settings.video_noise_sigma))
    grain, gray = rng.random() < 0.6, rng.random() < settings.video_gray_p

    def noisy(image: np.ndarray) -> np.ndarray:
        if grain:
            return add_grain(image, rng, (sigma, sigma))
        return add_noise(image, rng, (sigma, sigma), gray_p=1.0 if gray else 0.0)

    return noisy


def _through_h264(image: np.ndarray, rng: np.random.Generator, settings: Settings,
                  noise: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:  # fmt: skip
    """``video_frames`` frames of ``image``, each with its own ``noise``, through H.264; one decoded frame."""
    crf = int(rng.integers(settings.video_crf[0], settings.video_crf[1] + 1))
    decoded = h264([to_u8(noise(image)) for _ in range(settings.video_frames)], crf)
    return decoded[int(rng.integers(len(decoded)))].astype(np.float32)


def add_grain(image: np.ndarray, rng: np.random.Generator, sigma_range: tuple[float, float]) -> np.ndarray:
    """Monochrome film grain: white noise blurred to a grain size, rescaled to a σ drawn from ``sigma_range``."""
    sigma, size = rng.uniform(*sigma_range), rng.uniform(0.5, 1.2)
    white = rng.normal(0.0, 1.0, image.shape[:2]).astype(np.float32)
    grain = cv2.GaussianBlur(white, (0, 0), size, borderType=cv2.BORDER_REFLECT)
    grain *= sigma / max(float(grain.std()), 1e-6)
    return image + grain[..., None]


def chroma_420(image: np.ndarray) -> np.ndarray:
    """A round trip through BT.601 4:2:0: chroma averaged over 2×2 blocks, then interpolated back."""
    ycc = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
    height, width = image.shape[:2]
    for channel in (1, 2):
        half = cv2.resize(ycc[..., channel], ((width + 1) // 2, (height + 1) // 2), interpolation=cv2.INTER_AREA)
        ycc[..., channel] = cv2.resize(half, (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def _old_film(image: np.ndarray, rng: np.random.Generator, settings: Settings) -> np.ndarray:
    height, width = image.shape[:2]
    first = rng.uniform(0.5, 1.0)  # of the original size; the second round lands on exactly ¼
    quarter = (height // 4, width // 4)
    sizes = ((max(quarter[0], round(height * first)), max(quarter[1], round(width * first))), quarter)
    for round_, size in enumerate(sizes):
        mild = 0.5 if round_ else 1.0  # the second round degrades less, so detail survives the first
        lo, hi = settings.blur_sigma
        image = convolve(image, gaussian_kernel(rng.uniform(lo, lo + (hi - lo) * mild), settings.kernel_size))
        image = resize(image, size, settings.resize)
        lo, hi = settings.noise_sigma
        image = add_noise(image, rng, (lo, lo + (hi - lo) * mild * 0.6), settings.gray_noise_p)
        lo, hi = settings.jpeg_quality
        image = jpeg(image, int(rng.integers(round(lo + (hi - lo) * (1 - mild)) if round_ else lo, hi + 1)))
    return image


def h264(frames: list[np.ndarray], crf: int) -> list[np.ndarray]:
    """``frames`` (uint8 RGB, same size) through libx264 (4:2:0, BT.601 limited range, one thread: deterministic)
    and decoded back to RGB the way the reader converts video (``media.color``), as old compressed video looks."""
    import io

    import av

    from streamrestore.media.color import (MATRIX_SMPTE170M, PRIMARIES_SMPTE170M, RANGE_LIMITED, TRC_SMPTE170M,
                                           ColorDescription, frame_to_rgb, rgb_to_frame)  # fmt: skip

    bt601 = ColorDescription(MATRIX_SMPTE170M, RANGE_LIMITED, PRIMARIES_SMPTE170M, TRC_SMPTE170M)
    height, width = frames[0].shape[:2]
    even = [np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge") for frame in frames]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = even[0].shape[1], even[0].shape[0], "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium", "threads": "1"}
        for frame in even:
            picture = rgb_to_frame(av.VideoFrame.from_ndarray(frame, format="rgb24"), bt601, "yuv420p")
            container.mux(stream.encode(picture))
        container.mux(stream.encode())
    buffer.seek(0)
    with av.open(buffer, "r", format="h264") as container:
        decoded = [frame_to_rgb(frame, bt601, "rgb24").to_ndarray() for frame in container.decode(video=0)]
    return [frame[:height, :width] for frame in decoded]


def to_u8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def add_noise(image: np.ndarray, rng: np.random.Generator, sigma_range: tuple[float, float],
              gray_p: float) -> np.ndarray:  # fmt: skip
    sigma = rng.uniform(*sigma_range)
    gray = rng.random() < gray_p
    shape = image.shape[:2] + ((1,) if gray else (image.shape[2],))
    return image + rng.normal(0.0, sigma, shape).astype(np.float32)


def gaussian_kernel(sigma: float, size: int) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    kernel = np.outer(g, g)
    return (kernel / kernel.sum()).astype(np.float32)


def motion_kernel(length: float, angle: float, size: int) -> np.ndarray:
    """A straight streak ``length`` pixels long through the centre, anti-aliased by supersampling."""
    t = np.linspace(-length / 2, length / 2, 64 * max(1, math.ceil(length)))
    return _splat((size - 1) / 2 + t * math.cos(angle), (size - 1) / 2 + t * math.sin(angle), size)


def shake_kernel(rng: np.random.Generator, length: float, size: int) -> np.ndarray:
    """A camera-shake path: a random walk whose heading drifts smoothly, ``length`` pixels long, centred."""
    steps = 256
    heading = rng.uniform(0, 2 * math.pi) + np.cumsum(rng.normal(0.0, 0.05, steps))
    heading += np.cumsum(np.cumsum(rng.normal(0.0, 0.0006, steps)))  # slow turns as well as jitter
    # The hand slows and speeds up: where it is slow the path is brighter (more exposure per pixel).
    speed = np.exp(np.cumsum(rng.normal(0.0, 0.08, steps)))
    speed /= speed.sum()
    path = np.cumsum(np.stack([np.cos(heading), np.sin(heading)], axis=1) * speed[:, None], axis=0) * length
    path -= (path.max(axis=0) + path.min(axis=0)) / 2  # centre the path's bounding box on the kernel centre
    extent = np.abs(path).max()
    if extent > (size - 3) / 2:  # a tight curl can still overflow; shrink it to fit
        path *= (size - 3) / 2 / extent
    return _splat(path[:, 0] + (size - 1) / 2, path[:, 1] + (size - 1) / 2, size)


def _splat(xs: np.ndarray, ys: np.ndarray, size: int) -> np.ndarray:
    # Bilinear splatting of the path's points: sub-pixel positions spread over their four neighbours.
    kernel = np.zeros((size, size), np.float64)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, weight in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(kernel, (np.clip(y0 + dy, 0, size - 1), np.clip(x0 + dx, 0, size - 1)), weight)
    return (kernel / kernel.sum()).astype(np.float32)


def random_kernel(rng: np.random.Generator, settings: Settings) -> np.ndarray:
    kind = rng.choice(3, p=np.asarray(settings.blur_odds) / sum(settings.blur_odds))
    if kind == 0:
        return gaussian_kernel(rng.uniform(*settings.blur_sigma), settings.kernel_size)
    length = min(rng.uniform(*settings.motion_length), settings.kernel_size - 2)
    if kind == 1:
        return motion_kernel(length, rng.uniform(0, math.pi), settings.kernel_size)
    return shake_kernel(rng, length, settings.kernel_size)


def convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    # filter2D correlates; flipping the kernel makes it a true convolution (matters for asymmetric ones).
    return cv2.filter2D(image, cv2.CV_32F, np.ascontiguousarray(kernel[::-1, ::-1]), borderType=cv2.BORDER_REFLECT)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    # OpenCV encodes BGR; the round trip through it keeps our RGB order.
    ok, data = cv2.imencode(".jpg", to_u8(image)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32)


def resize(image: np.ndarray, size: tuple[int, int], method: str = "area") -> np.ndarray:
    """``image`` resized to ``size`` = (height, width), float32."""
    if method == "area":
        return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    if method == "bicubic":
        return matlab_imresize(image, size).astype(np.float32)
    raise ConfigError(f"unknown resize method {method!r} (known: {', '.join(RESIZE_METHODS)})")


def cubic_kernel(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel (a = -0.5), MATLAB's imresize and the SR benchmarks' bicubic."""
    ax = np.abs(x)
    near, far = (1.5 * ax**3 - 2.5 * ax**2 + 1), (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2)
    return near * (ax <= 1) + far * ((ax > 1) & (ax <= 2))


def _contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    width = 4.0 / scale if scale < 1 else 4.0  # the kernel widens when shrinking: antialiasing
    u = np.arange(1, out_len + 1, dtype=np.float64) / scale + 0.5 * (1 - 1 / scale)
    index = np.floor(u - width / 2)[:, None] + np.arange(math.ceil(width) + 2)[None, :]
    weights = scale * cubic_kernel((u[:, None] - index) * scale) if scale < 1 else cubic_kernel(u[:, None] - index)
    weights = weights / weights.sum(1, keepdims=True)
    keep = np.any(weights != 0, axis=0)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])  # 'symmetric' edges
    return weights[:, keep], mirror[np.mod(index[:, keep].astype(np.int64) - 1, 2 * in_len)]


def matlab_imresize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """MATLAB ``imresize(..., 'bicubic')`` in float64 (Keys a=-0.5, antialiased, rows then columns),
    the same as the evaluation kit's generator and BasicSR's."""
    out = np.asarray(image, dtype=np.float64)
    for axis, n_out in ((0, size[0]), (1, size[1])):
        weights, index = _contributions(out.shape[axis], n_out, n_out / out.shape[axis])
        moved = np.moveaxis(out, axis, 0)
        result = np.zeros((n_out,) + moved.shape[1:])
        shape = (-1,) + (1,) * (moved.ndim - 1)
        for k in range(weights.shape[1]):
            result += weights[:, k].reshape(shape) * moved[index[:, k]]
        out = np.moveaxis(result, 0, axis)
    return out
