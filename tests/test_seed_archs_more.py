"""The seed SR architectures WDSR (A, B), LapSRN and DRRN of streamrestore.models.archs, through the stage.

As in test_seed_archs: each is built small with random weights, saved in its official key layout
(WDSR weight-normalised by torch itself, old and new key names), loaded back through the ``model`` stage
by auto-detection, and compared on an odd-sized photo crop with a direct call of the saved module.
Their detectors must take only their own files, and the earlier seed files must still go where they did.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import spandrel
import torch
from spandrel.architectures.Compact import Compact
from spandrel.architectures.DnCNN import DnCNN
from spandrel.architectures.ESRGAN import ESRGAN
from spandrel.architectures.RCAN import RCAN

from streamrestore.models.loader import architecture_registry, model_loader
from streamrestore.models.archs.drrn import DRRN, DRRNArch
from streamrestore.models.archs.lapsrn import LapSRN, LapSRNArch
from streamrestore.models.archs.preupscaled import SCALE_KEY
from streamrestore.models.archs.wdsr import WDSR, WDSRArch
from streamrestore.errors import WeightsError
from streamrestore.restore import restore_image

import test_seed_archs as earlier  # its photo crop, weight calming and cases

HEIGHT, WIDTH = earlier.HEIGHT, earlier.WIDTH  # 29×37
NEW = {"WDSR", "LapSRN", "DRRN"}
SEED = {"EDSR", "RDN", "SRResNet", "ESPCN", "SRCNN", "VDSR"} | NEW


def weight_normed(net: torch.nn.Module, parametrized: bool = False) -> torch.nn.Module:
    """``net`` with every conv weight-normalised as the official WDSR builds it, and each direction
    tensor rescaled per output channel, so that v differs from the weight it stands for."""
    net = copy.deepcopy(net)
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            if parametrized:
                torch.nn.utils.parametrizations.weight_norm(module)
                direction = module.parametrizations.weight.original1
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)  # the old API the official code uses
                    torch.nn.utils.weight_norm(module)
                direction = module.weight_v
            with torch.no_grad():
                direction.mul_(torch.rand(direction.shape[0], 1, 1, 1) + 0.5)
    return net


def lapsrn(scale: int, depth: int) -> LapSRN:
    net = earlier.calm(LapSRN(scale, feats=8, depth=depth))
    # The official initialisation: each image-enlarging transposed conv starts as a bilinear ×2.
    bilinear = torch.tensor([0.25, 0.75, 0.75, 0.25])
    with torch.no_grad():
        for level in range(1, net.levels + 1):
            getattr(net, f"convt_I{level}").weight.copy_(torch.outer(bilinear, bilinear).view(1, 1, 4, 4))
    return net


Case = earlier.Case

CASES = [
    Case("wdsr-a-x2", "WDSR", 2, lambda: weight_normed(earlier.calm(WDSR(2, "A", 8, 2, (32,)))), channels=3),
    Case("wdsr-b-x3", "WDSR", 3, lambda: weight_normed(earlier.calm(WDSR(3, "B", 8, 2, (48, 6)))), channels=3),
    Case("wdsr-b-x2-parametrized", "WDSR", 2,
         lambda: weight_normed(earlier.calm(WDSR(2, "B", 8, 1, (24, 6))), parametrized=True), channels=3),
    Case("wdsr-a-x4-plain-weights", "WDSR", 4, lambda: earlier.calm(WDSR(4, "A", 8, 1, (16,))), channels=3),
    Case("lapsrn-x2", "LapSRN", 2, lambda: lapsrn(2, 2), channels=1),
    Case("lapsrn-x4", "LapSRN", 4, lambda: lapsrn(4, 3), channels=1),
    Case("lapsrn-x8", "LapSRN", 8, lambda: lapsrn(8, 1), channels=1),
    Case("drrn-x3", "DRRN", 3, lambda: earlier.calm(DRRN(1, 8, scale=3)), extra={SCALE_KEY: torch.tensor(3)},
         channels=1),
    Case("drrn-pre-upscaled", "DRRN", 1, lambda: earlier.calm(DRRN(1, 8)), channels=1),
]
IDS = [case.name for case in CASES]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, torch.nn.Module]]:
    return earlier.save_cases(tmp_path_factory.mktemp("seed-more"), CASES)


def claimed_by(state_dict: dict) -> set[str]:
    """Every registered architecture whose detector accepts ``state_dict`` (ours and the extras included)."""
    state_dict = spandrel.canonicalize_state_dict(state_dict)
    return {support.architecture.id for support in architecture_registry()[0].architectures() if support.detect(state_dict)}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_detected_by_layout_and_matches_a_direct_call(case: Case, saved) -> None:
    earlier.check_detected_and_matches_a_direct_call(case, *saved[case.name])


def test_wdsr_block_type_and_widths_come_from_the_weights(saved) -> None:
    a = model_loader().load_from_file(saved["wdsr-a-x2"][0]).model
    b = model_loader().load_from_file(saved["wdsr-b-x3"][0]).model
    assert (a.kind, len(a.body), a.body[0].body[0].out_channels) == ("A", 2, 32)
    wide, low_rank, last = b.body[0].body[0], b.body[0].body[2], b.body[0].body[3]
    assert (b.kind, len(b.body), wide.out_channels, low_rank.out_channels, last.out_channels) == ("B", 2, 48, 6, 8)
    assert wide.kernel_size == low_rank.kernel_size == (1, 1) and last.kernel_size == (3, 3)
    assert a.skip[0].kernel_size == (5, 5)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_each_new_detector_takes_only_its_own_layout(case: Case, saved) -> None:
    path, _ = saved[case.name]
    assert claimed_by(torch.load(path, weights_only=True)) == {case.arch}


@pytest.mark.parametrize("case", earlier.CASES, ids=earlier.IDS)
def test_earlier_seed_files_are_still_detected_as_before(case: earlier.Case, tmp_path: Path) -> None:
    torch.manual_seed(0)
    state = {f"{case.wrap}{key}": value for key, value in case.build().state_dict().items()}
    state |= case.extra or {}
    assert claimed_by(dict(state)) & SEED == {case.arch}
    path = tmp_path / "earlier.pth"
    torch.save(state, path)
    assert model_loader().load_from_file(path).architecture.id == case.arch


@pytest.mark.parametrize(
    "build",
    [
        lambda: RCAN(scale=2, n_resgroups=1, n_resblocks=1, n_feats=8, reduction=4),  # head/body/tail, like WDSR
        lambda: ESRGAN(num_filters=8, num_blocks=1, scale=2),
        lambda: Compact(num_feat=8, num_conv=2, upscale=2),
        lambda: DnCNN(in_nc=1, out_nc=1, nc=8, nb=3),  # a plain single-channel conv chain, like DRRN
    ],
    ids=["RCAN", "ESRGAN", "Compact", "DnCNN"],
)
def test_new_detectors_leave_other_architectures_their_files(build) -> None:
    state = build().state_dict()
    assert not any(arch().detect(state) for arch in (WDSRArch, LapSRNArch, DRRNArch))


def test_truncated_or_mismatched_files_are_one_line_weights_errors(saved, tmp_path: Path) -> None:
    wdsr = torch.load(saved["wdsr-b-x3"][0], weights_only=True)
    lapsrn = torch.load(saved["lapsrn-x4"][0], weights_only=True)
    drrn = torch.load(saved["drrn-pre-upscaled"][0], weights_only=True)
    broken = {
        # Detected as WDSR (head, first block, tail, skip are there), but the second block lost a tensor.
        "wdsr-truncated": {key: value for key, value in wdsr.items() if key != "body.1.body.3.weight_v"},
        "wdsr-mismatched": {**wdsr, "tail.0.bias": wdsr["tail.0.bias"][:-1]},
        "lapsrn-truncated": {key: value for key, value in lapsrn.items() if "convt_F2.0.cov_block.2" not in key},
        "drrn-mismatched": {**drrn, "conv2.weight": drrn["conv2.weight"][:, :4]},
    }
    for name, state in broken.items():
        path = tmp_path / f"{name}.pth"
        torch.save(state, path)
        with pytest.raises(WeightsError, match=f"cannot load .*{name}.pth") as error:
            restore_image(earlier.photo(8, 8), f"model={path}")
        assert "\n" not in str(error.value), name
