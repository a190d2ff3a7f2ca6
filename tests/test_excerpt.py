"""``streamrestore.excerpt``: a time range cut losslessly (the source's frames exactly), audio cut with it."""

from __future__ import annotations

import av
import numpy as np

from support.media import AudioTrack, make_clip, panned_frames
from streamrestore.excerpt import cut_excerpt, restore_range
from streamrestore.restore import OutputSettings, PreparedChain, RunSettings


def frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_cut_keeps_the_range_frames_exactly_and_the_audio(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", panned_frames(48, 96, 64), rate=24, audio=[AudioTrack(seconds=2.0)]).path
    excerpt = cut_excerpt(clip, tmp_path / "cut.mkv", 0.75, 0.5)  # frames 18..29, after the keyframe at 0
    assert excerpt.frames == 12 and excerpt.start == 0.75
    source = frames(clip)
    assert all(np.array_equal(a, b) for a, b in zip(frames(excerpt.path), source[18:30], strict=True))
    with av.open(str(excerpt.path)) as container:
        audio = container.streams.audio[0]
        seconds = sum(f.samples for f in container.decode(audio)) / audio.rate
    assert abs(seconds - 0.5) < 0.05


def test_restore_range_runs_the_chain_on_the_range(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", panned_frames(24, 96, 64), rate=24).path
    out = tmp_path / "out.mkv"
    report = restore_range(PreparedChain("resize:scale=2:method=bicubic", RunSettings(device="cpu")), clip, out,
                           0.5, 0.25, OutputSettings(codec="ffv1", pix_fmt="yuv444p"))  # fmt: skip
    assert report.frames == 6 and (report.width, report.height) == (192, 128)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("streamrestore-range-")]
