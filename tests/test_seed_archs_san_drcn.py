"""The seed architectures SAN and DRCN of streamrestore.models.archs, through the stage.

As in test_seed_archs: each is built small with random weights, saved in its official key layout (daitao/SAN,
icpm/super-resolution's DRCN), loaded back through the ``model`` stage by auto-detection, and compared on an
odd-sized photo crop with a direct call of the saved module. The detectors take only their own files, and
the earlier seed files still go where they did. The SAN pieces that are not plain convolutions (the
covariance square root, the max-pooled region non-local block) are checked against their definitions.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from spandrel.architectures.Compact import Compact
from spandrel.architectures.ESRGAN import ESRGAN
from spandrel.architectures.RCAN import RCAN

from streamrestore.models.archs.drcn import RECURSIONS, DRCN, DRCNArch
from streamrestore.models.archs.preupscaled import SCALE_KEY
from streamrestore.models.archs.san import SAN, SANArch, covariance, sqrtm_newton_schulz
from streamrestore.models.loader import model_loader

import test_seed_archs as earlier
import test_seed_archs_more as more

NEW = {"SAN", "DRCN"}


def san(scale: int, groups: int = 2, blocks: int = 2, feats: int = 16, reduction: int = 4) -> SAN:
    net = earlier.calm(SAN(scale, feats, groups, blocks, reduction), 0.5)
    with torch.no_grad():
        net.gamma.fill_(0.2)  # the shared-source skip: zero at initialisation, not in a trained file
        for group in net.RG:
            group.gamma.fill_(0.1)
    return net


def drcn(**kwargs) -> DRCN:
    return earlier.calm(DRCN(1, 8, **kwargs), 0.5)


Case = earlier.Case
CASES = [
    Case("san-x2", "SAN", 2, lambda: san(2), channels=3),
    Case("san-x3", "SAN", 3, lambda: san(3, groups=1, blocks=3), channels=3),
    Case("san-x4", "SAN", 4, lambda: san(4, groups=3, blocks=1, feats=32, reduction=8), channels=3),
    # icpm's files: no ``w`` key (16 equal weights); ours may carry the learnt weights and the scale.
    Case("drcn-pre-upscaled", "DRCN", 1, lambda: drcn(), channels=1),
    Case("drcn-x3-learnt-weights", "DRCN", 3, lambda: drcn(recursions=5, scale=3),
         extra={SCALE_KEY: torch.tensor(3)}, channels=1),
]
IDS = [case.name for case in CASES]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, torch.nn.Module]]:
    out = earlier.save_cases(tmp_path_factory.mktemp("seed-san-drcn"), CASES)
    # The pre-upscaled DRCN as icpm saves it: its recursion weights are not in the state dict.
    path, net = out["drcn-pre-upscaled"]
    torch.save({k: v for k, v in torch.load(path, weights_only=True).items() if k != "w"}, path)
    return out


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_detected_by_layout_and_matches_a_direct_call(case: Case, saved) -> None:
    earlier.check_detected_and_matches_a_direct_call(case, *saved[case.name])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_each_new_detector_takes_only_its_own_layout(case: Case, saved) -> None:
    path, _ = saved[case.name]
    assert more.claimed_by(torch.load(path, weights_only=True)) == {case.arch}


def test_san_hyper_parameters_and_range_come_from_the_weights(saved) -> None:
    net = model_loader().load_from_file(saved["san-x4"][0]).model
    assert (len(net.RG), len(net.RG[0].rcab), net.head[0].out_channels) == (3, 1, 32)
    assert net.RG[0].soca.conv_du[0].out_channels == 4 and net.rgb_range == 255
    # The keys and values of the non-local block are max-pooled ×2, as the official block ends up doing.
    assert isinstance(net.non_local.non_local.phi[1], torch.nn.MaxPool2d)
    state = torch.load(saved["san-x2"][0], weights_only=True)
    state["sub_mean.bias"] = state["sub_mean.bias"] / 255  # a file trained with --rgb_range 1
    assert SANArch().load(state).model.rgb_range == 1


def test_drcn_recursions_come_from_the_file_or_the_published_default(saved) -> None:
    plain = model_loader().load_from_file(saved["drcn-pre-upscaled"][0]).model
    learnt = model_loader().load_from_file(saved["drcn-x3-learnt-weights"][0]).model
    assert plain.recursions == RECURSIONS and torch.allclose(plain.w, torch.full((RECURSIONS,), 1 / RECURSIONS))
    assert learnt.recursions == 5 and learnt.scale == 3


def test_newton_schulz_square_root_of_a_covariance() -> None:
    torch.manual_seed(0)
    features = torch.randn(2, 6, 9, 11, dtype=torch.float64)
    cov = covariance(features)
    flat = features.flatten(2)
    centred = flat - flat.mean(2, keepdim=True)
    assert torch.allclose(cov, centred @ centred.transpose(1, 2) / flat.shape[2])
    root = sqrtm_newton_schulz(cov, iterations=30)  # converged: its square is the matrix
    assert torch.allclose(root @ root, cov, atol=1e-6)
    five = sqrtm_newton_schulz(cov)  # the released models' five iterations: an approximation, symmetric
    assert torch.allclose(five, five.transpose(1, 2), atol=1e-9) and not torch.allclose(five, root, atol=1e-6)


@pytest.mark.parametrize(
    "build",
    [
        lambda: RCAN(scale=2, n_resgroups=1, n_resblocks=1, n_feats=8, reduction=4),  # the EDSR code base, like SAN
        lambda: ESRGAN(num_filters=8, num_blocks=1, scale=2),
        lambda: Compact(num_feat=8, num_conv=2, upscale=2),
    ],
    ids=["RCAN", "ESRGAN", "Compact"],
)
def test_new_detectors_leave_other_architectures_their_files(build) -> None:
    state = build().state_dict()
    assert not any(arch().detect(state) for arch in (SANArch, DRCNArch))


@pytest.mark.parametrize("case", earlier.CASES + more.CASES, ids=earlier.IDS + more.IDS)
def test_earlier_seed_files_are_not_claimed_by_the_new_detectors(case: Case) -> None:
    torch.manual_seed(0)
    state = {f"{case.wrap}{key}": value for key, value in case.build().state_dict().items()} | (case.extra or {})
    assert not more.claimed_by(state) & NEW
