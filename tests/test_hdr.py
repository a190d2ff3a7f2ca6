"""HDR10 mastering-display and content-light-level metadata reach the output's frames.

The source is made as HDR10 masters are (x265 with master-display/max-cll) and the output is read
the way a user checks it: ``ffprobe -show_frames`` side data and ``-show_streams`` colour tags.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest
from av.sidedata.sidedata import Type

from support.media import hdr10_clip
from streamrestore.media.hdr import HdrMetadata, MasteringDisplay, encoder_options, read_hdr
from streamrestore.restore import OutputSettings, restore_video

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="needs the ffmpeg and ffprobe commands (apt install ffmpeg)")

@pytest.fixture(scope="module")
def hdr_clip(tmp_path_factory) -> Path:
    return hdr10_clip(tmp_path_factory.mktemp("hdr") / "hdr10.mkv", frames=4)


def first_frame(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_frames", "-read_intervals",
                          "%+#1", "-of", "json", str(path)], check=True, capture_output=True, text=True).stdout
    return json.loads(out)["frames"][0]


def side_data(frame: dict, kind: str) -> dict:
    return next(d for d in frame.get("side_data_list", []) if d["side_data_type"] == kind)


def test_source_metadata_is_read(hdr_clip):
    import av

    with av.open(str(hdr_clip)) as container:
        hdr = read_hdr(next(container.decode(video=0)))
    assert hdr == HdrMetadata(
        MasteringDisplay(red=(Fraction(34000, 50000), Fraction(16000, 50000)),
                         green=(Fraction(13250, 50000), Fraction(34500, 50000)),
                         blue=(Fraction(7500, 50000), Fraction(3000, 50000)),
                         white=(Fraction(15635, 50000), Fraction(16450, 50000)),
                         min_luminance=Fraction(1, 10000), max_luminance=Fraction(1000)),
        light_level=(1000, 400))


@pytest.mark.parametrize("codec, preset", [("libx265", "ultrafast"), ("libsvtav1", "12"), (None, "ultrafast")])
def test_hdr10_written_on_the_output_frames(hdr_clip, tmp_path, codec, preset):
    out = tmp_path / "out.mkv"
    report = restore_video(str(hdr_clip), str(out), "identity", output=OutputSettings(codec=codec, preset=preset))
    assert report.warnings == ()
    frame, source = first_frame(out), first_frame(hdr_clip)
    assert frame["color_transfer"] == "smpte2084" and frame["color_primaries"] == "bt2020"
    mastering = side_data(frame, "Mastering display metadata")
    expected = side_data(source, "Mastering display metadata")
    for key in ("red_x", "red_y", "green_x", "green_y", "blue_x", "blue_y", "white_point_x", "white_point_y",
                "min_luminance", "max_luminance"):
        assert Fraction(mastering[key]) == pytest.approx(Fraction(expected[key]), rel=1e-3, abs=1e-4), key
    light = side_data(frame, "Content light level metadata")
    assert (light["max_content"], light["max_average"]) == (1000, 400)


def test_hdr10_written_by_libx264(hdr_clip, tmp_path):
    # Debian 12's ffprobe (FFmpeg 5.1) does not parse H.264's mastering-display SEI; PyAV's FFmpeg does.
    import av

    out = tmp_path / "out.mkv"
    report = restore_video(str(hdr_clip), str(out), "identity", output=OutputSettings(codec="libx264", preset="ultrafast"))
    assert report.warnings == ()
    with av.open(str(hdr_clip)) as source, av.open(str(out)) as written:
        assert written.streams.video[0].codec_context.name == "h264"
        assert read_hdr(next(written.decode(video=0))) == read_hdr(next(source.decode(video=0)))


def test_encoder_without_hdr10_support_warns(hdr_clip, tmp_path):
    report = restore_video(str(hdr_clip), str(tmp_path / "out.mkv"), "identity", output=OutputSettings(codec="ffv1"))
    assert report.warnings == ("ffv1 cannot write the source's HDR10 mastering-display/light-level metadata; "
                               "use --codec libx265 (or libx264, libsvtav1) to keep it",)
    assert not any(d["side_data_type"] == "Mastering display metadata"
                   for d in first_frame(tmp_path / "out.mkv").get("side_data_list", []))


def test_users_own_x265_params_come_last():
    hdr = HdrMetadata(None, (800, 200))
    options, warnings = encoder_options("libx265", hdr, {"x265-params": "max-cll=500,100", "crf": "20"})
    assert options == {"x265-params": "max-cll=800,200:repeat-headers=1:max-cll=500,100", "crf": "20"}
    assert warnings == []


class _SideData:
    def __init__(self, kind: Type, payload: bytes) -> None:
        self.type, self._payload = kind, payload

    def __bytes__(self) -> bytes:
        return self._payload


class _Frame:
    def __init__(self, *side: _SideData) -> None:
        self.side_data = list(side)


@pytest.mark.parametrize("kind, name", [(Type.DYNAMIC_HDR_PLUS, "HDR10+"), (Type.DOVI_RPU_BUFFER, "Dolby Vision")])
def test_dynamic_metadata_gets_a_warning(kind, name):
    # No encoder at hand writes HDR10+ or Dolby Vision test streams, so the decoder's side data is
    # imitated here: the same types PyAV reports for such a source's frames.
    frame = _Frame(_SideData(Type.CONTENT_LIGHT_LEVEL, struct.pack("=II", 1000, 400)), _SideData(kind, b"\x00" * 16))
    hdr = read_hdr(frame)  # type: ignore[arg-type]
    assert hdr is not None and hdr.dynamic == (name,) and hdr.light_level == (1000, 400)
    options, warnings = encoder_options("libx265", hdr, {})
    assert options == {"x265-params": "max-cll=1000,400:repeat-headers=1"}
    assert warnings == [f"the source's {name} dynamic metadata is not carried to the output "
                        "(static HDR10 metadata is, where the encoder can write it)"]
