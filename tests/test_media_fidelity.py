"""restore_video and restore_image keep everything but the pixels the stages change.

Each test guards one promise of the media layer (frames and timestamps, copied streams, colour,
rotation, bit depth, odd sizes, encoder choices, container metadata, damaged input, images) and
fails if it breaks. Clips are made with PyAV by ``support.media`` from real photographs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from support.media import (
    BT601,
    BT709,
    AudioTrack,
    Colour,
    SubtitleTrack,
    make_clip,
    mean_abs_error,
    packets,
    panned_frames,
    photo,
    planes,
    player_rgb,
    sha256_file,
    streams,
    video_frames,
    video_times,
)
from streamrestore.errors import ConfigError, CorruptInputError, MediaError
from streamrestore.restore import OutputSettings, RunSettings, restore_image, restore_video

# Irregular gaps (ms): a variable-frame-rate clip. Exact in every container's time base.
VFR_PTS = [0, 40, 80, 200, 240, 250, 400, 433, 466, 700, 740, 1000]
MS = Fraction(1, 1000)
_EMPTY_MOV_TEXT = hashlib.sha256(b"\x00\x00").hexdigest()  # a mov_text sample with no text


def restore(src: Path | str, dst: Path | str, chain: str = "identity", **options) -> object:
    """restore_video with a fast encoder preset unless the test chooses otherwise; ``options`` are fields of
    ``RunSettings`` (strict, device, …) or ``OutputSettings`` (codec, crf, preset, …)."""
    options.setdefault("preset", "ultrafast")
    run_fields = {f.name for f in dataclasses.fields(RunSettings)}
    run = RunSettings(**{k: v for k, v in options.items() if k in run_fields})
    output = OutputSettings(**{k: v for k, v in options.items() if k not in run_fields})
    return restore_video(str(src), str(dst), chain, run, output)


def leftovers(folder: Path) -> list[str]:
    """Temporary outputs the library left behind."""
    return [name for name in os.listdir(folder) if "streamrestore-" in name]


# -- 1. frame count and presentation times ---------------------------------------------------------
@pytest.fixture(scope="module")
def vfr_clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("vfr")
    pictures = panned_frames(len(VFR_PTS), 160, 120)
    clips = {}
    for ext in ("mkv", "mp4", "ts"):
        clips[ext] = folder / f"vfr.{ext}"
        make_clip(clips[ext], pictures, pts=VFR_PTS, time_base=MS)
    return clips


@pytest.mark.parametrize("out_ext", ["mkv", "mp4"])
@pytest.mark.parametrize("in_ext", ["mkv", "mp4", "ts"])
def test_vfr_frame_times_kept(vfr_clips, tmp_path, in_ext, out_ext):
    src = vfr_clips[in_ext]
    source_times = video_times(src)
    assert len(set(np.diff([float(t) for t in source_times]).round(3))) > 3, "the source must be VFR"
    if in_ext in ("mkv", "ts"):
        assert streams(src)[0]["frames"] == 0, "Matroska/MPEG-TS announce no frame count"

    report = restore(src, tmp_path / f"out.{out_ext}")

    assert report.frames == len(VFR_PTS)
    assert video_times(tmp_path / f"out.{out_ext}") == source_times


def test_frame_times_kept_with_b_frames(tmp_path):
    # Reordered frames (pts ≠ dts) and a 24 fps time base that MP4 stores exactly.
    src = tmp_path / "bframes.mp4"
    make_clip(src, panned_frames(16, 160, 120), options={"preset": "medium", "bframes": "3"})
    with av.open(str(src)) as container:
        assert any(p.pts != p.dts for p in container.demux(video=0) if p.size), "the source must have B-frames"

    restore(src, tmp_path / "out.mp4", preset="medium")

    assert video_times(tmp_path / "out.mp4") == video_times(src)
    assert len(video_times(src)) == 16


@pytest.mark.parametrize("count", [1, 2])
def test_clip_shorter_than_the_decoder_delay(tmp_path, count):
    # The threaded decoder returns nothing until the end-of-stream flush for clips this short.
    src = tmp_path / "short.mkv"
    make_clip(src, panned_frames(count, 160, 120))
    report = restore(src, tmp_path / "out.mkv")
    assert report.frames == count
    assert video_times(tmp_path / "out.mkv") == video_times(src)


@pytest.mark.slow
@pytest.mark.parametrize("chain, scale", [("tdenoise", 1), ("resize:scale=2", 2)])
def test_frame_times_kept_through_temporal_and_scaling_stages(vfr_clips, tmp_path, chain, scale):
    src = vfr_clips["mkv"]
    report = restore(src, tmp_path / "out.mkv", chain)

    out = video_frames(tmp_path / "out.mkv")
    assert [f.pts * f.time_base for f in out] == video_times(src)
    assert (out[0].width, out[0].height) == (160 * scale, 120 * scale)
    assert report.frames == len(VFR_PTS)
    # Each output frame is its own source frame restored, not a neighbour shifted by the stage's window.
    source = [player_rgb(f) for f in video_frames(src)]
    for i, frame in enumerate(out):
        restored = cv2.resize(player_rgb(frame), (160, 120), interpolation=cv2.INTER_AREA)
        errors = [mean_abs_error(restored, source[j]) for j in range(len(source))]
        assert int(np.argmin(errors)) == i


# -- 2. audio and subtitle streams copied untouched, A/V sync kept ---------------------------------
def _copied_streams(path: Path) -> dict[tuple[str, int], tuple[dict, list]]:
    """Audio and subtitle streams keyed by (type, n-th of that type): the writer may renumber streams."""
    listed, found = streams(path), packets(path)
    keyed = {}
    for kind in ("audio", "subtitle"):
        for n, stream in enumerate(s for s in listed if s["type"] == kind):
            keyed[(kind, n)] = (stream, found[stream["index"]])
    return keyed


def _title(metadata: dict) -> str | None:
    return metadata.get("title") or metadata.get("name")  # MP4 reads a track title back as "name"


def _first_time(path: Path, kind: str) -> Fraction:
    listed, found = streams(path), packets(path)
    index = next(s["index"] for s in listed if s["type"] == kind)
    return min(p.pts for p in found[index])


def _check_copies(src: Path, dst: Path, expected: dict[tuple[str, int], tuple[str, str]]) -> None:
    before, after = _copied_streams(src), _copied_streams(dst)
    assert set(after) == set(before) == set(expected)
    for key, (language, title) in expected.items():
        (meta_in, packets_in), (meta_out, packets_out) = before[key], after[key]
        assert meta_out["codec"] == meta_in["codec"]
        assert meta_in["metadata"].get("language") == meta_out["metadata"].get("language") == language
        assert _title(meta_in["metadata"]) == _title(meta_out["metadata"]) == title
        if meta_in["codec"] == "mov_text":
            # FFmpeg's MP4 muxer inserts empty "end of cue" samples of its own when it interleaves a
            # mov_text track; every cue with text must still be there, byte for byte.
            packets_in = [p for p in packets_in if p.sha256 != _EMPTY_MOV_TEXT]
            packets_out = [p for p in packets_out if p.sha256 != _EMPTY_MOV_TEXT]
        assert len(packets_out) == len(packets_in) > 1
        assert [p.sha256 for p in packets_out] == [p.sha256 for p in packets_in]
        assert [p.pts for p in packets_out] == [p.pts for p in packets_in]
        assert [p.duration for p in packets_out] == [p.duration for p in packets_in]


def test_audio_and_subtitles_copied_packet_for_packet_mkv(tmp_path):
    src = tmp_path / "streams.mkv"
    make_clip(src, panned_frames(12, 160, 120), video_start=0.5,
              audio=[AudioTrack("aac", "eng", "English"), AudioTrack("libopus", "fra", "Commentaire", frequency=660)],
              subtitles=[SubtitleTrack("subrip", language="eng", title="English SDH"),
                         SubtitleTrack("ass", ((0.2, 0.6, "Hallo"), (0.7, 1.1, "Welt")), "ger", "Deutsch")])
    offset = _first_time(src, "video") - _first_time(src, "audio")
    assert offset >= Fraction(1, 2), "video must start half a second after the audio"

    restore(src, tmp_path / "out.mkv")

    _check_copies(src, tmp_path / "out.mkv", {
        ("audio", 0): ("eng", "English"), ("audio", 1): ("fra", "Commentaire"),
        ("subtitle", 0): ("eng", "English SDH"), ("subtitle", 1): ("ger", "Deutsch"),
    })
    dst = tmp_path / "out.mkv"
    assert _first_time(dst, "video") - _first_time(dst, "audio") == offset
    assert video_times(dst) == video_times(src)


def test_audio_and_subtitles_copied_packet_for_packet_mp4(tmp_path):
    src = tmp_path / "streams.mp4"
    make_clip(src, panned_frames(12, 160, 120), video_start=0.5,
              audio=[AudioTrack("aac", "eng", "English"), AudioTrack("libmp3lame", "spa", "Comentario")],
              subtitles=[SubtitleTrack("mov_text", language="fra", title="Français")])
    offset = _first_time(src, "video") - _first_time(src, "audio")
    assert offset >= Fraction(1, 2)

    restore(src, tmp_path / "out.mp4")

    _check_copies(src, tmp_path / "out.mp4", {
        ("audio", 0): ("eng", "English"), ("audio", 1): ("spa", "Comentario"), ("subtitle", 0): ("fra", "Français"),
    })
    dst = tmp_path / "out.mp4"
    assert _first_time(dst, "video") - _first_time(dst, "audio") == offset


# -- 3. colour: tags written, and the tags used ----------------------------------------------------
FULL_RANGE_601 = Colour(BT601.matrix, 2, BT601.primaries, BT601.transfer)
COLOUR_CASES = {
    # name: (width, height, colour the source was made with, tagged, colour the output must carry, codec)
    "sd-bt601": (320, 240, BT601, True, BT601, "libx264"),
    # FFV1, not H.264: FFmpeg decodes full-range H.264 as yuvj420p, which swscale reads as full range
    # whatever it is told, so only a yuv420p frame tagged full range shows whether the tag is honoured.
    "sd-bt601-full-range": (320, 240, FULL_RANGE_601, True, FULL_RANGE_601, "ffv1"),
    "hd-bt709": (1280, 720, BT709, True, BT709, "libx264"),
    "sd-untagged": (320, 240, BT601, False, BT601, "libx264"),
    "hd-untagged": (1280, 720, BT709, False, BT709, "libx264"),
}


@pytest.fixture(scope="module", params=sorted(COLOUR_CASES))
def colour_case(request, tmp_path_factory):
    """A losslessly coded source made from known RGB pictures, restored losslessly (identity, FFV1)."""
    width, height, colour, tagged, expected, codec = COLOUR_CASES[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    pictures = panned_frames(2 if width > 1000 else 3, width, height, "coffee", step=5)
    src = folder / "src.mkv"
    make_clip(src, pictures, codec=codec, options={"qp": "0"} if codec == "libx264" else None, colour=colour,
              tagged=tagged)
    restore(src, folder / "out.mkv", codec="ffv1")
    return request.param, pictures, src, folder / "out.mkv", expected, tagged


def test_colour_tags_written_and_used(colour_case):
    name, pictures, src, dst, expected, tagged = colour_case
    source, out = video_frames(src), video_frames(dst)
    if not tagged:
        assert int(source[0].colorspace) == 2, "the source must be untagged"
    for frame in out:
        assert (int(frame.colorspace), int(frame.color_range), int(frame.color_primaries), int(frame.color_trc)) == (
            expected.matrix, expected.range, expected.primaries, expected.transfer)
    # A player decoding with the output's tags sees the pictures the source was made from ...
    # (The source itself is that far from them already, by 4:2:0 chroma subsampling.)
    right = np.mean([mean_abs_error(player_rgb(f), p) for f, p in zip(out, pictures)])
    floor = np.mean([mean_abs_error(player_rgb(f, expected.matrix), p) for f, p in zip(source, pictures)])
    assert right < min(floor + 0.75, 3.0), f"{name}: {right:.2f} levels from the source pictures ({floor:.2f})"
    # ... and the other matrix would have been visibly wrong, so the tags matter.
    other = BT709.matrix if expected.matrix != BT709.matrix else BT601.matrix
    wrong = np.mean([mean_abs_error(player_rgb(f, other), p) for f, p in zip(out, pictures)])
    assert wrong > right + 2.0, f"{name}: wrong matrix {wrong:.2f} vs right {right:.2f}"


def test_identity_round_trip_below_one_level(colour_case):
    name, _, src, dst, expected, _ = colour_case
    source, out = video_frames(src), video_frames(dst)
    assert len(out) == len(source)
    for before, after in zip(source, out):
        # The source as a player shows it (untagged: the matrix it was made with) vs the output.
        error = mean_abs_error(player_rgb(before, expected.matrix), player_rgb(after))
        assert error < 1.0, f"{name}: identity round trip is {error:.2f} levels off"


# -- 4. rotation ------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext, chain", [("mp4", "identity"), ("mkv", "identity"), ("mp4", "resize:scale=2")])
def test_rotation_kept(tmp_path, ext, chain):
    src = tmp_path / f"rotated.{ext}"
    make_clip(src, panned_frames(4, 160, 120), rotation=90)
    rotation = video_frames(src)[0].rotation
    assert rotation in (90, -270)

    restore(src, tmp_path / f"out.{ext}", chain)

    out = video_frames(tmp_path / f"out.{ext}")
    assert [f.rotation for f in out] == [rotation] * 4
    scale = 2 if chain == "resize:scale=2" else 1
    assert (out[0].width, out[0].height) == (160 * scale, 120 * scale), "pixels are stored unrotated"


# -- 5. 10-bit ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ten_bit_source(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("tenbit") / "src.mkv"
    # 16-bit pictures: real detail below the 8-bit step, so the low 2 bits of the 10-bit planes carry information.
    make_clip(src, panned_frames(4, 320, 240, dtype=np.uint16), codec="ffv1", pix_fmt="yuv420p10le", colour=BT709)
    return src


def test_ten_bit_kept_by_default(ten_bit_source, tmp_path):
    report = restore(ten_bit_source, tmp_path / "out.mkv")  # default encoder, lossy
    assert report.pix_fmt == "yuv420p10le"
    assert {f.format.name for f in video_frames(tmp_path / "out.mkv")} == {"yuv420p10le"}


def test_ten_bit_precision_survives(ten_bit_source, tmp_path):
    restore(ten_bit_source, tmp_path / "deep.mkv", codec="ffv1")
    report8 = restore(ten_bit_source, tmp_path / "eight.mkv", codec="ffv1", pix_fmt="yuv420p")
    assert report8.pix_fmt == "yuv420p"

    source, deep, eight = (video_frames(p) for p in (ten_bit_source, tmp_path / "deep.mkv", tmp_path / "eight.mkv"))
    assert {f.format.name for f in deep} == {"yuv420p10le"}
    assert {f.format.name for f in eight} == {"yuv420p"}
    assert len(np.unique(planes(source[0])[0] % 4)) == 4, "the source's low bits must be used"
    luma, luma8, everything, everything8 = [], [], [], []
    for s, d, e in zip(source, deep, eight):
        ps, pd, pe = planes(s), planes(d), [p.astype(np.int32) * 4 for p in planes(e)]
        luma.append(mean_abs_error(ps[0], pd[0]))
        luma8.append(mean_abs_error(ps[0], pe[0]))
        everything.append(mean_abs_error(np.concatenate([p.ravel() for p in ps]), np.concatenate([p.ravel() for p in pd])))
        everything8.append(mean_abs_error(np.concatenate([p.ravel() for p in ps]), np.concatenate([p.ravel() for p in pe])))
    # Code values out of 1023. Luma is near-exact; chroma carries the 4:2:0 resampling of the RGB round trip.
    assert np.mean(luma) < 0.25 and np.mean(everything) < 1.0, (np.mean(luma), np.mean(everything))
    # Through 8 bits the same round trip is several times worse: precision really was kept.
    assert np.mean(luma8) > 4 * np.mean(luma) and np.mean(luma8) > 1.0
    assert np.mean(everything8) > 2 * np.mean(everything)


# -- 6. odd frame sizes --------------------------------------------------------------------------------
@pytest.mark.parametrize("pix_fmt, codec, chain, scale, expected_fmt", [
    ("yuv444p", "libx264", "identity", 1, "yuv444p"),
    ("yuv444p", "libx264", "resize:scale=2", 2, "yuv444p"),
    ("yuv420p", "ffv1", "identity", 1, "yuv444p"),   # 4:2:0 cannot hold 321×241: the writer picks 4:4:4
    ("yuv420p", "ffv1", "resize:scale=2", 2, "yuv420p"),        # 642×482 is even again
])
def test_odd_frame_size(tmp_path, pix_fmt, codec, chain, scale, expected_fmt):
    src = tmp_path / "odd.mkv"
    make_clip(src, panned_frames(3, 321, 241, "chelsea"), codec=codec, pix_fmt=pix_fmt,
              options={"qp": "0"} if codec == "libx264" else None)
    assert video_frames(src)[0].format.name == pix_fmt

    report = restore(src, tmp_path / "out.mkv", chain, codec="ffv1")

    out = video_frames(tmp_path / "out.mkv")
    assert (report.width, report.height) == (321 * scale, 241 * scale)
    assert {(f.width, f.height, f.format.name) for f in out} == {(321 * scale, 241 * scale, expected_fmt)}
    # The same picture, not cropped or shifted by a pixel.
    for before, after in zip(video_frames(src), out):
        shrunk = cv2.resize(player_rgb(after), (321, 241), interpolation=cv2.INTER_AREA)
        assert mean_abs_error(shrunk, player_rgb(before)) < (1.0 if scale == 1 else 4.0)


# -- 7. encoder choices ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_clip(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("small") / "small.mkv"
    make_clip(src, panned_frames(8, 160, 120))
    return src


@pytest.mark.parametrize("codec, expected", [("libx265", "hevc"), ("ffv1", "ffv1"), ("libx264", "h264")])
def test_encoder_choice(small_clip, tmp_path, codec, expected):
    restore(small_clip, tmp_path / "out.mkv", codec=codec, preset="ultrafast")
    assert streams(tmp_path / "out.mkv")[-1]["codec"] == expected
    assert len(video_frames(tmp_path / "out.mkv")) == 8


def test_crf_and_preset_are_applied(small_clip, tmp_path):
    fine = restore(small_clip, tmp_path / "fine.mkv", crf=5, preset="veryfast")
    coarse = restore(small_clip, tmp_path / "coarse.mkv", crf=45, preset="veryfast")
    assert fine.frames == coarse.frames == 8
    assert os.path.getsize(tmp_path / "coarse.mkv") < os.path.getsize(tmp_path / "fine.mkv") / 2
    with pytest.raises(ConfigError):
        restore(small_clip, tmp_path / "bad-preset.mkv", preset="no-such-preset")
    assert not (tmp_path / "bad-preset.mkv").exists() and not leftovers(tmp_path)


@pytest.mark.parametrize("codec", ["no-such-codec", "aac"])
def test_bad_codec_is_a_config_error(small_clip, tmp_path, codec):
    with pytest.raises(ConfigError):
        restore(small_clip, tmp_path / "out.mkv", codec=codec)
    assert not (tmp_path / "out.mkv").exists() and not leftovers(tmp_path)


# -- 8. input untouched; chapters and container metadata kept -------------------------------------
@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_input_untouched_and_container_metadata_kept(tmp_path, ext):
    src = tmp_path / f"chapters.{ext}"
    make_clip(src, panned_frames(12, 160, 120), audio=[AudioTrack()], metadata={"title": "Holiday 1987"},
              chapters=[(0.0, 0.2, "Arrival"), (0.2, 0.5, "Beach")])
    digest = sha256_file(src)

    restore(src, tmp_path / f"out.{ext}", "resize:scale=2")

    assert sha256_file(src) == digest
    with av.open(str(src)) as before, av.open(str(tmp_path / f"out.{ext}")) as after:
        assert after.metadata.get("title") == before.metadata.get("title") == "Holiday 1987"

        def chapters(container):
            return [(c["start"] * c["time_base"], c["end"] * c["time_base"], c["metadata"].get("title"))
                    for c in container.chapters()]

        assert chapters(after) == chapters(before) == [
            (0, Fraction(1, 5), "Arrival"), (Fraction(1, 5), Fraction(1, 2), "Beach")]


# -- 9. damaged and truncated input ------------------------------------------------------------------
@pytest.mark.parametrize("ext, blank", [("mkv", False), ("ts", False), ("mkv", True), ("mp4", True)])
def test_damaged_frames_repaired_in_place(tmp_path, ext, blank):
    src = tmp_path / f"damaged.{ext}"
    make_clip(src, panned_frames(24, 160, 120), options={"keyint": "8"}, garble=[5, 6, 13], blank=blank)
    video_index = next(s["index"] for s in streams(src) if s["type"] == "video")
    packet_times = sorted(p.pts for p in packets(src)[video_index])
    assert len(packet_times) == 24
    decodable = video_frames(src)
    if blank:
        assert len(decodable) == 21, "blank packets must really fail to decode"
    else:
        assert sum(f.is_corrupt for f in decodable) >= 2, "noisy packets must really be damaged"

    report = restore(src, tmp_path / f"out.{ext}")

    assert report.frames == 24 and report.damaged_frames >= 3
    assert video_times(tmp_path / f"out.{ext}") == packet_times
    if blank:
        assert report.repaired_frames == 3
    with pytest.raises(CorruptInputError):
        restore(src, tmp_path / f"strict.{ext}", strict=True)
    assert not (tmp_path / f"strict.{ext}").exists() and not leftovers(tmp_path)


@pytest.mark.parametrize("faststart", [True, False])
def test_truncated_mp4_is_an_error_and_leaves_nothing(tmp_path, faststart):
    whole = tmp_path / "whole.mp4"
    make_clip(whole, panned_frames(24, 160, 120), audio=[AudioTrack()],
              container_options={"movflags": "faststart"} if faststart else None)
    data = whole.read_bytes()
    assert (data.find(b"moov") < data.find(b"mdat")) == faststart
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])

    with pytest.raises(MediaError):
        restore(cut, tmp_path / "out.mp4")

    assert not (tmp_path / "out.mp4").exists() and not leftovers(tmp_path)
    assert cut.read_bytes() == data[: len(data) // 2]


# -- 10. images --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_restore_image_keeps_dtype_and_pixels(dtype):
    image = photo("chelsea", 97, 61, dtype=dtype)  # odd size on purpose
    same = restore_image(image, "identity")
    assert same.dtype == dtype and same.shape == image.shape
    assert np.array_equal(same, image)
    assert np.array_equal(restore_image(image, ""), image)

    bigger = restore_image(image, "resize:scale=2")
    assert bigger.dtype == dtype and bigger.shape == (122, 194, 3)
    shrunk = cv2.resize(bigger.astype(np.float32), (97, 61), interpolation=cv2.INTER_AREA)
    assert mean_abs_error(shrunk, image) < 0.02 * np.iinfo(dtype).max
