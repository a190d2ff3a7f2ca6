"""Joined aliases: `denoise,sr4` written side by side runs as `mc-denoise,oldfilm` (one network trained to denoise
and upscale together), says so (run, job), and only then: any option, another order or anime content keeps them
apart."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from streamrestore.jobs import Job, JobOptions
from streamrestore.media.images import read_image, write_image
from streamrestore.presets import ChainPlan, StageRequest, join_pairs
from streamrestore.restore import OutputSettings, PreparedChain, RunSettings, restore_video
from support.media import camera_pan, make_clip, photo, player_rgb, video_frames

def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


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


def test_a_job_plans_the_joined_chain_and_says_so(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "tape.mp4", [photo("astronaut", 64, 48, shift=i) for i in range(6)])
    job = Job(clip.path, str(tmp_path / "out.mkv"), "denoise,sr4", JobOptions(segment_seconds=1))
    assert job.notices == []  # nothing is known before the job is planned
    job.status()
    assert job.notices == [NOTICE]
    apart = Job(clip.path, str(tmp_path / "apart.mkv"), "denoise,sr4:tile=0", JobOptions(segment_seconds=1))
    apart.status()
    assert apart.notices == []


def test_on_old_film_made_here_joined_beats_bicubic_and_the_networks_apart(tmp_path: Path) -> None:
    # A camera gliding over the held-out photo, made the way the dev kit makes its old film: a quarter size,
    # light blur, fresh grain each frame, H.264 at crf 28; scored against the clean frames.
    clean = camera_pan(8, 384, 256, "astronaut", step=(2.0, 1.0))
    rng = np.random.default_rng(5)
    small = [cv2.resize(cv2.GaussianBlur(f, (0, 0), 1.0), (96, 64), interpolation=cv2.INTER_AREA) for f in clean]
    grainy = [np.clip(np.rint(f + rng.normal(0, 12, f.shape)), 0, 255).astype(np.uint8) for f in small]
    clip = make_clip(tmp_path / "film.mp4", grainy, options={"crf": "28"})
    decoded = [player_rgb(f) for f in video_frames(clip.path)]

    def score(restored: list[np.ndarray]) -> float:
        return float(np.mean([psnr(r[4:-4, 4:-4], c[4:-4, 4:-4]) for r, c in zip(restored, clean)]))

    def chain_on_clip(chain: str) -> list[np.ndarray]:
        out = tmp_path / f"{len(chain)}.mkv"
        restore_video(clip.path, str(out), chain, output=OutputSettings(codec="ffv1", pix_fmt="yuv444p", overwrite=True))
        return [player_rgb(f) for f in video_frames(out)]

    bicubic = score([cv2.resize(f, (384, 256), interpolation=cv2.INTER_CUBIC) for f in decoded])
    joined, apart = score(chain_on_clip("denoise,sr4")), score(chain_on_clip("denoise:keep_input=0.03,sr4"))
    assert joined > bicubic + 0.3, (joined, bicubic, apart)  # measured: 22.54 against 22.07 and 21.88 apart
    assert joined > apart + 0.4, (joined, apart)
