"""The neural ``model`` stage on tiny random-weight networks saved in each architecture's own key layout.

Each network is built from spandrel's (or spandrel-extra-arches') class for that architecture, saved
the way its authors publish weights, and loaded back through the stage by auto-detection; its output
is compared with a direct call of the network that was saved: whole frames, tiles, batches, odd sizes.
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F

from streamrestore.errors import ConfigError, WeightsError
from streamrestore.frames import FrameBatch, image_to_tensor
from streamrestore.models.archs.gated_deblur import Gate, GatedDeblur
from streamrestore.models.loader import LoadedModel
from streamrestore.restore import PreparedChain, RunSettings, restore_image
from streamrestore.presets import build_chain, parse_chain
from streamrestore.registry import Registry
from streamrestore.engine.chain import ChainRunner
from streamrestore.engine.tiling import run_tiled
from streamrestore_plugins.neural import BATCH_VERIFIED, ModelStage

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script in CodeFormer, imported with the package
    from spandrel_extra_arches.architectures.MPRNet import MPRNet
    from spandrel_extra_arches.architectures.Restormer import Restormer
from spandrel.architectures.Compact import Compact
from spandrel.architectures.DnCNN import DnCNN
from spandrel.architectures.ESRGAN import ESRGAN
from spandrel.architectures.NAFNet import NAFNet
from spandrel.architectures.RCAN import RCAN
from spandrel.architectures.SwinIR import SwinIR


def real_esrgan_layout(old: dict[str, torch.Tensor], blocks: int) -> dict[str, torch.Tensor]:
    """ESRGAN's original keys (model.N…) -> Real-ESRGAN/BasicSR's RRDBNet keys (conv_first, body.N.rdbM…)."""
    renamed = {"model.0": "conv_first", f"model.1.sub.{blocks}": "conv_body", "model.3": "conv_up1",
               "model.6": "conv_up2", "model.8": "conv_hr", "model.10": "conv_last"}
    new = {}
    for key, value in old.items():
        block = re.fullmatch(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)", key)
        if block:
            new["body.{}.rdb{}.conv{}.{}".format(*block.groups())] = value
        else:
            layer, kind = key.rsplit(".", 1)
            new[f"{renamed[layer]}.{kind}"] = value
    return new


@dataclass(frozen=True)
class Case:
    name: str
    arch: str
    build: Callable[[], torch.nn.Module]
    scale: int
    filename: str
    wrap: Callable[[torch.nn.Module], dict] = lambda net: net.state_dict()
    multiple: int = 1
    """Input size multiple the network itself needs (the runtime pads to it)."""
    align: int = 1
    """Tile alignment the stage uses (the window size of window-attention networks)."""
    local: bool = True
    """Receptive field within the tile overlap, no global pooling or attention: tiles reproduce the whole frame."""


def swinir(upsampler: str) -> SwinIR:
    return SwinIR(img_size=32, embed_dim=12, depths=[2], num_heads=[2], window_size=8, mlp_ratio=2.0,
                  upscale=2, upsampler=upsampler)


CASES = [
    # Real-ESRGAN publishes Compact (SRVGGNetCompact) weights under "params".
    Case("compact-x4", "Compact", lambda: Compact(num_feat=16, num_conv=4, upscale=4), 4, "compact.pth",
         lambda net: {"params": net.state_dict()}),
    Case("esrgan-x4", "ESRGAN", lambda: ESRGAN(num_filters=16, num_blocks=2, scale=4), 4, "esrgan.pth"),
    Case("real-esrgan-x4", "ESRGAN", lambda: ESRGAN(num_filters=16, num_blocks=2, scale=4), 4, "realesrgan.pth",
         lambda net: {"params_ema": real_esrgan_layout(net.state_dict(), 2)}),
    # SwinIR's releases: classical SR (pixelshuffle) and lightweight SR (pixelshuffledirect), under "params".
    Case("swinir-classical-x2", "SwinIR", lambda: swinir("pixelshuffle"), 2, "swinir.pth",
         lambda net: {"params": net.state_dict()}, align=8),
    Case("swinir-lightweight-x2", "SwinIR", lambda: swinir("pixelshuffledirect"), 2, "swinir_light.safetensors",
         align=8),
    Case("rcan-x2", "RCAN", lambda: RCAN(scale=2, n_resgroups=1, n_resblocks=2, n_feats=16, reduction=4), 2,
         "rcan.pt", local=False),
    Case("restormer", "Restormer", lambda: Restormer(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1,
                                                     heads=[1, 1, 1, 1]), 1, "restormer.ckpt",
         lambda net: {"params": net.state_dict()}, multiple=8, align=8, local=False),
    # MPRNet's releases keep the weights under "state_dict".
    Case("mprnet", "MPRNet", lambda: MPRNet(n_feat=8, scale_unetfeats=4, scale_orsnetfeats=4, num_cab=1,
                                            reduction=2), 1, "mprnet.pth",
         lambda net: {"state_dict": net.state_dict()}, multiple=8, align=8, local=False),
    # NAFNet (our shipped denoise/deblur weights): a U-Net that pads itself to its depth (2 ** encoders) with
    # zeros, which drew a dark line along the bottom and right edges; spandrel does not declare that multiple,
    # the loader reads it from the network, so the runtime reflects up to it. Global pooling (SCA).
    Case("nafnet", "NAFNet", lambda: NAFNet(img_channel=3, width=8, middle_blk_num=1, enc_blk_nums=[1, 1],
                                            dec_blk_nums=[1, 1]), 1, "nafnet.safetensors", multiple=4, align=4, local=False),
    # The `deblur` alias's network: a gate (decisions at 1/8 resolution) over that NAFNet, the unsharp mask and
    # the input.
    Case("gated-deblur", "GatedDeblur", lambda: GatedDeblur(NAFNet(img_channel=3, width=8, middle_blk_num=1,
                                                                   enc_blk_nums=[1, 1], dec_blk_nums=[1, 1]), Gate()),
         1, "gated.safetensors", multiple=8, align=8, local=False),
]
IDS = [case.name for case in CASES]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, torch.nn.Module]]:
    """Every case's network with random weights, written to disk in its published layout."""
    folder = tmp_path_factory.mktemp("weights")
    out = {}
    for index, case in enumerate(CASES):
        torch.manual_seed(index)
        net = case.build().eval()
        path = folder / case.filename
        if path.suffix == ".safetensors":
            safetensors.torch.save_file({k: v.contiguous() for k, v in case.wrap(net).items()}, str(path))
        else:
            torch.save(case.wrap(net), path)
        out[case.name] = (path, net)
    return out


def direct(case: Case, net: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """The saved network called on its own: reflect-pad to its multiple, call, crop, clamp."""
    height, width = pixels.shape[-2:]
    padded = F.pad(pixels, (0, -width % case.multiple, 0, -height % case.multiple), mode="reflect")
    with torch.inference_mode():
        out = net(padded.clone())  # a copy: RCAN scales its input in place
    if isinstance(out, (list, tuple)):  # MPRNet returns one image per stage, last stage first
        out = out[0]
    return out[..., : height * case.scale, : width * case.scale].clamp(0, 1)


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    return (pixels[0].clamp(0, 1) * 255).round().permute(1, 2, 0).to(torch.uint8).numpy()


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus texture, so that outputs are not all clipped."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, 0.5 + 0.3 * np.sin(x / 3 + y / 5)], axis=-1) * 200 + 20
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def build(chain: str) -> ModelStage:
    stage = build_chain(parse_chain(chain), Registry())[0].stage
    assert isinstance(stage, ModelStage)
    return stage


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_architecture_and_capabilities_come_from_the_weights(case: Case, saved) -> None:
    path, _ = saved[case.name]
    stage = build(f"model={path}")
    assert stage.network.architecture.id == case.arch
    caps = stage.capabilities
    assert caps.scale == case.scale
    assert caps.size_multiple == case.multiple
    assert caps.dtypes[-1] == "float32"
    assert ("float16" in caps.dtypes) == stage.network.supports_half
    assert ("bfloat16" in caps.dtypes) == stage.network.supports_bfloat16
    assert caps.devices == ("cpu", "cuda") and caps.tileable
    assert caps.max_batch is None  # every seed architecture was measured to batch correctly


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_whole_frame_matches_a_direct_call_on_an_odd_size(case: Case, saved) -> None:
    path, net = saved[case.name]
    image = photo(29, 37)
    out = restore_image(image, f"model:model={path}")
    assert out.shape == (29 * case.scale, 37 * case.scale, 3)
    expected = to_uint8(direct(case, net, image_to_tensor(image)))
    assert np.abs(out.astype(int) - expected).max() <= 1
    assert out.std() > 1  # not a flat (clipped) picture, so the comparison means something


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_tiled_frame_matches(case: Case, saved) -> None:
    path, net = saved[case.name]
    image = photo(53, 75, seed=1)
    tile, overlap = 24, 16
    out = restore_image(image, f"model={path}:tile={tile}:tile_overlap={overlap}")
    assert out.shape == (53 * case.scale, 75 * case.scale, 3)
    pixels = image_to_tensor(image)
    if case.local:
        # Tiles reproduce the whole frame, seams and image edges included.
        expected = direct(case, net, pixels)
    else:
        # Channel attention / multi-patch networks see each tile as a picture of its own: the stage
        # must tile exactly as run_tiled does, on the frame padded by the runtime.
        padded = F.pad(pixels, (0, -75 % case.multiple, 0, -53 % case.multiple), mode="reflect")
        tiled = run_tiled(lambda t: direct(case, net, t), padded, tile, overlap, case.scale, case.align)
        expected = tiled[..., : 53 * case.scale, : 75 * case.scale]
    assert np.abs(out.astype(int) - to_uint8(expected)).max() <= 1


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_batch_matches_single_frames_and_the_input_is_left_alone(case: Case, saved) -> None:
    path, _ = saved[case.name]
    stage = build(f"model={path}")
    stage.to(torch.device("cpu"), torch.float32)
    size = (29 + (-29 % case.multiple), 37 + (-37 % case.multiple))
    pixels = torch.rand(3, 3, *size, generator=torch.Generator().manual_seed(3))
    before = pixels.clone()
    with torch.inference_mode():
        batched = stage.process(FrameBatch(pixels, (0, 1, 2))).pixels
        single = torch.cat([stage.process(FrameBatch(pixels[i : i + 1], (i,))).pixels for i in range(3)])
    assert torch.equal(pixels, before)
    assert (batched - single).abs().max() < 1e-5
    assert case.arch in BATCH_VERIFIED


def test_unmeasured_single_channel_network_runs_one_frame_at_a_time(tmp_path: Path) -> None:
    torch.manual_seed(7)
    net = DnCNN(in_nc=1, out_nc=1, nc=8, nb=8, act_mode="R").eval()  # KAIR's released layout
    path = tmp_path / "dncnn_gray.pth"
    torch.save(net.state_dict(), path)
    chain = build_chain(parse_chain(f"denoise={path}"), Registry())
    assert chain[0].stage.network.architecture.id == "DnCNN" and "DnCNN" not in BATCH_VERIFIED
    assert chain[0].stage.capabilities.max_batch == 1
    calls: list[int] = []
    process = chain[0].stage.process
    chain[0].stage.process = lambda batch: calls.append(len(batch)) or process(batch)
    runner = ChainRunner(chain, "cpu")  # after the patch: the runner may keep the bound method
    pixels = torch.rand(3, 3, 21, 19, generator=torch.Generator().manual_seed(0))
    out = runner.push(FrameBatch(pixels, (0, 1, 2)))
    assert calls == [1, 1, 1] and out.pts == (0, 1, 2)
    with torch.inference_mode():  # a grey network restores each colour plane on its own
        expected = net(pixels.reshape(9, 1, 21, 19)).clamp(0, 1).reshape(3, 3, 21, 19)
    assert (out.pixels - expected).abs().max() < 1e-5


@pytest.mark.parametrize("alias,outscale", [("denoise", 1), ("sr2", 2), ("sr4", 4)])
def test_outscale_resizes_the_network_output(alias: str, outscale: int, saved) -> None:
    case = CASES[0]  # Compact ×4
    path, net = saved[case.name]
    image = photo(29, 37)
    out = restore_image(image, f"{alias}={path}")
    assert out.shape == (29 * outscale, 37 * outscale, 3)
    expected = F.interpolate(direct(case, net, image_to_tensor(image)), size=(29 * outscale, 37 * outscale),
                             mode="area")
    assert np.abs(out.astype(int) - to_uint8(expected)).max() <= 1


def test_smaller_network_is_brought_up_to_the_alias_scale(saved) -> None:
    case = CASES[4]  # SwinIR lightweight ×2
    path, net = saved[case.name]
    assert build(f"sr4={path}").capabilities.scale == 4
    image = photo(29, 37)
    out = restore_image(image, f"sr4={path}")
    expected = F.interpolate(direct(case, net, image_to_tensor(image)), size=(116, 148), mode="bicubic")
    assert np.abs(out.astype(int) - to_uint8(expected)).max() <= 1


def test_color_fix_keeps_the_input_colours_and_the_added_detail(saved) -> None:
    case = CASES[0]  # Compact ×4 with random weights: its colours are far from the input's
    path, net = saved[case.name]
    stage = build(f"model:model={path}:color_fix=true")
    stage.to(torch.device("cpu"), torch.float32)
    pixels = image_to_tensor(photo(29, 37))
    with torch.inference_mode():
        fixed = stage.process(FrameBatch(pixels, (0,))).pixels
        raw = build(f"model={path}").process(FrameBatch(pixels, (0,))).pixels
    shrink = lambda t: F.interpolate(t, size=(29, 37), mode="area")  # noqa: E731
    moved, kept = (shrink(raw) - pixels).abs().mean(), (shrink(fixed) - pixels).abs().mean()
    assert moved > 0.01 and kept < 0.05 * moved  # the network alone moves the colours; corrected, it is the input
    colour = lambda t: t.mean((0, 2, 3))  # noqa: E731
    assert (colour(raw) - colour(pixels)).abs().max() > 5 / 255
    assert (colour(fixed) - colour(pixels)).abs().max() < 0.5 / 255
    # What the network adds above the input's resolution is kept: the high frequencies are its own.
    detail = lambda t: t - F.interpolate(shrink(t), size=t.shape[-2:], mode="bicubic", align_corners=False)  # noqa: E731
    assert (detail(fixed) - detail(raw)).abs().mean() < 0.25 * detail(raw).abs().mean()


def test_color_fix_at_scale_one_is_refused(saved) -> None:
    path, _ = saved[CASES[0].name]
    with pytest.raises(ConfigError, match="color_fix"):
        build(f"denoise={path}:color_fix=true")


def test_running_out_of_memory_falls_back_to_tiles(saved, monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[0]
    path, net = saved[case.name]
    runner = ChainRunner(PreparedChain(f"model={path}", RunSettings(device="cpu")).stages, device="cpu")
    forward = LoadedModel.forward
    sizes: list[tuple[int, int]] = []

    def limited(self, pixels: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        sizes.append(tuple(pixels.shape[-2:]))
        if pixels.shape[-2] * pixels.shape[-1] > 120 * 120:
            raise torch.cuda.OutOfMemoryError("pretend the device is full")
        return forward(self, pixels, channels_last)

    monkeypatch.setattr(LoadedModel, "forward", limited)
    pixels = image_to_tensor(photo(150, 200))
    out = runner.push(FrameBatch(pixels, (0,))).pixels
    assert sizes[0] == (150, 200) and len(sizes) > 1  # whole frame first, then tiles of at most 100
    assert np.abs(to_uint8(out).astype(int) - to_uint8(direct(case, net, pixels))).max() <= 1
    sizes.clear()
    runner.push(FrameBatch(pixels, (1,)))
    assert (150, 200) not in sizes  # the tile size that worked is kept


def test_out_of_memory_on_a_batch_halves_the_batch_before_tiling(saved, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamrestore.engine.chain import ChainRunner

    case = CASES[0]
    path, net = saved[case.name]
    forward = LoadedModel.forward
    shapes: list[tuple[int, ...]] = []

    def one_frame_fits(self, pixels: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        shapes.append(tuple(pixels.shape))
        if pixels.shape[0] > 1:
            raise torch.cuda.OutOfMemoryError("pretend only one frame fits")
        return forward(self, pixels, channels_last)

    monkeypatch.setattr(LoadedModel, "forward", one_frame_fits)
    stages = PreparedChain(f"model:model={path}", RunSettings(device="cpu")).stages
    runner = ChainRunner(stages, device="cpu")
    pixels = torch.cat([image_to_tensor(photo(150, 200)) for _ in range(4)])
    out = runner.push(FrameBatch(pixels, (0, 1, 2, 3)))
    assert out.pts == (0, 1, 2, 3)
    # The runtime halved the batch down to single whole frames; the stage never cut a frame into tiles.
    assert all(shape[-2:] == (150, 200) for shape in shapes) and shapes[-1][0] == 1
    assert np.abs(to_uint8(out.pixels).astype(int) - to_uint8(direct(case, net, pixels))).max() <= 1


def test_model_stage_without_a_file_lists_but_does_not_run() -> None:
    stage = build("model")
    assert stage.capabilities.scale == 1  # neutral, for `streamrestore stages`
    with pytest.raises(ConfigError, match="needs a weights file"):
        restore_image(photo(8, 8), "model")


def test_unusable_files_are_one_line_weights_errors(tmp_path: Path) -> None:
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    with pytest.raises(WeightsError, match="cannot load .*notes.pth") as error:
        restore_image(photo(8, 8), f"sr2={text}")
    assert "\n" not in str(error.value)
    unknown = tmp_path / "unknown.pth"
    torch.save({"some.layer.weight": torch.zeros(3, 3)}, unknown)
    with pytest.raises(WeightsError, match="no architecture spandrel knows"):
        restore_image(photo(8, 8), f"sr2={unknown}")
    with pytest.raises(WeightsError, match="not found"):
        restore_image(photo(8, 8), f"sr2={tmp_path / 'missing.pth'}")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamrestore.cli", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.slow
def test_cli_alias_with_a_weights_file(saved, tmp_path: Path) -> None:
    path, _ = saved["swinir-lightweight-x2"]
    source, output = tmp_path / "photo.png", tmp_path / "out.png"
    cv2.imwrite(str(source), photo(29, 37))
    result = run_cli("run", str(source), "--chain", f"sr2={path}", "-o", str(output))
    assert result.returncode == 0, result.stderr
    assert cv2.imread(str(output)).shape == (58, 74, 3)


@pytest.mark.slow
def test_cli_text_file_as_model_is_exit_12_in_one_line(tmp_path: Path) -> None:
    source, model = tmp_path / "photo.png", tmp_path / "model.pth"
    cv2.imwrite(str(source), photo(29, 37))
    model.write_text("not a model\n")
    result = run_cli("run", str(source), "--chain", f"sr2={model}", "-o", str(tmp_path / "out.png"))
    assert result.returncode == 12
    assert result.stderr.strip().count("\n") == 0 and "model.pth" in result.stderr
    assert not (tmp_path / "out.png").exists()


def test_self_ensemble_averages_the_symmetries_and_cleans_noise(astronaut) -> None:
    noisy = np.clip(astronaut[:97, :61] + np.random.default_rng(0).normal(0, 25, (97, 61, 3)), 0, 255).astype(np.uint8)
    single, eight = (restore_image(noisy, f"model:model=denoise-nafnet16-video:ensemble={n}") for n in (1, 8))
    assert single.shape == eight.shape == noisy.shape  # odd, non-square: transposed copies are undone exactly
    error = lambda image: float(np.mean((image.astype(np.float64) - astronaut[:97, :61]) ** 2))  # noqa: E731
    # Eight views of the same noise: the average of their outputs is cleaner than one (measured: MSE -6 %).
    assert error(eight) < 0.98 * error(single) and np.abs(eight.astype(int) - single).mean() < 3
    clean = np.ascontiguousarray(astronaut[:97, :61])  # ×2 outputs flip back too: near the single run, not equal
    upscaled, once = restore_image(clean, "model:model=sr2-upconv7:ensemble=2"), restore_image(clean, "sr2")
    assert upscaled.shape == (194, 122, 3) and 0 < np.abs(upscaled.astype(int) - once).mean() < 1.5
    with pytest.raises(ConfigError, match="ensemble must be one of 1, 2, 4, 8"):
        restore_image(noisy, "model:model=denoise-nafnet16-video:ensemble=3")


def test_keep_input_mixes_that_share_of_the_input_back_in(astronaut) -> None:
    noisy = np.clip(astronaut[:97, :61] + np.random.default_rng(1).normal(0, 15, (97, 61, 3)), 0, 255).astype(np.uint8)
    network = restore_image(noisy, "model:model=denoise-nafnet16-video").astype(np.float64)
    half, kept = (restore_image(noisy, f"model:model=denoise-nafnet16-video:keep_input={k}") for k in (0.5, 1.0))
    assert np.abs(half - (network + noisy) / 2).max() <= 1.0  # one rounding apart
    assert np.abs(kept.astype(int) - noisy).max() <= 1 and np.abs(network - noisy).mean() > 5
    # `denoise` keeps 3 %: a little of the grain, most of the cleaning.
    alias = restore_image(noisy, "denoise").astype(np.float64)
    moved = np.abs(alias - network).mean() / np.abs(noisy - network).mean()
    assert 0.01 < moved < 0.06
    with pytest.raises(ConfigError, match="keep_input needs an output the size of the input"):
        restore_image(noisy, "model:model=sr2-upconv7:keep_input=0.2")  # ×2: known once the file is read
    with pytest.raises(ConfigError, match="keep_input needs an output the size of the input"):
        build("model:model=sr2-upconv7:outscale=2:keep_input=0.2")  # known from the options alone
