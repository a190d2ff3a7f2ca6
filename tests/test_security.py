"""Untrusted input (issue #12): no weights file, preset or option may run code or exhaust the machine.

Each attack is made here, as an attacker would make it (tests/support/attacks.py), and run through the command line:
a TorchScript archive whose ``__setstate__`` writes a marker file (under ``.pt``, ``.pth`` and ``.ckpt``
names, in a chain, a preset, ``train --init`` and ``train --resume``), a deflate bomb (in a subprocess with
an address-space limit), safetensors whose metadata lies, a YAML alias bomb and a Python tag, non-finite
option values, a chain whose output would not fit in memory, an output directory locked before the final
rename, and the temporary file of a run killed with SIGKILL. Each must give its one line and exit code,
and nothing else: no marker, no memory growth, nothing left behind. The demo's side is in tests/test_demo.py.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from support.cli import Outcome, assert_one_line, command
from support.attacks import alias_bomb, deflate_bomb, safetensors_with, tiny_model, torchscript_writer
from support.media import PHOTOS, make_clip, panned_frames, photo

from streamrestore.models.entry import BORDER_KEY, BORDER_MODE_KEY, SCALE_KEY

SUBPROCESS_TIMEOUT = 180


def one_line(outcome: Outcome, code: int, *words: str) -> str:
    """``assert_one_line``, and the line stays short whatever the attack put in it."""
    line = assert_one_line(outcome, code, *words)
    assert len(line) < 600, line
    return line


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("images") / "small.png"
    cv2.imwrite(str(path), panned_frames(1, 64, 48)[0][..., ::-1])
    return path


@pytest.fixture(scope="module")
def good_model(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("models") / "tiny_x2.pth")


# == 1. TorchScript runs its own code: refused whatever the name ====================================
@pytest.fixture(scope="module")
def torchscript(tmp_path_factory) -> tuple[Path, Path]:
    """The archive, and the marker its loading would create; checked once that loading really creates it."""
    folder = tmp_path_factory.mktemp("torchscript")
    probe_marker = folder / "probe-marker"
    probe = torchscript_writer(folder / "probe.pt", probe_marker)
    subprocess.run([sys.executable, "-W", "ignore", "-c", f"import torch; torch.jit.load({str(probe)!r})"],
                   check=True, timeout=SUBPROCESS_TIMEOUT)  # fmt: skip
    assert probe_marker.read_bytes() == b"A" * 8, "the crafted archive does not run its code: the test proves nothing"
    marker = folder / "marker"
    return torchscript_writer(folder / "evil.pt", marker), marker


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt"])
def test_torchscript_checkpoint_is_refused_before_it_runs(cli, image, torchscript, tmp_path, suffix):
    archive, marker = torchscript
    named = shutil.copyfile(archive, tmp_path / f"net{suffix}")
    outcome = cli("run", image, "--chain", f"sr2={named}", "-o", tmp_path / "out.png")
    one_line(outcome, 12, f"net{suffix} is a TorchScript archive", "refused")
    assert not marker.exists()
    assert not (tmp_path / "out.png").exists()


def test_torchscript_in_a_preset_and_in_training_is_refused(cli, image, torchscript, tmp_path):
    archive, marker = torchscript
    preset = tmp_path / "evil.yaml"
    preset.write_text(f"chain:\n  - stage: model\n    model: {archive}\n")
    one_line(cli("run", image, "--config", preset, "-o", tmp_path / "out.png"), 12, "TorchScript")
    photos = _photos(tmp_path / "photos")
    one_line(cli("train", "--task", "sr2", "--init", archive, "--data", photos, "--steps", 2, "--out",
                 tmp_path / "run", "--device", "cpu", "-q"), 12, "TorchScript")  # fmt: skip
    assert not marker.exists()


@pytest.mark.parametrize("trick", ["bytes in front", "zip comment"])
def test_torchscript_behind_zip_tricks_is_refused(cli, image, torchscript, tmp_path, trick):
    # Zip readers find an archive from its end: bytes in front of it, or a comment, are where Python's zip
    # reader (which the check uses) and torch's could disagree. torch.save writes neither.
    archive, marker = torchscript
    disguised = tmp_path / "net.pth"
    if trick == "bytes in front":
        disguised.write_bytes(b"\x80\x02" + bytes(510) + archive.read_bytes())
    else:
        shutil.copyfile(archive, disguised)
        with zipfile.ZipFile(disguised, "a") as edited:
            edited.comment = b"nothing to see"
    one_line(cli("run", image, "--chain", f"sr2={disguised}", "-o", tmp_path / "out.png"), 12,
             "not a zip archive as torch.save writes one")  # fmt: skip
    assert not marker.exists()


# == 6c. train --resume with a refused checkpoint: one line, exit 12 ================================
def _photos(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(4):
        cv2.imwrite(str(folder / f"p{index}.png"), photo(PHOTOS[index % 3], 96, 96, shift=index * 7)[..., ::-1])
    return folder


class _Shell:
    """Pickles as a call of os.system: what a malicious training checkpoint would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["torchscript", "pickle calling os.system"])
def test_resume_from_a_refused_checkpoint(cli, torchscript, tmp_path, kind):
    archive, marker = torchscript
    out = tmp_path / "run"
    out.mkdir()
    if kind == "torchscript":
        shutil.copyfile(archive, out / "checkpoint.pt")
        words = ("TorchScript",)
    else:
        marker = tmp_path / "pickle-marker"
        torch.save({"step": 1, "config": _Shell(marker)}, out / "checkpoint.pt")
        words = ("--resume: cannot read", "UnpicklingError")
    outcome = cli("train", "--task", "sr2", "--data", _photos(tmp_path / "photos"), "--steps", 4, "--out", out,
                  "--features", 8, "--blocks", 2, "--device", "cpu", "--resume", "-q")  # fmt: skip
    one_line(outcome, 12, *words)
    assert not marker.exists()


# == 2a. A deflate bomb: refused before inflating, in bounded memory =================================
LIMIT_GIB = 6  # address space for the CLI: a normal run needs about 4 GiB of it (torch maps its CUDA libraries)
BOMB_GIB = 8  # what the bomb inflates to: more than the limit, so a loader that trusted it could not finish


def _limited(args: list[str]) -> tuple[int, str, int]:
    """The CLI under RLIMIT_AS = LIMIT_GIB; returns exit code, stderr and peak RSS in MiB."""
    limit = LIMIT_GIB << 30

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    process = subprocess.Popen([*command(), *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, preexec_fn=cap)  # fmt: skip
    try:
        stderr = process.stderr.read().decode()
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        if process.returncode is None and process.poll() is None:
            process.kill()
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, stderr, usage.ru_maxrss // 1024


@pytest.mark.slow
def test_deflate_bomb_is_refused_in_bounded_memory(image, good_model, tmp_path):
    bomb = deflate_bomb(tmp_path / "bomb.pth", BOMB_GIB)
    assert bomb.stat().st_size < 16 << 20
    code, stderr, normal_mib = _limited(["run", str(image), "--chain", f"sr2={good_model}", "-o",
                                         str(tmp_path / "good.png"), "-q"])  # fmt: skip
    assert code == 0, f"a normal run does not fit in {LIMIT_GIB} GiB of address space here: {stderr}"
    code, stderr, bomb_mib = _limited(["run", str(image), "--chain", f"sr2={bomb}", "-o", str(tmp_path / "bomb.png")])
    one_line(Outcome(code, "", stderr), 12, "bomb.pth expands from", "to 8192.0 MiB", "decompression bomb")
    assert bomb_mib < normal_mib + 256, (bomb_mib, normal_mib)
    print(f"peak RSS: normal run {normal_mib} MiB, deflate bomb {bomb_mib} MiB")


# == 2b. Safetensors metadata that lies ==============================================================
@pytest.mark.parametrize("metadata, words", [
    ({BORDER_KEY: "100000"}, "streamrestore.border must be a whole number from 0 to 64, not '100000'"),
    ({BORDER_KEY: "-3"}, "not '-3'"),
    ({BORDER_KEY: "1" * 5000}, "not '111111111111"),
    ({SCALE_KEY: "1000"}, "streamrestore.scale must be a whole number from 0 to 16"),
    ({BORDER_MODE_KEY: "wrap"}, "border_mode must be reflect or replicate"),
])  # fmt: skip
def test_lying_metadata_is_refused(cli, image, tmp_path, metadata, words):
    weights = safetensors_with(tmp_path / "liar.safetensors", metadata)
    started = time.perf_counter()
    one_line(cli("run", image, "--chain", f"sr2={weights}", "-o", tmp_path / "out.png"), 12, words)
    assert time.perf_counter() - started < 20


def test_bounded_metadata_still_runs(cli, image, tmp_path):
    weights = safetensors_with(tmp_path / "honest.safetensors", {BORDER_KEY: "10", BORDER_MODE_KEY: "replicate"})
    outcome = cli("run", image, "--chain", f"model={weights}", "-o", tmp_path / "out.png", "-q")
    assert outcome.code == 0, outcome.stderr
    assert cv2.imread(str(tmp_path / "out.png")).shape == (96, 128, 3)


# == 3. Presets: no aliases, no Python tags ==========================================================
def test_alias_bomb_preset_fails_fast_with_one_short_line(cli, image, tmp_path):
    bomb = alias_bomb(tmp_path / "laughs.yaml")
    assert bomb.stat().st_size < 600
    started = time.perf_counter()
    line = one_line(cli("run", image, "--config", bomb, "-o", tmp_path / "out.png"), 2,
                    "laughs.yaml line 2", "anchors and aliases")  # fmt: skip
    assert time.perf_counter() - started < 2 and len(line) < 200


@pytest.mark.parametrize("value", ["!!python/object/apply:os.system ['touch {marker}']",
                                   "!!python/name:os.system", "!local 3"])
def test_python_tag_in_a_preset_is_refused(cli, image, tmp_path, value):
    marker = tmp_path / "tag-marker"
    preset = tmp_path / "tagged.yaml"
    preset.write_text(f"chain:\n  - stage: sharpen\n    amount: {value.format(marker=marker)}\n")
    one_line(cli("run", image, "--config", preset, "-o", tmp_path / "out.png"), 2, "tagged.yaml line 3", "tag")
    assert not marker.exists()


# == 5. NaN and infinity are not option values =======================================================
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999", "NaN"])
def test_non_finite_option_values_are_refused(cli, image, tmp_path, value):
    one_line(cli("run", image, "--chain", f"sharpen:amount={value}", "-o", tmp_path / "out.png"), 2,
             "option 'amount' needs a finite number")  # fmt: skip
    assert not (tmp_path / "out.png").exists()


def test_non_finite_value_in_a_preset_and_a_huge_value_are_short(cli, image, tmp_path):
    preset = tmp_path / "nan.yaml"
    preset.write_text("chain:\n  - stage: nlm\n    strength: .nan\n")
    one_line(cli("run", image, "--config", preset, "-o", tmp_path / "out.png"), 2, "needs a finite number")
    line = one_line(cli("run", image, "--chain", "sharpen:amount=" + "9" * 100_000, "-o", tmp_path / "o.png"), 2)
    assert len(line) < 300


# == 4. Output size and memory are checked before the first frame ====================================
def test_output_over_the_cap_is_refused_before_it_starts(cli, image, tmp_path):
    started = time.perf_counter()
    chain = "resize:scale=8,resize:scale=8,resize:scale=8"
    one_line(cli("run", image, "--chain", chain, "-o", tmp_path / "out.png"), 16,
             "64×48 → 32768×24576 (805.3 MP)", "--max-pixels")  # fmt: skip
    assert time.perf_counter() - started < 10
    clip = make_clip(tmp_path / "clip.mp4", panned_frames(3, 64, 48)).path
    one_line(cli("run", clip, "--chain", chain, "-o", tmp_path / "out.mkv"), 16, "805.3 MP")
    assert sorted(os.listdir(tmp_path)) == ["clip.mp4"]


def test_max_pixels_override_and_padding_counted(cli, image, good_model, tmp_path):
    one_line(cli("run", image, "--chain", "resize:scale=2", "--max-pixels", 10_000, "-o", tmp_path / "a.png"), 16,
             "128×96 (0.0 MP)")  # fmt: skip
    # border=256 around 64×48 makes the network see 576×560 and give 1152×1120 (1.3 MP), the output is 128×96.
    one_line(cli("run", image, "--chain", f"model={good_model}:border=256", "--max-pixels", 200_000, "-o",
                 tmp_path / "b.png"), 16, "frames of 1.3 MP (padding counted)")  # fmt: skip
    assert cli("run", image, "--chain", "resize:scale=2", "--max-pixels", 0, "-o", tmp_path / "c.png", "-q").code == 0


def test_memory_check_refuses_what_would_not_fit(cli, image, tmp_path, monkeypatch):
    monkeypatch.setattr("streamrestore.engine.budget.available_memory", lambda: 4 << 20)  # 4 MiB left
    # 512×384 pixels × 48 bytes: 9 MiB.
    one_line(cli("run", image, "--chain", "resize:scale=8", "-o", tmp_path / "out.png"), 16,
             "64×48 → 512×384 needs about 9 MiB of memory, and 4 MiB is available")  # fmt: skip
    assert os.listdir(tmp_path) == []


# == 6a. Output directory locked before the final rename =============================================
def _lock_command() -> list[str] | None:
    """How to make a directory unwritable for this user: chmod for a normal user; root needs chattr +i."""
    if os.geteuid() != 0:
        return ["chmod", "a-w"]
    probe = Path(os.environ.get("TMPDIR", "/tmp")) / f"streamrestore-chattr-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    try:
        done = subprocess.run(["chattr", "+i", str(probe)], capture_output=True)
        if done.returncode == 0:
            subprocess.run(["chattr", "-i", str(probe)], check=True)
            return ["chattr", "+i"]
    except FileNotFoundError:
        pass
    finally:
        probe.rmdir()
    return None


def _unlock(lock: list[str], folder: Path) -> None:
    subprocess.run(["chmod", "u+w", str(folder)] if lock[0] == "chmod" else ["chattr", "-i", str(folder)], check=True)


LOCKING_RUN = """
import subprocess, sys
import streamrestore.media.output as output
original = output.OutputTarget.commit
def commit(self):
    subprocess.run(sys.argv[1].split() + [sys.argv[2]], check=True)  # the folder becomes unwritable now
    original(self)
output.OutputTarget.commit = commit
from streamrestore.cli import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.slow
def test_directory_made_unwritable_before_the_rename(cli, image, tmp_path):
    lock = _lock_command()
    if lock is None:
        pytest.skip("cannot make a directory unwritable here (root without chattr +i support)")
    folder = tmp_path / "out"
    folder.mkdir()
    try:
        done = subprocess.run([sys.executable, "-c", LOCKING_RUN, " ".join(lock), str(folder), "run", str(image),
                               "--chain", "resize:scale=2", "-o", str(folder / "out.png"), "-q"],
                              capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)  # fmt: skip
    finally:
        _unlock(lock, folder)
    line = one_line(Outcome(done.returncode, done.stdout or "", done.stderr), 10, "cannot move the finished output")
    # Nobody can remove a file from an unwritable directory; its content is gone, and the next run removes it.
    leftovers = list(folder.iterdir())
    assert "was emptied but could not be removed" in line and [p.stat().st_size for p in leftovers] == [0], line
    outcome = cli("run", image, "--chain", "resize:scale=2", "-o", folder / "out.png", "-q")
    assert outcome.code == 0, outcome.stderr
    assert f"removed {leftovers[0]}" in outcome.stderr
    assert sorted(os.listdir(folder)) == ["out.png"]


def test_rename_refused_removes_the_temporary(cli, image, tmp_path, monkeypatch):
    def refuse(source, destination):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("streamrestore.media.output.os.replace", refuse)
    one_line(cli("run", image, "--chain", "resize:scale=2", "-o", tmp_path / "out.png"), 10,
             "cannot move the finished output", "Permission denied")  # fmt: skip
    assert os.listdir(tmp_path) == []


# == 6b. A run killed with SIGKILL: its temporary is removed by the next run to the same place ========
@pytest.mark.slow
def test_stale_temporary_of_a_killed_run_is_removed(cli, tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", panned_frames(120, 320, 240)).path
    target = tmp_path / "out.mkv"
    process = subprocess.Popen([*command(), "run", str(clip), "--chain", "nlm", "-o", str(target), "-q"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    temporary = tmp_path / f".out.streamrestore-{process.pid}.mkv"
    try:
        deadline = time.monotonic() + SUBPROCESS_TIMEOUT
        while not temporary.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert temporary.exists(), "the run never started writing"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL and temporary.exists()
    outcome = cli("run", clip, "--chain", "identity", "-o", target, "-q")
    assert outcome.code == 0, outcome.stderr
    assert outcome.lines == [f"streamrestore: removed {temporary}, the temporary output of an earlier run "
                             f"(process {process.pid}) that was killed before it finished"]  # fmt: skip
    assert sorted(os.listdir(tmp_path)) == ["clip.mp4", "out.mkv"]


def test_temporary_of_a_live_process_is_kept(cli, image, tmp_path):
    # PID 1 is always alive: its file may be another run writing right now.
    other = tmp_path / ".out.streamrestore-1.png"
    other.write_bytes(b"in progress")
    outcome = cli("run", image, "--chain", "identity", "-o", tmp_path / "out.png", "-q")
    assert outcome.code == 0 and outcome.stderr == ""
    assert other.read_bytes() == b"in progress"


def test_the_temporary_pattern_matches_only_its_destination(tmp_path):
    from streamrestore.media.leftovers import remove_stale_temporaries, temporary_name

    dead = _dead_pid()
    mine = tmp_path / temporary_name(tmp_path / "out.mkv", dead)
    others = [tmp_path / temporary_name(tmp_path / "out.mp4", dead), tmp_path / temporary_name(tmp_path / "x.mkv", dead)]
    for path in (mine, *others):
        path.write_bytes(b"")
    assert remove_stale_temporaries(tmp_path / "out.mkv") == [mine]
    assert all(path.exists() for path in others)


def _dead_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def test_images_are_restored_normally(cli, image, good_model, tmp_path):
    # The checks above refuse nothing a normal run does: a checkpoint, a chain, and the default cap.
    outcome = cli("run", image, "--chain", f"sr2={good_model},sharpen:amount=0.5", "-o", tmp_path / "out.png", "-q")
    assert outcome.code == 0, outcome.stderr
    restored = cv2.imread(str(tmp_path / "out.png"))
    assert restored.shape == (96, 128, 3) and np.ptp(restored) > 0
