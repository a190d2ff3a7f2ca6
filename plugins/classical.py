"""Classical OpenCV stages that need no weights: NLM denoise (spatial and temporal), unsharp mask, resize.

They run on the CPU in float32, except non-local means, which OpenCV implements for 8-bit colour only:
those two stages quantise to 8 bits internally (documented in the README). Unsharp mask and resize
may also run on CUDA, as tensor operations that compute OpenCV's result (``streamrestore.tensor_filters``), so a
chain of networks with a ``sharpen`` between them stays on the GPU. On the CPU OpenCV stays: it is
10-15× faster there than torch's depthwise convolutions (benchmarks/cpu_conversions.py).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from streamrestore.frames import FrameBatch
from streamrestore.stage import Capabilities, Option, Stage

from streamrestore import tensor_filters


def _to_hwc(frame: torch.Tensor) -> np.ndarray:
    """3×H×W float tensor -> H×W×3 float32 array (RGB)."""
    return np.ascontiguousarray(frame.detach().to("cpu", torch.float32).permute(1, 2, 0).numpy())


def _to_uint8(frame: torch.Tensor) -> np.ndarray:
    return np.clip(np.rint(_to_hwc(frame) * 255.0), 0, 255).astype(np.uint8)


def _stack(images: list[np.ndarray], scale: float, like: torch.Tensor) -> torch.Tensor:
    """H×W×3 arrays -> N×3×H×W tensor in [0, 1] on ``like``'s device."""
    stacked = torch.from_numpy(np.stack(images)).to(torch.float32).div_(scale)
    return stacked.permute(0, 3, 1, 2).contiguous().to(like.device)


class Identity(Stage):
    summary = "returns its input unchanged (for testing fidelity)"
    options = {}

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(devices=("cpu", "cuda"), dtypes=("float32", "float16", "bfloat16"))

    def process(self, batch: FrameBatch) -> FrameBatch:
        return batch.with_pixels(batch.pixels)


# Immerkær's fast noise estimator: a Laplacian-difference mask cancels image structure up to second
# order, leaving (mostly) the noise; for white Gaussian noise E|I*M| = 6σ·sqrt(2/π).
_NOISE_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)

# h = 0.6 σ̂ is within 0.06 dB of the best h per σ on the dev kit's photos (σ 15/25/50). Noise that
# went through 4:2:0 and a lossy codec is correlated and reads lower, so video wants a larger
# factor (≈1.1–1.3 measured): set `strength` explicitly there.
AUTO_STRENGTH_PER_SIGMA = 0.6


def estimate_noise_sigma(rgb: np.ndarray) -> float:
    """Standard deviation of white noise in an H×W×3 uint8 image, averaged over channels (0..255)."""
    sigmas = []
    for channel in range(3):
        response = cv2.filter2D(rgb[:, :, channel].astype(np.float32), -1, _NOISE_MASK)[1:-1, 1:-1]
        sigmas.append(float(np.abs(response).mean()) * np.sqrt(np.pi / 2) / 6.0)
    return float(np.mean(sigmas))


class NLMDenoise(Stage):
    summary = "non-local means denoise, per frame (OpenCV fastNlMeansDenoisingColored)"
    options = {
        "strength": Option(float, None, "filter strength h; auto = 0.6 × the noise σ estimated on the first frame",
                           minimum=0.0, maximum=100.0, auto=True),
        "color_strength": Option(float, -1.0, "filter strength for colour; -1 = same as strength", minimum=-1.0, maximum=100.0),
        "template": Option(int, 7, "template patch size (odd)", minimum=3, maximum=21),
        "search": Option(int, 21, "search window size (odd)", minimum=5, maximum=51),
    }

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    def start_stream(self) -> None:
        self.auto_strength: float | None = None

    def _strengths(self, first: torch.Tensor) -> tuple[float, float]:
        h = self.settings["strength"]
        if h is None:
            # Estimated once per stream, on its first frame, and then kept: a strength that
            # followed each frame's estimate would make the grain flicker.
            if self.auto_strength is None:
                sigma = estimate_noise_sigma(_to_uint8(first))
                self.auto_strength = round(AUTO_STRENGTH_PER_SIGMA * sigma, 2)
            h = self.auto_strength
        h_color = self.settings["color_strength"]
        return h, (h if h_color < 0 else h_color)

    def process(self, batch: FrameBatch) -> FrameBatch:
        h, h_color = self._strengths(batch.pixels[batch.context_before])
        out = []
        for frame in batch.pixels:
            # fastNlMeansDenoisingColored converts to L*a*b* assuming BGR order, so R and B must be swapped.
            bgr = cv2.cvtColor(_to_uint8(frame), cv2.COLOR_RGB2BGR)
            clean = cv2.fastNlMeansDenoisingColored(
                bgr, None, h, h_color, self.settings["template"], self.settings["search"]
            )
            out.append(cv2.cvtColor(clean, cv2.COLOR_BGR2RGB))
        return batch.with_pixels(_stack(out, 255.0, batch.pixels))


class TemporalNLMDenoise(NLMDenoise):
    summary = "non-local means denoise over a sliding window of frames (fastNlMeansDenoisingColoredMulti)"
    options = {
        **NLMDenoise.options,
        "window": Option(int, 5, "frames in the window, odd (2 before and 2 after for 5)", minimum=3, maximum=15),
    }

    @property
    def radius(self) -> int:
        return self.settings["window"] // 2

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(frames_before=self.radius, frames_after=self.radius)

    def process(self, batch: FrameBatch) -> FrameBatch:
        h, h_color = self._strengths(batch.pixels[batch.context_before])
        radius = self.radius
        window = 2 * radius + 1
        frames = [cv2.cvtColor(_to_uint8(f), cv2.COLOR_RGB2BGR) for f in batch.pixels]
        out = []
        for index in range(batch.context_before, len(batch) - batch.context_after):
            start = index - radius
            # The runner guarantees `radius` real or padded frames on each side of every core frame.
            clean = cv2.fastNlMeansDenoisingColoredMulti(
                frames[start : start + window], radius, window, None, h, h_color,
                self.settings["template"], self.settings["search"],
            )
            out.append(cv2.cvtColor(clean, cv2.COLOR_BGR2RGB))
        return batch.with_pixels(_stack(out, 255.0, batch.pixels))


class UnsharpMask(Stage):
    summary = "sharpen / mild deblur by unsharp masking (Gaussian blur subtracted, scaled)"
    options = {
        "amount": Option(float, 1.2, "how much of the detail layer to add back", minimum=0.0, maximum=10.0),
        "radius": Option(float, 1.6, "Gaussian σ of the blur that defines detail, pixels", minimum=0.1, maximum=20.0),
        "threshold": Option(float, 0.0, "ignore detail below this many levels (0..255)", minimum=0.0, maximum=255.0),
    }

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(devices=("cpu", "cuda"))

    def process(self, batch: FrameBatch) -> FrameBatch:
        amount = self.settings["amount"]
        sigma = self.settings["radius"]
        threshold = self.settings["threshold"] / 255.0
        if batch.pixels.device.type != "cpu":
            return batch.with_pixels(tensor_filters.unsharp_mask(batch.pixels, amount, sigma, threshold))
        out = []
        for frame in batch.pixels:
            image = _to_hwc(frame)
            detail = image - cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
            if threshold > 0:
                detail = np.where(np.abs(detail) < threshold, 0.0, detail).astype(np.float32)
            out.append(np.clip(image + amount * detail, 0.0, 1.0))
        return batch.with_pixels(_stack(out, 1.0, batch.pixels))


_INTERPOLATIONS = {"bicubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4, "bilinear": cv2.INTER_LINEAR}


class Resize(Stage):
    summary = "upscale by an integer factor (bicubic or Lanczos)"
    options = {
        "scale": Option(int, 2, "integer upscale factor", choices=(1, 2, 3, 4, 8)),
        "method": Option(str, "lanczos", "interpolation", choices=tuple(_INTERPOLATIONS)),
    }

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(scale=self.settings["scale"], devices=("cpu", "cuda"))

    def process(self, batch: FrameBatch) -> FrameBatch:
        scale = self.settings["scale"]
        if batch.pixels.device.type != "cpu":
            return batch.with_pixels(tensor_filters.resize(batch.pixels, scale, self.settings["method"]))
        size = (batch.width * scale, batch.height * scale)
        interpolation = _INTERPOLATIONS[self.settings["method"]]
        out = [np.clip(cv2.resize(_to_hwc(f), size, interpolation=interpolation), 0.0, 1.0) for f in batch.pixels]
        return batch.with_pixels(_stack(out, 1.0, batch.pixels))
