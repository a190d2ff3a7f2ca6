"""Archive jobs: segmented output equals the single-stream output, resumes, parallel runs, ranges, many files.

Clips are tiny (96×64, 20 frames, a keyframe every 4) and segments short (0.3 s), so every job has
several segments and each test stays within seconds on two cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from support.media import AudioTrack, SubtitleTrack, make_clip, packets, panned_frames, photo, streams, video_frames
from streamrestore.errors import JobMismatchError
from streamrestore.jobs import Job, JobOptions, restore_range
from streamrestore.restore import OutputSettings, restore_video

VFR_PTS = [0, 40, 80, 200, 240, 250, 400, 433, 466, 700, 740, 1000, 1040, 1080, 1200, 1240, 1300, 1400, 1433, 1500]
TDENOISE = "tdenoise:search=7:template=3"  # the temporal stage, with small windows to keep it fast
SEGMENT = 0.3


def _source(path: Path, count: int = len(VFR_PTS), subtitles: bool = True) -> Path:
    make_clip(path, panned_frames(count, 96, 64), pts=VFR_PTS[:count], time_base=Fraction(1, 1000), video_start=0.25,
              options={"preset": "medium", "bframes": "3", "g": "4"},
              audio=[AudioTrack("aac", "eng", "English", seconds=1.8),
                     AudioTrack("libopus", "fra", "Commentaire", frequency=660, seconds=1.8)],
              subtitles=[SubtitleTrack("subrip", language="eng")] if subtitles else [])
    return path


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return _source(tmp_path_factory.mktemp("jobs") / "vfr.mkv")


def _pixels(path: Path) -> list[np.ndarray]:
    return [frame.to_ndarray() for frame in video_frames(path)]


def _times(path: Path) -> list[Fraction]:
    return [frame.pts * frame.time_base for frame in video_frames(path)]


def _copied(path: Path) -> list[list[tuple]]:
    """Audio and subtitle packets (time, duration, sha256) per stream, in stream order."""
    found = packets(path)
    return [[(p.pts, p.duration, p.sha256) for p in found[s["index"]]]
            for s in streams(path) if s["type"] in ("audio", "subtitle")]


def _video_dts(path: Path) -> list[int]:
    with av.open(str(path)) as container:
        return [p.dts for p in container.demux(video=0) if p.size]


def _job(src: Path, dst: Path, chain: str, codec: str | None = None, preset: str = "ultrafast", **options) -> Job:
    options.setdefault("segment_seconds", SEGMENT)
    return Job(str(src), str(dst), chain, JobOptions(output=OutputSettings(codec=codec, preset=preset), **options))


# -- 1. lossless: segmented == unsegmented ---------------------------------------------------------
@pytest.mark.parametrize("chain", ["unsharp", TDENOISE, "mc-denoise"])
def test_segmented_ffv1_is_bit_identical_to_one_stream(source, tmp_path, chain):
    whole, joined = tmp_path / "whole.mkv", tmp_path / "joined.mkv"
    restore_video(str(source), str(whole), chain, output=OutputSettings(codec="ffv1"))

    report = _job(source, joined, chain, codec="ffv1").run()

    assert report.segments >= 3
    assert report.frames == len(VFR_PTS)
    assert all(np.array_equal(a, b) for a, b in zip(_pixels(joined), _pixels(whole), strict=True))
    assert _times(joined) == _times(whole) == _times(source)
    assert _copied(joined) == _copied(whole) == _copied(source)
    with av.open(str(joined)) as out, av.open(str(whole)) as one:
        a, b = out.streams.video[0].codec_context, one.streams.video[0].codec_context
        assert (a.pix_fmt, a.colorspace, a.color_range, a.color_primaries, a.color_trc) == \
               (b.pix_fmt, b.colorspace, b.color_range, b.color_primaries, b.color_trc)
    assert not (tmp_path / ".joined.mkv.streamrestore-job").exists(), "the job directory is removed after the join"


# -- 2. lossy: workers, B-frames across joins, start offset ----------------------------------------
@pytest.fixture(scope="module")
def lossy_source(tmp_path_factory) -> Path:
    return _source(tmp_path_factory.mktemp("lossy") / "vfr.mkv", subtitles=False)  # MP4 output: no SubRip


@pytest.fixture(scope="module")
def one_worker(lossy_source, tmp_path_factory) -> Path:
    source = lossy_source
    out = tmp_path_factory.mktemp("one") / "one.mp4"
    # veryfast: x264 with B-frames, so the join must rebuild DTS across pieces.
    _job(source, out, "unsharp", preset="veryfast", workers=1).run()
    return out


def test_lossy_join_keeps_timestamps_audio_and_monotonic_dts(lossy_source, one_worker):
    source = lossy_source
    assert _times(one_worker) == _times(source)  # the 0.25 s start offset too (MP4 edit list)
    assert [[p[2] for p in s] for s in _copied(one_worker)] == [[p[2] for p in s] for s in _copied(source)]
    dts = _video_dts(one_worker)
    with av.open(str(one_worker)) as container:
        assert any(p.pts != p.dts for p in container.demux(video=0) if p.size), "the output must have B-frames"
    assert all(b > a for a, b in zip(dts, dts[1:])), "DTS must rise across the joins"


@pytest.mark.slow
def test_two_workers_give_the_same_frames(lossy_source, one_worker, tmp_path):
    source = lossy_source
    out = tmp_path / "two.mp4"
    report = _job(source, out, "unsharp", preset="veryfast", workers=2).run()
    assert report.workers == 2
    assert all(np.array_equal(a, b) for a, b in zip(_pixels(out), _pixels(one_worker), strict=True))
    assert _times(out) == _times(source)


@pytest.fixture(scope="module")
def long_source(tmp_path_factory) -> Path:
    """The VFR pattern four times over (80 frames, ~20 segments): enough pieces that a kill lands halfway
    however fast the machine is (with 3 segments, a quiet machine finished the job between two polls)."""
    pts = [p + 1600 * round_ for round_ in range(4) for p in VFR_PTS]
    path = tmp_path_factory.mktemp("long") / "long.mkv"
    make_clip(path, panned_frames(len(pts), 96, 64), pts=pts, time_base=Fraction(1, 1000), video_start=0.25,
              options={"preset": "medium", "bframes": "3", "g": "4"}, audio=[AudioTrack("aac", "eng", "English",
                                                                                     seconds=6.6)])
    return path


@pytest.mark.slow
def test_sigkill_halfway_then_the_same_command_resumes(long_source, tmp_path):
    source = long_source
    one_worker = tmp_path / "one.mp4"
    _job(source, one_worker, "unsharp", preset="veryfast", workers=1).run()
    out, job_dir = tmp_path / "killed.mp4", tmp_path / "job"
    command = [sys.executable, "-m", "streamrestore.cli", "job", str(source), "--chain", "unsharp", "-o", str(out),
               "--segment-seconds", str(SEGMENT), "--preset", "veryfast", "--job", str(job_dir), "-q"]
    first = subprocess.Popen(command, start_new_session=True)
    manifest = job_dir / "manifest.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if manifest.exists() and len(json.loads(manifest.read_text())["pieces"]) >= 2:
            break
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    done_before = len(json.loads(manifest.read_text())["pieces"])
    total = len(json.loads(manifest.read_text())["segments"])
    assert 2 <= done_before < total and not out.exists()

    second = subprocess.run(command[:-1], capture_output=True, text=True, timeout=120)

    assert second.returncode == 0, second.stderr
    assert f"{done_before} kept from before" in second.stderr
    assert all(np.array_equal(a, b) for a, b in zip(_pixels(out), _pixels(one_worker), strict=True))
    assert _times(out) == _times(source)
    assert not job_dir.exists()


# -- 3. resume checks ------------------------------------------------------------------------------
def test_resume_verifies_pieces_and_refuses_other_settings(tmp_path):
    src = _source(tmp_path / "clip.mkv", 12)
    out, job_dir = tmp_path / "out.mkv", tmp_path / "job"
    first = _job(src, out, "unsharp", codec="ffv1", job_dir=str(job_dir), keep_job=True).run()
    reference = _pixels(out)
    out.unlink()
    piece = job_dir / "piece-00001.nut"
    data = bytearray(piece.read_bytes())
    data[len(data) // 2] ^= 0xFF
    piece.write_bytes(bytes(data))

    again = _job(src, out, "unsharp", codec="ffv1", job_dir=str(job_dir), keep_job=True).run()

    assert (again.resumed_segments, again.redone_segments) == (first.segments - 1, 1)
    assert all(np.array_equal(a, b) for a, b in zip(_pixels(out), reference, strict=True))
    out.unlink()
    with pytest.raises(JobMismatchError, match="other settings .*chain"):
        _job(src, out, "unsharp:amount=2", codec="ffv1", job_dir=str(job_dir)).plan()
    with pytest.raises(JobMismatchError, match="other settings .*encoder"):
        _job(src, out, "unsharp", codec="libx264", job_dir=str(job_dir)).plan()
    os.utime(src, ns=(time.time_ns(), time.time_ns() + 10**9))
    with pytest.raises(JobMismatchError, match="input changed"):
        _job(src, out, "unsharp", codec="ffv1", job_dir=str(job_dir)).plan()
    restarted = _job(src, out, "unsharp:amount=2", codec="ffv1", job_dir=str(job_dir), restart=True).run()
    assert restarted.resumed_segments == 0 and restarted.frames == 12 and not job_dir.exists()


@pytest.mark.parametrize(("key", "older"), [("stages", "[('unsharp', {'amount': 1.0})]"), ("version", "0.0.9")])
def test_a_job_an_older_version_started_is_not_resumed_with_other_stages(tmp_path, key, older) -> None:
    # `sharpen` is an alias: the same chain text may be built into other stages by another version (an alias
    # re-pointed, a default changed), and pieces made by both would not match at the joins.
    src, out, job_dir = _source(tmp_path / "clip.mkv", 12), tmp_path / "out.mkv", tmp_path / "job"
    _job(src, out, "sharpen", codec="ffv1", job_dir=str(job_dir), keep_job=True).run()
    manifest = json.loads((job_dir / "manifest.json").read_text())
    assert manifest["settings"]["stages"] == "[('unsharp', {'amount': 1.2, 'radius': 1.6, 'threshold': 0.0})]"
    manifest["settings"][key] = older
    (job_dir / "manifest.json").write_text(json.dumps(manifest))
    out.unlink()
    with pytest.raises(JobMismatchError, match=f"other settings \\({key}\\)"):
        _job(src, out, "sharpen", codec="ffv1", job_dir=str(job_dir)).plan()


@pytest.mark.slow
def test_changed_chain_is_exit_code_14(tmp_path):
    src = _source(tmp_path / "clip.mkv", 8)
    job_dir = tmp_path / "job"
    _job(src, tmp_path / "a.mkv", "unsharp", codec="ffv1", job_dir=str(job_dir), keep_job=True).run()
    result = subprocess.run([sys.executable, "-m", "streamrestore.cli", "job", str(src), "--chain", "identity",
                             "-o", str(tmp_path / "b.mkv"), "--codec", "ffv1", "--job", str(job_dir)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 14
    assert result.stderr.count("\n") == 1 and "--restart" in result.stderr


# -- 4. range --------------------------------------------------------------------------------------
def test_range_is_frame_exact_with_audio_in_sync(tmp_path):
    src = tmp_path / "cfr.mkv"
    make_clip(src, panned_frames(48, 96, 64), rate=24, options={"g": "6"}, audio=[AudioTrack("aac", seconds=2.0)])
    whole = tmp_path / "whole.mkv"
    restore_video(str(src), str(whole), TDENOISE, output=OutputSettings(codec="ffv1"))
    cut = tmp_path / "cut.mkv"

    report = restore_range(str(src), str(cut), TDENOISE, start=0.5, duration=0.5,
                           options=JobOptions(output=OutputSettings(codec="ffv1"), segment_seconds=SEGMENT))

    assert report.frames == 12
    assert all(np.array_equal(a, b) for a, b in zip(_pixels(cut), _pixels(whole)[12:24], strict=True))
    source_times = _times(src)
    assert _times(cut) == [t - source_times[12] for t in source_times[12:24]]  # moved to start at 0
    audio_in = [p for p in packets(src)[1] if Fraction(1, 2) <= p.pts < 1]
    audio_out = packets(cut)[1]
    assert [p.sha256 for p in audio_out] == [p.sha256 for p in audio_in]
    assert abs(audio_out[0].pts - (audio_in[0].pts - Fraction(1, 2))) < Fraction(1024, 48000)
    assert abs(audio_out[0].pts) < Fraction(1024, 48000), "audio starts with the video, within one audio frame"


# -- 5. many files ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_folder_mode_reports_failures_and_skips_finished_files(tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    make_clip(tree / "good.mkv", panned_frames(8, 96, 64), audio=[AudioTrack("aac", seconds=0.3)])
    (tree / "sub" / "broken.mkv").write_bytes((tree / "good.mkv").read_bytes()[:2000])
    import cv2

    cv2.imwrite(str(tree / "sub" / "still.png"), photo("chelsea", 64, 48)[:, :, ::-1])
    out = tmp_path / "out"
    command = [sys.executable, "-m", "streamrestore.cli", "job", str(tree), "--chain", "unsharp", "-o", str(out),
               "--preset", "ultrafast"]

    first = subprocess.run(command, capture_output=True, text=True, timeout=120)

    assert first.returncode == 15, first.stderr
    assert "2 done, 0 skipped, 1 failed" in first.stderr
    assert "broken.mkv" in first.stderr and "failed" in first.stderr
    assert len(video_frames(out / "good.mkv")) == 8
    assert (out / "sub" / "still.png").is_file() and not (out / "sub" / "broken.mkv").exists()

    second = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert second.returncode == 15
    assert "0 done, 2 skipped, 1 failed" in second.stderr


def test_not_enough_disk_is_refused_before_any_work(tmp_path, monkeypatch):
    import shutil

    from streamrestore.errors import DiskFullError

    src = _source(tmp_path / "clip.mkv", 8, subtitles=False)
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=1000))
    job_dir = tmp_path / "job"
    with pytest.raises(DiskFullError, match="needs about"):
        _job(src, tmp_path / "out.mkv", "unsharp", job_dir=str(job_dir)).run()
    assert not list(job_dir.glob("piece-*")) and not (tmp_path / "out.mkv").exists()


def test_an_output_on_a_full_filesystem_of_its_own_is_refused_before_any_work(tmp_path, monkeypatch):
    import shutil

    from streamrestore.errors import DiskFullError
    from streamrestore.jobs import job as jobs_job

    src = _source(tmp_path / "clip.mkv", 8, subtitles=False)
    (tmp_path / "job").mkdir()
    (tmp_path / "small").mkdir()
    output = tmp_path / "small" / "out.mkv"
    # The job directory has room; the output's folder is another filesystem with 1000 bytes free.
    monkeypatch.setattr(jobs_job, "filesystem_of", lambda folder: hash(Path(folder).name == "small"))
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda path: real(path)._replace(free=1000) if Path(path).name == "small" else real(path))
    with pytest.raises(DiskFullError, match=r"^the output needs about .* free space or choose another -o$"):
        _job(src, output, "unsharp", job_dir=str(tmp_path / "job")).run()
    assert not list((tmp_path / "job").glob("piece-*")) and not output.exists()


def test_segments_run_by_the_callers_own_scheduler_are_joined(tmp_path):
    from streamrestore.jobs.segment import run_segment

    src = _source(tmp_path / "clip.mkv", 8, subtitles=False)
    job = _job(src, tmp_path / "out.mkv", "unsharp", codec="ffv1", job_dir=str(tmp_path / "job"), segment_seconds=0.2)
    tasks = job.tasks()
    for task in reversed(tasks):  # any order, any process
        job.record(run_segment(task))
    assert job.status().complete

    report = job.run()

    assert report.resumed_segments == len(tasks) >= 2 and report.frames == 8
    assert len(video_frames(tmp_path / "out.mkv")) == 8
