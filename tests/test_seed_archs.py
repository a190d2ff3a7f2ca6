"""The seed SR architectures of streamrestore.models.archs (EDSR, RDN, SRResNet, ESPCN, SRCNN, VDSR) through the stage.

Each is built small with random weights, saved in its official key layout, and loaded back through the
``model`` stage by auto-detection; its output on an odd-sized real photo crop is compared with a direct
call of the saved module. Registration must not take other architectures' files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import spandrel
import torch
from spandrel.architectures.Compact import Compact
from spandrel.architectures.ESRGAN import ESRGAN
from spandrel.architectures.RCAN import RCAN

from streamrestore.models.loader import architecture_registry, model_loader
from streamrestore.frames import image_to_tensor
from streamrestore.restore import restore_image

from support.seed_archs import CASES, IDS, Case, check_detected_and_matches_a_direct_call, direct, photo, save_cases


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, torch.nn.Module]]:
    return save_cases(tmp_path_factory.mktemp("seed"), CASES)


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
