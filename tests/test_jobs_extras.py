"""A job's joined output keeps the container extras `run` keeps; a range keeps them cut to the range.

The clips carry everything at once: audio, subtitles, a font attachment, cover art, a start timecode,
chapters and container tags (Matroska, and MP4 with its own cover and ``tmcd`` track), 36 frames at
24 fps with a keyframe every 6, so ``--segment-seconds 0.5`` makes three segments. `streamrestore job`
and `streamrestore run` are compared the way a user would, with ffprobe and packet checksums.
"""

from __future__ import annotations

import hashlib
import os
import re
from functools import lru_cache
import shutil
from fractions import Fraction
from pathlib import Path

import pytest

from support.media import (AudioTrack, SubtitleTrack, ffmpeg, make_clip, packet_hashes, packets, panned_frames,
                           probe, video_times)
from streamrestore.errors import OutputError
from streamrestore.media.extras import ContainerExtras, cut_chapters, in_range, timecode_after

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="needs the ffmpeg and ffprobe commands (apt install ffmpeg)")

FRAMES, RATE = 36, 24
TIMECODE = "01:00:00:00"
CHAPTERS = [(0.0, 0.5, "One"), (0.5, 1.0, "Two"), (1.0, 1.5, "Three")]
# Tags a muxer writes about the file it wrote (the source's length, its own version): not the source's.
_WRITTEN = {"duration", "encoder"}
# An empty mov_text sample: the MP4 muxer writes one into every gap between cues (its own, not the source's).
_NO_CUE = hashlib.sha256(b"\0\0").hexdigest()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("jobs_extras")
    base = folder / "base.mkv"
    make_clip(base, panned_frames(FRAMES, 64, 48), rate=RATE, options={"g": "6"},
              audio=[AudioTrack("aac", "eng", "English", seconds=1.6)],
              subtitles=[SubtitleTrack("ass", cues=((0.1, 0.4, "Hello"), (0.6, 1.2, "World")), language="eng")],
              metadata={"title": "Reel 3", "comment": "archive"}, chapters=CHAPTERS)
    png, jpg, font = folder / "cover.png", folder / "cover.jpg", folder / "font.ttf"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=32x32:rate=1", "-frames:v", "1", png)
    ffmpeg("-f", "lavfi", "-i", "mandelbrot=size=32x32:rate=1", "-frames:v", "1", jpg)
    font.write_bytes(bytes(range(256)) * 40)  # any bytes: an attachment is carried, never parsed
    mkv, mp4 = folder / "film.mkv", folder / "film.mp4"
    # Matroska: the font for the ASS subtitles, an image attachment (Matroska's cover art), TIMECODE tag.
    ffmpeg("-i", base, "-map", "0", "-c", "copy", "-attach", font, "-metadata:s:t:0", "mimetype=font/ttf",
           "-attach", png, "-metadata:s:t:1", "mimetype=image/png", "-timecode", TIMECODE, mkv)
    # MP4: an attached_pic cover stream, a tmcd track, mov_text subtitles, chapters.
    ffmpeg("-i", base, "-i", jpg, "-map", "0", "-map", "1", "-c", "copy", "-c:s", "mov_text",
           "-disposition:v:1", "attached_pic", "-timecode", TIMECODE, "-metadata", "title=Reel 3", mp4)
    return {"mkv": mkv, "mp4": mp4, "font": font}


@lru_cache(maxsize=None)
def _probe(path: Path, what: str = "streams") -> list[dict]:
    """ffprobe once per file (each call costs ~0.1 s; a file is never rewritten under the same name)."""
    return probe(path, what)


def _restore(cli, command: str, src: Path, dst: Path, *extra: object) -> str:
    segmenting = ("--segment-seconds", 0.5) if command == "job" else ()
    outcome = cli(command, src, "--chain", "identity", "-o", dst, "--preset", "ultrafast", *segmenting, *extra)
    assert outcome.code == 0, outcome.stderr
    return outcome.stderr


def _streams(path: Path) -> list[tuple]:
    """Per stream: type, codec, tag, dispositions and tags (less the ones a muxer writes about its own file)."""
    return [(s["codec_type"], s.get("codec_name"), s.get("codec_tag_string"), s["disposition"],
             {k: v for k, v in s.get("tags", {}).items() if k.lower() not in _WRITTEN})
            for s in _probe(path)]


def _chapters(path: Path) -> list[tuple[float, float, str]]:
    return [(float(c["start_time"]), float(c["end_time"]), c["tags"]["title"]) for c in _probe(path, "chapters")]


def _format_tags(path: Path) -> dict[str, str]:
    import av

    with av.open(str(path)) as container:
        return {k: v for k, v in container.metadata.items() if k.lower() not in _WRITTEN}


def _attachments(path: Path) -> list[tuple[str, str, bytes]]:
    import av

    with av.open(str(path)) as container:
        return [(s.name, s.mimetype, bytes(s.data)) for s in container.streams.attachments]


def _indices(path: Path, kind: str) -> list[int]:
    streams = _probe(path)
    if kind == "cover":
        return [s["index"] for s in streams if s["disposition"]["attached_pic"]]
    return [s["index"] for s in streams if s["codec_type"] == kind]


def _timecodes(path: Path) -> list[str]:
    """Every timecode a player reads: the video's tag, a tmcd track's, the container's."""
    found = [v for s in _probe(path) for k, v in s.get("tags", {}).items() if k.lower() == "timecode"]
    return found + [v for k, v in _format_tags(path).items() if k.lower() == "timecode"]


# -- the whole file: the job keeps what run keeps --------------------------------------------------
@pytest.mark.parametrize("kind", ["mkv", "mp4"])
def test_job_keeps_every_extra_that_run_keeps(clips, tmp_path, cli, kind):
    src = clips[kind]
    run, job = tmp_path / f"run.{kind}", tmp_path / f"job.{kind}"
    _restore(cli, "run", src, run)

    said = _restore(cli, "job", src, job)

    assert int(re.search(r"in (\d+) segments", said)[1]) >= 2
    assert _streams(job) == _streams(run)
    kinds = [s[0] for s in _streams(job)]
    assert kinds.count("audio") == kinds.count("subtitle") == 1
    assert _format_tags(job) == _format_tags(run) and _format_tags(job)["title"] == "Reel 3"
    assert _chapters(job) == _chapters(run) == _chapters(src) and len(_chapters(job)) == 3
    assert set(_timecodes(job)) == set(_timecodes(run)) == {TIMECODE}
    if kind == "mp4":
        assert [s for s in _probe(job) if s.get("codec_tag_string") == "tmcd"], "MP4 keeps its tmcd track"
    else:
        assert _attachments(job) == _attachments(run) == [("font.ttf", "font/ttf", clips["font"].read_bytes())]
    cover = _indices(job, "cover")
    assert len(cover) == 1 and cover == _indices(run, "cover")
    assert packet_hashes(job)[cover[0]] == packet_hashes(run)[cover[0]] == packet_hashes(src)[_indices(src, "cover")[0]]
    # Audio and subtitles: the same packets (time, duration, bytes) as run, bytes as the source's.
    out, one, source = packets(job), packets(run), packets(src)
    for kind_ in ("audio", "subtitle"):
        index, source_index = _indices(job, kind_)[0], _indices(src, kind_)[0]
        assert out[index] == one[index]
        assert [p.sha256 for p in out[index]] == [p.sha256 for p in source[source_index]]
    assert video_times(job) == video_times(run) and len(video_times(job)) == FRAMES


# -- a range: chapters cut to it, the timecode of its first frame ----------------------------------
@pytest.mark.parametrize("kind", ["mkv", "mp4"])
def test_range_keeps_chapters_cut_to_it_and_the_timecode_of_its_first_frame(clips, tmp_path, cli, kind):
    src = clips[kind]
    cut = tmp_path / f"cut.{kind}"

    _restore(cli, "job", src, cut, "--start", 0.25, "--duration", 1.0)

    times = video_times(src)
    start, end = times[6], times[30]  # frames 6..29: 0.25 s after the first frame, for 1 s
    assert video_times(cut) == [t - start for t in times[6:30]]
    # "One" began before the range: it starts at 0; "Three" ends after it: it ends at the range's end.
    chapters = _chapters(cut)
    assert [c[2] for c in chapters] == ["One", "Two", "Three"]
    assert [c[:2] for c in chapters] == [pytest.approx(c, abs=1e-3) for c in [(0, 0.25), (0.25, 0.75), (0.75, 1)]]
    assert set(_timecodes(cut)) == {"01:00:00:06"}  # 6 frames at 24 fps after 01:00:00:00
    # Audio and subtitles of the span, bit for bit, moved by the range's start: in sync.
    source, out = packets(src), packets(cut)
    for kind_ in ("audio", "subtitle"):
        kept = [p for p in source[_indices(src, kind_)[0]] if start <= p.pts < end and p.sha256 != _NO_CUE]
        copied = [p for p in out[_indices(cut, kind_)[0]] if p.sha256 != _NO_CUE]
        assert [p.sha256 for p in copied] == [p.sha256 for p in kept] and kept
        assert [p.pts for p in copied] == pytest.approx([float(p.pts - start) for p in kept], abs=1e-3)
    # The whole file's cover art and attachments stay.
    assert packet_hashes(cut)[_indices(cut, "cover")[0]] == packet_hashes(src)[_indices(src, "cover")[0]]
    if kind == "mkv":
        assert _attachments(cut) == [("font.ttf", "font/ttf", clips["font"].read_bytes())]


# -- an output that cannot hold them ---------------------------------------------------------------
@pytest.mark.parametrize(("kind", "ext", "words"), [("mkv", ".mp4", "cannot carry subtitle stream #2 (ssa)"),
                                                   ("mp4", ".mov", "cannot carry the cover art")])
def test_an_output_that_cannot_hold_the_source_is_refused_before_any_segment(clips, tmp_path, cli, kind, ext, words):
    job_dir = tmp_path / "job"
    ran = cli("run", clips[kind], "--chain", "identity", "-o", tmp_path / f"run{ext}")

    refused = cli("job", clips[kind], "--chain", "identity", "-o", tmp_path / f"job{ext}", "--job", job_dir)

    assert refused.code == ran.code == OutputError.exit_code
    assert refused.lines[-1] == ran.lines[-1] and words in ran.lines[-1]  # the same message (after the progress bar)
    assert not job_dir.exists(), "refused before the job directory (and any segment) was made"
    assert not [name for name in os.listdir(tmp_path) if "streamrestore-" in name], "no temporary output left"


# -- data streams ----------------------------------------------------------------------------------
def _klv_clip(path: Path) -> Path:
    """MPEG-TS: H.264 (a keyframe every 6 frames) and a KLV telemetry packet beside every frame."""
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=RATE, options={"preset": "ultrafast", "g": "6"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        data = out.add_data_stream("klv")
        out.start_encoding()
        for index in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 7 * index, np.uint8), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = index, Fraction(1, RATE)
            out.mux(video.encode(frame))
            packet = av.Packet(bytes([6, 14, 43, 52, 2, 11, 1, 1, 14, 1, 3, 1, 1, 0, 0, 0, index]))
            packet.stream, packet.time_base = data, Fraction(1, 90000)
            packet.pts = packet.dts = index * 90000 // RATE
            out.mux(packet)
        out.mux(video.encode(None))
    return path


def test_data_stream_copied_by_the_job_and_cut_with_a_range(tmp_path, cli):
    src = _klv_clip(tmp_path / "klv.ts")
    run, job, cut = tmp_path / "run.ts", tmp_path / "job.ts", tmp_path / "cut.ts"
    _restore(cli, "run", src, run)

    _restore(cli, "job", src, job)
    _restore(cli, "job", src, cut, "--start", 0.5, "--duration", 0.5)

    source = packets(src)[1]
    assert packets(job)[1] == packets(run)[1] and [p.sha256 for p in packets(job)[1]] == [p.sha256 for p in source]
    start = video_times(src)[12]
    assert [(p.pts, p.sha256) for p in packets(cut)[1]] == [(p.pts - start, p.sha256) for p in source[12:24]]


# -- the rules, on their own -----------------------------------------------------------------------
def test_timecode_after_counts_like_ffmpeg():
    ntsc = Fraction(30000, 1001)
    assert timecode_after("01:00:00:00", Fraction(24), 6) == "01:00:00:06"
    assert timecode_after("00:59:59:23", Fraction(24), 1) == "01:00:00:00"
    assert timecode_after("23:59:59:23", Fraction(24), 1) == "00:00:00:00"  # wraps at 24 h
    assert timecode_after("00:00:59;29", ntsc, 1) == "00:01:00;02"  # drop-frame: ;00 and ;01 skipped
    assert timecode_after("00:09:59;29", ntsc, 1) == "00:10:00;00"  # but not at every tenth minute
    assert timecode_after("00:00:00;00", ntsc, 17982) == "00:10:00;00"
    assert timecode_after("00:00:00;00", Fraction(60000, 1001), 3600) == "00:01:00;04"
    assert timecode_after("00:00:00;00", Fraction(25), 1) is None  # drop-frame needs 30 or 60 fps
    assert timecode_after("reel 3", Fraction(24), 1) is None


def test_cut_chapters_keeps_the_overlapping_ones_moved_to_zero():
    ms = Fraction(1, 1000)
    chapters = [{"id": i, "start": a, "end": b, "time_base": ms, "metadata": {"title": t}}
                for i, (a, b, t) in enumerate([(0, 400, "a"), (400, 900, "b"), (900, 1500, "c"), (1500, 2000, "d")])]

    kept = cut_chapters(chapters, Fraction(1, 2), Fraction(3, 2))

    assert [(c["start"], c["end"], c["metadata"]["title"]) for c in kept] == [(0, 400, "b"), (400, 1000, "c")]
    assert [c["end"] for c in cut_chapters(chapters, Fraction(1, 2), None)] == [400, 1000, 1500]


def test_a_range_an_hour_in_moves_the_timecode_by_an_hour_of_the_nominal_rate():
    # The measured average of a clip with a start offset is a little off 24 (the MP4 clip above: 32000/1333);
    # counted at it, an hour would be off by 21 frames. Drop-frame at 29.97 keeps the clock on time.
    for timecode, rate, expected in [("01:00:00:00", Fraction(32000, 1333), "02:00:00:00"),
                                     ("01:00:00;00", Fraction(30000, 1001), "02:00:00;00")]:
        extras = ContainerExtras(timecode=timecode, video_tags={"language": "fra", "timecode": timecode})
        first = Fraction(21, 1000)

        moved, metadata, _ = in_range(extras, {"TIMECODE": timecode, "title": "Reel 3"}, [], first + 3600, None,
                                      first, rate)

        assert moved.timecode == expected
        assert moved.video_tags == {"language": "fra", "timecode": expected}
        assert metadata == {"TIMECODE": expected, "title": "Reel 3"}
