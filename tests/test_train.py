"""Tests of streamrestore.training: degradations, data split and exclusions, the loop, resume, export, CLI.

The data are scikit-image's bundled photos that are *not* on the evaluation kits' exclusion list,
shrunk and written as PNGs; the network is a tiny Compact (8 features, 2 convs) trained on CPU.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from streamrestore.cli import main
from streamrestore.errors import ConfigError
from streamrestore.training.data import Patches, excluded_digests, sha256_file, split_folder
from streamrestore.training.degrade import TASKS, Settings, degrade, matlab_imresize, scale_of
from streamrestore.training.loop import TrainConfig, train

import skimage.data as skdata  # noqa: E402  (a test dependency: the [test] extra)

from support.photos import TRAINING_PHOTOS as PHOTOS, write_training_photos as _write_photos

STEPS = 30


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return _write_photos(tmp_path_factory.mktemp("photos"))


def _config(photos: Path, out: Path, **changes) -> TrainConfig:
    settings = dict(task="sr2", data=str(photos), out=str(out), arch="compact", steps=STEPS, batch=4, patch=32,
                    lr=2e-3, features=8, blocks=2, val_every=10, seed=3, device="cpu")  # fmt: skip
    settings.update(changes)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def straight(photos, tmp_path_factory):
    torch.set_num_threads(2)
    return train(_config(photos, tmp_path_factory.mktemp("straight")), progress=False)


# --- degradations ---------------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_degradation_is_reproducible_per_seed_and_differs_across_seeds(task):
    clean = skdata.immunohistochemistry()[100:196, 200:296]
    # oldvideo4 leaves a share of its patches as the plain quarter (tests/test_train_quality.py): all damaged here.
    settings = Settings(video_p=1.0) if task == "oldvideo4" else Settings()
    first, again, other = (degrade(clean, task, seed, settings) for seed in (7, 7, 8))
    scale = scale_of(task)
    assert first.dtype == np.uint8 and first.shape == (96 // scale, 96 // scale, 3)
    assert np.array_equal(first, again)
    if task.startswith("sr"):  # plain downscaling draws nothing: seeds must not matter
        assert np.array_equal(first, other)
    else:
        assert not np.array_equal(first, other)
        # It did more than resize: compare with the plain downscale to the same size.
        plain = clean if scale == 1 else degrade(clean, f"sr{scale}", 0)
        assert np.abs(first.astype(int) - plain.astype(int)).mean() > 0.5


def test_matlab_bicubic_keeps_a_flat_image_flat_and_halves_a_ramp():
    flat = np.full((8, 12, 3), 77.0)
    assert np.allclose(matlab_imresize(flat, (4, 6)), 77.0)
    ramp = np.tile(np.arange(16, dtype=np.float64), (4, 1))[..., None]
    half = matlab_imresize(ramp, (2, 8))
    # Away from the mirrored edges, an output pixel is the mean of the two inputs it covers.
    assert np.allclose(half[0, 2:6, 0], [4.5, 6.5, 8.5, 10.5])


def test_bicubic_resize_setting_is_matlab_imresize():
    clean = skdata.immunohistochemistry()[100:196, 200:296]
    bicubic = degrade(clean, "sr4", 0, Settings(resize="bicubic"))
    expected = np.clip(np.round(matlab_imresize(clean.astype(np.float32), (24, 24))), 0, 255)
    assert np.abs(bicubic.astype(int) - expected.astype(int)).max() <= 1
    assert not np.array_equal(bicubic, degrade(clean, "sr4", 0))  # the default, area, differs


def test_sr_patch_must_be_a_multiple_of_the_scale():
    with pytest.raises(ConfigError, match="multiple"):
        degrade(np.zeros((10, 10, 3), np.uint8), "sr3", 0)


# --- data -------------------------------------------------------------------------------------------


def test_validation_split_is_disjoint_deterministic_and_ignores_names(photos, tmp_path):
    split = split_folder(photos)
    assert split.validation and split.train
    assert not set(split.validation) & set(split.train)
    assert len(split.validation) + len(split.train) == len(PHOTOS)
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    for index, path in enumerate(sorted(photos.iterdir(), reverse=True)):
        shutil.copy(path, renamed / f"{index:03d}_{path.name}")
    again = split_folder(renamed)
    assert [sha256_file(p) for p in again.validation] == [sha256_file(p) for p in split.validation]


def test_excluded_photos_are_skipped(photos, tmp_path):
    # astronaut.png as shipped in scikit-image is one of the evaluation kits' sources: listed, so skipped.
    folder = tmp_path / "with_kit_photo"
    shutil.copytree(photos, folder)
    kit_photo = Path(skdata.__file__).parent / "astronaut.png"
    assert sha256_file(kit_photo) in excluded_digests()
    shutil.copy(kit_photo, folder / "astronaut.png")
    split = split_folder(folder)
    assert split.excluded == (folder / "astronaut.png",)
    assert folder / "astronaut.png" not in split.train + split.validation
    assert len(split.train) + len(split.validation) == len(PHOTOS)


def test_patches_are_seeded_and_augmented(photos):
    split = split_folder(photos)
    patches = Patches(split, "sr2", 32, seed=1)
    lq, gt = patches.batch(5, 4)
    assert lq.shape == (4, 3, 16, 16) and gt.shape == (4, 3, 32, 32)
    lq2, gt2 = Patches(split, "sr2", 32, seed=1).batch(5, 4)
    assert torch.equal(lq, lq2) and torch.equal(gt, gt2)
    assert not torch.equal(gt, Patches(split, "sr2", 32, seed=2).batch(5, 4)[1])


# --- the loop ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_loss_decreases_and_validation_is_reported(straight):
    assert len(straight.losses) == STEPS
    k = 5
    assert np.mean(straight.losses[-k:]) < 0.8 * np.mean(straight.losses[:k])
    assert [step for step, _, _ in straight.validation] == [10, 20, 30]
    for _, value, structure in straight.validation:
        assert 10 < value < 60 and 0 < structure <= 1
    assert straight.validation[-1][1] > straight.validation[0][1] - 0.5  # not getting clearly worse


@pytest.mark.slow
def test_resume_continues_bit_for_bit(straight, photos, tmp_path):
    torch.set_num_threads(2)
    first = train(_config(photos, tmp_path, stop_after=STEPS // 2 + 3), progress=False)  # between validations
    assert first.step == STEPS // 2 + 3 and first.weights is None
    resumed = train(_config(photos, tmp_path, resume=True), progress=False)
    assert resumed.step == STEPS
    assert resumed.losses == straight.losses
    assert resumed.validation == straight.validation
    from safetensors.torch import load_file

    ours, theirs = load_file(resumed.weights), load_file(straight.weights)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.slow
def test_resume_refuses_other_settings(straight, photos):
    with pytest.raises(ConfigError, match="lr"):
        train(_config(photos, Path(straight.weights).parent, resume=True, lr=1e-3), progress=False)


@pytest.mark.slow
def test_exported_weights_are_detected_by_the_model_stage(straight):
    from streamrestore.restore import RunSettings, restore_image
    from streamrestore.models.loader import load_network

    descriptor = load_network(Path(straight.weights))
    assert descriptor.architecture.id == "Compact" and descriptor.scale == 2
    image = skdata.immunohistochemistry()[:50, :70]
    restored = restore_image(image, f"model:model={straight.weights}", RunSettings(device="cpu"))
    assert restored.shape == (100, 140, 3) and restored.dtype == np.uint8
    # The network learnt something: closer to the clean image than a bicubic ×2 is not asked of 30 steps,
    # but it must not be garbage.
    reference = cv2.resize(image, (140, 100), interpolation=cv2.INTER_CUBIC).astype(float)
    assert np.abs(restored.astype(float) - reference).mean() < 40


@pytest.mark.slow
@pytest.mark.parametrize(("task", "arch", "detected"), [("sr2", "swinir", "SwinIR"), ("denoise", "esrgan", "ESRGAN")])
def test_other_architectures_train_and_export_what_the_loader_detects(photos, tmp_path, task, arch, detected):
    from streamrestore.models.loader import load_network

    torch.set_num_threads(2)
    run = train(_config(photos, tmp_path, task=task, arch=arch, features=12, blocks=1, steps=3, batch=2,
                        val_every=3), progress=False)  # fmt: skip
    assert len(run.losses) == 3 and all(np.isfinite(run.losses)) and run.validation
    descriptor = load_network(run.weights)
    assert descriptor.architecture.id == detected and descriptor.scale == scale_of(task)


def test_a_fresh_network_the_loader_would_misread_is_refused_before_training(photos, tmp_path):
    with pytest.raises(ConfigError, match="divisible by 6"):
        train(_config(photos, tmp_path, arch="swinir", features=8), progress=False)
    with pytest.raises(ConfigError, match="unknown --arch 'unet'"):
        train(_config(photos, tmp_path, arch="unet"), progress=False)


# --- fine-tuning (--init) -------------------------------------------------------------------------------


@pytest.mark.slow
def test_fine_tuning_starts_from_the_init_weights(straight, photos, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    torch.set_num_threads(2)
    # With a vanishing learning rate the run must hand back the weights it started from.
    tuned = train(_config(photos, tmp_path, arch=None, init=str(straight.weights), steps=10, lr=1e-12), progress=False)
    assert tuned.weights.name == "sr2-compact.safetensors"
    start, end = load_file(straight.weights), load_file(tuned.weights)
    assert start.keys() == end.keys() and all(torch.allclose(start[k], end[k], atol=1e-6) for k in start)
    assert tuned.validation[-1][1] == pytest.approx(straight.validation[-1][1], abs=0.01)
    # The same first batch as the straight run (same seed), on trained weights instead of fresh ones.
    assert tuned.losses[0] < 0.8 * straight.losses[0]
    with safe_open(str(tuned.weights), framework="pt") as handle:
        assert handle.metadata()["streamrestore.train.init"] == str(straight.weights)


@pytest.mark.slow
def test_fine_tuning_pads_waifu2x_networks_as_at_inference(photos, tmp_path):
    from safetensors.torch import save_file

    from streamrestore.models.archs.waifu2x import UpConv7
    from streamrestore.training.loop import training_call
    from streamrestore.models.loader import load_network

    torch.manual_seed(0)
    small = UpConv7(widths=(4, 4, 8, 8, 8, 8))  # the packaged one has the same layers, wider
    init = tmp_path / "upconv7.safetensors"
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, str(init))
    # Training calls it as the model stage does: padded by the 7 px it eats, replicating edge pixels.
    x = torch.rand(1, 3, 21, 30)
    with torch.no_grad():
        assert torch.allclose(training_call(small)(x).clamp(0, 1), load_network(init)(x), atol=1e-6)
    tuned = train(_config(photos, tmp_path / "run", arch=None, init=str(init), steps=6, val_every=3, resize="bicubic"),
                  progress=False)  # fmt: skip
    assert tuned.weights.name == "sr2-upconv7.safetensors"
    assert len(tuned.losses) == 6 and all(np.isfinite(tuned.losses))
    assert load_network(tuned.weights).architecture.id == "UpConv7"


def test_fine_tuning_a_waifu2x_cunet_keeps_its_marker_and_its_padding(tmp_path):
    from safetensors.torch import save_file

    from streamrestore.models.archs.cunet import WAIFU2X_MARKER
    from streamrestore.models.archs.waifu2x import CUNet
    from streamrestore.training.loop import export, initial_network
    from streamrestore.models.loader import load_network

    # Without its marker a waifu2x CUNet ×2 reads as a Real-CUGAN ×2 (spandrel's), which pads by reflecting.
    state = {**CUNet(2).state_dict(), WAIFU2X_MARKER: torch.zeros(1)}
    init = tmp_path / "cunet.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(init))
    config = TrainConfig(task="sr2", data=str(tmp_path), out=str(tmp_path), init=str(init))
    start = initial_network(config, 2)
    assert start.arch == "cunet" and WAIFU2X_MARKER in start.markers
    exported = load_network(export(start.network, tmp_path / "tuned.safetensors", config, start))
    assert exported.architecture.id == "CUNet" and exported.model.pad_mode == "replicate"


@pytest.mark.slow
def test_fine_tuning_refuses_a_network_of_another_scale_or_arch(straight, photos, tmp_path):
    with pytest.raises(ConfigError, match="×2 Compact network"):
        train(_config(photos, tmp_path, task="sr4", arch=None, init=str(straight.weights)), progress=False)
    with pytest.raises(ConfigError, match="not --arch esrgan"):
        train(_config(photos, tmp_path, arch="esrgan", init=str(straight.weights)), progress=False)


@pytest.mark.slow
def test_cli_trains_and_exports(photos, tmp_path, capsys):
    code = main(["train", "--task", "denoise", "--data", str(photos), "--steps", "4", "--out", str(tmp_path),
                 "--batch", "2", "--patch", "24", "--features", "8", "--blocks", "2", "--val-every", "2",
                 "--device", "cpu", "-q"])  # fmt: skip
    assert code == 0
    assert (tmp_path / "denoise-compact.safetensors").is_file() and (tmp_path / "checkpoint.pt").is_file()
    assert "denoise-compact.safetensors" in capsys.readouterr().err


def test_cli_reports_a_bad_task_in_one_line(photos, tmp_path, capsys):
    code = main(["train", "--task", "sr5", "--data", str(photos), "--steps", "2", "--out", str(tmp_path), "-q"])
    assert code == ConfigError.exit_code
    assert "unknown task 'sr5'" in capsys.readouterr().err
