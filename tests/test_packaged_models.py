"""The models the ncnn wheels ship, used by name through the one ``model`` stage, offline.

Each is resolved into a fresh cache (converted once from the wheel's .param/.bin to safetensors),
loaded by spandrel's auto-detection (UpConv7 and CUNet from ``streamrestore.models.archs``) and run by the
stage, with the border its file declares; the result is compared with ``run_like_ncnn``, the torch
port of what the wrapper does (itself within 1/255 of the ncnn engines: tests/test_ncnn_convert.py).

Measured on 2 CPU cores, crops of skimage's cat photo: max difference 1/255 (0 for waifu2x CUNet ×2),
at most 0.01 % of values off by one: the stage runs channels-last, which sums in another order.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as skimage_data

from streamrestore.models import weights
from streamrestore.errors import ConfigError, WeightsError
from streamrestore.frames import FrameBatch
from streamrestore.models.ncnn_convert import convert_ncnn_model
from streamrestore.models.ncnn_packaged import find_packaged_models
from support.ncnn_run import build_module, run_like_ncnn
from streamrestore.restore import restore_image
from streamrestore.presets import build_chain, parse_chain
from streamrestore.registry import Registry
from streamrestore.models.weights import ModelEntry, PackagedFile, default_catalog, resolve_weights, sha256_file
from streamrestore_plugins.neural import BATCH_VERIFIED, ModelStage
from support.threads import torch_threads


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test converts into its own empty cache and may not go online."""
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(weights.OFFLINE_ENV, raising=False)
    return tmp_path / "cache"


@pytest.fixture(autouse=True, scope="module")
def _two_threads():
    with torch_threads(2):  # CI has 2 cores
        yield


def photo(h: int, w: int, top: int = 100, left: int = 150) -> np.ndarray:
    """A crop of skimage's cat: fur, whiskers and an eye."""
    return np.ascontiguousarray(skimage_data.chelsea()[top : top + h, left : left + w])


def reference(name: str, image: np.ndarray) -> np.ndarray:
    """The wrapper's result, computed in torch from the wheel's files (helper code, not the stage)."""
    model = {m.name: m for m in find_packaged_models()}[name]
    converted = convert_ncnn_model(model.param_path, model.bin_path, name)
    return run_like_ncnn(build_module(converted), image, converted)


def assert_close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    assert diff.max() <= 1, f"max abs diff {diff.max()}/255"
    assert (diff > 0).mean() <= 0.001, f"{(diff > 0).mean():.4%} of values off by one"
    assert ours.std() > 10  # a picture, not a flat or clipped frame


def build(chain: str) -> ModelStage:
    stage = build_chain(parse_chain(chain), Registry())[0].stage
    assert isinstance(stage, ModelStage)
    return stage


# name, alias with the same output scale, architecture spandrel must detect, scale, crop (h, w)
CASES = [
    ("waifu2x-upconv7-photo-x2", "sr2", "UpConv7", 2, (81, 97)),
    ("waifu2x-cunet-noise2-x1", "denoise", "CUNet", 1, (81, 97)),
    ("waifu2x-cunet-x2", "sr2", "CUNet", 2, (61, 75)),  # same keys as Real-CUGAN ×2: the marker decides
    ("realesr-animevideov3-x4", "sr4", "Compact", 4, (80, 96)),
    ("realesr-animevideov3-x2", "sr2", "Compact", 2, (81, 97)),  # the ×4 network, resized as declared
    ("realcugan-se-x2", "sr2", "RealCUGAN", 2, (81, 97)),
    ("realcugan-nose-x2", "sr2", "CUNet", 2, (61, 75)),  # CUNet without SE, reflect-padded
    # RRDBNet: x4plus-anime has 6 blocks; x4plus (23, ~25 s here) is checked against ncnn in test_ncnn_convert
    ("realesrgan-x4plus-anime", "sr4", "ESRGAN", 4, (29, 35)),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "alias", "arch", "scale", "size"), CASES, ids=[c[0] for c in CASES])
def test_a_packaged_model_by_name_runs_like_its_wrapper(name, alias, arch, scale, size, fresh_cache, capsys):
    image = photo(*size)
    expected = reference(name, image)

    out = restore_image(image, f"model:model={name}")
    assert out.shape == (size[0] * scale, size[1] * scale, 3)
    assert_close(out, expected)
    converted = fresh_cache / "converted" / f"{name}.safetensors"
    stamp = converted.stat().st_mtime_ns
    assert capsys.readouterr().err.count(f"converting model {name!r}") == 1

    stage = build(f"{alias}={name}")  # the alias form: the same file, the same stage
    assert (stage.network.architecture.id, stage.capabilities.scale) == (arch, scale)
    assert stage.capabilities.dtypes == ("float16", "bfloat16", "float32")
    assert_close(restore_image(image, f"{alias}={name}"), expected)
    assert converted.stat().st_mtime_ns == stamp  # the cached conversion was reused, not redone
    assert "converting" not in capsys.readouterr().err


def test_border_auto_follows_the_file_and_can_be_overridden() -> None:
    name = "realesr-animevideov3-x4"  # declares a 10 px reflected border, as Real-ESRGAN's wrapper pads
    image = photo(64, 64)
    auto = restore_image(image, f"model={name}").astype(int)
    assert np.array_equal(auto, restore_image(image, f"model={name}:border=10"))
    bare = restore_image(image, f"model={name}:border=0").astype(int)
    inside = np.s_[24 * 4 : 40 * 4, 24 * 4 : 40 * 4]  # further from the edges than the network sees
    assert np.abs(auto - bare)[inside].max() <= 1
    assert np.abs(auto - bare).max() > 8  # the edges are where the border matters
    with pytest.raises(ConfigError, match="'border' must be ≥ 0"):
        build(f"model={name}:border=-3")


@pytest.mark.parametrize(("name", "tile", "overlap", "size"), [
    ("realesr-animevideov3-x4", 48, 48, (61, 77)),  # tiles cut from the frame with its 10 px border
    ("waifu2x-upconv7-photo-x2", 16, 16, (61, 77)),  # tiles padded by the network itself
])  # fmt: skip
def test_tiles_inside_the_border_give_the_whole_frame(name, tile, overlap, size) -> None:
    image = photo(*size)
    whole = restore_image(image, f"model={name}")
    tiled = restore_image(image, f"model={name}:tile={tile}:tile_overlap={overlap}")
    assert np.abs(whole.astype(int) - tiled).max() <= 1


@pytest.mark.parametrize("name", ["waifu2x-upconv7-photo-x2", "waifu2x-cunet-noise1-x1"])
def test_waifu2x_networks_batch(name: str) -> None:
    stage = build(f"model={name}")
    assert stage.network.architecture.id in BATCH_VERIFIED and stage.capabilities.max_batch is None
    stage.to(torch.device("cpu"), torch.float32)
    pixels = torch.rand(3, 3, 37, 45, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        batched = stage.process(FrameBatch(pixels, (0, 1, 2))).pixels
        single = torch.cat([stage.process(FrameBatch(pixels[i : i + 1], (i,))).pixels for i in range(3)])
    assert (batched - single).abs().max() < 1e-5


def test_pins_match_the_installed_wheels() -> None:
    catalog = default_catalog()
    installed = {m.name: m for m in find_packaged_models()}
    assert len(installed) == 42 and set(installed) <= set(catalog)
    for name, model in installed.items():
        entry = catalog[name]
        assert entry.packaged is not None and model.bin_path.as_posix().endswith(f"{entry.packaged.package}/"
                                                                                   f"{entry.packaged.path}")
        assert sha256_file(model.bin_path) == entry.sha256, name
        assert entry.companions == (model.param_path.name,)
        assert entry.companion_sha256 == (sha256_file(model.param_path),), name
        assert (entry.scale, entry.content) == (model.scale, model.kind)
        assert entry.licence.split()[0] in ("MIT", "BSD-3-Clause") and entry.url is None


def test_a_changed_param_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "site" / "sr_changed_pkg"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (package / "models" / "m.bin").write_bytes(b"weights")
    (package / "models" / "m.param").write_text("a graph that is not the pinned one\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    entry = ModelEntry("m", "test", "m.bin", sha256_file(package / "models" / "m.bin"), "MIT",
                       packaged=PackagedFile("sr_changed_pkg", "models/m.bin"), companions=("m.param",),
                       companion_sha256=("0" * 64,), converter=lambda source: ({}, {}))  # fmt: skip
    with pytest.raises(WeightsError, match=r"m\.param .*expected 0{64}"):
        resolve_weights("m", catalog={"m": entry})


def test_models_command_lists_every_model() -> None:
    result = subprocess.run([sys.executable, "-m", "streamrestore.cli", "models"], capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert set(rows) == set(default_catalog())
    assert rows["waifu2x-upconv7-photo-noise3-x2"] == [
        "waifu2x-upconv7-photo-noise3-x2", "UpConv7", "×2", "sr+jpeg", "photo", "MIT", "installed"]
    assert rows["realesrgan-x4plus"][1:] == ["ESRGAN", "×4", "sr", "photo", "BSD-3-Clause", "installed"]
    assert rows["waifu2x-cunet-noise2-x1"][1:4] == ["CUNet", "×1", "jpeg"]
    assert all(row[-1] == "installed" for row in rows.values())


def test_a_packaged_name_resolves_offline(fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")

    def no_network(*args, **kwargs):
        raise AssertionError("a packaged model must not be downloaded")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    path = resolve_weights("waifu2x-cunet-noise2-x1")
    assert path == fresh_cache / "converted" / "waifu2x-cunet-noise2-x1.safetensors" and path.is_file()
    out = restore_image(photo(40, 44), "denoise=waifu2x-cunet-noise2-x1")
    assert out.shape == (40, 44, 3)


@pytest.mark.slow
def test_architectures_are_registered_lazily_and_once() -> None:
    """Ours are added to a copy of spandrel's registry, built once, on first use; spandrel's own is untouched."""
    code = (
        "import spandrel, streamrestore.models.archs, streamrestore.models.loader as L, streamrestore_plugins.neural\n"
        "from spandrel import MAIN_REGISTRY\n"
        "assert L.architecture_registry.cache_info().currsize == 0, 'built at import'\n"
        "R = L.architecture_registry()[0]; n = len(R)\n"
        "assert L.architecture_registry()[0] is R and len(R) == n\n"
        "assert 'UpConv7' not in MAIN_REGISTRY and 'CUNet' not in MAIN_REGISTRY, 'spandrel registry changed'\n"
        "order = [a.architecture.id for a in R.architectures('detection')]\n"
        "assert 'UpConv7' in order and order.index('CUNet') < order.index('RealCUGAN'), order\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
