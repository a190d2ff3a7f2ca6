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
from streamrestore.training.degrade import TASKS, degrade, matlab_imresize, scale_of
from streamrestore.training.loop import TrainConfig, train

import skimage.data as skdata  # noqa: E402  (a test dependency: the [test] extra)

PHOTOS = ("retina", "hubble_deep_field", "immunohistochemistry", "camera", "brick", "grass", "gravel", "moon")
STEPS = 30


def _write_photos(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        image = getattr(skdata, name)()
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        image = cv2.resize(image, (160, 160 * image.shape[0] // image.shape[1]), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"{name}.png"), image[..., ::-1])
    return folder


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
    first, again, other = degrade(clean, task, 7), degrade(clean, task, 7), degrade(clean, task, 8)
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


def test_loss_decreases_and_validation_is_reported(straight):
    assert len(straight.losses) == STEPS
    k = 5
    assert np.mean(straight.losses[-k:]) < 0.8 * np.mean(straight.losses[:k])
    assert [step for step, _, _ in straight.validation] == [10, 20, 30]
    for _, value, structure in straight.validation:
        assert 10 < value < 60 and 0 < structure <= 1
    assert straight.validation[-1][1] > straight.validation[0][1] - 0.5  # not getting clearly worse


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


def test_resume_refuses_other_settings(straight, photos):
    with pytest.raises(ConfigError, match="lr"):
        train(_config(photos, Path(straight.weights).parent, resume=True, lr=1e-3), progress=False)


def test_exported_weights_are_detected_by_the_model_stage(straight):
    from streamrestore.pipeline import restore_image
    from streamrestore_plugins.neural import load_network

    descriptor = load_network(Path(straight.weights))
    assert descriptor.architecture.id == "Compact" and descriptor.scale == 2
    image = skdata.immunohistochemistry()[:50, :70]
    restored = restore_image(image, f"model:model={straight.weights}", device="cpu")
    assert restored.shape == (100, 140, 3) and restored.dtype == np.uint8
    # The network learnt something: closer to the clean image than a bicubic ×2 is not asked of 30 steps,
    # but it must not be garbage.
    reference = cv2.resize(image, (140, 100), interpolation=cv2.INTER_CUBIC).astype(float)
    assert np.abs(restored.astype(float) - reference).mean() < 40


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
