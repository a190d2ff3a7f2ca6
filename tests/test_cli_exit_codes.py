"""Bad input and bad options: one line on stderr and a distinct, documented exit code each (README table);
and ``streamrestore stages``. Clips: the ``stream_clips`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points

import numpy as np
import pytest

from streamrestore.presets import available_presets
from streamrestore.registry import default_aliases

from support.cli import assert_one_line, leftovers, run_command


# == 7. bad input: one line, a distinct exit code ==================================================
def test_missing_input(cli, tmp_path):
    assert_one_line(cli("run", tmp_path / "nope.mp4", "--chain", "denoise", "-q"), 3, "not found", "nope.mp4")


@pytest.mark.parametrize("content", ["random", "text"])
def test_not_a_media_file(cli, tmp_path, content):
    source = tmp_path / "clip.mp4"
    if content == "random":
        source.write_bytes(np.random.default_rng(1).integers(0, 256, 8000, dtype=np.uint8).tobytes())
    else:
        source.write_text("just some notes\n" * 100)
    assert_one_line(cli("run", source, "--chain", "denoise", "-q"), 4, "not a readable media file")
    assert os.listdir(tmp_path) == ["clip.mp4"]


def test_audio_only_file(stream_clips, cli, tmp_path):
    assert_one_line(cli("run", stream_clips["audio_only"], "--chain", "denoise", "-o", tmp_path / "o.mkv", "-q"), 5,
                    "no video stream")


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_truncated_files_give_stable_codes(stream_clips, cli, tmp_path, fraction):
    # Index at the front (faststart): the missing frames are known, 6. Plain MP4 cut short: its
    # index at the end is gone, so it is not a readable file at all, 4. Same answer at every cut.
    for name, code, words in (("faststart", 6, ("truncated",)), ("plain_big", 4, ("not a readable media file",))):
        data = stream_clips[name].read_bytes()
        source = tmp_path / f"cut_{name}.mp4"
        source.write_bytes(data[: int(len(data) * fraction)])
        assert_one_line(cli("run", source, "--chain", "identity", "-o", tmp_path / "o.mkv", "-q"), code, *words)
    assert leftovers(tmp_path) == [] and not (tmp_path / "o.mkv").exists()


def test_unknown_stage_suggests_the_closest(stream_clips, cli):
    assert_one_line(cli("run", stream_clips["mp4"], "--chain", "denoize", "-q"), 8, "'denoize'", "did you mean 'denoise'")


def test_bad_option_value_names_the_option(stream_clips, cli):
    assert_one_line(cli("run", stream_clips["mp4"], "--chain", "nlm:strength=abc", "-q"), 2, "'strength'", "'abc'")


def test_unknown_option_names_it_and_the_known_ones(stream_clips, cli):
    assert_one_line(cli("run", stream_clips["mp4"], "--chain", "nlm:foo=1", "-q"), 2, "'foo'", "strength")


@pytest.mark.parametrize("crf", ["99", "-1"])
def test_bad_crf(stream_clips, cli, tmp_path, crf):
    assert_one_line(cli("run", stream_clips["mp4"], "--chain", "identity", f"--crf={crf}", "-o", tmp_path / "o.mkv", "-q"),
                    2, "--crf")
    assert os.listdir(tmp_path) == []


def test_crf_that_is_not_a_number(stream_clips, cli):
    outcome = cli("run", stream_clips["mp4"], "--chain", "identity", "--crf", "abc", "-q")
    assert outcome.code == 2  # argparse's own message: usage, then the error naming --crf
    assert "--crf" in outcome.lines[-1] and "'abc'" in outcome.lines[-1]
    assert "Traceback" not in outcome.stderr


@pytest.mark.parametrize(("text", "key", "line"), [
    ("chain:\n  - sr2\ncolour: red\n", "'colour'", "line 3"),
    ("description: x\nchain:\n  - sr2\noutput:\n  codec: libx264\n  speed: fast\n", "'speed'", "line 6"),
])
def test_preset_with_a_bad_key(stream_clips, cli, tmp_path, text, key, line):
    preset = tmp_path / "mine.yaml"
    preset.write_text(text)
    assert_one_line(cli("run", stream_clips["mp4"], "--config", preset, "-q"), 2, "mine.yaml", line, key)


def test_debug_shows_the_traceback(cli, tmp_path):
    outcome = cli("run", tmp_path / "nope.mp4", "--chain", "denoise", "-q", "--debug")
    assert outcome.code == 3
    assert "Traceback" in outcome.stderr and "InputNotFoundError" in outcome.stderr
    assert outcome.lines[-1].startswith("streamrestore: error: input not found")


@pytest.mark.slow
def test_console_script_exit_code_and_one_line(tmp_path):
    # The same through the installed command: the code reaches the shell, nothing else is printed.
    done = run_command("run", tmp_path / "nope.mp4", "--chain", "denoise", "-q")
    assert done.returncode == 3
    assert done.stderr.splitlines() == [f"streamrestore: error: input not found: {str(tmp_path / 'nope.mp4')!r}"]


# == 8. streamrestore stages =======================================================================
def test_stages_lists_builtins_aliases_and_presets(cli):
    outcome = cli("stages")
    assert outcome.code == 0 and outcome.stderr == ""
    lines = outcome.stdout.splitlines()
    builtins = {ep.name for ep in entry_points(group="streamrestore.stages")
                if ep.dist is not None and ep.dist.name == "streamrestore"}
    assert {"nlm-denoise", "nlm-temporal", "mc-denoise", "unsharp", "resize", "identity"} <= builtins
    described = {}
    for index, line in enumerate(lines):
        words = line.split()
        if len(words) > 1 and words[1] == "[streamrestore]":
            described[words[0]] = lines[index + 1]
    assert builtins <= set(described)
    for name in builtins:
        assert "scale ×" in described[name] and "devices" in described[name] and "dtypes" in described[name]
    assert "window -2/+2" in described["nlm-temporal"]
    assert "scale ×2" in described["resize"]
    for alias, target in default_aliases("photo", accelerated=False).items():
        points_at = target.target + "".join(f":{k}={v}" for k, v in target.settings.items())
        assert any(line.split()[:3] == [alias, "->", points_at] for line in lines), alias
    assert "presets: " + ", ".join(available_presets()) in lines
    assert {"clean_noisy", "old_film", "old_film_classical", "upscale2x"} <= set(available_presets())
