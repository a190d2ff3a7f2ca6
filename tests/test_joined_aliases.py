"""Joined aliases: `denoise,sr4` written side by side runs as `mc-denoise,oldfilm` (one network trained to denoise
and upscale together), says so, and only then: any option, another order or anime content keeps them apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamrestore.media.images import read_image, write_image
from streamrestore.presets import ChainPlan, StageRequest, join_pairs
from streamrestore.restore import PreparedChain, RunSettings
from support.media import photo

NOTICE = ("denoise,sr4 runs as mc-denoise,oldfilm: one network trained to do both (README, \"Joined aliases\"; "
          "give either an option to run them apart)")


def test_denoise_then_sr4_runs_as_the_joined_network_and_says_so() -> None:
    prepared = PreparedChain("denoise,sr4", RunSettings(device="cpu"))
    assert [b.spec.name for b in prepared.stages] == ["mc-denoise", "model"]
    assert prepared.stages[1].stage.settings["model"] == "oldfilm-compact64"
    assert [r.name for r in prepared.plan.stages] == ["mc-denoise", "oldfilm"]
    assert prepared.notices == [NOTICE]
    assert prepared.scale == 4


@pytest.mark.parametrize("chain,content", [
    ("denoise,sr4:tile=0", "photo"), ("denoise:keep_input=0.03,sr4", "photo"), ("sr4,denoise", "photo"),
    ("denoise,sharpen,sr4", "photo"), ("denoise,sr4", "anime"),
])
def test_written_otherwise_they_stay_the_stages_they_name(chain: str, content: str) -> None:
    apart = PreparedChain(chain, RunSettings(device="cpu", content=content))
    assert "oldfilm-compact64" not in [b.stage.settings.get("model") for b in apart.stages]
    assert apart.notices == []


def test_only_the_pair_itself_is_replaced_in_a_longer_chain() -> None:
    plan = ChainPlan([StageRequest(name, {}) for name in ("sharpen", "denoise", "sr4", "denoise", "sr4", "sr2")])
    joined, notices = join_pairs(plan, {("denoise", "sr4"): ("mc-denoise", "oldfilm")})
    assert [r.name for r in joined.stages] == ["sharpen", "mc-denoise", "oldfilm", "mc-denoise", "oldfilm", "sr2"]
    assert len(notices) == 2
    assert join_pairs(plan, {})[0].stages == plan.stages


def test_the_command_line_prints_the_join_once_and_restores(cli, tmp_path: Path) -> None:
    source = tmp_path / "small.png"
    write_image(source, photo("astronaut", 40, 30))
    outcome = cli("run", source, "--chain", "denoise,sr4", "-o", tmp_path / "big.png")
    assert outcome.code == 0, outcome.stderr
    assert outcome.stderr.count(NOTICE) == 1
    restored = read_image(tmp_path / "big.png")
    assert restored.shape == (120, 160, 3) and restored.std() > 10  # a picture, not a flat frame
    quiet = cli("run", source, "--chain", "denoise,sr4", "-o", tmp_path / "again.png", "-q")
    assert NOTICE not in quiet.stderr
    assert np.array_equal(read_image(tmp_path / "again.png"), restored)
