"""Cover art, attachments, data streams, timecode and the video track's labels reach the output.

Every clip is made here with Debian's ffmpeg command (the way such files are made in the field) or
PyAV, and the output is checked the way a user would with ffprobe: streams, dispositions, tags, and
the SHA-256 of every copied packet or attachment.
"""

from __future__ import annotations

import os
import shutil
import signal
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from support.media import ffmpeg, packet_hashes, probe
from streamrestore.cli import main
from streamrestore.errors import NoVideoStreamError, OutputError
from streamrestore.restore import OutputSettings, restore_video

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="needs the ffmpeg and ffprobe commands (apt install ffmpeg)")


def restore(src: Path, dst: Path, **options) -> object:
    options.setdefault("preset", "ultrafast")
    return restore_video(str(src), str(dst), "identity", output=OutputSettings(**options))


def leftovers(folder: Path) -> list[str]:
    return [name for name in os.listdir(folder) if "streamrestore-" in name]


def run_cli(capsys, *argv: object) -> tuple[int, str]:
    previous = signal.getsignal(signal.SIGTERM)  # main() installs its own SIGTERM handler
    try:
        code = main([str(a) for a in argv])
    finally:
        signal.signal(signal.SIGTERM, previous)
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("extras")
    clip, cover, png = folder / "clip.mp4", folder / "cover.jpg", folder / "cover.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24", "-f", "lavfi", "-i", "sine", "-t", "0.25",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", clip)
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=32x32:rate=1", "-frames:v", "1", cover)
    ffmpeg("-f", "lavfi", "-i", "mandelbrot=size=32x32:rate=1", "-frames:v", "1", png)
    font = folder / "font.ttf"
    font.write_bytes(bytes(range(256)) * 40)  # any bytes: an attachment is carried, never parsed
    made = {"clip": clip, "cover_jpg": cover, "font": font}
    made["cover_mp4"] = folder / "cover.mp4"
    ffmpeg("-i", clip, "-i", cover, "-map", "0", "-map", "1", "-c", "copy", "-disposition:v:1", "attached_pic",
           made["cover_mp4"])
    made["cover_m4a"] = folder / "song.m4a"
    ffmpeg("-i", clip, "-i", cover, "-map", "0:a", "-map", "1", "-c", "copy", "-disposition:v:0", "attached_pic",
           made["cover_m4a"])
    made["fonts_mkv"] = folder / "fonts.mkv"
    ffmpeg("-i", clip, "-map", "0", "-c", "copy", "-attach", font, "-metadata:s:t:0", "mimetype=font/ttf",
           "-attach", png, "-metadata:s:t:1", "mimetype=image/png", made["fonts_mkv"])
    made["tc_mov"] = folder / "tc.mov"
    ffmpeg("-i", clip, "-map", "0", "-c", "copy", "-timecode", "01:00:00:00", made["tc_mov"])
    made["labels_mkv"] = folder / "labels.mkv"
    ffmpeg("-i", clip, "-map", "0", "-c", "copy", "-metadata:s:v:0", "language=fra", "-metadata:s:v:0",
           "title=Main feature", "-metadata:s:v:0", "handler_name=Restored picture", "-disposition:v:0",
           "default+forced", made["labels_mkv"])
    made["klv_ts"] = folder / "klv.ts"
    _klv_clip(made["klv_ts"])
    return made


def _klv_clip(path: Path) -> None:
    """MPEG-TS with H.264 and a KLV data stream (drone/broadcast telemetry), one KLV packet per frame."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=24, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        data = out.add_data_stream("klv")
        out.start_encoding()
        for index in range(6):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * index, np.uint8), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = index, Fraction(1, 24)
            out.mux(video.encode(frame))
            packet = av.Packet(bytes([6, 14, 43, 52, 2, 11, 1, 1, 14, 1, 3, 1, 1, 0, 0, 0, index]))
            packet.stream, packet.time_base = data, Fraction(1, 90000)
            packet.pts = packet.dts = index * 3750
            out.mux(packet)
        out.mux(video.encode(None))


def _covers(streams: list[dict]) -> list[dict]:
    return [s for s in streams if s["disposition"]["attached_pic"]]


# -- cover art -------------------------------------------------------------------------------------
def test_cover_art_copied_as_cover_mp4(media, tmp_path):
    out = tmp_path / "out.mp4"
    report = restore(media["cover_mp4"], out)
    streams = probe(out)
    assert [s["codec_type"] for s in streams] == ["video", "audio", "video"]
    assert [s["codec_name"] for s in _covers(streams)] == ["mjpeg"]
    assert not streams[0]["disposition"]["attached_pic"]
    assert report.frames == 6  # the restored video, not the 1-frame cover
    source, copied = packet_hashes(media["cover_mp4"]), packet_hashes(out)
    assert copied[2] == source[2] and len(copied[2]) == 1  # the picture, bit for bit
    assert copied[1] == source[1]  # audio unchanged


def test_cover_art_into_mkv_becomes_a_cover_attachment(media, tmp_path):
    out = tmp_path / "out.mkv"
    restore(media["cover_mp4"], out)
    covers = _covers(probe(out))
    assert len(covers) == 1
    assert covers[0]["tags"]["mimetype"] == "image/jpeg" and covers[0]["tags"]["filename"] == "cover.jpg"
    assert packet_hashes(out)[covers[0]["index"]] == packet_hashes(media["cover_mp4"])[2]


def test_audio_with_only_cover_art_has_no_video(media, tmp_path, capsys):
    with pytest.raises(NoVideoStreamError, match="only cover art"):
        restore(media["cover_m4a"], tmp_path / "out.mp4")
    code, err = run_cli(capsys, "run", media["cover_m4a"], "--chain", "identity", "-o", tmp_path / "x.mp4")
    assert code == 5 and "no video stream to restore, only cover art" in err and len(err.splitlines()) == 1
    assert not leftovers(tmp_path) and not (tmp_path / "x.mp4").exists()


# -- attachments -----------------------------------------------------------------------------------
def test_mkv_attachments_kept_byte_for_byte(media, tmp_path):
    out = tmp_path / "out.mkv"
    restore(media["fonts_mkv"], out)
    with av.open(str(out)) as container:
        fonts = [(s.name, s.mimetype, bytes(s.data)) for s in container.streams.attachments]
    assert fonts == [("font.ttf", "font/ttf", media["font"].read_bytes())]
    # An image attachment is what Matroska calls a cover: it comes back as one, same name and bytes.
    covers = _covers(probe(out))
    assert [c["tags"]["filename"] for c in covers] == ["cover.png"]
    source_cover = next(s["index"] for s in _covers(probe(media["fonts_mkv"])))
    assert packet_hashes(out)[covers[0]["index"]] == packet_hashes(media["fonts_mkv"])[source_cover]


def test_attachments_refused_by_mp4_with_a_message(media, tmp_path, capsys):
    code, err = run_cli(capsys, "run", media["fonts_mkv"], "--chain", "identity", "-o", tmp_path / "out.mp4")
    assert code == OutputError.exit_code
    assert "cannot carry the attachment 'font.ttf'" in err and ".mkv" in err
    assert not leftovers(tmp_path) and not (tmp_path / "out.mp4").exists()


# -- data streams ----------------------------------------------------------------------------------
def test_klv_data_stream_copied_packet_for_packet(media, tmp_path):
    out = tmp_path / "out.ts"
    restore(media["klv_ts"], out)
    assert [(s["codec_type"], s["codec_name"]) for s in probe(out)] == [("video", "h264"), ("data", "klv")]
    source, copied = packet_hashes(media["klv_ts"]), packet_hashes(out)
    assert copied[1] == source[1] and len(copied[1]) == 6


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_data_stream_refused_where_it_cannot_be_written(media, tmp_path, capsys, ext):
    code, err = run_cli(capsys, "run", media["klv_ts"], "--chain", "identity", "-o", tmp_path / f"out{ext}")
    assert code == OutputError.exit_code
    assert "cannot carry the data stream #1 (klv); choose one that can: MPEG-TS (.ts)" in err
    assert not leftovers(tmp_path)


def test_data_stream_no_container_can_hold_is_left_out_with_a_warning(media, tmp_path, monkeypatch):
    # Such streams exist (an iPhone's "mebx" metadata track: FFmpeg knows no codec for it), but no
    # FFmpeg can write a file with one; so every muxer's refusal is imitated here.
    from streamrestore.media import extras

    monkeypatch.setattr(extras, "_muxer_accepts", lambda format_name, stream: False)
    out = tmp_path / "out.mkv"
    report = restore(media["klv_ts"], out)
    assert report.warnings == ("data stream #1 (klv) cannot be written by any container FFmpeg knows, "
                               "and is left out",)
    assert [s["codec_type"] for s in probe(out)] == ["video"] and report.frames == 6


# -- timecode --------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [".mov", ".mp4"])
def test_timecode_track_kept(media, tmp_path, ext):
    out = tmp_path / f"tc_out{ext}"
    restore(media["tc_mov"], out)
    streams = probe(out)
    tmcd = [s for s in streams if s.get("codec_tag_string") == "tmcd"]
    assert len(tmcd) == 1 and tmcd[0]["codec_type"] == "data"
    assert tmcd[0]["tags"]["timecode"] == "01:00:00:00"
    assert streams[0]["tags"]["timecode"] == "01:00:00:00"


def test_timecode_into_mkv_is_the_video_tag(media, tmp_path):
    out = tmp_path / "tc_out.mkv"
    restore(media["tc_mov"], out)
    streams = probe(out)
    assert [s["codec_type"] for s in streams] == ["video", "audio"]
    assert streams[0]["tags"]["TIMECODE"] == "01:00:00:00"


# -- the video track's labels ----------------------------------------------------------------------
def test_video_track_labels_and_dispositions_kept(media, tmp_path):
    out = tmp_path / "out.mkv"
    restore(media["labels_mkv"], out)
    video = probe(out)[0]
    assert video["tags"]["language"] == "fra" and video["tags"]["title"] == "Main feature"
    assert video["tags"]["HANDLER_NAME"] == "Restored picture"
    assert video["disposition"]["default"] == 1 and video["disposition"]["forced"] == 1
    assert "ENCODER" not in video["tags"]  # the old encoder's name is not carried onto the new encoding


def test_video_track_labels_into_mp4(media, tmp_path):
    out = tmp_path / "out.mp4"
    restore(media["labels_mkv"], out)
    video = probe(out)[0]
    assert video["tags"]["language"] == "fra" and video["tags"]["handler_name"] == "Restored picture"
    assert video["disposition"]["default"] == 1


def test_matroska_timecode_tag_becomes_a_tmcd_track(media, tmp_path):
    source = tmp_path / "tc.mkv"  # ffmpeg stores -timecode in Matroska as the file's TIMECODE tag
    ffmpeg("-i", media["clip"], "-map", "0", "-c", "copy", "-timecode", "10:00:00:05", source)
    out = tmp_path / "tc_out.mov"
    restore(source, out)
    tmcd = [s for s in probe(out) if s.get("codec_tag_string") == "tmcd"]
    assert [s["tags"]["timecode"] for s in tmcd] == ["10:00:00:05"]


@pytest.mark.parametrize("ext", [".mov", ".ts", ".nut"])
def test_cover_art_refused_where_it_would_be_lost(media, tmp_path, capsys, ext):
    # MOV drops an attached picture; MPEG-TS and NUT would turn it into an ordinary stream.
    code, err = run_cli(capsys, "run", media["cover_mp4"], "--chain", "identity", "-o", tmp_path / f"out{ext}")
    assert code == OutputError.exit_code
    assert "cannot carry the cover art #2 (mjpeg)" in err and ".mp4 or .mkv" in err
    assert not leftovers(tmp_path) and not (tmp_path / f"out{ext}").exists()
