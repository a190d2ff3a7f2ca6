"""`streamrestore run` runs jobs: job options or a many-file input make it the `job` command, same frames, resumes.

Clips are tiny (96×64, 36 frames at 24 fps, a keyframe every 6) and segments 0.5 s, so a job has three
segments; `--preset ultrafast` and the in-process `cli` fixture keep each test to a few seconds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from support.cli import assert_one_line
from support.media import AudioTrack, make_clip, panned_frames, video_frames
from streamrestore.cli import build_parser, settings_from_args
from streamrestore.jobs.cli import job_options

JOB = ("--chain", "unsharp", "--preset", "ultrafast", "--workers", "1", "--segment-seconds", "0.5")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "clip.mkv"
    make_clip(path, panned_frames(36, 96, 64), rate=24, options={"g": "6"}, audio=[AudioTrack("aac", seconds=1.5)])
    return path


def pixels(path) -> list[np.ndarray]:
    return [frame.to_ndarray(format="rgb24") for frame in video_frames(path)]


def test_run_with_job_options_is_the_job_command(cli, clip, tmp_path):
    by_run = cli("run", clip, "-o", tmp_path / "run.mkv", *JOB)
    by_job = cli("job", clip, "-o", tmp_path / "job.mkv", *JOB)

    assert by_run.code == 0, by_run.stderr
    assert by_job.code == 0, by_job.stderr
    assert "in 3 segments" in by_run.stderr and "in 3 segments" in by_job.stderr
    restored = pixels(tmp_path / "run.mkv")
    assert len(restored) == 36
    assert all(np.array_equal(a, b) for a, b in zip(restored, pixels(tmp_path / "job.mkv"), strict=True))
    # Without a job option, run is the single stream, as before.
    plain = cli("run", clip, "-o", tmp_path / "plain.mkv", "--chain", "unsharp", "--preset", "ultrafast")
    assert plain.code == 0 and "segments" not in plain.stderr


def test_running_the_same_command_again_resumes(cli, clip, tmp_path):
    out = tmp_path / "out.mkv"
    command = ("run", clip, "-o", out, *JOB, "--keep-job")
    assert cli(*command).code == 0
    whole = pixels(out)
    # A crash after two of the three pieces: no output yet, the manifest lists two pieces, the third is missing.
    job_dir = tmp_path / ".out.mkv.streamrestore-job"
    manifest = json.loads((job_dir / "manifest.json").read_text())
    last = max(manifest["pieces"], key=int)
    del manifest["pieces"][last]
    (job_dir / "manifest.json").write_text(json.dumps(manifest))
    (job_dir / f"piece-{int(last):05d}.nut").unlink()
    out.unlink()

    again = cli(*command)

    assert again.code == 0, again.stderr
    assert "resuming" in again.stderr and "2 of 3 segments done" in again.stderr
    assert "(2 kept from before" in again.stderr
    assert all(np.array_equal(a, b) for a, b in zip(pixels(out), whole, strict=True))

    # Everything kept: the run only joins, and says so instead of a rate over frames it never restored.
    out.unlink()
    joined = cli(*command)
    assert joined.code == 0, joined.stderr
    assert "(3 kept from before" in joined.stderr and "(all kept: joined only)" in joined.stderr
    assert all(np.array_equal(a, b) for a, b in zip(pixels(out), whole, strict=True))


def test_run_takes_a_folder(cli, tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    make_clip(tree / "one.mkv", panned_frames(8, 96, 64))
    make_clip(tree / "sub" / "two.mkv", panned_frames(6, 96, 64, name="coffee"))
    out = tmp_path / "out"

    first = cli("run", tree, "-o", out, "--chain", "unsharp", "--preset", "ultrafast")
    again = cli("run", tree, "-o", out, "--chain", "unsharp", "--preset", "ultrafast")

    assert first.code == 0, first.stderr
    assert "2 done, 0 skipped, 0 failed" in first.stderr
    assert len(video_frames(out / "one.mkv")) == 8 and len(video_frames(out / "sub" / "two.mkv")) == 6
    assert again.code == 0 and "0 done, 2 skipped, 0 failed" in again.stderr


@pytest.mark.parametrize("argv, words", [
    (("CLIP", "-o", "-", "--workers", "1"), ("-o -",)),
    (("-", "-o", "OUT", "--segment-seconds", "1"), ("'-'",)),
    (("tcp://127.0.0.1:9", "-o", "OUT", "--restart"), ("tcp://127.0.0.1:9",)),
    (("CLIP", "-o", "OUT", "--workers", "0"), ("--workers",)),
    (("IMAGE", "-o", "OUT", "--workers", "1"), ("image",)),
])
def test_run_refuses_what_a_job_cannot_do(cli, clip, tmp_path, argv, words):
    import cv2

    cv2.imwrite(str(tmp_path / "still.png"), np.zeros((8, 8, 3), np.uint8))
    values = {"CLIP": clip, "OUT": tmp_path / "out.mkv", "IMAGE": tmp_path / "still.png"}
    outcome = cli("run", *(values.get(a, a) for a in argv), "--chain", "unsharp")

    assert_one_line(outcome, 2, *words)
    assert not (tmp_path / "out.mkv").exists()


def test_every_frame_and_encoder_option_reaches_the_job():
    common = ["--chain", "unsharp", "--tile", "64", "--interlaced", "keep", "--strict", "--max-pixels", "1000000",
              "--cpu-threads", "1", "--codec", "ffv1", "--crf", "20", "--preset", "fast", "--pix-fmt", "yuv444p",
              "--encoder-threads", "2", "--device", "cpu", "--precision", "float32", "--batch", "3",
              "--content", "anime", "--overwrite", "--segment-seconds", "2", "--workers", "2"]
    parser = build_parser()
    by_run = job_options(parser.parse_args(["run", "in.mkv", *common]))
    by_job = job_options(parser.parse_args(["job", "in.mkv", *common]))

    assert by_run == by_job
    run, output = by_run.run, by_run.output
    assert (run.tile, run.interlaced, run.strict, run.max_pixels, run.cpu_threads) == (64, "keep", True, 1000000, 1)
    assert (run.device, run.precision, run.batch_size, run.content) == ("cpu", "float32", 3, "anime")
    assert (output.codec, output.crf, output.preset, output.pix_fmt, output.encoder_threads, output.overwrite) == (
        "ffv1", 20.0, "fast", "yuv444p", 2, True)
    assert (by_run.segment_seconds, by_run.workers) == (2.0, 2)
    # The single stream reads the same arguments through the same conversion.
    assert settings_from_args(parser.parse_args(["run", "in.mkv", *common]))[0] == run
