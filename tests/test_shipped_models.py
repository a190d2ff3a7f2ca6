"""The weights this project trained and ships (streamrestore/models/): found offline inside the package, as
pinned, loaded by auto-detection, behind the ``denoise`` alias, and better than the classical stage they replaced.

The behaviour check uses scikit-image's astronaut photo, whose file is in training/exclude_sha256.txt: the
network never saw it. Measured on 2 CPU cores (fp32), 256×256 crop, PSNR over RGB in dB, with the test's
noise (seed = σ); seeds 0–2 give the same within 0.1 dB:

    σ25: noisy 20.69, denoise 30.19, nlm:strength=15 26.61 (+3.58)
    σ15: noisy 24.93, denoise 31.95, nlm:strength=8  29.61 (+2.34)

The network takes about 0.15 s for the crop on the CPU, once loaded (about 2 s).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamrestore.models import weights
from streamrestore.cli import list_known_models, list_stages
from streamrestore.restore import PreparedChain, restore_image
from streamrestore.presets import build_chain, parse_chain
from streamrestore.registry import CONTENTS, MODEL_STAGE, Registry
from streamrestore.models.trained import trained_entries
from streamrestore.training.degrade import convolve, gaussian_kernel, shake_kernel
from streamrestore_plugins.neural import BATCH_VERIFIED, ModelStage

from support.photos import psnr

DENOISER = "denoise-nafnet16-video"
GATED = "deblur-nafnet16-gated"
NAMES = [entry.name for entry in trained_entries()]


@pytest.fixture
def offline_empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv(weights.CACHE_ENV, str(cache))
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    return cache


# -- where the files are -----------------------------------------------------------------------------------
def test_every_shipped_model_resolves_offline_to_the_pinned_file_in_the_package(offline_empty_cache: Path) -> None:
    assert DENOISER in NAMES
    catalog = weights.default_catalog()
    for entry in trained_entries():
        shipped = Path(str(resources.files("streamrestore") / "models" / entry.filename))
        path = weights.resolve_weights(entry.name)
        assert path.resolve() == shipped.resolve(), entry.name
        assert weights.sha256_file(path) == entry.sha256, f"{entry.name}: the shipped file is not the pinned one"
        assert catalog[entry.name] == entry and weights.availability(entry) == "installed"
    assert not offline_empty_cache.exists(), "resolving a shipped model touched the cache"


def test_streamrestore_models_lists_them_as_installed() -> None:
    rows = {line.split()[0]: line.split() for line in list_known_models().splitlines()[1:]}
    for entry in trained_entries():
        assert rows[entry.name][1:4] == [entry.arch, f"×{entry.scale}", entry.task]
        assert rows[entry.name][-1] == "installed"


@pytest.mark.parametrize("name", NAMES)
def test_shipped_model_loads_by_auto_detection(name: str, offline_empty_cache: Path) -> None:
    entry = {e.name: e for e in trained_entries()}[name]
    stage = build_chain(parse_chain(f"model={name}"), Registry())[0].stage
    assert isinstance(stage, ModelStage)
    network = stage.network  # read from the file: the architecture and its scale come from the weights
    assert (network.architecture.id, network.scale) == (entry.arch, entry.scale)
    assert (network.input_channels, network.output_channels) == (3, 3)
    assert stage.capabilities.scale == entry.scale and entry.arch in BATCH_VERIFIED


# -- the alias ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content", CONTENTS)
@pytest.mark.parametrize("accelerated", [False, True])
def test_denoise_alias_is_the_shipped_denoiser_and_nlm_the_classical_one(content: str, accelerated: bool) -> None:
    registry = Registry(content=content, accelerated=accelerated)
    spec, settings = registry.resolve("denoise")
    assert spec.name == MODEL_STAGE and settings == {"model": DENOISER, "keep_input": 0.03}
    assert registry.aliases["denoise"].model_settings == {"outscale": 1}  # `denoise=my.pth`: a ×1 result
    spec, settings = registry.resolve("nlm")
    assert spec.name == "nlm-denoise" and settings == {}
    assert registry.resolve("tdenoise")[0].name == "nlm-temporal"


def test_streamrestore_stages_shows_where_denoise_and_nlm_point() -> None:
    lines = {line.split()[0]: line for line in list_stages().splitlines() if " -> " in line}
    assert lines["denoise"].split()[:3] == ["denoise", "->", f"model:model={DENOISER}:keep_input=0.03"]
    assert "keep_input=0.03 after mc-denoise " in lines["denoise"]  # video frames are averaged in time first
    assert "denoise=WEIGHTS -> model:outscale=1" in lines["denoise"]
    assert lines["denoise,sr4"].split()[:3] == ["denoise,sr4", "->", "mc-denoise,oldfilm"]
    assert lines["nlm"].split()[:3] == ["nlm", "->", "nlm-denoise"]


# -- what it does --------------------------------------------------------------------------------------------
# ``astronaut``: the held-out 256×256 crop (tests/conftest.py).
@pytest.fixture(scope="module")
def denoiser():
    return PreparedChain("denoise")  # built once (the weights are read on the first image)


# σ, the NLM strength tuned for it (benchmarks/dev_kit.py), the least gain over it, the least PSNR; see the top.
@pytest.mark.slow
@pytest.mark.parametrize(("sigma", "strength", "gain", "floor"), [(25, 15, 1.5, 29.0), (15, 8, 1.0, 30.5)])
def test_denoise_beats_nlm_on_a_photo_it_never_saw(astronaut, denoiser, sigma, strength, gain, floor) -> None:
    noise = np.random.default_rng(sigma).normal(0, sigma, astronaut.shape)
    noisy = np.clip(astronaut + noise, 0, 255).astype(np.uint8)
    ours = psnr(denoiser.restore_array(noisy), astronaut)
    classical = psnr(restore_image(noisy, f"nlm:strength={strength}"), astronaut)
    assert ours > classical + gain and ours > floor, f"σ{sigma}: denoise {ours:.2f} dB, nlm {classical:.2f} dB"


def blurred(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(convolve(image.astype(np.float32), kernel)), 0, 255).astype(np.uint8)


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "gain"), [("gaussian", 1.0), ("shake", 0.2)])
def test_deblur_model_sharpens_a_photo_it_never_saw(astronaut, kind: str, gain: float) -> None:
    # Measured on this crop (CPU, fp32): Gaussian σ1.6 26.85 → 28.86 dB; a 15-px camera shake 22.56 → 23.01 dB.
    kernel = gaussian_kernel(1.6, 25) if kind == "gaussian" else shake_kernel(np.random.default_rng(5), 15.0, 25)
    soft = blurred(astronaut, kernel)
    before = psnr(soft, astronaut)
    after = psnr(restore_image(soft, "model=deblur-nafnet16"), astronaut)
    assert after > before + gain, f"{kind}: {before:.2f} dB blurred, {after:.2f} dB restored"


@pytest.mark.parametrize("content", CONTENTS)
@pytest.mark.parametrize("accelerated", [False, True])
def test_deblur_alias_is_the_gated_network_and_sharpen_the_unsharp_mask(content: str, accelerated: bool) -> None:
    registry = Registry(content=content, accelerated=accelerated)
    spec, settings = registry.resolve("deblur")
    assert spec.name == MODEL_STAGE and settings == {"model": GATED}
    spec, settings = registry.resolve("sharpen", {"amount": 6.0, "radius": 0.8})  # the unsharp mask `deblur` was
    assert spec.name == "unsharp" and settings == {"amount": 6.0, "radius": 0.8}


@pytest.fixture(scope="module")
def deblur():
    return PreparedChain("deblur")


# Measured on this crop (CPU, fp32; RGB PSNR), input → `deblur` (the unsharp mask 6/0.8 that was `deblur` before;
# deblur-nafnet16 alone): Gaussian σ1.6 26.85 → 30.71 (30.13; 28.86); a 15-px camera shake 22.56 → 22.92 (21.49;
# 23.01); nearly sharp, σ0.5, 39.00 → 39.38 (22.07; 35.92).
@pytest.mark.slow
@pytest.mark.parametrize(("kind", "least_gain", "over_unsharp", "over_network"), [
    ("gaussian", 3.0, 0.3, 1.5),  # above the unsharp mask where it is best (the deconvolution bank)
    ("shake", 0.2, 1.0, -0.2),  # above the input, where the unsharp mask made it worse
    ("sharp", 0.0, 10.0, 1.0),  # not worse than the input, where the unsharp mask wrecked it
])  # fmt: skip
def test_deblur_alias_helps_on_every_blur_and_spares_a_sharp_photo(astronaut, deblur, kind: str, least_gain: float,
                                                                   over_unsharp: float, over_network: float) -> None:
    kernels = {"gaussian": gaussian_kernel(1.6, 25), "shake": shake_kernel(np.random.default_rng(5), 15.0, 25),
               "sharp": gaussian_kernel(0.5, 25)}  # fmt: skip
    soft = blurred(astronaut, kernels[kind])
    before = psnr(soft, astronaut)
    after = psnr(deblur.restore_array(soft), astronaut)
    unsharp = psnr(restore_image(soft, "sharpen:amount=6:radius=0.8"), astronaut)
    network = psnr(restore_image(soft, "model=deblur-nafnet16"), astronaut)
    figures = f"{kind}: input {before:.2f}, deblur {after:.2f}, unsharp {unsharp:.2f}, network {network:.2f} dB"
    assert after > before + least_gain, figures
    assert after > unsharp + over_unsharp and after > network + over_network, figures


def old_film_like(clean: np.ndarray, seed: int = 11) -> np.ndarray:
    """An old-film-like ÷4 input made here (not with the training code): blur, area ÷4, grain σ12, JPEG q50."""
    height, width = clean.shape[:2]
    small = cv2.resize(cv2.GaussianBlur(clean, (0, 0), 0.7), (width // 4, height // 4), interpolation=cv2.INTER_AREA)
    grain = np.random.default_rng(seed).normal(0, 12, small.shape[:2])[..., None]
    grainy = np.clip(small + grain, 0, 255).astype(np.uint8)
    _, data = cv2.imencode(".jpg", grainy[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 50])
    return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1])


def bicubic_x4(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, (image.shape[1] * 4, image.shape[0] * 4), interpolation=cv2.INTER_CUBIC)


@pytest.mark.slow
def test_oldfilm_model_removes_grain_while_upscaling() -> None:
    # Measured (CPU, fp32): residual std against the clean gradient 9.0 (bicubic) vs 3.0 (oldfilm).
    y, x = np.mgrid[0:256, 0:256]
    clean = np.stack([60 + 0.5 * x, 90 + 0.3 * y, 140 - 0.2 * x], axis=-1).astype(np.uint8)
    degraded = old_film_like(clean)
    residual = lambda image: (image.astype(float) - clean)[16:-16, 16:-16].std()  # noqa: E731
    ours, bicubic = residual(restore_image(degraded, "oldfilm")), residual(bicubic_x4(degraded))
    assert ours < 0.5 * bicubic, f"grain left: {ours:.1f} (oldfilm) vs {bicubic:.1f} (bicubic)"


@pytest.mark.slow
def test_oldfilm_model_keeps_a_photo_it_never_saw(astronaut) -> None:
    # Measured on this crop (CPU, fp32): bicubic 22.91 dB, oldfilm 22.49 dB — on a detailed photo under heavy grain
    # the model gives up some fine texture for clean areas (on the kit's old-film clips it gains +0.87 dB). This
    # guards against worse: a loss of a dB or more on a photo would mean it smears detail, not grain.
    degraded = old_film_like(astronaut)
    restored = restore_image(degraded, "oldfilm")
    ours, bicubic = psnr(restored, astronaut), psnr(bicubic_x4(degraded), astronaut)
    assert restored.shape == astronaut.shape
    assert ours > bicubic - 1.0, f"oldfilm {ours:.2f} dB, bicubic {bicubic:.2f} dB"


# The fine-tuned ×2 networks and the packaged ones they started from; the least gain over it.
@pytest.mark.slow
@pytest.mark.parametrize(("ours", "packaged", "gain"), [("sr2-cunet", "waifu2x-cunet-x2", 0.2),
                                                        ("sr2-upconv7", "waifu2x-upconv7-photo-x2", 0.1)])
def test_sr2_models_beat_the_waifu2x_networks_they_were_fine_tuned_from(astronaut, ours, packaged, gain) -> None:
    # Measured on this crop (CPU, fp32), RGB PSNR of a MATLAB-bicubic ÷2 brought back ×2, 4 px border cropped:
    # bicubic 31.25 dB; waifu2x UpConv7 34.28 → sr2-upconv7 34.50; waifu2x CUNet 34.46 → sr2-cunet 34.85.
    from streamrestore.training.degrade import matlab_imresize

    small = np.clip(np.rint(matlab_imresize(astronaut.astype(np.float64), (128, 128))), 0, 255).astype(np.uint8)
    inner = (slice(4, -4), slice(4, -4))
    score = lambda name: psnr(restore_image(small, f"model={name}")[inner], astronaut[inner])  # noqa: E731
    tuned, before = score(ours), score(packaged)
    bicubic = psnr(cv2.resize(small, (256, 256), interpolation=cv2.INTER_CUBIC)[inner], astronaut[inner])
    assert tuned > before + gain and tuned > bicubic + 3.0, f"{ours} {tuned:.2f}, {packaged} {before:.2f} dB"


@pytest.mark.slow
def test_sr4_model_restores_detail_where_its_anime_starting_point_did_not(astronaut) -> None:
    # Measured on this crop (CPU, fp32), RGB PSNR of a MATLAB-bicubic ÷4 brought back ×4, 8 px border cropped:
    # bicubic 26.31 dB, Real-ESRGAN animevideov3 ×4 (where it started) 24.67, sr4-compact 28.26, sr4 28.41.
    from streamrestore.training.degrade import matlab_imresize

    small = np.clip(np.rint(matlab_imresize(astronaut.astype(np.float64), (64, 64))), 0, 255).astype(np.uint8)
    inner = (slice(8, -8), slice(8, -8))
    ours = psnr(restore_image(small, "model=sr4-compact")[inner], astronaut[inner])
    bicubic = psnr(bicubic_x4(small)[inner], astronaut[inner])
    assert ours > bicubic + 1.5, f"sr4-compact {ours:.2f} dB, bicubic {bicubic:.2f} dB"
