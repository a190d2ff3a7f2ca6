"""The seed SR architectures WDSR (A, B), LapSRN and DRRN of streamrestore.models.archs, through the stage.

As in test_seed_archs: each is built small with random weights, saved in its official key layout
(WDSR weight-normalised by torch itself, old and new key names), loaded back through the ``model`` stage
by auto-detection, and compared on an odd-sized photo crop with a direct call of the saved module.
Their detectors must take only their own files, and the earlier seed files must still go where they did.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from spandrel.architectures.Compact import Compact
from spandrel.architectures.DnCNN import DnCNN
from spandrel.architectures.ESRGAN import ESRGAN
from spandrel.architectures.RCAN import RCAN

from streamrestore.models.loader import model_loader
from streamrestore.models.archs.drrn import DRRNArch
from streamrestore.models.archs.lapsrn import LapSRNArch
from streamrestore.models.archs.wdsr import WDSRArch
from streamrestore.errors import WeightsError
from streamrestore.restore import restore_image

from support import seed_archs as earlier  # its photo crop, weight calming and cases
from support.seed_archs_more import CASES, IDS, SEED, Case, claimed_by


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, torch.nn.Module]]:
    return earlier.save_cases(tmp_path_factory.mktemp("seed-more"), CASES)


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
