"""Interlaced and telecined input: detection, auto-deinterlacing, --interlaced keep, deinterlace options, IVTC.

Clips are made here with the ffmpeg command, as archive captures are: a white bar moving 12 px per field
over black, interlaced by FFmpeg's ``interlace`` filter from 50p (so field j shows the bar at 40 + 12 j),
and film frames (a panned photograph at 24p) run through FFmpeg's 3:2 ``telecine``. What is checked is
what a user would check: ffprobe's field order, frame count and timestamps, audio packet hashes, the
pictures (no combing, the bar where its field put it, each processed field), and the one stderr line.
"""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from support.media import make_clip, packets, panned_frames, video_frames
from streamrestore.cli import main
from streamrestore.errors import ConfigError
from streamrestore.media import interlace
from streamrestore.restore import OutputSettings, RunSettings, restore_image, restore_video

FIELD_RATE = 50
BAR_START, BAR_SPEED, BAR_TOP, BAR_HEIGHT = 40, 600, 40, 160  # px, px/s: 12 px per field at 50 fields/s
FRAMES = 8  # interlaced frames (0.32 s at 25i)
FAST = OutputSettings(preset="ultrafast")


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, timeout=120)


def ffprobe_stream(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=field_order,avg_frame_rate,nb_frames,width,height", "-of", "json", str(path)],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    return json.loads(out)["streams"][0]


def moving_bar(path: Path, order: str = "tff", tagged: bool | str = True) -> Path:
    """The issue's clip: 50p moving bar woven into 25i by ``interlace``; AAC audio beside it.

    Tagged: H.264 coded interlaced (+ildct+ilme) in MP4, field order on the stream. Untagged: the
    interlaced flags cleared (``setfield=prog``) and written as FFV1 in NUT, which stores no field order.
    ``tagged="progressive"``: flags cleared and coded progressive H.264 (MP4 says progressive): wrongly tagged.
    """
    seconds = f"{2 * FRAMES / FIELD_RATE}"
    weave = (f"[0][1]overlay=x='{BAR_START}+t*{BAR_SPEED}':y={BAR_TOP}:eval=frame,interlace=scan={order}"
             + ("" if tagged else ",setfield=prog"))
    video = (["-c:v", "libx264", "-crf", "10", "-flags", "+ilme+ildct", "-top", "1" if order == "tff" else "0"]
             if tagged is True else ["-c:v", "libx264", "-crf", "10"] if tagged else ["-c:v", "ffv1"])
    ffmpeg("-f", "lavfi", "-t", seconds, "-i", f"color=c=black:size=320x240:rate={FIELD_RATE}",
           "-f", "lavfi", "-t", seconds, "-i", f"color=c=white:size=30x{BAR_HEIGHT}:rate={FIELD_RATE}",
           "-f", "lavfi", "-t", seconds, "-i", "sine=frequency=440:sample_rate=48000",
           "-filter_complex", weave, "-map", "2:a", *video, "-pix_fmt", "yuv420p", "-c:a", "aac", str(path))
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("interlaced")
    return {"tff": moving_bar(folder / "int.mp4"), "bff_untagged": moving_bar(folder / "bff.nut", "bff", False),
            "tagged_progressive": moving_bar(folder / "wrong.mp4", "tff", "progressive")}


def rgb(path: Path) -> list[np.ndarray]:
    return [frame.to_ndarray(format="rgb24") for frame in video_frames(path)]


def luma(picture: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY).astype(np.float64)


def combing(picture: np.ndarray) -> float:
    """Mean row-to-row difference inside the bar's rows (its own top and bottom edges left out)."""
    rows = luma(picture)[BAR_TOP + 8 : BAR_TOP + BAR_HEIGHT - 8]
    return float(np.mean(np.abs(np.diff(rows, axis=0))))


def bar_left(picture: np.ndarray) -> int:
    """Left edge of the bar: the first column whose mean over the bar's rows is bright."""
    columns = luma(picture)[BAR_TOP + 8 : BAR_TOP + BAR_HEIGHT - 8].mean(axis=0)
    return int(np.argmax(columns > 128))


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(["run", *args, "--preset", "ultrafast"])
    return code, capsys.readouterr().err


def fields(path: Path) -> list[np.ndarray]:
    """Every field of a clip as a half-height RGB picture, in display order (FFmpeg's separatefields)."""
    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        graph = None
        for frame in [*container.decode(stream), None]:
            if graph is None:
                graph = interlace._graph(frame, stream.time_base, stream.average_rate, [("separatefields", {})])
            graph.push(frame)
            out += [f.to_ndarray(format="rgb24") for f in interlace._pull(graph)]
    return out


# -- detection -------------------------------------------------------------------------------------
def _detect(path: Path) -> interlace.Interlacing:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))[: interlace.IDET_FRAMES]
        return interlace.detect(stream.codec_context.field_order, frames, stream.time_base, stream.average_rate)


def test_field_order_detected_from_the_tag_from_idet_and_progressive(clips, tmp_path) -> None:
    tagged = _detect(clips["tff"])
    assert (tagged.order, tagged.evidence) == ("tff", "stream tag")
    assert ffprobe_stream(clips["bff_untagged"]).get("field_order", "unknown") == "unknown"
    untagged = _detect(clips["bff_untagged"])
    assert untagged.order == "bff" and untagged.evidence.startswith("idet:"), untagged
    progressive = make_clip(tmp_path / "p.mkv", panned_frames(12, 160, 120, step=4))
    assert not _detect(Path(progressive.path)).interlaced


# -- automatic deinterlacing -----------------------------------------------------------------------
def test_spatial_chain_on_interlaced_input_deinterlaces_at_field_rate(clips, tmp_path, capsys) -> None:
    source, out = clips["tff"], tmp_path / "out.mp4"
    code, err = run_cli([str(source), "--chain", "sharpen", "-o", str(out)], capsys)
    assert code == 0, err
    notices = [line for line in err.splitlines() if "deinterlacing first with bwdif at field rate" in line]
    assert len(notices) == 1 and "25 → 50 fps" in notices[0], err
    assert f"wrote {out}: {2 * FRAMES} frames from {FRAMES} source frames" in err

    assert ffprobe_stream(out)["field_order"] == "progressive"
    times = [f.pts * f.time_base for f in video_frames(out)]
    assert len(times) == 2 * FRAMES
    source_times = [f.pts * f.time_base for f in video_frames(source)]
    assert times[0] == source_times[0] and times[::2] == source_times
    assert set(np.diff(times)) == {Fraction(1, FIELD_RATE)}  # exactly half the source frame duration
    before, after = packets(source), packets(out)
    assert [p.sha256 for p in after[1]] == [p.sha256 for p in before[1]] and after[1]  # audio untouched
    assert [p.pts for p in after[1]] == [p.pts for p in before[1]]


def test_deinterlaced_bar_has_no_combing_and_moves_one_field_per_frame(clips, tmp_path, capsys) -> None:
    source, out = clips["tff"], tmp_path / "out.mp4"
    assert run_cli([str(source), "--chain", "sharpen", "-o", str(out)], capsys)[0] == 0
    woven, progressive = rgb(source), rgb(out)
    cv2.imwrite(str(tmp_path / "bar.png"), cv2.cvtColor(np.hstack([woven[2], progressive[4], progressive[5]]),
                                                        cv2.COLOR_RGB2BGR))
    assert min(combing(p) for p in woven[1:]) > 10  # the source alternates fields: 12 px apart
    assert max(combing(p) for p in progressive) < 1.5
    # Field j shows the bar at 40 + 12 j: each output frame is the next field, in the right order.
    lefts = [bar_left(p) for p in progressive]
    expected = [BAR_START + j * BAR_SPEED // FIELD_RATE for j in range(2 * FRAMES)]
    assert np.max(np.abs(np.subtract(lefts, expected))) <= 2, lefts


def test_untagged_bottom_field_first_is_found_by_idet_and_deinterlaced_in_order(clips, tmp_path, capsys) -> None:
    out = tmp_path / "out.mkv"
    code, err = run_cli([str(clips["bff_untagged"]), "--chain", "sharpen", "-o", str(out)], capsys)
    assert code == 0, err
    assert "interlaced input (bottom field first; idet:" in err
    progressive = rgb(out)
    assert len(progressive) == 2 * FRAMES and max(combing(p) for p in progressive) < 1.5
    lefts = [bar_left(p) for p in progressive]
    expected = [BAR_START + j * BAR_SPEED // FIELD_RATE for j in range(2 * FRAMES)]
    assert np.max(np.abs(np.subtract(lefts, expected))) <= 2, lefts  # a parity mix-up would jump back


def test_deinterlace_at_frame_rate_keeps_count_and_timestamps(clips, tmp_path) -> None:
    source, out = clips["tff"], tmp_path / "out.mp4"
    notices: list[str] = []
    report = restore_video(str(source), str(out), "deinterlace:rate=frame:method=yadif,sharpen", output=FAST,
                           on_notice=notices.append)
    assert report.frames == report.source_frames == FRAMES
    assert notices == ["deinterlacing with yadif at frame rate (tff), 25 → 25 fps; the output has the same "
                       "number of frames"]
    assert [f.pts * f.time_base for f in video_frames(out)] == [f.pts * f.time_base for f in video_frames(source)]
    assert ffprobe_stream(out)["field_order"] == "progressive"
    assert max(combing(p) for p in rgb(out)) < 1.5


def test_field_operations_must_lead_the_chain_and_do_not_mix_with_keep(clips, tmp_path, capsys) -> None:
    code, err = run_cli([str(clips["tff"]), "--chain", "sharpen,deinterlace", "-o", str(tmp_path / "a.mp4")], capsys)
    assert code == 2 and "must come first in the chain" in err
    code, err = run_cli([str(clips["tff"]), "--chain", "deinterlace", "--interlaced", "keep",
                         "-o", str(tmp_path / "b.mp4")], capsys)
    assert code == 2 and "--interlaced keep keeps the fields" in err
    code, err = run_cli([str(clips["tff"]), "--chain", "deinterlace:rate=double", "-o", str(tmp_path / "c.mp4")],
                        capsys)
    assert code == 2 and "'rate' must be one of field, frame" in err
    assert not list(tmp_path.iterdir())


# -- keeping it interlaced -------------------------------------------------------------------------
def test_keep_processes_each_field_and_writes_interlaced_output(clips, tmp_path, capsys) -> None:
    source, out = clips["tff"], tmp_path / "keep.mp4"
    code, err = run_cli([str(source), "--chain", "sharpen", "--interlaced", "keep", "-o", str(out), "--crf", "8"],
                        capsys)
    assert code == 0, err
    assert "each field is processed as its own half-height picture" in err
    probe = ffprobe_stream(out)
    assert (probe["field_order"], probe["width"], probe["height"], probe["avg_frame_rate"]) == ("tt", 320, 240, "25/1")
    frames = video_frames(out)
    assert all(f.interlaced_frame for f in frames)
    assert [f.pts * f.time_base for f in frames] == [f.pts * f.time_base for f in video_frames(source)]
    # Real field motion is kept: the woven output combs exactly where the source does.
    woven_in, woven_out = rgb(source), rgb(out)
    for before, after in zip(woven_in[1:], woven_out[1:]):
        assert combing(after) == pytest.approx(combing(before), rel=0.15)
    # Each output field is the stage's output for that field alone (sharpening the woven frame would
    # mix the two fields' bar edges, 12 px apart).
    source_fields, output_fields = fields(source), fields(out)
    assert len(output_fields) == len(source_fields) == 2 * FRAMES
    errors, mixed = [], []
    for k, (field_in, field_out) in enumerate(zip(source_fields, output_fields)):
        expected = restore_image(field_in, "sharpen")
        errors.append(np.mean(np.abs(field_out.astype(float) - expected)))
        woven_sharpened = restore_image(woven_in[k // 2], "sharpen")[k % 2 :: 2]
        mixed.append(np.mean(np.abs(field_out.astype(float) - woven_sharpened)))
    assert max(errors) < 1.5, errors
    assert min(mixed[2:]) > 2 * max(errors), (mixed, errors)


# -- inverse telecine ------------------------------------------------------------------------------
def psnr_y(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of the luma (4:2:0 chroma alone caps an RGB comparison of this photo near 33 dB)."""
    return float(10 * np.log10(255.0**2 / np.mean((luma(a) - luma(b)) ** 2)))


def test_ivtc_gives_back_the_film_frames_at_24p(tmp_path, capsys) -> None:
    film = make_clip(tmp_path / "film.mkv", panned_frames(25, 160, 120, step=5), codec="ffv1", rate=24)
    telecined = tmp_path / "telecined.mp4"
    ffmpeg("-i", film.path, "-vf", "telecine=first_field=top:pattern=23", "-frames:v", "30", "-c:v", "libx264",
           "-crf", "4", "-flags", "+ilme+ildct", "-top", "1", "-pix_fmt", "yuv420p", str(telecined))
    source_times = [f.pts * f.time_base for f in video_frames(telecined)]
    assert len(source_times) == 30 and ffprobe_stream(telecined)["field_order"] == "tt"

    out = tmp_path / "film_out.mp4"  # MP4: a time base that says 1/24 s exactly (Matroska rounds to ms)
    code, err = run_cli([str(telecined), "--chain", "ivtc", "-o", str(out), "--crf", "4"], capsys)
    assert code == 0, err
    assert "inverse telecine (fieldmatch, decimate; tff): 30 → 24 fps" in err
    assert f"wrote {out}: 24 frames from 30 source frames" in err
    frames = video_frames(out)
    times = [f.pts * f.time_base for f in frames]
    assert len(times) == 24 and times[0] == source_times[0]
    assert set(np.diff(times)) == {Fraction(1, 24)}
    assert ffprobe_stream(out)["field_order"] == "progressive"
    restored = [f.to_ndarray(format="rgb24") for f in frames]
    # The clean frames of the telecined file itself score 42-43 dB; its combed ones 14-17 dB.
    scores = [psnr_y(picture, film.pictures[i]) for i, picture in enumerate(restored)]
    neighbours = [psnr_y(picture, film.pictures[i + 1]) for i, picture in enumerate(restored)]
    assert min(scores) > 38, scores
    assert max(n - s for s, n in zip(scores, neighbours)) < -8  # it is that film frame, not the next one


def test_identity_leaves_interlaced_frames_woven_and_writes_them_interlaced(clips, tmp_path) -> None:
    source, out = clips["tff"], tmp_path / "same.mp4"
    notices: list[str] = []
    report = restore_video(str(source), str(out), "identity", output=FAST, on_notice=notices.append)
    assert notices == [] and report.frames == report.source_frames == FRAMES
    assert ffprobe_stream(out)["field_order"] == "tt"
    frames = video_frames(out)
    assert all(f.interlaced_frame for f in frames)
    assert [f.pts * f.time_base for f in frames] == [f.pts * f.time_base for f in video_frames(source)]
    for before, after in zip(rgb(source), rgb(out)):
        assert np.mean(np.abs(luma(before) - luma(after))) < 1.0
    with pytest.raises(ConfigError, match="not on images"):
        restore_image(rgb(source)[0], "deinterlace,sharpen")


def test_lost_packets_are_repaired_before_deinterlacing(tmp_path) -> None:
    """A packet with no picture is replaced by the previous frame at its own time, then deinterlaced
    like any other: two output frames per source packet, evenly spaced, nothing out of order."""
    clip = make_clip(tmp_path / "damaged.mp4", panned_frames(12, 160, 120), garble=[4, 7], blank=True)
    report = restore_video(clip.path, str(tmp_path / "out.mp4"), "deinterlace,sharpen", output=FAST)
    assert (report.source_frames, report.repaired_frames, report.frames) == (12, 2, 24)
    times = [f.pts * f.time_base for f in video_frames(tmp_path / "out.mp4")]
    assert times[::2] == clip.times and set(np.diff(times)) == {Fraction(1, 48)}


def test_a_progressive_tag_is_kept_unless_told_and_then_idet_gives_the_order(clips, tmp_path) -> None:
    """Combed frames in a stream tagged progressive: reported by detection, acted on with --interlaced deinterlace
    (idet also combs on synthetic pictures such as testsrc2, so a tag is not overruled by itself)."""
    source = clips["tagged_progressive"]
    assert ffprobe_stream(source)["field_order"] == "progressive"
    found = _detect(source)
    assert (found.order, found.combed) == ("progressive", "tff") and "idet:" in found.evidence
    kept = restore_video(str(source), str(tmp_path / "kept.mp4"), "sharpen", output=FAST)
    assert kept.frames == kept.source_frames == FRAMES
    notices: list[str] = []
    fixed = restore_video(str(source), str(tmp_path / "fixed.mp4"), "sharpen", RunSettings(interlaced="deinterlace"),
                          FAST, on_notice=notices.append)
    assert fixed.frames == 2 * FRAMES and len(notices) == 1 and "top field first" in notices[0]
    progressive = rgb(tmp_path / "fixed.mp4")
    assert max(combing(p) for p in progressive) < 1.5
    expected = [BAR_START + j * BAR_SPEED // FIELD_RATE for j in range(2 * FRAMES)]
    assert np.max(np.abs(np.subtract([bar_left(p) for p in progressive], expected))) <= 2
