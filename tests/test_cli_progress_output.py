"""The command's progress bar and its output handling: default and explicit names, overwrite, output equal to the
input, unwritable directories, and atomic output (nothing left behind by a failed stage, a truncated input or a
full disk). Clips: the ``stream_clips`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
from pathlib import Path

import av
import av.error
import pytest

from streamrestore.errors import DiskFullError, StageFailedError
from streamrestore.restore import OutputSettings, restore_video

from support.cli import assert_one_line, copy_to, decode, leftovers, sha256, stage_registry


# == 4. progress ===================================================================================
def test_progress_bar_shows_rate_and_total(stream_clips, cli):
    outcome = cli("run", stream_clips["mp4"], "--chain", "identity", "-o", stream_clips["mp4"].parent / "progress.mkv",
                  "--preset", "ultrafast", "--batch", "4", "--overwrite")
    assert outcome.code == 0, outcome.stderr
    assert " fps]" in outcome.stderr
    assert "/24 [" in outcome.stderr  # "n/total [elapsed<ETA, rate]"
    assert "restoring" in outcome.stderr and "wrote " in outcome.stderr
    # The expected duration is announced once, when the steady rate is known (the second batch: the first
    # one pays for start-up), on a line of its own.
    expected = [line for line in outcome.stderr.replace("\r", "\n").splitlines() if line.startswith("expected: ")]
    assert len(expected) == 1, outcome.stderr
    left = re.fullmatch(r"expected: about \d+ s more for (\d+) frames left \(\d+\.\d\d s/frame at the steady rate\)",
                        expected[0])
    assert left is not None and 0 < int(left[1]) < 24, expected[0]


def test_quiet_prints_nothing(stream_clips, cli, tmp_path):
    outcome = cli("run", stream_clips["mp4"], "--chain", "identity", "-o", tmp_path / "quiet.mkv", "--preset", "ultrafast",
                  "--quiet")
    assert outcome.code == 0
    assert outcome.stderr == "" and outcome.stdout == ""


def test_mpegts_progress_has_an_estimated_total(stream_clips, cli, tmp_path):
    # MPEG-TS announces no frame count; the total comes from duration × frame rate.
    outcome = cli("run", stream_clips["ts"], "--chain", "identity", "-o", tmp_path / "ts.mkv", "--preset", "ultrafast")
    assert outcome.code == 0, outcome.stderr
    totals = {int(t) for t in re.findall(r"\d+/(\d+) \[", outcome.stderr)}
    assert totals == {24}, outcome.stderr


# == 5. output handling ============================================================================
def test_default_output_name_beside_the_input(stream_clips, cli, tmp_path):
    source = copy_to(stream_clips["mp4"], tmp_path, "holiday.mp4")
    outcome = cli("run", source, "--chain", "identity", "--preset", "ultrafast", "-q")
    assert outcome.code == 0, outcome.stderr
    assert sorted(os.listdir(tmp_path)) == ["holiday.mp4", "holiday.restored.mp4"]
    assert decode(tmp_path / "holiday.restored.mp4").frames == 24


def test_explicit_output_path(stream_clips, cli, tmp_path):
    target = tmp_path / "elsewhere" / "result.mkv"
    target.parent.mkdir()
    outcome = cli("run", stream_clips["mp4"], "--chain", "resize:scale=2", "-o", target, "--preset", "ultrafast", "-q")
    assert outcome.code == 0, outcome.stderr
    assert os.listdir(target.parent) == ["result.mkv"]
    assert decode(target).width == 128


def test_existing_output_needs_overwrite(stream_clips, cli, tmp_path):
    target = tmp_path / "out.mkv"
    target.write_bytes(b"keep me")
    refused = cli("run", stream_clips["mp4"], "--chain", "identity", "-o", target, "-q")
    assert_one_line(refused, 10, "exists", "--overwrite")
    assert target.read_bytes() == b"keep me"
    replaced = cli("run", stream_clips["mp4"], "--chain", "identity", "-o", target, "--overwrite", "--preset", "ultrafast",
                   "-q")
    assert replaced.code == 0, replaced.stderr
    assert decode(target).frames == 24
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("spelling", ["same", "dotted"])
def test_output_equal_to_input_is_refused(stream_clips, cli, tmp_path, spelling):
    source = copy_to(stream_clips["mp4"], tmp_path)
    before = sha256(source)
    target = source if spelling == "same" else tmp_path / "." / ".." / tmp_path.name / source.name
    outcome = cli("run", source, "--chain", "identity", "-o", target, "--overwrite", "-q")
    assert_one_line(outcome, 10, "is the input")
    assert sha256(source) == before
    assert os.listdir(tmp_path) == [source.name]


@pytest.mark.parametrize("where", ["parent_is_a_file", "proc"])
def test_unwritable_output_directory(stream_clips, cli, tmp_path, where):
    # Tests may run as root, whom permissions do not stop: a parent that is a regular file, and /proc
    # (where nothing can be created, root or not), are unwritable for everyone.
    if where == "parent_is_a_file":
        (tmp_path / "a_file").write_text("not a directory")
        target = tmp_path / "a_file" / "out.mkv"
    else:
        target = Path("/proc") / f"streamrestore-test-{os.getpid()}.mkv"
    outcome = cli("run", stream_clips["mp4"], "--chain", "identity", "-o", target, "-q")
    assert_one_line(outcome, 10)
    assert not target.exists()


def test_stage_failure_leaves_nothing(stream_clips, tmp_path):
    target = tmp_path / "out.mkv"
    with pytest.raises(StageFailedError, match="boom on batch 3"):
        restore_video(str(stream_clips["mp4"]), str(target), "fails", output=OutputSettings(preset="ultrafast"), registry=stage_registry())
    assert os.listdir(tmp_path) == []


def test_stage_failure_on_the_command_line(stream_clips, cli, tmp_path, monkeypatch):
    monkeypatch.setattr("streamrestore.restore.Registry", stage_registry)
    outcome = cli("run", stream_clips["mp4"], "--chain", "fails", "-o", tmp_path / "out.mkv", "-q")
    assert_one_line(outcome, 13, "'fails'", "boom on batch 3")
    assert os.listdir(tmp_path) == []


def test_truncated_input_fails_at_the_end_and_leaves_nothing(stream_clips, cli, tmp_path):
    # The frames that exist are restored and written first; the shortfall shows only at the end.
    source = tmp_path / "cut.mp4"
    source.write_bytes(stream_clips["faststart"].read_bytes()[: stream_clips["faststart"].stat().st_size * 2 // 3])
    outcome = cli("run", source, "--chain", "identity", "-o", tmp_path / "out.mkv", "-q")
    assert_one_line(outcome, 6, "truncated", "of 48 frames")
    assert os.listdir(tmp_path) == ["cut.mp4"]


class DiskFillsUp:
    """An output container whose disk fills after ``room`` mux calls: ``mux`` fails with ENOSPC as PyAV does."""

    def __init__(self, container: av.container.OutputContainer, room: int) -> None:
        self._container = container
        self._room = room

    def __getattr__(self, name: str) -> object:
        return getattr(self._container, name)

    def mux(self, packets: object) -> None:
        self._room -= 1
        if self._room < 0:
            raise av.error.OSError(errno.ENOSPC, "No space left on device", self._container.name)
        self._container.mux(packets)


def inject_disk_full(monkeypatch: pytest.MonkeyPatch, room: int = 3) -> None:
    real_open = av.open

    def open_(target: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        container = real_open(target, mode, *args, **kwargs)
        return DiskFillsUp(container, room) if mode == "w" else container

    monkeypatch.setattr(av, "open", open_)


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """A 16 KiB tmpfs, where a real write fails with ENOSPC; yields (folder, how).

    Mounting needs root with CAP_SYS_ADMIN. Where that is not permitted (a user account, an
    unprivileged container), ENOSPC is injected at the PyAV mux instead, which is where FFmpeg reports
    a failed write, so the same exit code and clean-up are still checked.
    """
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = False
    if os.geteuid() == 0 and shutil.which("mount") and shutil.which("umount"):
        attempt = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(folder)],
                                 capture_output=True, timeout=20)
        mounted = attempt.returncode == 0
    if not mounted:
        inject_disk_full(monkeypatch)
    try:
        yield folder, "tmpfs" if mounted else "injected"
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=20)


def test_disk_full_exits_11_and_leaves_nothing(stream_clips, cli, small_disk):
    folder, how = small_disk
    # ffv1 at twice the size: far more than 16 KiB of output.
    outcome = cli("run", stream_clips["mkv"], "--chain", "resize:scale=2", "--codec", "ffv1", "-o", folder / "out.mkv", "-q")
    assert_one_line(outcome, 11, "disk full")
    assert os.listdir(folder) == [], how


def test_disk_full_injected_at_the_mux(stream_clips, tmp_path, monkeypatch):
    # Always injected, whatever the machine allows: ENOSPC from any mux call becomes DiskFullError.
    inject_disk_full(monkeypatch, room=5)
    with pytest.raises(DiskFullError) as raised:
        restore_video(str(stream_clips["mkv"]), str(tmp_path / "out.mkv"), "resize:scale=2", output=OutputSettings(preset="ultrafast"))
    assert raised.value.exit_code == 11
    assert os.listdir(tmp_path) == []
