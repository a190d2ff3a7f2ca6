"""Tests of the ``denoise`` degradations in streamrestore.training.degrade: film grain, the 4:2:0 chroma
round trip and the noise σ that ``degrade`` draws.

Noise is measured on flat grey patches, where everything that is not 128 is the degradation.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamrestore.training.degrade import Settings, add_grain, add_noise, chroma_420, degrade

ALL_BRANCHES = Settings(grain_p=1.0, chroma_420_p=1.0, noise_jpeg_p=1.0)
NOISE_ONLY = Settings(grain_p=0.0, chroma_420_p=0.0, noise_jpeg_p=0.0)


def _photo(height: int = 64, width: int = 96) -> np.ndarray:
    """A smooth colour picture with edges: a diagonal gradient and two discs."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([xx / width * 200 + 20, yy / height * 180 + 40, (xx + yy) / (width + height) * 150 + 60], -1)
    cv2.circle(image, (width // 3, height // 2), height // 4, (230, 40, 60), -1, cv2.LINE_AA)
    cv2.circle(image, (2 * width // 3, height // 3), height // 5, (30, 90, 220), -1, cv2.LINE_AA)
    return np.clip(np.rint(cv2.GaussianBlur(image, (0, 0), 1.0)), 0, 255).astype(np.uint8)


def _flat(height: int = 64, width: int = 64) -> np.ndarray:
    return np.full((height, width, 3), 128, np.uint8)


def _ycrcb(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image.astype(np.float32), cv2.COLOR_RGB2YCrCb).reshape(-1, 3)


def _neighbour_correlation(noise: np.ndarray) -> float:
    """Correlation of each pixel with its right-hand neighbour (≈ 0 for white noise)."""
    return float(np.corrcoef(noise[:, 1:].ravel(), noise[:, :-1].ravel())[0, 1])


def _noise_std(settings: Settings, seeds: range) -> np.ndarray:
    flat = _flat()
    return np.array([(degrade(flat, "denoise", seed, settings).astype(np.float64) - 128).std() for seed in seeds])


@pytest.mark.parametrize("settings", [Settings(), ALL_BRANCHES, NOISE_ONLY], ids=["default", "all", "noise_only"])
def test_denoise_is_reproducible_per_seed_and_differs_across_seeds(settings):
    clean = _photo()
    for seed in (0, 1, 2):
        first, again, other = (degrade(clean, "denoise", s, settings) for s in (seed, seed, seed + 100))
        assert np.array_equal(first, again)
        assert not np.array_equal(first, other)


@pytest.mark.parametrize("shape", [(64, 96), (45, 67)])  # odd sizes: the chroma halves round up
def test_denoise_output_is_uint8_rgb_of_the_input_size(shape):
    clean = _photo(*shape)
    for settings in (Settings(), ALL_BRANCHES, NOISE_ONLY):
        noisy = degrade(clean, "denoise", 5, settings)
        assert noisy.dtype == np.uint8 and noisy.shape == (*shape, 3)
        assert np.abs(noisy.astype(int) - clean.astype(int)).mean() > 0.5  # something was added


def test_chroma_420_leaves_a_grey_image_unchanged():
    grey = cv2.cvtColor(_photo(), cv2.COLOR_RGB2GRAY)
    image = np.repeat(grey[..., None], 3, axis=-1).astype(np.float32)  # R = G = B: no chroma to lose
    out = chroma_420(image)
    assert out.dtype == np.float32 and out.shape == image.shape
    assert np.abs(_ycrcb(out)[:, 0] - _ycrcb(image)[:, 0]).max() < 0.01
    assert np.abs(out - image).max() < 0.01  # and it stays grey


def test_chroma_420_averages_chroma_noise_and_keeps_luma_noise():
    rng = np.random.default_rng(0)
    noisy = _flat(128, 128).astype(np.float32) + rng.normal(0.0, 20.0, (128, 128, 3)).astype(np.float32)
    out = chroma_420(noisy)
    before, after = _ycrcb(noisy).var(axis=0), _ycrcb(out).var(axis=0)
    assert np.abs(_ycrcb(out)[:, 0] - _ycrcb(noisy)[:, 0]).max() < 0.05  # luma untouched, so its noise too
    assert after[0] == pytest.approx(before[0], rel=0.01)
    # The 2×2 mean divides the chroma variance by 4. The bilinear way back mixes independent means with
    # weights (0.75, 0.25) per axis (squares sum to 0.625), dividing it again by 1 / 0.625² = 2.56: ≈ 10× in all.
    for channel in (1, 2):
        assert before[channel] / after[channel] == pytest.approx(4 / 0.625**2, rel=0.15)


def test_grain_is_monochrome_and_spatially_correlated_unlike_white_noise():
    flat = _flat(128, 128).astype(np.float32)
    for seed in range(4):
        grain = add_grain(flat, np.random.default_rng(seed), (10.0, 30.0)) - flat
        white = add_noise(flat, np.random.default_rng(seed), (10.0, 30.0), gray_p=0.0) - flat
        assert np.array_equal(grain[..., 0], grain[..., 1]) and np.array_equal(grain[..., 0], grain[..., 2])
        # Blurring by σ 0.5–1.2 px gives a neighbour correlation of about exp(-1 / 4σ²) = 0.37–0.84.
        assert _neighbour_correlation(grain[..., 0]) > 0.3
        assert abs(_neighbour_correlation(white[..., 0])) < 0.05


@pytest.mark.parametrize("sigma_range", [(4.0, 4.0), (10.0, 10.0), (3.0, 40.0)])
def test_grain_has_the_drawn_sigma(sigma_range):
    flat = _flat(96, 96).astype(np.float32)
    lo, hi = sigma_range
    stds = [float((add_grain(flat, np.random.default_rng(seed), sigma_range) - flat).std()) for seed in range(12)]
    assert all(0.85 * lo <= std <= 1.15 * hi for std in stds), stds
    if lo < hi:
        assert max(stds) - min(stds) > 0.3 * (hi - lo)  # σ is drawn, not fixed


@pytest.mark.parametrize("settings", [Settings(), NOISE_ONLY, Settings(noise_sigma=(5.0, 25.0)),
                                      Settings(noise_sigma=(5.0, 25.0), chroma_420_p=0.0, noise_jpeg_p=0.0)],
                         ids=["default", "noise_only", "5-25", "5-25_noise_only"])  # fmt: skip
def test_measured_noise_spans_the_configured_sigma_range(settings):
    lo, hi = settings.noise_sigma
    stds = _noise_std(settings, range(40))
    assert stds.max() <= 1.15 * hi
    assert stds.min() < lo + 0.15 * (hi - lo) and stds.max() > hi - 0.15 * (hi - lo), np.round(stds, 1)
    if settings.chroma_420_p == 0 and settings.noise_jpeg_p == 0:  # nothing after the noise takes any away
        assert stds.min() >= 0.85 * lo
