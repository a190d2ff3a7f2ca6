"""Streams, network input, latency, progress, output handling, Ctrl-C, bad input and the CLI's messages.

Each test guards one promise of the command line and the streaming path and fails if it breaks:
pipes in and out, ``tcp://``/``http://`` inputs with a timeout, output that starts before the input
ends, bounded memory, the progress bar, atomic output (nothing left behind by a failed, full or
interrupted run), and one line plus a distinct exit code for every user error. Clips are tiny
synthetic ones made here with PyAV; end-to-end cases run the installed ``streamrestore`` command.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import http.server
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from importlib.metadata import entry_points
from pathlib import Path

import av
import av.error
import numpy as np
import pytest

from streamrestore.engine import threads
from streamrestore.cli import main
from streamrestore.errors import DiskFullError, MediaError, StageFailedError, TruncatedInputError
from streamrestore.frames import FrameBatch
from streamrestore.media.reader import MediaReader
from streamrestore.restore import OutputSettings, RunSettings, restore_video
from streamrestore.presets import available_presets
from streamrestore.registry import Registry, default_aliases, spec_from_class
from streamrestore.stage import Capabilities, Stage

RATE = 24
SUBPROCESS_TIMEOUT = 90


# -- clips -----------------------------------------------------------------------------------------
def make_clip(
    path: Path,
    fmt: str | None = None,
    frames: int = 24,
    size: tuple[int, int] = (64, 48),
    audio: bool = True,
    video: bool = True,
    options: dict[str, str] | None = None,
    noise: bool = False,
) -> Path:
    """H.264 (+ AAC mono) clip: a gradient with a moving bar, or random noise (large, incompressible)."""
    width, height = size
    rng = np.random.default_rng(7)
    with av.open(str(path), "w", format=fmt, options=options or {}) as container:
        if video:
            stream = container.add_stream("libx264", rate=RATE, options={"preset": "ultrafast", "crf": "10"})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if audio:
            sound = container.add_stream("aac", rate=48000)
            sound.layout = "mono"
        samples = 0
        for index in range(frames):
            if video:
                if noise:
                    picture = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                else:
                    picture = np.zeros((height, width, 3), np.uint8)
                    picture[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)
                    picture[..., 1] = (index * 9) % 256
                    picture[:, (index * 3) % width] = 255
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                frame.pts, frame.time_base = index, Fraction(1, RATE)
                container.mux(stream.encode(frame))
            while audio and samples < (index + 1) * 48000 // RATE:
                chunk = av.AudioFrame.from_ndarray(np.full((1, 1024), 0.1, np.float32), format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 48000, samples
                samples += 1024
                container.mux(sound.encode(chunk))
        if video:
            container.mux(stream.encode(None))
        if audio:
            container.mux(sound.encode(None))
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "ts": make_clip(folder / "clip.ts", "mpegts"),
        "mkv": make_clip(folder / "clip.mkv"),
        "mp4": make_clip(folder / "clip.mp4"),
        "fragmented": make_clip(folder / "fragmented.mp4", "mp4", options={"movflags": "frag_keyframe+empty_moov"}),
        # Large enough that the media data does not fit FFmpeg's read buffer ahead of the index.
        "plain_big": make_clip(folder / "plain_big.mp4", frames=12, size=(160, 120), audio=False, noise=True),
        "faststart": make_clip(folder / "faststart.mp4", "mp4", frames=48, size=(160, 120), noise=True,
                               options={"movflags": "faststart"}),
        "audio_only": make_clip(folder / "audio_only.mka", video=False),
        "long_ts": make_clip(folder / "long.ts", "mpegts", frames=120),
        "slow": make_clip(folder / "slow.mp4", frames=120, size=(320, 240), audio=False),
    }


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


@pytest.fixture
def cli(capsys):
    """``streamrestore.cli.main`` in this process (faster than a subprocess); returns code and output."""
    previous = signal.getsignal(signal.SIGTERM)  # main() installs its own SIGTERM handler

    def run(*argv: object) -> Outcome:
        capsys.readouterr()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as stop:  # argparse's own errors
            code = stop.code
        out, err = capsys.readouterr()
        return Outcome(code, out, err)

    yield run
    signal.signal(signal.SIGTERM, previous)


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


# == 1. standard input and output ==================================================================
@pytest.mark.parametrize("kind", ["ts", "mkv", "fragmented"])
def test_stdin_to_stdout_matroska(clips, tmp_path, kind):
    # MPEG-TS carries its AAC as ADTS (no extradata): Matroska on a pipe needs it in the header.
    out = tmp_path / "out.mkv"
    done = run_command("run", "-", "--chain", "resize:scale=2", "-o", "-", "--format", "matroska", "--preset", "ultrafast",
                       "-q", stdin=clips[kind], stdout=out)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    source, restored = decode(clips[kind]), decode(out)
    assert restored.frames == source.frames == 24
    assert (restored.width, restored.height) == (2 * source.width, 2 * source.height)
    assert restored.audio_samples > 0
    with av.open(str(out)) as container:
        assert container.format.name.startswith("matroska")


def test_stdin_mpegts_to_fragmented_mp4_on_stdout(clips, tmp_path):
    # The fragmented MP4 muxer refuses ADTS packets outright; the writer must convert them.
    out = tmp_path / "out.mp4"
    done = run_command("run", "-", "--chain", "resize:scale=2", "-o", "-", "--format", "mp4", "--preset", "ultrafast", "-q",
                       stdin=clips["ts"], stdout=out)
    assert done.returncode == 0, done.stderr
    restored = decode(out)
    assert (restored.frames, restored.width) == (24, 128)
    assert restored.audio_samples == decode(clips["ts"]).audio_samples


def test_plain_mp4_on_stdin_says_why_and_what_to_send(clips):
    done = run_command("run", "-", "--chain", "resize:scale=2", "-o", "-", "-q", stdin=clips["plain_big"])
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


def test_tcp_input(clips, tmp_path):
    server = OneShotServer(clips["ts"].read_bytes())
    started = time.monotonic()
    try:
        report = restore_video(server.url, str(tmp_path / "out.mkv"), "resize:scale=2", RunSettings(timeout=5), OutputSettings(preset="ultrafast"))
    finally:
        server.stop()
    assert time.monotonic() - started < 30
    assert report.frames == 24
    assert decode(tmp_path / "out.mkv").frames == 24


def test_http_input(clips, tmp_path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(clips["ts"].parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{clips['ts'].name}"
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


def test_stream_that_stalls_midway_times_out_and_leaves_nothing(clips, tmp_path):
    data = clips["long_ts"].read_bytes()
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
@pytest.mark.parametrize("chain", ["resize:scale=2", "tdenoise"])
def test_output_starts_before_the_input_ends(clips, tmp_path, chain):
    """Feed half of an MPEG-TS through a pipe and hold the rest back: restored output must already flow.

    ``--preset ultrafast``: x264's own lookahead (40 frames at the default preset) is the encoder's
    latency by design; this measures the pipeline's. Measured here: FFmpeg needs ~23 frames to probe
    the stream, the first output bytes follow within 1 (sr2) to 5 (tdenoise) more frames.
    """
    data = clips["long_ts"].read_bytes()
    with av.open(str(clips["long_ts"])) as container:
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


def test_frames_in_flight_are_bounded(clips, tmp_path, monkeypatch):
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
    source = make_clip(tmp_path / "long.mkv", frames=200, size=(32, 32), audio=False)
    report = restore_video(str(source), str(tmp_path / "out.mkv"), "slow", RunSettings(batch_size=settings.batch_size),
                           OutputSettings(preset="ultrafast"), registry=stage_registry(), on_frames=on_frames)
    assert report.frames == counts["decoded"] == counts["written"] == 200
    # Held at once, at most: the decoded queue, the frame the decoder is putting, the batch in the
    # stages, the one waiting to be queued, the restored queue and the batch being encoded.
    bound = settings.queue_frames + 1 + (settings.queue_batches + 3) * settings.batch_size
    assert counts["peak"] <= bound
    assert counts["peak"] >= settings.queue_frames  # the decoder did run ahead: the bound was reached


# == 4. progress ===================================================================================
def test_progress_bar_shows_rate_and_total(clips, cli):
    outcome = cli("run", clips["mp4"], "--chain", "identity", "-o", clips["mp4"].parent / "progress.mkv",
                  "--preset", "ultrafast")
    assert outcome.code == 0, outcome.stderr
    assert "frame/s" in outcome.stderr
    assert "/24 [" in outcome.stderr  # tqdm: "n/total [elapsed..."
    assert "restoring" in outcome.stderr and "wrote " in outcome.stderr
    # The expected duration is announced once, after the first batch, on a line of its own.
    expected = [line for line in outcome.stderr.replace("\r", "\n").splitlines() if line.startswith("expected: ")]
    assert len(expected) == 1 and " for 24 frames (" in expected[0] and "s/frame so far)" in expected[0]


def test_quiet_prints_nothing(clips, cli, tmp_path):
    outcome = cli("run", clips["mp4"], "--chain", "identity", "-o", tmp_path / "quiet.mkv", "--preset", "ultrafast",
                  "--quiet")
    assert outcome.code == 0
    assert outcome.stderr == "" and outcome.stdout == ""


def test_mpegts_progress_has_an_estimated_total(clips, cli, tmp_path):
    # MPEG-TS announces no frame count; the total comes from duration × frame rate.
    outcome = cli("run", clips["ts"], "--chain", "identity", "-o", tmp_path / "ts.mkv", "--preset", "ultrafast")
    assert outcome.code == 0, outcome.stderr
    totals = {int(t) for t in re.findall(r"\d+/(\d+) \[", outcome.stderr)}
    assert totals == {24}, outcome.stderr


# == 5. output handling ============================================================================
def test_default_output_name_beside_the_input(clips, cli, tmp_path):
    source = copy_to(clips["mp4"], tmp_path, "holiday.mp4")
    outcome = cli("run", source, "--chain", "identity", "--preset", "ultrafast", "-q")
    assert outcome.code == 0, outcome.stderr
    assert sorted(os.listdir(tmp_path)) == ["holiday.mp4", "holiday.restored.mp4"]
    assert decode(tmp_path / "holiday.restored.mp4").frames == 24


def test_explicit_output_path(clips, cli, tmp_path):
    target = tmp_path / "elsewhere" / "result.mkv"
    target.parent.mkdir()
    outcome = cli("run", clips["mp4"], "--chain", "resize:scale=2", "-o", target, "--preset", "ultrafast", "-q")
    assert outcome.code == 0, outcome.stderr
    assert os.listdir(target.parent) == ["result.mkv"]
    assert decode(target).width == 128


def test_existing_output_needs_overwrite(clips, cli, tmp_path):
    target = tmp_path / "out.mkv"
    target.write_bytes(b"keep me")
    refused = cli("run", clips["mp4"], "--chain", "identity", "-o", target, "-q")
    assert_one_line(refused, 10, "exists", "--overwrite")
    assert target.read_bytes() == b"keep me"
    replaced = cli("run", clips["mp4"], "--chain", "identity", "-o", target, "--overwrite", "--preset", "ultrafast",
                   "-q")
    assert replaced.code == 0, replaced.stderr
    assert decode(target).frames == 24
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("spelling", ["same", "dotted"])
def test_output_equal_to_input_is_refused(clips, cli, tmp_path, spelling):
    source = copy_to(clips["mp4"], tmp_path)
    before = sha256(source)
    target = source if spelling == "same" else tmp_path / "." / ".." / tmp_path.name / source.name
    outcome = cli("run", source, "--chain", "identity", "-o", target, "--overwrite", "-q")
    assert_one_line(outcome, 10, "is the input")
    assert sha256(source) == before
    assert os.listdir(tmp_path) == [source.name]


@pytest.mark.parametrize("where", ["parent_is_a_file", "proc"])
def test_unwritable_output_directory(clips, cli, tmp_path, where):
    # Tests may run as root, whom permissions do not stop: a parent that is a regular file, and /proc
    # (where nothing can be created, root or not), are unwritable for everyone.
    if where == "parent_is_a_file":
        (tmp_path / "a_file").write_text("not a directory")
        target = tmp_path / "a_file" / "out.mkv"
    else:
        target = Path("/proc") / f"streamrestore-test-{os.getpid()}.mkv"
    outcome = cli("run", clips["mp4"], "--chain", "identity", "-o", target, "-q")
    assert_one_line(outcome, 10)
    assert not target.exists()


def test_stage_failure_leaves_nothing(clips, tmp_path):
    target = tmp_path / "out.mkv"
    with pytest.raises(StageFailedError, match="boom on batch 3"):
        restore_video(str(clips["mp4"]), str(target), "fails", output=OutputSettings(preset="ultrafast"), registry=stage_registry())
    assert os.listdir(tmp_path) == []


def test_stage_failure_on_the_command_line(clips, cli, tmp_path, monkeypatch):
    monkeypatch.setattr("streamrestore.restore.Registry", stage_registry)
    outcome = cli("run", clips["mp4"], "--chain", "fails", "-o", tmp_path / "out.mkv", "-q")
    assert_one_line(outcome, 13, "'fails'", "boom on batch 3")
    assert os.listdir(tmp_path) == []


def test_truncated_input_fails_at_the_end_and_leaves_nothing(clips, cli, tmp_path):
    # The frames that exist are restored and written first; the shortfall shows only at the end.
    source = tmp_path / "cut.mp4"
    source.write_bytes(clips["faststart"].read_bytes()[: clips["faststart"].stat().st_size * 2 // 3])
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


def test_disk_full_exits_11_and_leaves_nothing(clips, cli, small_disk):
    folder, how = small_disk
    # ffv1 at twice the size: far more than 16 KiB of output.
    outcome = cli("run", clips["mkv"], "--chain", "resize:scale=2", "--codec", "ffv1", "-o", folder / "out.mkv", "-q")
    assert_one_line(outcome, 11, "disk full")
    assert os.listdir(folder) == [], how


def test_disk_full_injected_at_the_mux(clips, tmp_path, monkeypatch):
    # Always injected, whatever the machine allows: ENOSPC from any mux call becomes DiskFullError.
    inject_disk_full(monkeypatch, room=5)
    with pytest.raises(DiskFullError) as raised:
        restore_video(str(clips["mkv"]), str(tmp_path / "out.mkv"), "resize:scale=2", output=OutputSettings(preset="ultrafast"))
    assert raised.value.exit_code == 11
    assert os.listdir(tmp_path) == []


# == 6. Ctrl-C =====================================================================================
@pytest.mark.parametrize("when", ["as_the_bar_appears", "mid_run"])
def test_ctrl_c_stops_cleanly(clips, tmp_path, when):
    """SIGINT as the bar is drawn (the workers are starting) or after frames went through: 130, one line."""
    target = tmp_path / "out.mkv"
    # A shell running a job in the background ignores SIGINT for it, and the child inherits that:
    # restore the default, as a terminal's foreground job has it.
    process = subprocess.Popen([*command(), "run", str(clips["slow"]), "--chain", "nlm", "-o", str(target)],
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


def test_interrupt_while_the_workers_start_stops_the_first_one(clips, tmp_path, monkeypatch):
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
        restore_video(str(clips["mp4"]), str(tmp_path / "out.mkv"), "identity")
    alive = started[0].is_alive()
    started[0].join(10)
    assert stopped_in_time == [True]
    assert not alive
    assert os.listdir(tmp_path) == []


def test_interrupt_while_the_bar_is_drawn_keeps_the_message_on_its_own_line(clips, cli, tmp_path, monkeypatch):
    import tqdm.std

    draw = tqdm.std.tqdm.refresh

    def refresh(self, *args, **kwargs):
        draw(self, *args, **kwargs)
        raise KeyboardInterrupt  # after the bar is on screen, before tqdm() returns

    monkeypatch.setattr(tqdm.std.tqdm, "refresh", refresh)
    outcome = cli("run", clips["mp4"], "--chain", "identity", "-o", tmp_path / "out.mkv")
    assert outcome.code == 130
    screen_lines = re.split(r"[\r\n]", outcome.stderr)
    assert "streamrestore: error: interrupted; the partial output was removed" in screen_lines, outcome.stderr
    assert os.listdir(tmp_path) == []


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


def test_audio_only_file(clips, cli, tmp_path):
    assert_one_line(cli("run", clips["audio_only"], "--chain", "denoise", "-o", tmp_path / "o.mkv", "-q"), 5,
                    "no video stream")


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_truncated_files_give_stable_codes(clips, cli, tmp_path, fraction):
    # Index at the front (faststart): the missing frames are known, 6. Plain MP4 cut short: its
    # index at the end is gone, so it is not a readable file at all, 4. Same answer at every cut.
    for name, code, words in (("faststart", 6, ("truncated",)), ("plain_big", 4, ("not a readable media file",))):
        data = clips[name].read_bytes()
        source = tmp_path / f"cut_{name}.mp4"
        source.write_bytes(data[: int(len(data) * fraction)])
        assert_one_line(cli("run", source, "--chain", "identity", "-o", tmp_path / "o.mkv", "-q"), code, *words)
    assert leftovers(tmp_path) == [] and not (tmp_path / "o.mkv").exists()


def test_unknown_stage_suggests_the_closest(clips, cli):
    assert_one_line(cli("run", clips["mp4"], "--chain", "denoize", "-q"), 8, "'denoize'", "did you mean 'denoise'")


def test_bad_option_value_names_the_option(clips, cli):
    assert_one_line(cli("run", clips["mp4"], "--chain", "nlm:strength=abc", "-q"), 2, "'strength'", "'abc'")


def test_unknown_option_names_it_and_the_known_ones(clips, cli):
    assert_one_line(cli("run", clips["mp4"], "--chain", "nlm:foo=1", "-q"), 2, "'foo'", "strength")


@pytest.mark.parametrize("crf", ["99", "-1"])
def test_bad_crf(clips, cli, tmp_path, crf):
    assert_one_line(cli("run", clips["mp4"], "--chain", "identity", f"--crf={crf}", "-o", tmp_path / "o.mkv", "-q"),
                    2, "--crf")
    assert os.listdir(tmp_path) == []


def test_crf_that_is_not_a_number(clips, cli):
    outcome = cli("run", clips["mp4"], "--chain", "identity", "--crf", "abc", "-q")
    assert outcome.code == 2  # argparse's own message: usage, then the error naming --crf
    assert "--crf" in outcome.lines[-1] and "'abc'" in outcome.lines[-1]
    assert "Traceback" not in outcome.stderr


@pytest.mark.parametrize(("text", "key", "line"), [
    ("chain:\n  - sr2\ncolour: red\n", "'colour'", "line 3"),
    ("description: x\nchain:\n  - sr2\noutput:\n  codec: libx264\n  speed: fast\n", "'speed'", "line 6"),
])
def test_preset_with_a_bad_key(clips, cli, tmp_path, text, key, line):
    preset = tmp_path / "mine.yaml"
    preset.write_text(text)
    assert_one_line(cli("run", clips["mp4"], "--config", preset, "-q"), 2, "mine.yaml", line, key)


def test_debug_shows_the_traceback(cli, tmp_path):
    outcome = cli("run", tmp_path / "nope.mp4", "--chain", "denoise", "-q", "--debug")
    assert outcome.code == 3
    assert "Traceback" in outcome.stderr and "InputNotFoundError" in outcome.stderr
    assert outcome.lines[-1].startswith("streamrestore: error: input not found")


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
    assert {"nlm-denoise", "nlm-temporal", "unsharp", "resize", "identity"} <= builtins
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
