"""Ctrl-C and SIGTERM: the command stops cleanly at any moment, removes its partial output and says so on one line.

Clips: the ``stream_clips`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time

import pytest

from streamrestore.engine import threads
from streamrestore.restore import restore_video

from support.cli import SUBPROCESS_TIMEOUT, command


# == 6. Ctrl-C =====================================================================================
@pytest.mark.slow
@pytest.mark.parametrize("when", ["as_the_bar_appears", "mid_run"])
def test_ctrl_c_stops_cleanly(stream_clips, tmp_path, when):
    """SIGINT as the bar is drawn (the workers are starting) or after frames went through: 130, one line."""
    target = tmp_path / "out.mkv"
    # A shell running a job in the background ignores SIGINT for it, and the child inherits that:
    # restore the default, as a terminal's foreground job has it.
    process = subprocess.Popen([*command(), "run", str(stream_clips["slow"]), "--chain", "nlm", "-o", str(target)],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def ready(text: bytes) -> bool:
        if when == "as_the_bar_appears":
            return b"restoring" in text
        return any(int(done) >= 8 for done in re.findall(rb"(\d+)/120 \[", text))

    received = b""
    try:
        deadline = time.monotonic() + 60
        while not ready(received) and time.monotonic() < deadline and process.poll() is None:
            received += process.stderr.read1(4096)
        assert ready(received), received
        process.send_signal(signal.SIGINT)
        received += process.stderr.read()
        code = process.wait(SUBPROCESS_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = received.decode()
    assert code == 130, stderr  # not -11: workers must be stopped before the containers close
    assert "Traceback" not in stderr
    messages = [line for line in re.split(r"[\r\n]", stderr) if "streamrestore:" in line]
    assert messages == ["streamrestore: error: interrupted; the partial output was removed"], stderr
    assert os.listdir(tmp_path) == []


def test_interrupt_while_the_workers_start_stops_the_first_one(stream_clips, tmp_path, monkeypatch):
    """Ctrl-C between starting the decoder and the encoder: the decoder must be stopped and joined
    before restore_video closes the containers under it (it used to crash FFmpeg: exit -11)."""
    started: list[threading.Thread] = []
    stopped_in_time: list[bool] = []
    original = threads._Workers.worker

    def worker(pipe, name, body):
        if started:
            raise KeyboardInterrupt  # arrives while the second worker starts

        def decoder_held_back() -> None:
            stopped_in_time.append(pipe.stop.wait(5))
            if stopped_in_time[0]:
                body()  # meets the stop at its first frame, as a real decoder does

        started.append(original(pipe, name, decoder_held_back))
        return started[0]

    monkeypatch.setattr(threads._Workers, "worker", worker)
    with pytest.raises(KeyboardInterrupt):
        restore_video(str(stream_clips["mp4"]), str(tmp_path / "out.mkv"), "identity")
    alive = started[0].is_alive()
    started[0].join(10)
    assert stopped_in_time == [True]
    assert not alive
    assert os.listdir(tmp_path) == []


def test_interrupt_while_the_bar_is_drawn_keeps_the_message_on_its_own_line(stream_clips, cli, tmp_path, monkeypatch):
    import tqdm.std

    draw = tqdm.std.tqdm.refresh

    def refresh(self, *args, **kwargs):
        draw(self, *args, **kwargs)
        raise KeyboardInterrupt  # after the bar is on screen, before tqdm() returns

    monkeypatch.setattr(tqdm.std.tqdm, "refresh", refresh)
    outcome = cli("run", stream_clips["mp4"], "--chain", "identity", "-o", tmp_path / "out.mkv")
    assert outcome.code == 130
    screen_lines = re.split(r"[\r\n]", outcome.stderr)
    assert "streamrestore: error: interrupted; the partial output was removed" in screen_lines, outcome.stderr
    assert os.listdir(tmp_path) == []
