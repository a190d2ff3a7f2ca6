"""Streams in and out of the command: pipes, ``tcp://``/``http://`` input with a timeout, and bounded latency and memory.

Each test guards one promise of the streaming path and fails if it breaks: standard input and output, network
input (127.0.0.1 only) that times out when silent or stalled, output that starts before the input ends, and
frames in flight bounded. Clips: the ``stream_clips`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import functools
import http.server
import os
import socket
import subprocess
import threading
import time

import av
import av.error
import pytest

from streamrestore.engine import threads
from streamrestore.errors import MediaError, TruncatedInputError
from streamrestore.media.reader import MediaReader
from streamrestore.restore import OutputSettings, RunSettings, restore_video

from support.cli import SUBPROCESS_TIMEOUT, command, decode, run_command, stage_registry
from support.media import make_stream_clip


# == 1. standard input and output ==================================================================
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ts", "mkv", "fragmented"])
def test_stdin_to_stdout_matroska(stream_clips, tmp_path, kind):
    # MPEG-TS carries its AAC as ADTS (no extradata): Matroska on a pipe needs it in the header.
    out = tmp_path / "out.mkv"
    done = run_command("run", "-", "--chain", "resize:scale=2", "-o", "-", "--format", "matroska", "--preset", "ultrafast",
                       "-q", stdin=stream_clips[kind], stdout=out)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    source, restored = decode(stream_clips[kind]), decode(out)
    assert restored.frames == source.frames == 24
    assert (restored.width, restored.height) == (2 * source.width, 2 * source.height)
    assert restored.audio_samples > 0
    with av.open(str(out)) as container:
        assert container.format.name.startswith("matroska")


@pytest.mark.slow
def test_stdin_mpegts_to_fragmented_mp4_on_stdout(stream_clips, tmp_path):
    # The fragmented MP4 muxer refuses ADTS packets outright; the writer must convert them.
    out = tmp_path / "out.mp4"
    done = run_command("run", "-", "--chain", "resize:scale=2", "-o", "-", "--format", "mp4", "--preset", "ultrafast", "-q",
                       stdin=stream_clips["ts"], stdout=out)
    assert done.returncode == 0, done.stderr
    restored = decode(out)
    assert (restored.frames, restored.width) == (24, 128)
    assert restored.audio_samples == decode(stream_clips["ts"]).audio_samples


@pytest.mark.slow
def test_plain_mp4_on_stdin_says_why_and_what_to_send(stream_clips):
    done = run_command("run", "-", "--chain", "resize:scale=2", "-o", "-", "-q", stdin=stream_clips["plain_big"])
    assert done.returncode == 4
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "MPEG-TS" in lines[0] and "fragmented" in lines[0] and "index" in lines[0]


# == 2. network input (127.0.0.1 only) =============================================================
class OneShotServer:
    """Accepts one TCP connection on 127.0.0.1, sends ``data`` (then stalls if asked), and stops."""

    def __init__(self, data: bytes, stall_after: int | None = None) -> None:
        self.data = data if stall_after is None else data[:stall_after]
        self.stall = stall_after is not None
        self.release = threading.Event()
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(20)
        self.url = f"tcp://127.0.0.1:{self.socket.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            connection, _ = self.socket.accept()
            with connection:
                connection.sendall(self.data)
                if self.stall:
                    self.release.wait(20)
        except OSError:
            pass
        finally:
            self.socket.close()

    def stop(self) -> None:
        self.release.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def test_tcp_input(stream_clips, tmp_path):
    server = OneShotServer(stream_clips["ts"].read_bytes())
    started = time.monotonic()
    try:
        report = restore_video(server.url, str(tmp_path / "out.mkv"), "resize:scale=2", RunSettings(timeout=5), OutputSettings(preset="ultrafast"))
    finally:
        server.stop()
    assert time.monotonic() - started < 30
    assert report.frames == 24
    assert decode(tmp_path / "out.mkv").frames == 24


def test_http_input(stream_clips, tmp_path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(stream_clips["ts"].parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{stream_clips['ts'].name}"
        report = restore_video(url, str(tmp_path / "out.mkv"), "resize:scale=2", RunSettings(timeout=5), OutputSettings(preset="ultrafast"))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - started < 30
    assert report.frames == decode(tmp_path / "out.mkv").frames == 24


def test_silent_server_times_out(tmp_path):
    server = OneShotServer(b"", stall_after=0)
    started = time.monotonic()
    try:
        with pytest.raises(MediaError, match="--timeout") as raised:
            restore_video(server.url, str(tmp_path / "out.mkv"), "resize:scale=2", RunSettings(timeout=1))
    finally:
        server.stop()
    assert time.monotonic() - started < 10
    assert raised.value.exit_code == 4
    assert os.listdir(tmp_path) == []


def test_stream_that_stalls_midway_times_out_and_leaves_nothing(stream_clips, tmp_path):
    data = stream_clips["long_ts"].read_bytes()
    server = OneShotServer(data, stall_after=len(data) // 2)
    started = time.monotonic()
    try:
        with pytest.raises(TruncatedInputError, match="no data for 1 s"):
            restore_video(server.url, str(tmp_path / "out.mkv"), "resize:scale=2", RunSettings(timeout=1), OutputSettings(preset="ultrafast"))
    finally:
        server.stop()
    assert time.monotonic() - started < 15
    assert os.listdir(tmp_path) == []


# == 3. bounded latency and bounded memory =========================================================
@pytest.mark.slow
@pytest.mark.parametrize("chain", ["resize:scale=2", "tdenoise"])
def test_output_starts_before_the_input_ends(stream_clips, tmp_path, chain):
    """Feed half of an MPEG-TS through a pipe and hold the rest back: restored output must already flow.

    ``--preset ultrafast``: x264's own lookahead (40 frames at the default preset) is the encoder's
    latency by design; this measures the pipeline's. Measured here: FFmpeg needs ~23 frames to probe
    the stream, the first output bytes follow within 1 (sr2) to 5 (tdenoise) more frames.
    """
    data = stream_clips["long_ts"].read_bytes()
    with av.open(str(stream_clips["long_ts"])) as container:
        positions = [p.pos for p in container.demux(video=0) if p.size]
    half = positions[len(positions) // 2]  # 60 of 120 frames
    out = tmp_path / "out.ts"
    with open(out, "wb") as sink:
        process = subprocess.Popen([*command(), "run", "-", "--chain", chain, "-o", "-", "--preset", "ultrafast",
                                    "-q"], stdin=subprocess.PIPE, stdout=sink, stderr=subprocess.PIPE)
        try:
            process.stdin.write(data[:half])
            process.stdin.flush()
            deadline = time.monotonic() + 60
            while out.stat().st_size == 0 and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            flowing = out.stat().st_size
            assert process.poll() is None, process.stderr.read()
            assert flowing > 0, "no output while the input was still open"
            process.stdin.write(data[half:])
            process.stdin.close()
            assert process.wait(SUBPROCESS_TIMEOUT) == 0, process.stderr.read()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    restored = decode(out)
    assert restored.frames == 120
    assert restored.width == (128 if chain == "resize:scale=2" else 64)
    assert restored.audio_samples > 0


def test_frames_in_flight_are_bounded(stream_clips, tmp_path, monkeypatch):
    """A slow stage must not let the decoder run ahead: memory stays flat however long the clip."""
    settings = threads.StreamSettings(batch_size=4)
    counts = {"decoded": 0, "written": 0, "peak": 0}
    lock = threading.Lock()
    original = MediaReader.frames

    def counting_frames(self, on_packet):
        for frame in original(self, on_packet):
            with lock:
                counts["decoded"] += 1
                counts["peak"] = max(counts["peak"], counts["decoded"] - counts["written"])
            yield frame

    def on_frames(count: int) -> None:
        with lock:
            counts["written"] += count

    monkeypatch.setattr(MediaReader, "frames", counting_frames)
    source = make_stream_clip(tmp_path / "long.mkv", frames=200, size=(32, 32), audio=False)
    report = restore_video(str(source), str(tmp_path / "out.mkv"), "slow", RunSettings(batch_size=settings.batch_size),
                           OutputSettings(preset="ultrafast"), registry=stage_registry(), on_frames=on_frames)
    assert report.frames == counts["decoded"] == counts["written"] == 200
    # Held at once, at most: the decoded queue, the frame the decoder is putting, the batch in the
    # stages, the one waiting to be queued, the restored queue and the batch being encoded.
    bound = settings.queue_frames + 1 + (settings.queue_batches + 3) * settings.batch_size
    assert counts["peak"] <= bound
    assert counts["peak"] >= settings.queue_frames  # the decoder did run ahead: the bound was reached
