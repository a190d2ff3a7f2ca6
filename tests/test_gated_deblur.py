"""The gated deblur (``models.archs.gated_deblur``): its unsharp candidate is the classical stage's, its
deconvolution bank undoes a Gaussian blur of the right σ, a fresh gate weighs the candidates equally, files
(with and without the bank) are detected and run at any size, crafted settings are refused, and
``--arch gated`` trains the gate alone over a frozen network."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import skimage.data as skdata
from streamrestore.errors import ConfigError, WeightsError
from streamrestore.models.archs.gated_deblur import CANDIDATES, DECONVOLUTION_SIGMAS, Gate, GatedDeblur
from streamrestore.models.loader import load_model, load_network
from streamrestore.restore import restore_image
from streamrestore.presets import build_chain, parse_chain
from streamrestore.registry import Registry
from streamrestore.tensor_filters import deconvolution_reach, gaussian_deconvolution
from streamrestore.training.degrade import convolve, gaussian_kernel
from streamrestore.training.loop import TrainConfig, initial_network, train
from streamrestore.training.ship import ship
from support.photos import psnr, write_training_photos


LOGITS = f"gate.body.{len(Gate().body) - 1}.weight"


def _nafnet() -> torch.nn.Module:
    from spandrel.architectures.NAFNet import NAFNet

    torch.manual_seed(0)
    return NAFNet(img_channel=3, width=8, middle_blk_num=1, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1])


@pytest.mark.parametrize(("height", "width"), [(37, 53), (5, 4), (2, 3)])
def test_unsharp_candidate_is_the_classical_stage_s_unsharp_mask(height: int, width: int) -> None:
    image = np.random.default_rng(height).random((height, width, 3), dtype=np.float32)
    # plugins.classical.UnsharpMask: OpenCV's Gaussian (BORDER_REFLECT), amount × detail added, clipped.
    expected = np.clip(image + 6.0 * (image - cv2.GaussianBlur(image, (0, 0), 0.8, borderType=cv2.BORDER_REFLECT)),
                       0, 1)  # fmt: skip
    model = GatedDeblur(_nafnet(), Gate(), 6.0, 0.8).eval()
    candidates = model.candidates(torch.from_numpy(image).permute(2, 0, 1)[None])
    ours = candidates[CANDIDATES.index("unsharp")][0].permute(1, 2, 0).numpy()
    assert np.abs(ours - expected).max() < 1e-5


def test_the_output_is_a_per_pixel_blend_of_input_network_and_unsharp_mask() -> None:
    torch.manual_seed(1)
    model = GatedDeblur(_nafnet(), Gate()).eval()
    x = torch.rand(2, 3, 37, 53)  # sizes the gate's grid does not divide: it pads and crops itself
    with torch.no_grad():
        candidates = model.candidates(x)
        weights = model.gate(x, candidates)
        out = model(x)
    assert weights.shape == (2, 3, 37, 53) and torch.allclose(weights.sum(1), torch.ones(2, 37, 53))
    assert weights.min() > 0  # bounded logits: no candidate is ever switched off entirely
    assert torch.allclose(out, sum(weights[:, i : i + 1] * c for i, c in enumerate(candidates)), atol=1e-6)
    assert not torch.allclose(candidates[1], candidates[2], atol=1e-3)  # three different pictures


def test_a_gated_file_is_detected_and_restores_odd_sizes(tmp_path) -> None:
    model = GatedDeblur(_nafnet(), Gate(), amount=5.5, radius=0.9)
    with torch.no_grad():
        model.gate.body[-1].bias.copy_(torch.tensor([0.0, 2.0, -1.0]))  # a gate that prefers the network
    exported = tmp_path / "gated.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(exported))
    shipped = tmp_path / "gated-fp16.safetensors"
    ship(exported, shipped)
    assert load_file(shipped)["unsharp"].tolist() == [5500, 900]  # integers: halving keeps them exact
    loaded = load_model(shipped)
    assert loaded.descriptor.architecture.id == "GatedDeblur" and loaded.scale == 1
    assert loaded.size_multiple == 8  # the gate's grid (1/8), which NAFNet's padder here (4) divides
    assert loaded.tile_context == 0  # no deconvolutions: tiles keep the stage's own overlap
    image = skdata.astronaut()[100:137, 150:203]  # 37×53
    restored = restore_image(image, f"model={shipped}")
    assert restored.shape == image.shape
    with torch.no_grad():
        direct = model(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
    # The stage pads to 16 (the network sees a little more context at the edges): the inside agrees.
    direct8 = (direct[0].permute(1, 2, 0).numpy() * 255).round()
    assert np.abs(restored[8:-8, 8:-8].astype(float) - direct8[8:-8, 8:-8]).mean() < 1.0


def test_the_deconvolution_of_the_right_sigma_undoes_a_gaussian_blur() -> None:
    clean = skdata.astronaut()[60:188, 140:300]  # a face and a helmet: edges and texture
    blurred = np.clip(np.round(convolve(clean.astype(np.float32), gaussian_kernel(1.2, 25))), 0, 255)
    x = torch.from_numpy(blurred).permute(2, 0, 1)[None].float() / 255
    bank = gaussian_deconvolution(x, [0.8, 1.2, 1.8], 1e-3)
    scores = [psnr((out[0].permute(1, 2, 0).numpy() * 255).round(), clean) for out in bank]
    assert scores[1] == max(scores) and scores[1] > psnr(blurred, clean) + 3.0
    assert all(abs(float(out.mean() - x.mean())) < 1e-3 for out in bank[:2])  # the mean colour is kept
    assert scores[2] < scores[1] - 2.0  # too large a σ overshoots (rings): far worse than the right one


@pytest.mark.parametrize(("height", "width"), [(37, 53), (2, 3), (1, 1)])
def test_the_deconvolution_keeps_shape_dtype_and_range_at_any_size(height: int, width: int) -> None:
    x = torch.rand(2, 3, height, width, dtype=torch.float16)
    for out in gaussian_deconvolution(x, [0.8, 2.7], 1e-3):
        assert out.shape == x.shape and out.dtype == torch.float16 and 0 <= out.min() and out.max() <= 1
    flat = torch.full((1, 3, 9, 7), 0.25)
    assert torch.allclose(gaussian_deconvolution(flat, [1.8], 1e-3)[0], flat, atol=1e-5)  # nothing to sharpen


@pytest.mark.parametrize("sigma", [0.8, 1.8, 2.7])
def test_the_deconvolution_reaches_no_farther_than_it_says(sigma: float) -> None:
    # A crop with deconvolution_reach(σ) pixels of real picture around it (a tile with that context) comes out
    # as the same region of the whole frame, within a level: what the tiles' overlap and the padding rely on.
    frame = torch.from_numpy(skdata.astronaut()).permute(2, 0, 1)[None].float() / 255
    whole = gaussian_deconvolution(frame, [sigma], 1e-3)[0]
    reach = deconvolution_reach(sigma)
    top, left, size = 120, 150, 96
    tile = frame[..., top - reach : top + size + reach, left - reach : left + size + reach]
    inside = gaussian_deconvolution(tile, [sigma], 1e-3)[0][..., reach:-reach, reach:-reach]
    assert float((inside - whole[..., top : top + size, left : left + size]).abs().max()) * 255 < 1.0


def _banked(**changes) -> GatedDeblur:
    bank = changes.pop("deconvolution", DECONVOLUTION_SIGMAS)
    gate = Gate(candidates=len(CANDIDATES) + len(bank), **changes)
    return GatedDeblur(_nafnet(), gate, deconvolution=bank)


def test_a_file_with_the_deconvolution_bank_is_detected_and_blends_all_candidates(tmp_path) -> None:
    model = _banked().eval()
    exported = tmp_path / "banked.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(exported))
    shipped = tmp_path / "banked-fp16.safetensors"
    ship(exported, shipped)
    assert load_file(shipped)["deconvolution"].tolist() == [1000, 800, 1200, 1800, 2700]  # λ 1e-3, then σ
    loaded = load_model(shipped).descriptor.model.float()
    probe = torch.rand(1, 3, 24, 40)
    with torch.no_grad():
        read_back = loaded.candidates(probe)[len(CANDIDATES):]
    assert len(read_back) == len(DECONVOLUTION_SIGMAS)
    expected = gaussian_deconvolution(probe, list(DECONVOLUTION_SIGMAS), 1e-3)
    assert all(torch.allclose(c, e, atol=1e-5) for c, e in zip(read_back, expected))  # each σ, in order; λ 1e-3
    # The model stage gives tiles the context the widest deconvolution needs (a user's larger overlap stays).
    stage = build_chain(parse_chain(f"model={shipped}"), Registry())[0].stage
    assert stage.capabilities.tile_overlap == 2 * deconvolution_reach(2.7) == 98
    wide = build_chain(parse_chain(f"model={shipped}:tile_overlap=128"), Registry())[0].stage
    assert wide.capabilities.tile_overlap == 128
    x = torch.rand(1, 3, 29, 35)
    with torch.no_grad():
        candidates = model.candidates(x)
        weights = model.gate(x, candidates)
    assert weights.shape == (1, 7, 29, 35) and torch.allclose(weights.sum(1), torch.ones(1, 29, 35))
    image = skdata.coffee()[50:81, 100:147]  # 31×47
    assert restore_image(image, f"model={shipped}").shape == image.shape


@pytest.mark.parametrize(("bank", "message"), [([1000] + [800] * 9, "bank of 9"), ([1000, 10_000_000], "outside"),
                                               ([0, 800], "outside"), ([1000, 0], "outside")])
def test_a_crafted_deconvolution_bank_is_refused_in_one_line(tmp_path, bank, message) -> None:
    state = dict(_banked(deconvolution=(0.8,) * (len(bank) - 1)).state_dict())
    state["deconvolution"] = torch.tensor(bank, dtype=torch.int32)  # σ 10 000 px: frames padded by 60 000 px
    path = tmp_path / "crafted.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(WeightsError, match=message) as refused:
        load_model(path)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("unsharp", [[6000, 10_000_000], [6000, 0], [-1, 800], [2**31 - 1, 800]])
def test_a_crafted_unsharp_setting_is_refused_in_one_line(tmp_path, unsharp) -> None:
    state = dict(GatedDeblur(_nafnet(), Gate()).state_dict())
    state["unsharp"] = torch.tensor(unsharp, dtype=torch.int32)  # radius 10 000 px: a kernel of 80 001 taps
    path = tmp_path / "crafted.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(WeightsError, match="unsharp amount .* outside") as refused:
        load_model(path)
    assert "\n" not in str(refused.value)


def test_a_crafted_gate_depth_is_refused_in_one_line(tmp_path) -> None:
    # 40 halvings would pad every frame to a multiple of 2**40 pixels.
    state = dict(GatedDeblur(_nafnet(), Gate(width=2, levels=40)).state_dict())
    path = tmp_path / "deep.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(WeightsError, match="gate with 40 levels"):
        load_model(path)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_training_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def small_deblur_network(tmp_path_factory):
    path = tmp_path_factory.mktemp("init") / "nafnet.safetensors"
    save_file({k: v.contiguous() for k, v in _nafnet().state_dict().items()}, str(path))
    return path


def _config(photos, out, init, **changes) -> TrainConfig:
    settings = dict(task="deblur", data=str(photos), out=str(out), arch="gated", init=str(init) if init else None,
                    steps=3, batch=2, patch=32, lr=1e-2, loss="psnr", val_every=3, seed=1, device="cpu")  # fmt: skip
    return TrainConfig(**(settings | changes))


@pytest.mark.slow
def test_arch_gated_trains_only_the_gate_and_exports_a_gated_file(photos, small_deblur_network, tmp_path) -> None:
    torch.set_num_threads(2)
    config = _config(photos, tmp_path, small_deblur_network)
    torch.manual_seed(config.seed)  # as train() does before it builds the start
    fresh = initial_network(config, scale=1).network.gate.body[-1].weight.detach().clone()
    result = train(config, progress=False)
    assert result.weights is not None and result.weights.name == "deblur-gated.safetensors"
    assert all(np.isfinite(loss) for loss in result.losses)
    trained, start = load_file(result.weights), load_file(small_deblur_network)
    assert all(torch.equal(trained[f"network.{k}"], v) for k, v in start.items())  # frozen
    assert not torch.allclose(trained[LOGITS], fresh)  # the gate has learned
    assert trained["unsharp"].tolist() == [6000, 800]
    assert trained["deconvolution"].tolist() == [1000, 800, 1200, 1800, 2700]  # a new gate gets the bank
    assert load_network(result.weights).architecture.id == "GatedDeblur"
    # A gated file goes on training as it is: its gate, not a fresh one, and its network still frozen.
    start_again = initial_network(_config(photos, tmp_path / "again", result.weights), scale=1)
    assert torch.equal(start_again.network.gate.body[-1].weight, trained[LOGITS].float())
    assert not any(p.requires_grad for p in start_again.network.network.parameters())


def test_arch_gated_needs_a_deblur_task_and_a_nafnet_to_gate(photos, small_deblur_network, tmp_path) -> None:
    with pytest.raises(ConfigError, match="--task deblur"):
        train(_config(photos, tmp_path, small_deblur_network, task="denoise"), progress=False)
    with pytest.raises(ConfigError, match="--init"):
        train(_config(photos, tmp_path, None), progress=False)
    sr = tmp_path / "compact.safetensors"
    from spandrel.architectures.Compact import Compact

    save_file(dict(Compact(num_feat=8, num_conv=2, upscale=1).state_dict()), str(sr))
    with pytest.raises(ConfigError, match="not a"):
        train(_config(photos, tmp_path / "sr", sr), progress=False)
