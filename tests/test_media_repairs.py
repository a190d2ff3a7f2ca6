"""Valid files that were refused or crashed, the encoder that follows the source, and no exit 70 for any input.

Each test makes the kind of file archives hold (an MP4 cut with an edit list, MPEG-TS files joined with
``cat``, segments of two sizes, an animated GIF, HEVC/HDR10, ProRes 4444, 12-bit FFV1, broken files) with
FFmpeg's command line or PyAV, runs ``streamrestore run`` on it and checks what a user would check:
the streams ffprobe lists, frame counts and times, audio packet hashes, exit codes and the one-line
messages.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from media_factory import mean_abs_error, packets, player_rgb, video_frames, video_times
from streamrestore.cli import main
from streamrestore.errors import MediaError
from streamrestore.media.reader import MediaReader
from streamrestore.media.writer import EncodeSettings, MediaWriter, OutputVideo

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs Debian's ffmpeg command (.ci/run installs it)")

AAC_FRAME = Fraction(1024, 44100)  # one AAC frame of FFmpeg's `sine` source


def ffmpeg(*args: object) -> None:
    argv = [a if isinstance(a, bytes) else str(a) for a in args]
    subprocess.run(["ffmpeg", "-v", "error", "-y", *argv], check=True, timeout=120)


def ffprobe(path: Path, *entries: str) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", *entries, str(path)], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return json.loads(out)


def shown_frames(path: Path) -> int:
    """Frames a player shows: what ``ffmpeg -i IN -f null -`` counts."""
    log = subprocess.run(["ffmpeg", "-nostats", "-v", "info", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"],
                         capture_output=True, text=True, timeout=60).stderr
    return int(log.rsplit("frame=", 1)[1].split()[0])


def start_times(path: Path) -> dict[str, Fraction]:
    streams = ffprobe(path, "-show_entries", "stream=codec_type,start_time")["streams"]
    return {s["codec_type"]: Fraction(s["start_time"]) for s in streams if s.get("start_time") not in (None, "N/A")}


@pytest.fixture
def run(capfd):
    """``streamrestore`` in this process; returns (exit code, stderr lines), C-level output included."""
    previous = signal.getsignal(signal.SIGTERM)

    def call(*argv: object) -> tuple[int, list[str]]:
        capfd.readouterr()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as stop:
            code = stop.code
        return code, capfd.readouterr().err.splitlines()

    yield call
    signal.signal(signal.SIGTERM, previous)


def audio_hashes(path: Path) -> list[str]:
    found = packets(path)
    with av.open(str(path)) as container:
        index = container.streams.audio[0].index
    return [p.sha256 for p in found[index]]


# -- an MP4 cut with an edit list ------------------------------------------------------------------
@pytest.fixture(scope="module")
def edit_list_cut(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("editlist")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=24", "-f", "lavfi", "-i", "sine", "-t", 2.5,
           "-c:v", "libx264", "-preset", "ultrafast", "-bf", 3, "-g", 48, "-keyint_min", 48, "-sc_threshold", 0,
           "-pix_fmt", "yuv420p", "-c:a", "aac", folder / "long.mp4")
    ffmpeg("-ss", 0.5, "-i", folder / "long.mp4", "-c", "copy", "-t", 1.2, folder / "cut.mp4")
    return folder / "cut.mp4"


def audio_packets_shown(path: Path) -> list[str]:
    """Audio packets a player plays: not those an edit list hides entirely (flagged discard)."""
    with av.open(str(path)) as container:
        return [hashlib.sha256(bytes(p)).hexdigest() for p in container.demux(audio=0) if p.size and not p.is_discard]


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_edit_list_cut_holds_what_a_player_shows(edit_list_cut, tmp_path, run, ext):
    src, out = edit_list_cut, tmp_path / f"out.{ext}"
    announced = ffprobe(src, "-show_entries", "stream=nb_frames", "-select_streams", "v")["streams"][0]["nb_frames"]
    shown = shown_frames(src)
    assert int(announced) > shown  # the cut keeps hidden reference frames before the edit's start

    code, lines = run("run", src, "--chain", "identity", "-o", out, "--preset", "ultrafast", "-q")
    assert code == 0, lines
    assert not lines  # nothing to warn about: the file is valid
    assert len(video_frames(out)) == shown_frames(out) == shown
    if ext == "mp4":
        assert video_times(out) == video_times(src)  # the edit list's presentation times, exactly
        assert audio_hashes(out) == audio_hashes(src)  # every audio packet copied, with the audio's edit list
    else:
        # Matroska has no edit lists: the audio the source's edit list hides entirely is left out, and
        # the first audio packet (partly before the edit) moves the whole file by less than its length.
        times, source_times = video_times(out), video_times(src)
        assert len(times) == len(source_times)
        assert all(abs((t - times[0]) - (s - source_times[0])) <= Fraction(1, 1000)  # Matroska counts in ms
                   for t, s in zip(times, source_times))
        assert 0 <= times[0] - source_times[0] < AAC_FRAME
        assert audio_hashes(out) == audio_packets_shown(src) != audio_hashes(src)
    before, after = start_times(src), start_times(out)
    assert abs((after["audio"] - after["video"]) - (before["audio"] - before["video"])) < AAC_FRAME


def test_edit_list_frame_count_is_announced_for_the_progress_bar(edit_list_cut):
    reader = MediaReader(str(edit_list_cut))
    try:
        assert reader.info.frame_count == shown_frames(edit_list_cut)
        assert reader.info.frame_count_exact
    finally:
        reader.close()


# -- MPEG-TS files joined with cat: timestamps that go back ----------------------------------------
def _ts_part(path: Path, size: str, seconds: float, offset: float = 0.0) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=24", "-f", "lavfi", "-i", "sine=frequency=440",
           "-t", seconds, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
           "-output_ts_offset", offset, path)
    return path


def _join(target: Path, *parts: Path) -> Path:
    target.write_bytes(b"".join(p.read_bytes() for p in parts))
    return target


def test_joined_ts_files_play_one_after_the_other(tmp_path, run):
    first = _ts_part(tmp_path / "a.ts", "96x64", 1.0)
    second = _ts_part(tmp_path / "b.ts", "96x64", 1.0)  # the same clock values as the first part
    joined = _join(tmp_path / "joined.ts", first, second)
    out = tmp_path / "out.ts"

    code, lines = run("run", joined, "--chain", "identity", "-o", out, "--preset", "ultrafast", "-q")
    assert code == 0, lines
    assert len(lines) == 1 and lines[0].startswith("streamrestore: warning: the input's timestamps go back")
    assert "in sync" in lines[0]

    times = video_times(out)
    part = len(video_frames(first))
    assert len(times) == part + len(video_frames(second))
    assert all(b > a for a, b in zip(times, times[1:]))  # one timeline, no frame at the same time twice
    gap = times[part] - times[part - 1]
    assert 0 < gap < Fraction(3, 24)  # the second part follows the first
    # Audio: every packet copied, in order, and the second part's audio still starts where it did
    # relative to its own video.
    assert audio_hashes(out) == audio_hashes(joined)
    audio = packets(out)[1]
    audio_part = len(packets(first)[1])
    assert all(b.pts > a.pts for a, b in zip(audio, audio[1:]))
    source_lead = video_times(second)[0] - packets(second)[1][0].pts
    output_lead = times[part] - audio[audio_part].pts
    assert abs(output_lead - source_lead) < Fraction(1, 1000)


# -- a resolution change mid-stream ----------------------------------------------------------------
def test_resolution_change_is_scaled_to_the_first_size(tmp_path, run):
    first = _ts_part(tmp_path / "a.ts", "96x64", 0.5)
    second = _ts_part(tmp_path / "b.ts", "64x48", 0.5, offset=1.0)
    joined = _join(tmp_path / "sizes.ts", first, second)
    out = tmp_path / "out.mkv"

    code, lines = run("run", joined, "--chain", "resize:scale=2", "--batch", 4, "-o", out,
                      "--preset", "ultrafast", "-q")
    assert code == 0, lines
    resized = len(video_frames(second))
    assert lines == [f"streamrestore: warning: the input changes resolution mid-stream: {resized} frame(s) "
                     "scaled (Lanczos) to the first frame's 96×64"]
    frames = video_frames(out)
    assert {(f.width, f.height) for f in frames} == {(192, 128)}
    assert len(frames) == len(video_frames(first)) + resized
    # A scaled frame is the second part's picture, stretched to the new size (not cropped or garbage).
    expected = cv2.resize(player_rgb(video_frames(second)[3]), (192, 128), interpolation=cv2.INTER_LANCZOS4)
    assert mean_abs_error(player_rgb(frames[len(video_frames(first)) + 3]), expected) < 6.0


# -- an animated GIF -------------------------------------------------------------------------------
def test_animated_gif_gets_an_mp4_by_default(tmp_path, run):
    gif = tmp_path / "anim.gif"
    rng = np.random.default_rng(3)
    # Colours rgb8 (3-3-2 bits) holds exactly, so the GIF encoder does not dither them.
    palette = np.stack([rng.choice(np.arange(0, 253, 36), 6), rng.choice(np.arange(0, 253, 36), 6),
                        rng.choice([0, 85, 170, 255], 6)], axis=1).astype(np.uint8)
    pictures = [np.repeat(np.repeat(palette[(np.arange(4)[:, None] + np.arange(5)[None] + i) % 6], 8, 0), 8, 1)
                for i in range(6)]  # 32×40 blocks of flat palette colours, shifting every frame
    with av.open(str(gif), "w") as container:
        stream = container.add_stream("gif", rate=10)
        stream.width, stream.height, stream.pix_fmt = 40, 32, "rgb8"
        for i, picture in enumerate(pictures):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24").reformat(format="rgb8")
            frame.pts, frame.time_base = [0, 10, 20, 50, 60, 90][i], Fraction(1, 100)  # GIF delays vary
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))

    code, lines = run("run", gif, "--chain", "identity", "--preset", "ultrafast", "-q")
    assert code == 0, lines
    out = tmp_path / "anim.restored.mp4"
    assert [s["codec_name"] for s in ffprobe(out, "-show_entries", "stream=codec_name")["streams"]] == ["h264"]
    assert video_times(out) == video_times(gif)
    centres = (slice(2, None, 8), slice(2, None, 8))  # inside each 8×8 block: away from 4:2:0 chroma edges
    for picture, source, restored in zip(pictures, video_frames(gif), video_frames(out)):
        assert np.array_equal(source.to_ndarray(format="rgb24"), picture)  # the palette as drawn
        assert mean_abs_error(player_rgb(restored)[centres], picture[centres]) < 3.0


def test_explicit_output_that_cannot_hold_the_codec_is_a_config_error(edit_list_cut, tmp_path, run):
    code, lines = run("run", edit_list_cut, "--chain", "identity", "-o", tmp_path / "out.gif", "-q")
    assert code == 2 and len(lines) == 1
    assert "gif container" in lines[0] and "cannot hold libx264" in lines[0] and "out.gif" in lines[0]
    assert not list(tmp_path.iterdir())


# -- the default encoder follows the source; 12-bit kept; x265 quiet -----------------------------
def _lavfi_clip(path: Path, *codec_args: object) -> Path:
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24", "-t", 0.25, *codec_args, path)
    return path


HDR = ["-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc"]
MASTERING = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"


@pytest.mark.parametrize("name, codec_args, expected", [
    ("h264.mkv", ["-c:v", "libx264", "-pix_fmt", "yuv420p"], ("h264", None, "yuv420p")),
    ("mpeg4.avi", ["-c:v", "mpeg4"], ("h264", None, "yuv420p")),
    ("hevc10.mkv", ["-c:v", "libx265", "-x265-params", "log-level=error", "-pix_fmt", "yuv420p10le"],
     ("hevc", None, "yuv420p10le")),
    ("hevc12.mkv", ["-c:v", "libx265", "-x265-params", "log-level=error", "-pix_fmt", "yuv444p12le"],
     ("hevc", None, "yuv444p12le")),
    ("prores4444.mov", ["-c:v", "prores_ks", "-profile:v", "4444", "-pix_fmt", "yuv444p10le"],
     ("prores", "4444", "yuv444p12le")),
    ("proreshq.mov", ["-c:v", "prores_ks", "-profile:v", "hq", "-pix_fmt", "yuv422p10le"],
     ("prores", "HQ", "yuv422p10le")),
    ("ffv1_12.mkv", ["-c:v", "ffv1", "-pix_fmt", "yuv422p12le"], ("ffv1", None, "yuv422p12le")),
])
def test_default_encoder_follows_the_source(tmp_path, run, name, codec_args, expected):
    src = _lavfi_clip(tmp_path / name, *codec_args)
    code, lines = run("run", src, "--chain", "identity", "--preset", "ultrafast", "-q")
    assert code == 0, lines
    assert not lines  # -q: nothing at all on stderr, libx265's own log lines included
    out = next(p for p in tmp_path.iterdir() if ".restored." in p.name)
    stream = ffprobe(out, "-show_entries", "stream=codec_name,profile,pix_fmt", "-select_streams", "v")["streams"][0]
    codec, profile, pix_fmt = expected
    assert (stream["codec_name"], stream["pix_fmt"]) == (codec, pix_fmt)
    if profile:
        assert stream["profile"] == profile
    assert len(video_frames(out)) == len(video_frames(src))


def test_codec_option_overrides_the_source(tmp_path, run):
    src = _lavfi_clip(tmp_path / "hevc.mkv", "-c:v", "libx265", "-x265-params", "log-level=error")
    code, lines = run("run", src, "--chain", "identity", "--codec", "libx264", "--preset", "ultrafast",
                      "-o", tmp_path / "out.mkv", "-q")
    assert code == 0, lines
    assert ffprobe(tmp_path / "out.mkv", "-show_entries", "stream=codec_name")["streams"][0]["codec_name"] == "h264"


def test_hevc_hdr10_metadata_reaches_the_output_and_x265_logs_only_with_debug(tmp_path, run):
    src = _lavfi_clip(tmp_path / "hdr.mp4", "-c:v", "libx265", "-pix_fmt", "yuv420p10le", *HDR, "-x265-params",
                      f"log-level=error:hdr10=1:master-display={MASTERING}:max-cll=1000,400")
    code, lines = run("run", src, "--chain", "identity", "-o", tmp_path / "out.mp4", "--preset", "ultrafast")
    assert code == 0 and not any("x265 [" in line for line in lines), lines
    frame = ffprobe(tmp_path / "out.mp4", "-select_streams", "v", "-read_intervals", "%+#1", "-show_frames")["frames"][0]
    side = {s["side_data_type"]: s for s in frame.get("side_data_list", [])}
    mastering = side["Mastering display metadata"]
    assert (mastering["red_x"], mastering["green_y"], mastering["white_point_x"]) == ("34000/50000", "34500/50000", "15635/50000")
    assert (mastering["max_luminance"], mastering["min_luminance"]) == ("10000000/10000", "50/10000")
    assert (side["Content light level metadata"]["max_content"], side["Content light level metadata"]["max_average"]) == (1000, 400)
    assert (frame["color_transfer"], frame["color_primaries"]) == ("smpte2084", "bt2020")

    code, lines = run("run", src, "--chain", "identity", "-o", tmp_path / "debug.mp4", "--preset", "ultrafast",
                      "-q", "--debug")
    assert code == 0 and any(line.startswith("x265 [info]") for line in lines)


# -- exit 70 is never the answer to an input file -------------------------------------------------
def _broken_inputs(folder: Path) -> dict[str, tuple[Path, int]]:
    clip = _lavfi_clip(folder / "clip.mp4", "-c:v", "libx264", "-pix_fmt", "yuv420p")
    data = clip.read_bytes()
    rng = np.random.default_rng(5)
    flipped = bytearray(data)
    for where in rng.integers(len(data) // 3, len(data), 300):
        flipped[where] = rng.integers(0, 256)
    made = {
        "empty.mp4": (b"", 4),
        "noise.mp4": (rng.integers(0, 256, 4000, dtype=np.uint8).tobytes(), 4),
        "noise.ts": (rng.integers(0, 256, 4000, dtype=np.uint8).tobytes(), 4),
        "header_only.mp4": (data[:600], 4),
        "flipped.mp4": (bytes(flipped), None),  # repaired (exit 0) or a typed error, never 70
        "not_an_image.png": (b"hello", 4),
    }
    found = {}
    for name, (content, code) in made.items():
        (folder / name).write_bytes(content)
        found[name] = (folder / name, code)
    latin = folder / "latin1_title.avi"  # old AVIs carry Latin-1 tags, not UTF-8
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24", "-t", 0.25, "-c:v", "mpeg4", "-metadata",
           b"title=Caf\xe9", latin)
    found[latin.name] = (latin, 0)
    return found


def test_no_input_file_gives_an_internal_error(tmp_path, run):
    for name, (path, expected) in _broken_inputs(tmp_path).items():
        code, lines = run("run", path, "--chain", "identity", "-o", tmp_path / f"out-{name}.mkv", "-q",
                          "--preset", "ultrafast")
        assert code != 70, (name, lines)
        if expected is not None:
            assert code == expected, (name, lines)
        if code:
            assert len(lines) == 1 and lines[0].startswith("streamrestore: error: "), (name, lines)
            assert "internal error" not in lines[0]


def test_a_copied_packet_the_muxer_refuses_is_blamed_on_the_input(tmp_path, edit_list_cut):
    """The last resort behind the timestamp repair: a refused copy names the input stream, exit 4."""
    reader = MediaReader(str(edit_list_cut))
    try:
        info = reader.info
        target = tmp_path / "out.mkv"
        writer = MediaWriter(str(target), None, OutputVideo(info.width, info.height, "yuv420p", info.color, info),
                             EncodeSettings(codec="libx264", preset="ultrafast"), reader.passthrough,
                             label="out.mkv")
        audio = [p for p in reader.container.demux(reader.passthrough[0]) if p.size][:3]
        writer.copy_packet(audio[2])
        with pytest.raises(MediaError, match=r"the input's audio stream #1 has a packet at .* whose timestamps"):
            writer.copy_packet(audio[0])  # earlier than the packet before it
        writer.abort()
    finally:
        reader.close()
    assert MediaError.exit_code == 4


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_ts_with_adts_aac_to_a_file_has_a_clean_header(tmp_path, run, ext):
    """ADTS AAC from MPEG-TS: the header written up front made Matroska rewrite its Tracks at the end."""
    src = _ts_part(tmp_path / "a.ts", "96x64", 0.5)
    out = tmp_path / f"out.{ext}"
    code, lines = run("run", src, "--chain", "identity", "-o", out, "--preset", "ultrafast", "-q")
    assert code == 0, lines
    probe = subprocess.run(["ffprobe", "-v", "warning", "-show_entries", "stream=codec_type", "-of", "csv", str(out)],
                           capture_output=True, text=True, timeout=60)
    assert probe.stderr == "" and probe.stdout.split() == ["stream,video", "stream,audio"]
    with av.open(str(out)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
        assert container.streams.audio[0].codec_context.extradata == b"\x12\x08"  # AAC LC, 44.1 kHz, mono
