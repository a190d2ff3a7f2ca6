"""Training additions of issue #15: the ``oldvideo`` task, ``--blur-odds``, Restormer and MPRNet built fresh in
their official layouts, and mid-run snapshots of the EMA weights (``streamrestore.training.snapshot``).

Tiny networks on CPU, a few steps each, on scikit-image photos not on the exclusion list (see test_train).
"""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from streamrestore.errors import ConfigError
from streamrestore.restore import restore_image
from streamrestore.training.data import Patches, detail, split_folder, to_tensor
from streamrestore.training.degrade import Settings, degrade, h264
from streamrestore.training.loop import TrainConfig, train
from streamrestore.training.snapshot import snapshot
from streamrestore.models.loader import load_network, model_loader

import skimage.data as skdata
from support.photos import write_training_photos as _write_photos

pytestmark = pytest.mark.slow  # training loops on CPU

EXTRA = importlib.util.find_spec("spandrel_extra_arches") is not None


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    torch.set_num_threads(2)
    return _write_photos(tmp_path_factory.mktemp("photos"))


def _config(photos, out, **changes) -> TrainConfig:
    settings = dict(task="denoise", data=str(photos), out=str(out), arch="nafnet", steps=4, batch=2, patch=32,
                    lr=1e-3, features=8, blocks=1, val_every=2, seed=1, device="cpu")  # fmt: skip
    return TrainConfig(**(settings | changes))


def test_oldvideo_mixes_video_damage_and_plain_noise():
    clean = skdata.immunohistochemistry()[100:196, 200:296]
    # Old-video damage: the same draws with and without the final block compression differ only by it.
    raw = degrade(clean, "oldvideo", 3, Settings(video_p=1.0, video_h264_p=0.0, video_jpeg_p=0.0)).astype(np.float32)
    blocky = degrade(clean, "oldvideo", 3, Settings(video_p=1.0, video_h264_p=0.0, video_jpeg_p=1.0)).astype(np.float32)
    assert np.abs(raw - clean).mean() > 1 and np.abs(blocky - raw).mean() > 1
    noise_only = degrade(clean, "oldvideo", 3, Settings(video_p=0.0)).astype(np.float32)
    assert np.abs(noise_only - clean).mean() > 0.5

def test_h264_round_trip_is_deterministic_keeps_the_size_and_smears_grain():
    rng = np.random.default_rng(0)
    small = cv2.resize(skdata.astronaut()[100:300, 100:300], (67, 45), interpolation=cv2.INTER_AREA)  # odd sizes
    clean = cv2.GaussianBlur(small, (0, 0), 2)  # smooth content: what the codec loses is mostly the grain
    noisy = [np.clip(clean + rng.normal(0, 12, clean.shape), 0, 255).astype(np.uint8) for _ in range(3)]
    decoded = h264(noisy, 28)
    assert len(decoded) == 3 and all(frame.shape == clean.shape and frame.dtype == np.uint8 for frame in decoded)
    assert all((a == b).all() for a, b in zip(decoded, h264(noisy, 28)))  # one thread: the same bytes every time
    error = lambda image: float(np.abs(image.astype(np.float32) - clean).mean())  # noqa: E731
    # At crf 28 the encoder throws much of the grain away (9.3 → about 4.9 levels here), and blocks remain.
    assert all(1.0 < error(frame) < 0.7 * error(grainy) for frame, grainy in zip(decoded, noisy))
    flat = np.full((32, 48, 3), (200, 50, 90), np.uint8)  # colours survive the BT.601 round trip
    assert np.abs(h264([flat], 18)[0].astype(np.float32) - flat).max() <= 2


def test_oldvideo_h264_draws_are_seeded_and_differ_from_jpeg():
    clean = skdata.immunohistochemistry()[100:164, 200:264]
    video = Settings(video_p=1.0, video_h264_p=1.0)
    first, again = degrade(clean, "oldvideo", 7, video), degrade(clean, "oldvideo", 7, video)
    assert (first == again).all() and not (first == degrade(clean, "oldvideo", 8, video)).all()
    jpeg_instead = degrade(clean, "oldvideo", 7, Settings(video_p=1.0, video_h264_p=0.0, video_jpeg_p=1.0))
    assert np.abs(first.astype(np.float32) - jpeg_instead).mean() > 1


def test_fresh_swinir_starts_as_cubic_interpolation():
    from streamrestore.training.loop import build_network

    smooth = cv2.GaussianBlur(skdata.astronaut()[:96, :128], (0, 0), 3).astype(np.float32) / 255
    image = torch.from_numpy(smooth).permute(2, 0, 1)[None]
    for scale in (2, 4):
        network = build_network("swinir", scale, 12, 1).eval()
        with torch.no_grad():
            out = network(image)
        cubic = torch.nn.functional.interpolate(image, scale_factor=scale, mode="bicubic", align_corners=False)
        inner = (slice(None), slice(None), slice(4 * scale, -4 * scale), slice(4 * scale, -4 * scale))
        assert out.shape == cubic.shape and (out - cubic)[inner].abs().max() < 2 / 255
        import spandrel  # still SwinIR's own layout, detected as SwinIR of this scale

        descriptor = spandrel.ModelLoader().load_from_state_dict(network.state_dict())
        assert descriptor.architecture.id == "SwinIR" and descriptor.scale == scale


def test_oldvideo_clean_patches_are_shrunk_crops(tmp_path):
    # Slow sinusoidal stripes (period 32 px): shrunk ×4 first, a clean patch shows four times as many.
    x = np.arange(256)
    stripes = (128 + 100 * np.sin(2 * np.pi * x / 32))[None, :, None] * np.ones((256, 1, 3))
    for index in range(3):
        cv2.imwrite(str(tmp_path / f"stripes{index}.png"), np.roll(stripes, 5 * index, axis=1).astype(np.uint8))
    shrunk = Patches(split_folder(tmp_path), "oldvideo", 32, seed=0, settings=Settings(video_shrink=(4.0, 4.0)))
    plain = Patches(split_folder(tmp_path), "denoise", 32, seed=0)

    def crossings(patches: Patches) -> float:  # mean sign changes of the stripes across a patch
        counts = []
        for i in range(8):
            clean = patches.sample(i)[1].astype(float)[..., 0]
            line = clean.mean(axis=0) if clean.std(axis=0).mean() < clean.std(axis=1).mean() else clean.mean(axis=1)
            counts.append(np.count_nonzero(np.diff(np.sign(line - 128))))
        return float(np.mean(counts))

    assert crossings(shrunk) > 2 * crossings(plain)  # about 4×, less the crossings a patch edge cuts off
    # --shrink does the same for any task (here deblur: the gated deblur's gate learns on denser detail).
    dense = Patches(split_folder(tmp_path), "deblur", 32, seed=0, settings=Settings(patch_shrink=(4.0, 4.0)))
    plain_deblur = Patches(split_folder(tmp_path), "deblur", 32, seed=0)
    assert crossings(dense) > 2 * crossings(plain_deblur)


def test_min_detail_draws_flat_patches_again(tmp_path):
    # Flat grey pictures and textured ones (one of the four is held out): without the floor many patches are flat.
    for index in range(2):
        cv2.imwrite(str(tmp_path / f"flat{index}.png"), np.full((96, 96, 3), 100 + 20 * index, np.uint8))
        noise = np.random.default_rng(index).integers(0, 255, (96, 96, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / f"textured{index}.png"), noise)
    split = split_folder(tmp_path, val_fraction=0.0)
    assert {path.stem[:4] for path in split.train} == {"flat", "text"}
    plain = [detail(Patches(split, "deblur", 32, seed=0).sample(i)[1]) for i in range(16)]
    floored = [detail(Patches(split, "deblur", 32, seed=0, settings=Settings(min_detail=4.0)).sample(i)[1])
               for i in range(16)]  # fmt: skip
    assert min(plain) == 0.0 and max(plain) > 4.0
    assert min(floored) > 4.0


def test_shrink_is_checked_and_part_of_the_run(photos, tmp_path):
    with pytest.raises(ConfigError, match="--shrink"):
        train(_config(photos, tmp_path / "bad", shrink=(0.5, 2.0)), progress=False)
    train(_config(photos, tmp_path, shrink=(1.0, 2.0), stop_after=2), progress=False)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["config"]["shrink"] == (1.0, 2.0)
    with pytest.raises(ConfigError, match="shrink"):  # other patches would be another run
        train(_config(photos, tmp_path, resume=True), progress=False)
    with pytest.raises(ConfigError, match="--min-detail"):
        train(_config(photos, tmp_path / "bad", min_detail=-1.0), progress=False)


def test_blur_odds_choose_the_kernels_and_a_resume_must_keep_them(photos, tmp_path):
    clean = skdata.immunohistochemistry()[100:196, 200:296]
    gaussian_only = Settings(blur_odds=(1.0, 0.0, 0.0), blur_noise_p=0.0)
    for seed in range(3):
        blurred = degrade(clean, "deblur", seed, gaussian_only).astype(np.float32)
        # A Gaussian blur is symmetric: flipping the image commutes with it (up to rounding and borders).
        flipped = degrade(np.ascontiguousarray(clean[:, ::-1]), "deblur", seed, gaussian_only)[:, ::-1]
        assert np.abs(blurred - flipped)[4:-4, 4:-4].max() <= 1
    first = _config(photos, tmp_path, task="deblur", blur_odds=(0.5, 0.0, 0.5), stop_after=2)
    train(first, progress=False)
    with pytest.raises(ConfigError, match="blur_odds"):
        train(_config(photos, tmp_path, task="deblur", blur_odds=(0.4, 0.2, 0.4), resume=True), progress=False)
    with pytest.raises(ConfigError, match="blur-odds"):
        train(_config(photos, tmp_path / "bad", task="deblur", blur_odds=(1.0, -1.0, 0.0)), progress=False)


def test_video_share_is_part_of_the_run_and_checked(photos, tmp_path):
    train(_config(photos, tmp_path, task="oldvideo", video_share=1.0, stop_after=2), progress=False)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["config"]["video_share"] == 1.0
    with pytest.raises(ConfigError, match="video_share"):  # another share would be another run
        train(_config(photos, tmp_path, task="oldvideo", video_share=0.5, resume=True), progress=False)
    with pytest.raises(ConfigError, match="video-share"):
        train(_config(photos, tmp_path / "bad", task="oldvideo", video_share=1.5), progress=False)


def test_noise_sigma_bounds_the_drawn_noise_and_is_checked(photos, tmp_path):
    flat = np.full((64, 64, 3), 128, np.uint8)
    low = Settings(noise_sigma=(4.0, 4.0), grain_p=0.0, chroma_420_p=0.0, noise_jpeg_p=0.0)
    spreads = [float((degrade(flat, "denoise", seed, low).astype(np.float32) - 128).std()) for seed in range(4)]
    assert all(3.5 < spread < 4.5 for spread in spreads), spreads
    with pytest.raises(ConfigError, match="noise-sigma"):
        train(_config(photos, tmp_path, noise_sigma=(20.0, 10.0)), progress=False)


def test_snapshot_exports_the_ema_weights_of_the_checkpoint(photos, tmp_path):
    run = tmp_path / "run"
    train(_config(photos, run, stop_after=2), progress=False)
    early = snapshot(run, tmp_path / "early.safetensors")
    assert early == 2
    result = train(_config(photos, run, resume=True), progress=False)
    assert snapshot(run, tmp_path / "final.safetensors") == 4
    # At the end of the schedule the snapshot is the run's own export, tensor for tensor.
    ours, theirs = load_file(tmp_path / "final.safetensors"), load_file(result.weights)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    with safe_open(str(tmp_path / "early.safetensors"), framework="pt") as reader:
        assert reader.metadata()["streamrestore.train.exported_at_step"] == "2"
    assert load_network(tmp_path / "early.safetensors").architecture.id == "NAFNet"


@pytest.mark.skipif(not EXTRA, reason="spandrel-extra-arches (the extra-arches extra) is not installed")
@pytest.mark.parametrize(("arch", "detected", "features"), [("restormer", "Restormer", 8), ("mprnet", "MPRNet", 12)])
def test_restormer_and_mprnet_train_fresh_in_their_official_layouts(photos, tmp_path, arch, detected, features):
    result = train(_config(photos, tmp_path, task="deblur", arch=arch, features=features, blocks=1), progress=False)
    assert result.weights is not None and len(result.validation) == 2
    assert all(np.isfinite(loss) for loss in result.losses)
    descriptor = model_loader().load_from_state_dict(load_file(result.weights))
    assert descriptor.architecture.id == detected and descriptor.scale == 1
    image = skdata.astronaut()[:37, :45]  # odd sizes: the stage pads to the network's multiple and crops back
    assert restore_image(image, f"model={result.weights}").shape == image.shape


@pytest.mark.parametrize(("arch", "features", "divisor"), [("restormer", 12, 8), ("mprnet", 10, 4)])
def test_fresh_restormer_and_mprnet_want_widths_that_read_back(photos, tmp_path, arch, features, divisor):
    if not EXTRA:
        pytest.skip("spandrel-extra-arches is not installed")
    with pytest.raises(ConfigError, match=f"divisible by {divisor}"):
        train(_config(photos, tmp_path, arch=arch, features=features), progress=False)


def test_blur_sigma_bounds_the_gaussian_kernels_and_is_part_of_the_run(photos, tmp_path):
    # A single white dot blurred by the drawn Gaussian: its spread is the kernel's σ.
    dot = np.zeros((41, 41, 3), np.uint8)
    dot[20, 20] = 255
    fixed = Settings(blur_odds=(1.0, 0.0, 0.0), blur_sigma=(2.0, 2.0), blur_noise_p=0.0)
    for seed in range(3):
        row = degrade(dot, "deblur", seed, fixed)[20, :, 0].astype(np.float64)
        offsets = np.arange(41) - 20
        assert abs(np.sqrt((row * offsets**2).sum() / row.sum()) - 2.0) < 0.25
    train(_config(photos, tmp_path, task="deblur", blur_sigma=(1.0, 2.5), stop_after=2), progress=False)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["config"]["blur_sigma"] == (1.0, 2.5)
    with pytest.raises(ConfigError, match="blur_sigma"):  # other kernels would be another run
        train(_config(photos, tmp_path, task="deblur", blur_sigma=(0.2, 3.0), resume=True), progress=False)
    with pytest.raises(ConfigError, match="blur-sigma"):
        train(_config(photos, tmp_path / "bad", task="deblur", blur_sigma=(3.0, 1.0)), progress=False)


def test_oldvideo4_is_sr4_plus_old_video_damage():
    clean = np.ascontiguousarray(skdata.astronaut()[100:196, 100:196])
    plain = Settings(video_p=0.0, resize="bicubic")
    quarter = degrade(clean, "oldvideo4", 5, plain)
    assert quarter.shape == (24, 24, 3) and np.array_equal(quarter, degrade(clean, "sr4", 5, plain))
    damaged = degrade(clean, "oldvideo4", 5, Settings(video_p=1.0, resize="bicubic")).astype(np.float32)
    assert damaged.shape == (24, 24, 3) and np.abs(damaged - quarter).mean() > 2


def test_after_runs_each_input_through_that_chain_and_is_part_of_the_run(photos, tmp_path):
    from streamrestore.training.upstream import upstream_chain

    denoise = upstream_chain("denoise")
    split, settings = split_folder(photos, 0.2), Settings(video_p=1.0)
    raw = Patches(split, "oldvideo4", 64, 3, settings, val_size=64)
    after = Patches(split, "oldvideo4", 64, 3, settings, val_size=64, upstream=denoise)
    (noisy, clean), (cleaned, same) = raw.sample(7), after.sample(7)
    assert np.array_equal(clean, same) and np.array_equal(cleaned, denoise(noisy))
    assert np.abs(cleaned.astype(np.float32) - noisy).mean() > 1  # the denoiser did something
    raw_input = (raw.validation[0][0][0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    assert torch.equal(after.validation[0][0], to_tensor([denoise(raw_input)]))  # validation inputs too
    train(_config(photos, tmp_path, task="oldvideo4", arch="compact", after="denoise", patch=64, stop_after=1),
          progress=False)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["config"]["after"] == "denoise"
    with pytest.raises(ConfigError, match="after"):  # without the denoiser it would be another run
        train(_config(photos, tmp_path, task="oldvideo4", arch="compact", patch=64, resume=True), progress=False)
    with pytest.raises(ConfigError, match="must be a ×1 chain"):
        train(_config(photos, tmp_path / "bad", task="oldvideo4", arch="compact", after="sr2", patch=64),
              progress=False)
