"""Stage discovery through entry points: a third-party package, a broken one, and contract checks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import numpy as np
import pytest

from streamrestore.errors import PluginError, UnknownStageError
from streamrestore.registry import Registry, spec_from_class
from streamrestore.stage import Capabilities, Stage

from support import media

THIRD_PARTY_MODULE = '''
"""A third-party stage package, as someone else would publish it."""
import torch
from streamrestore.stage import Capabilities, Option, Stage


class Invert(Stage):
    summary = "inverts the picture (third-party test stage)"
    options = {"amount": Option(float, 1.0, "blend of the inverted picture", minimum=0.0, maximum=1.0)}

    @property
    def capabilities(self):
        return Capabilities()

    def process(self, batch):
        a = self.settings["amount"]
        return batch.with_pixels(batch.pixels * (1 - a) + (1 - batch.pixels) * a)


class NotAStage:
    pass
'''


def install_fake_distribution(root: Path) -> Path:
    """Write a package plus a .dist-info with entry points: what `pip install` leaves on disk."""
    site = root / "site"
    site.mkdir()
    (site / "sr_thirdparty.py").write_text(THIRD_PARTY_MODULE)
    info = site / "sr_thirdparty-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sr-thirdparty\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [streamrestore.stages]
        invert = sr_thirdparty:Invert
        broken-import = sr_thirdparty_missing_module:Thing
        not-a-stage = sr_thirdparty:NotAStage
        """))
    return site


def make_clip(path: Path, frames: int = 6, size: tuple[int, int] = (64, 48)) -> None:
    """A lossless H.264 4:4:4 clip of a gradient that brightens frame by frame (support.media.make_clip)."""
    width, height = size
    pictures = []
    for index in range(frames):
        picture = np.zeros((height, width, 3), np.uint8)
        picture[:, :, 0] = 40 + 10 * index
        picture[:, :, 1] = np.linspace(30, 200, width, dtype=np.uint8)[None, :]
        pictures.append(picture)
    media.make_clip(path, pictures, pix_fmt="yuv444p", options={"qp": "0"})


def run_cli(args: list[str], site: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(site))
    return subprocess.run([sys.executable, "-m", "streamrestore.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture()
def third_party(tmp_path: Path) -> Path:
    return install_fake_distribution(tmp_path)


@pytest.mark.slow
def test_third_party_stage_runs_from_the_cli(third_party: Path, tmp_path: Path) -> None:
    source, output = tmp_path / "in.mp4", tmp_path / "out.mkv"
    make_clip(source)
    result = run_cli(["run", str(source), "--chain", "invert", "-o", str(output), "--codec", "ffv1", "-q"], third_party)
    assert result.returncode == 0, result.stderr
    with av.open(str(source)) as a, av.open(str(output)) as b:
        before = [f.to_ndarray(format="rgb24").astype(int) for f in a.decode(video=0)]
        after = [f.to_ndarray(format="rgb24").astype(int) for f in b.decode(video=0)]
    assert len(before) == len(after) == 6
    # Inverted: each pixel v became 255 - v (within YUV round-trip quantisation).
    errors = [np.abs((255 - x) - y).mean() for x, y in zip(before, after)]
    assert max(errors) < 1.5


@pytest.mark.slow
def test_stages_lists_third_party_and_names_broken_plugins(third_party: Path) -> None:
    result = run_cli(["stages"], third_party)
    assert result.returncode == 0, result.stderr
    assert "invert" in result.stdout and "[sr-thirdparty]" in result.stdout
    assert "nlm-denoise" in result.stdout and "[streamrestore]" in result.stdout  # built-ins unaffected
    assert "broken plugin broken-import" in result.stdout and "failed to import" in result.stdout
    assert "broken plugin not-a-stage" in result.stdout and "not a streamrestore.stage.Stage subclass" in result.stdout


@pytest.mark.slow
def test_asking_for_a_broken_plugin_is_one_line_exit_9(third_party: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.mp4"
    make_clip(source)
    result = run_cli(["run", str(source), "--chain", "broken-import", "-o", str(tmp_path / "o.mp4")], third_party)
    assert result.returncode == 9
    assert result.stderr.strip().count("\n") == 0
    assert "broken-import" in result.stderr and "sr-thirdparty" in result.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_builtins_register_through_entry_points() -> None:
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="streamrestore.stages")}
    assert {"nlm-denoise", "nlm-temporal", "unsharp", "resize", "identity"} <= names
    registry = Registry()
    assert registry.get("resize").package == "streamrestore"


def test_unknown_stage_suggests_closest() -> None:
    with pytest.raises(UnknownStageError, match="did you mean 'denoise'"):
        Registry().resolve("denoize")


def test_alias_can_be_repointed_without_touching_the_pipeline() -> None:
    from streamrestore.restore import restore_image
    from streamrestore.registry import Alias

    registry = Registry()
    registry.aliases["sr2"] = Alias("resize", {"scale": 2, "method": "bicubic"}, "repointed")
    image = np.random.default_rng(0).integers(0, 255, (10, 12, 3), dtype=np.uint8)
    out = restore_image(image, "sr2", registry=registry)
    assert out.shape == (20, 24, 3)


def test_contract_violations_are_named() -> None:
    class Abstract(Stage):
        summary = "missing process"

        @property
        def capabilities(self) -> Capabilities:
            return Capabilities()

    with pytest.raises(PluginError, match="'half' .* does not implement process"):
        spec_from_class("half", Abstract, "pkg")
    with pytest.raises(PluginError, match="options"):
        spec_from_class("opts", type("BadOptions", (Abstract,), {"options": {"x": 1}, "process": lambda s, b: b}), "pkg")
