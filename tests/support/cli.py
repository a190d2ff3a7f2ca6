"""Helpers for the command-line tests (tests/test_cli_*.py): running the installed command, decoding what it
wrote, one-line error checks, temporary outputs left behind, and two stages injected through a registry."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import av
import av.error

from streamrestore.frames import FrameBatch
from streamrestore.registry import Registry, spec_from_class
from streamrestore.stage import Capabilities, Stage


RATE = 24
SUBPROCESS_TIMEOUT = 90


def copy_to(clip: Path, folder: Path, name: str | None = None) -> Path:
    target = folder / (name or clip.name)
    shutil.copyfile(clip, target)
    return target


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Decoded:
    frames: int
    width: int
    height: int
    audio_samples: int


def decode(path: Path) -> Decoded:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        sizes = [(f.width, f.height) for f in container.decode(video)]
    with av.open(str(path)) as container:
        samples = sum(f.samples for f in container.decode(audio=0)) if container.streams.audio else 0
    return Decoded(len(sizes), sizes[0][0], sizes[0][1], samples)


def leftovers(folder: Path) -> list[str]:
    """Temporary outputs the library left behind (``.NAME.streamrestore-PID.EXT``)."""
    return [name for name in os.listdir(folder) if ".streamrestore-" in name]


# -- running the command ---------------------------------------------------------------------------
def command() -> list[str]:
    script = Path(sys.executable).with_name("streamrestore")
    return [str(script)] if script.exists() else [sys.executable, "-m", "streamrestore.cli"]


def run_command(*args: object, stdin: Path | None = None, stdout: Path | None = None) -> subprocess.CompletedProcess:
    """The installed ``streamrestore`` in a subprocess, with files as its standard input and output."""
    with open(stdin or os.devnull, "rb") as source, open(stdout or os.devnull, "wb") as sink:
        return subprocess.run([*command(), *map(str, args)], stdin=source, stdout=sink, stderr=subprocess.PIPE,
                              timeout=SUBPROCESS_TIMEOUT, text=True)


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines()


def assert_one_line(outcome: Outcome, code: int, *words: str) -> str:
    """A failure: exactly the expected code, one stderr line, no traceback, the given words in it."""
    assert outcome.code == code, outcome.stderr
    assert "Traceback" not in outcome.stderr
    assert len(outcome.lines) == 1, outcome.stderr
    line = outcome.lines[0]
    assert line.startswith("streamrestore: error: "), line
    for word in words:
        assert word in line, line
    return line


# -- stages injected through a registry ------------------------------------------------------------
class Slow(Stage):
    summary = "identity that takes its time (test)"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    def process(self, batch: FrameBatch) -> FrameBatch:
        time.sleep(0.02)
        return batch.with_pixels(batch.pixels)


class FailsOnThirdBatch(Stage):
    summary = "identity that raises on its third batch (test)"

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        self.calls = 0

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    def process(self, batch: FrameBatch) -> FrameBatch:
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("boom on batch 3")
        return batch.with_pixels(batch.pixels)


def stage_registry(**aliases_for) -> Registry:
    """The default registry plus two test stages (takes Registry's content/accelerated arguments)."""
    return Registry(extra=[spec_from_class("slow", Slow, "tests"),
                           spec_from_class("fails", FailsOnThirdBatch, "tests")], **aliases_for)
