"""The classical built-in stages improve real photos (scikit-image's bundled pictures) measurably."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from streamrestore.frames import FrameBatch, image_to_tensor
from streamrestore.registry import Registry
from streamrestore.restore import restore_image
from streamrestore import tensor_filters


def spec_of(name: str):
    return Registry().get(name)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def photo() -> np.ndarray:
    return np.ascontiguousarray(data.chelsea()[60:220, 100:340])  # 240×160 real photo, cat fur and whiskers


def test_nlm_denoise_removes_gaussian_noise() -> None:
    clean = photo()
    noisy = np.clip(clean + np.random.default_rng(1).normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    restored = restore_image(noisy, "nlm:strength=14")
    assert psnr(restored, clean) > psnr(noisy, clean) + 4.0


@pytest.mark.slow
def test_temporal_nlm_on_a_single_image_and_on_16_bit() -> None:
    clean = photo()
    noisy = np.clip(clean + np.random.default_rng(2).normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    restored = restore_image(noisy, "tdenoise:strength=14")
    assert restored.shape == clean.shape
    assert psnr(restored, clean) > psnr(noisy, clean) + 4.0
    deep = restore_image(noisy.astype(np.uint16) * 257, "tdenoise:strength=14")
    assert deep.dtype == np.uint16
    assert np.abs(deep / 257.0 - restored).max() <= 1.0


def test_unsharp_mask_recovers_some_gaussian_blur() -> None:
    clean = photo()
    blurred = cv2.GaussianBlur(clean, (0, 0), 1.2)
    restored = restore_image(blurred, "sharpen:amount=1.0:radius=1.2")
    assert psnr(restored, clean) > psnr(blurred, clean) + 0.5


def test_resize_scales_and_beats_nearest_neighbour() -> None:
    clean = photo()
    small = cv2.resize(clean, (120, 80), interpolation=cv2.INTER_AREA)
    for method in ("lanczos", "bicubic"):
        restored = restore_image(small, f"resize:scale=2:method={method}")
        assert restored.shape == (160, 240, 3)
        nearest = cv2.resize(small, (240, 160), interpolation=cv2.INTER_NEAREST)
        assert psnr(restored, clean) > psnr(nearest, clean) + 1.0
    assert restore_image(small, "resize:scale=3").shape == (240, 360, 3)



def test_noise_estimate_follows_sigma_on_a_real_photo() -> None:
    from streamrestore_plugins.classical import estimate_noise_sigma

    clean = photo()
    assert estimate_noise_sigma(clean) < 5.0
    for sigma in (10, 25, 40):
        noisy = np.clip(clean + np.random.default_rng(sigma).normal(0, sigma, clean.shape), 0, 255).astype(np.uint8)
        assert abs(estimate_noise_sigma(noisy) - sigma) < 0.2 * sigma


@pytest.mark.slow
def test_auto_strength_is_near_the_best_fixed_strength_and_resets_per_stream() -> None:
    from streamrestore.restore import PreparedChain

    clean = photo()
    noisy = np.clip(clean + np.random.default_rng(3).normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    best = max(psnr(restore_image(noisy, f"nlm:strength={h}"), clean) for h in (8, 10, 12, 14, 16))
    prepared = PreparedChain("nlm")  # built once, reused for two streams, as the web demo does
    stages = prepared.stages
    assert psnr(prepared.restore_array(noisy), clean) > best - 0.3
    first = stages[0].stage.auto_strength
    quieter = np.clip(clean + np.random.default_rng(4).normal(0, 6, clean.shape), 0, 255).astype(np.uint8)
    prepared.restore_array(quieter)
    assert stages[0].stage.auto_strength < first / 2  # re-estimated for the new stream, not carried over


@pytest.mark.parametrize("settings", [{}, {"amount": 6.0, "radius": 0.8}, {"radius": 5.0, "threshold": 4.0}])
def test_unsharp_as_tensor_operations_matches_opencv(settings: dict) -> None:
    """The CUDA path (tensor_filters), run here on the CPU, against the OpenCV stage: within a 16-bit level."""
    stage = spec_of("unsharp").build(settings)
    pixels = image_to_tensor(data.astronaut()[:67, 5:94])
    expected = stage.process(FrameBatch(pixels, (0,))).pixels
    got = tensor_filters.unsharp_mask(pixels, stage.settings["amount"], stage.settings["radius"],
                                       stage.settings["threshold"] / 255)
    # A detail exactly at the threshold may fall either side of it in float rounding: allow those pixels.
    close = (got - expected).abs() <= 1 / 65535
    assert close.float().mean() > 0.999 and (got - expected).abs().max() < 8 / 255


@pytest.mark.parametrize("method", ["bicubic", "lanczos", "bilinear"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_resize_as_tensor_operations_matches_opencv(method: str, scale: int) -> None:
    stage = spec_of("resize").build({"scale": scale, "method": method})
    pixels = image_to_tensor(data.astronaut()[100:131, 200:243])
    expected = stage.process(FrameBatch(pixels, (0,))).pixels
    got = tensor_filters.resize(pixels, scale, method)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1 / 65535  # the same picture at 16 bits
