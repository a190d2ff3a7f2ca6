"""The seed SR architectures of streamrestore.models.archs (EDSR, RDN, SRResNet, ESPCN, SRCNN, VDSR) through the stage.

Each is built small with random weights, saved in its official key layout, and loaded back through the
``model`` stage by auto-detection; its output on an odd-sized real photo crop is compared with a direct
call of the saved module. Registration must not take other architectures' files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import spandrel
import torch
from skimage import data
from spandrel.architectures.Compact import Compact
from spandrel.architectures.ESRGAN import ESRGAN
from spandrel.architectures.RCAN import RCAN

from streamrestore.models.loader import architecture_registry, model_loader
from streamrestore.models.archs.edsr import EDSR
from streamrestore.models.archs.espcn import ESPCN
from streamrestore.models.archs.preupscaled import SCALE_KEY
from streamrestore.models.archs.rdn import RDN
from streamrestore.models.archs.srcnn import SRCNN
from streamrestore.models.archs.srresnet import SRResNet
from streamrestore.models.archs.vdsr import VDSR
from streamrestore.frames import image_to_tensor
from streamrestore.restore import restore_image

HEIGHT, WIDTH = 29, 37


def edsr(scale: int, feats: int) -> EDSR:
    net = EDSR(scale, feats=feats, blocks=2)
    # MeanShift as EDSR-PyTorch builds it (rgb_range 255, DIV2K mean, std 1).
    mean = torch.tensor([0.4488, 0.4371, 0.4040]) * 255
    with torch.no_grad():
        for conv, sign in ((net.sub_mean, -1), (net.add_mean, 1)):
            conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            conv.bias.copy_(sign * mean)
    return net


def calm(net: torch.nn.Module, gain: float = 0.3) -> torch.nn.Module:
    """Shrink random weights so that deep random networks do not saturate the output."""
    with torch.no_grad():
        for name, value in net.named_parameters():
            if name.endswith("weight") and value.dim() == 4 and "mean" not in name:
                value.mul_(gain)
    return net


def rdn(scale: int, convs: int) -> RDN:
    net = RDN(scale, g0=8, growth=4, blocks=2, convs=convs)
    with torch.no_grad():
        net.UPNet[-1].bias.fill_(128)  # mid-grey in its [0, 255] range, so random weights give a picture
    return net


@dataclass(frozen=True)
class Case:
    name: str
    arch: str
    scale: int
    build: Callable[[], torch.nn.Module]
    extra: dict | None = None
    """Keys saved beside the network's own (the pre-upscaled networks' declared scale)."""
    wrap: str = ""
    """A prefix the published file puts before every key."""
    channels: int | None = None
    """The network's own channels (a single-channel network runs on each colour plane); None: from its first weight."""


CASES = [
    Case("edsr-baseline-x2", "EDSR", 2, lambda: calm(edsr(2, 16))),
    Case("edsr-full-x3", "EDSR", 3, lambda: calm(edsr(3, 256))),
    Case("edsr-x4", "EDSR", 4, lambda: calm(edsr(4, 8))),
    Case("rdn-x2", "RDN", 2, lambda: rdn(2, 2)),
    Case("rdn-x4", "RDN", 4, lambda: rdn(4, 3)),
    Case("srresnet-x4", "SRResNet", 4, lambda: calm(SRResNet(4, feats=8, blocks=2))),
    Case("srgan-generator-x2", "SRResNet", 2, lambda: calm(SRResNet(2, feats=8, blocks=1)), wrap="net."),
    Case("espcn-y-x3", "ESPCN", 3, lambda: ESPCN(3, 1, (16, 8))),
    Case("espcn-rgb-x2", "ESPCN", 2, lambda: ESPCN(2, 3, (16, 8))),
    Case("srcnn-955-pre-upscaled", "SRCNN", 1, lambda: SRCNN(1, (16, 8), (9, 5, 5))),
    Case("srcnn-915-x2", "SRCNN", 2, lambda: SRCNN(1, (16, 8), (9, 1, 5), scale=2), {SCALE_KEY: torch.tensor(2)}),
    Case("vdsr-x3", "VDSR", 3, lambda: calm(VDSR(1, 8, 3, scale=3)), {SCALE_KEY: torch.tensor(3)}),
    Case("vdsr-pre-upscaled", "VDSR", 1, lambda: calm(VDSR(1, 8, 4))),
]
IDS = [case.name for case in CASES]


def photo(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """An odd-sized crop of a real photograph (face, hair and fabric)."""
    return np.ascontiguousarray(data.astronaut()[100 : 100 + height, 180 : 180 + width])


def direct(net: torch.nn.Module, pixels: torch.Tensor, channels: int | None = None) -> np.ndarray:
    """The saved module itself, on RGB or (Y-channel networks) on each colour plane; as uint8 H×W×3.

    ``channels``: the network's own; by default read from its first weight (not possible for weight-normed ones).
    """
    channels = channels or net.state_dict()[next(iter(net.state_dict()))].shape[1]
    planes = pixels.shape[1] // channels
    with torch.inference_mode():
        out = net(pixels.reshape(planes, -1, *pixels.shape[-2:]))
    out = out.reshape(1, 3, *out.shape[-2:]).clamp(0, 1)
    return (out[0] * 255).round().permute(1, 2, 0).to(torch.uint8).numpy()


def save_cases(folder: Path, cases: list) -> dict[str, tuple[Path, torch.nn.Module]]:
    """Each case's network with seeded random weights, written as its published file: ``{name: (path, net)}``."""
    out = {}
    for index, case in enumerate(cases):
        torch.manual_seed(index)
        net = case.build().eval()
        state = {f"{case.wrap}{key}": value for key, value in net.state_dict().items()}
        path = folder / f"{case.name}.pth"
        torch.save({**state, **(case.extra or {})}, path)
        out[case.name] = (path, net)
    return out


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, torch.nn.Module]]:
    return save_cases(tmp_path_factory.mktemp("seed"), CASES)


def check_detected_and_matches_a_direct_call(case: Case, path: Path, net: torch.nn.Module) -> None:
    descriptor = model_loader().load_from_file(path)
    assert descriptor.architecture.id == case.arch
    assert descriptor.scale == case.scale
    if case.channels is not None:
        assert descriptor.input_channels == case.channels
    image = photo()
    out = restore_image(image, f"model:model={path}")
    assert out.shape == (HEIGHT * case.scale, WIDTH * case.scale, 3)
    expected = direct(net, image_to_tensor(image), case.channels)
    assert np.abs(out.astype(int) - expected).max() <= 1
    assert out.std() > 1  # a picture, not a flat (clipped) field, so the comparison means something


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_detected_by_layout_and_matches_a_direct_call(case: Case, saved) -> None:
    check_detected_and_matches_a_direct_call(case, *saved[case.name])


def test_edsr_hyper_parameters_come_from_the_weights(saved) -> None:
    full = model_loader().load_from_file(saved["edsr-full-x3"][0]).model
    baseline = model_loader().load_from_file(saved["edsr-baseline-x2"][0]).model
    assert full.body[0].res_scale == 0.1 and baseline.body[0].res_scale == 1.0
    assert full.rgb_range == 255 and len(full.body) == 3


def test_pre_upscaled_network_refines_an_enlarged_image(saved) -> None:
    """Without a declared scale, SRCNN keeps the size: it is fed an image enlarged beforehand."""
    path, net = saved["srcnn-955-pre-upscaled"]
    enlarged = restore_image(photo(), "resize:scale=2")
    out = restore_image(enlarged, f"model={path}")
    assert out.shape == enlarged.shape
    assert np.abs(out.astype(int) - direct(net, image_to_tensor(enlarged))).max() <= 1


@pytest.mark.parametrize(
    ("arch", "build", "wrap"),
    [
        ("ESRGAN", lambda: ESRGAN(num_filters=8, num_blocks=1, scale=2), lambda sd: sd),
        ("Compact", lambda: Compact(num_feat=8, num_conv=2, upscale=2), lambda sd: {"params": sd}),
        ("RCAN", lambda: RCAN(scale=2, n_resgroups=1, n_resblocks=1, n_feats=8, reduction=4), lambda sd: sd),
    ],
    ids=["ESRGAN", "Compact", "RCAN"],
)
def test_registration_leaves_other_architectures_their_files(arch, build, wrap, tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save(wrap(build().state_dict()), path)
    assert model_loader().load_from_file(path).architecture.id == arch


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_each_detector_takes_only_its_own_layout(case: Case, saved) -> None:

    path, _ = saved[case.name]
    state = spandrel.canonicalize_state_dict(torch.load(path, weights_only=True))
    ours = {"EDSR", "RDN", "SRResNet", "ESPCN", "SRCNN", "VDSR"}
    claimed = {support.architecture.id for support in architecture_registry()[0].architectures() if support.detect(state)}
    assert claimed & ours == {case.arch}
