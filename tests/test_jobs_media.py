"""Archive jobs keep what ``streamrestore run`` does with interlaced, telecined, alpha and HDR10 sources.

Each test restores one small clip twice, with ``run`` (one stream) and with ``job`` (segments of a few
frames, joined), and compares what a user would: with FFV1 the decoded frames plane by plane (alpha
included), their count, timestamps and interlaced flags, ffprobe's field order and frame rate; for
HDR10 the mastering-display and light-level side data ffprobe reads on the frames.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from support.media import (alpha_clip, hdr10_clip, interlaced_clip, make_clip, packets, panned_frames, planes,
                           telecined_clip, video_frames)
from streamrestore.errors import JobMismatchError
from streamrestore.jobs import Job, JobOptions
from streamrestore.restore import OutputSettings, RunSettings, restore_video

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="needs the ffmpeg and ffprobe commands (apt install ffmpeg)")

FFV1 = OutputSettings(codec="ffv1")
SEGMENT = 0.1  # seconds: a segment per keyframe of these clips


@pytest.fixture(scope="module")
def interlaced(tmp_path_factory) -> Path:
    return interlaced_clip(tmp_path_factory.mktemp("jobs-media") / "int.mp4", frames=12, gop=4)


def both(source: Path, folder: Path, chain: str, run: RunSettings = RunSettings(),
         output: OutputSettings = FFV1, suffix: str = ".mkv") -> tuple[Path, Path, object]:
    """``source`` restored by ``run`` and by a job of short segments: (run's output, the job's, its report)."""
    whole, joined = folder / f"run{suffix}", folder / f"job{suffix}"
    restore_video(str(source), str(whole), chain, run, output)
    report = Job(str(source), str(joined), chain, JobOptions(run, output, segment_seconds=SEGMENT)).run()
    return whole, joined, report


def assert_same_frames(whole: Path, joined: Path) -> None:
    ours, theirs = video_frames(joined), video_frames(whole)
    assert len(ours) == len(theirs)
    assert [f.pts * f.time_base for f in ours] == [f.pts * f.time_base for f in theirs]
    assert [f.interlaced_frame for f in ours] == [f.interlaced_frame for f in theirs]
    assert ours[0].format.name == theirs[0].format.name
    for k, (a, b) in enumerate(zip(ours, theirs)):
        assert all(np.array_equal(p, q) for p, q in zip(planes(a), planes(b), strict=True)), f"frame {k} differs"


def probe(path: Path, entries: str = "field_order,avg_frame_rate,width,height,pix_fmt") -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", f"stream={entries}",
                          "-of", "json", str(path)], check=True, capture_output=True, text=True, timeout=60).stdout
    return json.loads(out)["streams"][0]


# -- interlaced ------------------------------------------------------------------------------------
@pytest.mark.parametrize("chain, mode, frames, field_order", [
    ("unsharp", "auto", 24, "progressive"),  # bwdif at field rate: two frames per source frame
    ("tdenoise:search=5:template=3", "auto", 24, "progressive"),  # a temporal chain over the deinterlaced frames
    ("unsharp", "keep", 12, "tt"),  # each field its own picture, woven back, coded interlaced
    ("identity", "auto", 12, "tt"),  # nothing changes the pixels: woven frames written interlaced
])
def test_interlaced_job_equals_run(interlaced, tmp_path, chain, mode, frames, field_order):
    whole, joined, report = both(interlaced, tmp_path, chain, RunSettings(interlaced=mode))

    assert report.segments >= 3 and report.frames == frames
    assert_same_frames(whole, joined)
    assert probe(joined) == probe(whole) and probe(joined)["field_order"] == field_order
    audio = [(p.pts, p.sha256) for p in packets(joined)[1]]
    assert audio and audio == [(p.pts, p.sha256) for p in packets(whole)[1]]  # copied once, as run copies it


def test_deinterlace_at_the_head_of_the_chain_equals_run(interlaced, tmp_path):
    whole, joined, report = both(interlaced, tmp_path, "deinterlace:rate=frame:method=yadif,unsharp")

    assert report.segments >= 3 and report.frames == 12
    assert_same_frames(whole, joined)


def test_a_resume_with_another_field_policy_is_refused(interlaced, tmp_path):
    job_dir = tmp_path / "job"
    Job(str(interlaced), str(tmp_path / "a.mkv"), "unsharp",
        JobOptions(output=FFV1, segment_seconds=SEGMENT, job_dir=str(job_dir), keep_job=True)).run()
    with pytest.raises(JobMismatchError, match="fields, interlaced"):
        Job(str(interlaced), str(tmp_path / "b.mkv"), "unsharp",
            JobOptions(RunSettings(interlaced="keep"), FFV1, segment_seconds=SEGMENT, job_dir=str(job_dir))).plan()


@pytest.mark.parametrize("blank", [True, False])
def test_damaged_frames_are_repaired_as_in_run(tmp_path, blank):
    # Packets 5 and 9 lost (blank: no picture) or garbled (concealed), inside segments 1 and 2.
    source = make_clip(tmp_path / "damaged.mp4", panned_frames(16, 96, 64), garble=[5, 9], blank=blank,
                       options={"g": "4", "bf": "0"}).path
    whole, joined = tmp_path / "run.mkv", tmp_path / "job.mkv"
    reference = restore_video(source, str(whole), "deinterlace,unsharp", output=FFV1)

    report = Job(source, str(joined), "deinterlace,unsharp", JobOptions(output=FFV1, segment_seconds=SEGMENT)).run()

    assert report.segments == 4 and report.frames == 32
    assert report.damaged_frames == reference.damaged_frames == 2  # each counted once, by its own segment
    assert_same_frames(whole, joined)


# -- telecined -------------------------------------------------------------------------------------
def test_ivtc_job_is_one_segment_and_equals_run(tmp_path):
    source = telecined_clip(tmp_path / "telecined.mp4", frames=30, gop=5)

    whole, joined, report = both(source, tmp_path, "ivtc,unsharp")

    # fieldmatch + decimate count their 5-frame cycle from the stream's start: one segment, however short.
    assert report.segments == 1 and report.frames == 24
    assert_same_frames(whole, joined)
    assert probe(joined) == probe(whole)


# -- alpha -----------------------------------------------------------------------------------------
def test_alpha_survives_a_job(tmp_path):
    source = alpha_clip(tmp_path / "alpha.mov", "png", "rgba", frames=4)  # every frame a keyframe

    whole, joined, report = both(source, tmp_path, "resize:scale=2")

    assert report.segments >= 2
    assert video_frames(joined)[0].format.name == "yuva444p"
    assert_same_frames(whole, joined)  # the alpha plane is the fourth plane
    alpha = planes(video_frames(joined)[0])[3]
    assert alpha.min() == 0 and alpha.max() == 255  # transparent around an opaque disc


# -- HDR10 -----------------------------------------------------------------------------------------
def frame_side_data(path: Path) -> list[dict]:
    """Per frame, the HDR10 side data ffprobe reads (mastering display, content light level)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_frames", "-show_entries",
                          "frame=side_data_list", "-of", "json", str(path)],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    kinds = ("Mastering display metadata", "Content light level metadata")
    return [{d["side_data_type"]: d for d in frame.get("side_data_list", []) if d["side_data_type"] in kinds}
            for frame in json.loads(out)["frames"]]


def test_hdr10_metadata_survives_a_job(tmp_path):
    source = hdr10_clip(tmp_path / "hdr10.mkv", frames=12, keyint=4)
    x265 = OutputSettings(codec="libx265", preset="ultrafast")

    whole, joined, report = both(source, tmp_path, "unsharp", output=x265)

    assert report.segments >= 3
    ours, theirs = frame_side_data(joined), frame_side_data(whole)
    assert len(ours) == len(theirs) == 12
    assert ours == theirs and len(ours[0]) == 2, ours[0]
    assert ours[0]["Content light level metadata"]["max_content"] == 1000
    colour = "pix_fmt,color_transfer,color_primaries,color_space,profile"
    assert probe(joined, colour) == probe(whole, colour)
    assert probe(joined, colour)["color_transfer"] == "smpte2084"
