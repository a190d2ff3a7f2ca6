"""Tensor versions of the classical filters that are linear (Gaussian unsharp mask and deconvolution, integer
resize).

They compute what OpenCV computes for float32 images, with its kernels and its borders, so that a
stage gives the same picture on either device (within float rounding: well inside one 16-bit level;
tests/test_classical.py) and can run where its neighbours in the chain run: on a GPU, a ``sharpen``
between two networks no longer brings every frame back to the CPU. The one owner of these filters: the
``unsharp`` and ``resize`` stages (plugins) and the gated deblur network's unsharp and deconvolution
candidates use them.

- Gaussian blur: OpenCV's kernel for a float image and a given σ (``ksize = round(8σ + 1) | 1``,
  ``exp(-x²/2σ²)`` normalised), separable, border ``BORDER_REFLECT`` (``cba|abc``).
- Resize by an integer factor: OpenCV's pixel centres (``x_src = (x_dst + 0.5) / s - 0.5``) and its
  weights for bilinear, bicubic (Keys, a = -0.75) and Lanczos-4 (8 taps), edges replicated. Each
  output phase is one small convolution, so the work is two separable passes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# -- Gaussian blur and unsharp mask ------------------------------------------------------------------


def gaussian_kernel(sigma: float) -> np.ndarray:
    """OpenCV's ``getGaussianKernel(ksize, sigma)`` with the size it picks for a float image."""
    size = int(round(sigma * 4 * 2 + 1)) | 1
    x = np.arange(size, dtype=np.float64) - (size - 1) * 0.5
    kernel = np.exp(-0.5 * x * x / (sigma * sigma))
    return kernel / kernel.sum()


def _reflect_indices(length: int, pad: int) -> torch.Tensor:
    """Indices of ``BORDER_REFLECT`` padding (``cba|abc|cba``), for pads of any size."""
    index = np.arange(-pad, length + pad) % (2 * length)
    return torch.from_numpy(np.where(index < length, index, 2 * length - 1 - index))


def _separable(pixels: torch.Tensor, kernel: torch.Tensor, dim: int) -> torch.Tensor:
    """Correlate N×C×H×W ``pixels`` with a 1-D ``kernel`` along ``dim`` (2 or 3), reflected borders."""
    pad = (kernel.numel() - 1) // 2
    padded = pixels.index_select(dim, _reflect_indices(pixels.shape[dim], pad).to(pixels.device))
    channels = pixels.shape[1]
    shape = (channels, 1, kernel.numel(), 1) if dim == 2 else (channels, 1, 1, kernel.numel())
    return F.conv2d(padded, kernel.view(1, 1, *shape[2:]).expand(shape), groups=channels)


def gaussian_blur(pixels: torch.Tensor, sigma: float) -> torch.Tensor:
    kernel = torch.from_numpy(gaussian_kernel(sigma)).to(pixels.device, pixels.dtype)
    return _separable(_separable(pixels, kernel, 3), kernel, 2)


def unsharp_mask(pixels: torch.Tensor, amount: float, sigma: float, threshold: float) -> torch.Tensor:
    """``pixels + amount × detail``, detail = pixels - blur (zeroed below ``threshold``), clipped to [0, 1]."""
    detail = pixels - gaussian_blur(pixels, sigma)
    if threshold > 0:
        detail = torch.where(detail.abs() < threshold, torch.zeros_like(detail), detail)
    return (pixels + amount * detail).clamp_(0.0, 1.0)


# -- Gaussian deconvolution --------------------------------------------------------------------------


def deconvolution_reach(sigma: float) -> int:
    """How far, in pixels, a Gaussian deconvolution of ``sigma`` reaches: beyond it the inverse filter's tail
    changes no pixel by a level (12σ + 16; measured against a reach of 300 px at λ = 1e-3)."""
    return math.ceil(12 * sigma) + 16


def gaussian_deconvolution(pixels: torch.Tensor, sigmas: list[float], regularisation: float) -> list[torch.Tensor]:
    """``pixels`` deconvolved by a Gaussian blur of each σ in ``sigmas``: one picture per σ, clipped to [0, 1].

    A Wiener-type inverse, ``H / (H² + λ |2πf|²)`` with ``H = exp(-2π²σ²|f|²)`` the Gaussian's transfer
    function and λ = ``regularisation``: the gradient penalty keeps the boost of the high frequencies the blur
    all but erased finite, and the mean (f = 0) is kept exactly. Computed in float32 by FFT over the picture
    reflected (``BORDER_REFLECT``, as the blur above) by ``deconvolution_reach(σ)`` pixels on each side, so the
    edges do not wrap around; the one forward transform is shared by all the σ.
    """
    dtype = pixels.dtype
    pad = deconvolution_reach(max(sigmas))
    x = pixels.float()
    height, width = x.shape[-2:]
    x = x.index_select(2, _reflect_indices(height, pad).to(x.device))
    x = x.index_select(3, _reflect_indices(width, pad).to(x.device))
    spectrum = torch.fft.rfft2(x)
    fy = torch.fft.fftfreq(x.shape[-2], device=x.device)[:, None]
    fx = torch.fft.rfftfreq(x.shape[-1], device=x.device)[None, :]
    radial = (2 * math.pi) ** 2 * (fx * fx + fy * fy)  # |2πf|²
    results = []
    for sigma in sigmas:
        transfer = torch.exp(-0.5 * sigma * sigma * radial)
        inverse = transfer / (transfer * transfer + regularisation * radial)
        out = torch.fft.irfft2(spectrum * inverse, s=x.shape[-2:])
        results.append(out[..., pad : pad + height, pad : pad + width].clamp(0.0, 1.0).to(dtype))
    return results


# -- resize by an integer factor ---------------------------------------------------------------------


def _cubic(x: float) -> list[float]:
    a = -0.75
    c0 = ((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a
    c1 = ((a + 2) * x - (a + 3)) * x * x + 1
    c2 = ((a + 2) * (1 - x) - (a + 3)) * (1 - x) * (1 - x) + 1
    return [c0, c1, c2, 1 - c0 - c1 - c2]


def _lanczos4(x: float) -> list[float]:
    weights = []
    for i in range(8):
        d = x + 3 - i
        weights.append(1.0 if abs(d) < 1e-6 else 16 * math.sin(math.pi * d) * math.sin(math.pi * d / 4)
                       / (math.pi * math.pi * d * d))
    total = sum(weights)
    return [w / total for w in weights]


# method -> (taps before the source pixel, weights for a fraction x)
_KERNELS = {
    "bilinear": (0, lambda x: [1 - x, x]),
    "bicubic": (1, _cubic),
    "lanczos": (3, _lanczos4),
}


def _phase_kernels(scale: int, method: str) -> tuple[torch.Tensor, int]:
    """One row of weights per output phase, over input offsets ``-reach .. +reach``; and ``reach``."""
    before, weights_of = _KERNELS[method]
    taps = len(weights_of(0.0))
    reach = before + 2  # the source pixel moves by at most one to the left of the output's cell
    rows = np.zeros((scale, 2 * reach + 1), dtype=np.float64)
    for phase in range(scale):
        position = (phase + 0.5) / scale - 0.5
        start = math.floor(position)
        for tap, weight in enumerate(weights_of(position - start)):
            rows[phase, start - before + tap + reach] += weight
    assert taps <= 2 * reach + 1
    return torch.from_numpy(rows), reach


def _upsample(pixels: torch.Tensor, scale: int, method: str, dim: int) -> torch.Tensor:
    """×``scale`` along ``dim`` (2 or 3) of N×C×H×W, edges replicated."""
    rows, reach = _phase_kernels(scale, method)
    count, channels, height, width = pixels.shape
    length = pixels.shape[dim]
    index = torch.arange(-reach, length + reach).clamp_(0, length - 1).to(pixels.device)
    padded = pixels.index_select(dim, index).reshape(count * channels, 1, *(
        (length + 2 * reach, width) if dim == 2 else (height, length + 2 * reach)))
    kernel = rows.to(pixels.device, pixels.dtype)
    kernel = kernel.view(scale, 1, -1, 1) if dim == 2 else kernel.view(scale, 1, 1, -1)
    phases = F.conv2d(padded, kernel)  # (N·C)×scale×H'×W': phase p of every output position
    if dim == 2:
        out = phases.permute(0, 2, 1, 3).reshape(count, channels, height * scale, width)
    else:
        out = phases.permute(0, 2, 3, 1).reshape(count, channels, height, width * scale)
    return out


def resize(pixels: torch.Tensor, scale: int, method: str) -> torch.Tensor:
    """N×C×H×W -> N×C×(H·scale)×(W·scale) as ``cv2.resize`` with that interpolation, clipped to [0, 1]."""
    if scale == 1:
        return pixels.clone()
    return _upsample(_upsample(pixels, scale, method, 3), scale, method, 2).clamp_(0.0, 1.0)
