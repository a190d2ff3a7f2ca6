"""Transparency is kept (video and images), and images stand as a viewer shows them (EXIF orientation).

Sources are made here with PyAV/OpenCV/Pillow: a picture with a soft-edged opaque disc in a
transparent field, so resizing the alpha plane is visible in its values. Outputs are decoded back
and their alpha compared with the source's, resized bicubically as the chain resized the picture.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from streamrestore.cli import main
from streamrestore.errors import ConfigError
from streamrestore.media.images import read_picture
from streamrestore.media.images import read_image
from streamrestore.restore import OutputSettings, restore_video

W, H, FRAMES = 64, 48, 4


def disc_alpha(k: int, height: int = H, width: int = W, peak: int = 255) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    distance = np.hypot(yy - height / 2, xx - width / 2 - 2 * k)
    return np.clip((1 - (distance - 10) / 6) * peak, 0, peak)


def picture(k: int, height: int = H, width: int = W) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return np.dstack([(xx * 4) % 256, (yy * 5) % 256, np.full_like(xx, 60 + 20 * k)]).astype(np.uint8)


def make_alpha_clip(path: Path, codec: str, pix_fmt: str) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=24)
        stream.width, stream.height, stream.pix_fmt = W, H, pix_fmt
        for k in range(FRAMES):
            rgba = np.dstack([picture(k), np.rint(disc_alpha(k)).astype(np.uint8)])
            frame = av.VideoFrame.from_ndarray(rgba, format="rgba").reformat(format=pix_fmt)
            frame.pts, frame.time_base = k, Fraction(1, 24)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def decoded_alpha(path: Path) -> tuple[str, list[np.ndarray]]:
    """The output's pixel format and each frame's alpha plane on a 0–255 scale."""
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    planes = [f.to_ndarray(format="rgba64le")[..., 3].astype(np.float64) / 257 for f in frames]
    return frames[0].format.name, planes


def expected_alpha(k: int, scale: int) -> np.ndarray:
    source = np.rint(disc_alpha(k)).astype(np.float32)
    if scale == 1:
        return source
    return np.clip(cv2.resize(source, (W * scale, H * scale), interpolation=cv2.INTER_CUBIC), 0, 255)


@pytest.fixture(scope="module")
def alpha_clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("alpha")
    clips = {"prores": ("prores_ks", "yuva444p10le", "mov"), "qtrle": ("qtrle", "argb", "mov"),
             "png": ("png", "rgba", "mov")}
    made = {}
    for name, (codec, pix_fmt, ext) in clips.items():
        made[name] = folder / f"{name}.{ext}"
        make_alpha_clip(made[name], codec, pix_fmt)
    return made


@pytest.mark.parametrize("source, codec, ext, chain, scale, pix_fmt, tolerance", [
    ("prores", "prores_ks", "mov", "identity", 1, "yuva444p12le", 1.0),  # FFmpeg decodes ProRes 4444 as 12-bit
    ("prores", "prores_ks", "mov", "resize:scale=2", 2, "yuva444p12le", 1.0),
    ("qtrle", "qtrle", "mov", "identity", 1, "argb", 0.1),
    ("png", "png", "mov", "resize:scale=2", 2, "rgba", 0.6),
    ("png", "ffv1", "mkv", "resize:scale=2", 2, "yuva444p", 1.1),
])
def test_alpha_kept_and_resized_with_the_picture(alpha_clips, tmp_path, source, codec, ext, chain, scale, pix_fmt,
                                                 tolerance):
    out = tmp_path / f"out.{ext}"
    report = restore_video(str(alpha_clips[source]), str(out), chain, output=OutputSettings(codec=codec))
    assert (report.width, report.height) == (W * scale, H * scale)
    written, planes = decoded_alpha(out)
    assert written == pix_fmt and len(planes) == FRAMES
    for k, plane in enumerate(planes):
        # The disc moves 2 px a frame: each frame's own plane, not the first one repeated.
        assert np.abs(plane - expected_alpha(k, scale)).max() <= tolerance, k
    assert planes[0].min() == 0 and planes[0].max() > 254  # transparent field, opaque disc


def test_alpha_source_with_an_encoder_without_alpha_is_refused(alpha_clips, tmp_path, capsys):
    with pytest.raises(ConfigError, match="alpha channel .* libx264 cannot store; use --codec prores_ks"):
        restore_video(str(alpha_clips["png"]), str(tmp_path / "out.mp4"), "identity")
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code = main(["run", str(alpha_clips["qtrle"]), "--chain", "identity", "-o", str(tmp_path / "x.mp4")])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == ConfigError.exit_code and "prores_ks (.mov)" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_explicit_pix_fmt_without_alpha_drops_it(alpha_clips, tmp_path):
    out = tmp_path / "out.mp4"
    restore_video(str(alpha_clips["png"]), str(out), "identity", output=OutputSettings(pix_fmt="yuv420p", preset="ultrafast"))
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"


# -- images ------------------------------------------------------------------------------------------
def run_cli(capsys, *argv: object) -> tuple[int, str]:
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code = main([str(a) for a in argv])
    finally:
        signal.signal(signal.SIGTERM, previous)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("depth", [8, 16])
def test_rgba_png_keeps_resized_alpha_and_depth(tmp_path, capsys, depth):
    peak = 255 if depth == 8 else 65535
    dtype = np.uint8 if depth == 8 else np.uint16
    rgb = picture(0).astype(dtype) * (1 if depth == 8 else 257)
    alpha = np.rint(disc_alpha(0, peak=peak)).astype(dtype)
    src, out = tmp_path / "logo.png", tmp_path / "logo.restored.png"
    cv2.imwrite(str(src), cv2.cvtColor(np.dstack([rgb, alpha]), cv2.COLOR_RGBA2BGRA))
    code, err = run_cli(capsys, "run", src, "--chain", "resize:scale=2")
    assert code == 0, err
    written = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert written.shape == (2 * H, 2 * W, 4) and written.dtype == dtype
    expected = np.clip(cv2.resize(alpha.astype(np.float32), (2 * W, 2 * H), interpolation=cv2.INTER_CUBIC), 0, peak)
    assert np.abs(written[..., 3].astype(np.float64) - expected).max() <= peak / 255 * 0.51
    # The picture itself went through the chain (RGB), unchanged by carrying the alpha.
    assert np.abs(written[..., :3].astype(np.float64).mean() - rgb.astype(np.float64).mean()) < peak * 0.02


def test_rgba_png_into_jpeg_is_refused(tmp_path, capsys):
    src = tmp_path / "logo.png"
    cv2.imwrite(str(src), np.dstack([picture(0), np.rint(disc_alpha(0)).astype(np.uint8)]))
    code, err = run_cli(capsys, "run", src, "--chain", "identity", "-o", tmp_path / "logo.jpg")
    assert code == ConfigError.exit_code and "alpha channel" in err and ".png" in err
    assert not (tmp_path / "logo.jpg").exists() and [p.name for p in tmp_path.iterdir()] == ["logo.png"]


@pytest.mark.parametrize("ext", ["jpg", "png", "webp"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_read_as_a_viewer_shows_it(tmp_path, ext, orientation):
    from PIL import Image, ImageOps

    stored = picture(0, 30, 50)
    stored[:8, :12] = (255, 255, 255)  # a white corner shows which way the picture turned
    path = tmp_path / f"phone.{ext}"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, exif=exif.tobytes(), **({"quality": 100} if ext == "jpg" else {}))
    with Image.open(path) as image:
        viewer = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    ours = read_image(path)
    assert ours.shape == viewer.shape
    assert np.abs(ours.astype(int) - viewer).max() <= 3


def test_phone_jpeg_with_orientation_6_comes_out_turned(tmp_path, capsys):
    from PIL import Image

    stored = picture(0, 30, 50)
    stored[:8, :12] = (255, 255, 255)  # top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    src = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(src, exif=exif.tobytes(), quality=100)
    code, err = run_cli(capsys, "run", src, "--chain", "identity")
    assert code == 0, err
    out = cv2.cvtColor(cv2.imread(str(tmp_path / "phone.restored.png")), cv2.COLOR_BGR2RGB)
    assert out.shape == (50, 30, 3)  # portrait, as the phone held it
    # Turned 90° clockwise: the stored top-left 8×12 corner is now the top-right 12×8 corner.
    assert out[:12, -8:].min() > 240 and out[:12, :8].max() < 200
    assert read_picture(src).alpha is None


def test_ffprobe_sees_the_alpha_format(alpha_clips, tmp_path):
    if shutil.which("ffprobe") is None:
        pytest.skip("needs ffprobe (apt install ffmpeg)")
    out = tmp_path / "out.mov"
    restore_video(str(alpha_clips["qtrle"]), str(out), "identity", output=OutputSettings(codec="qtrle"))
    shown = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=pix_fmt", "-of", "csv=p=0", str(out)],
                           check=True, capture_output=True, text=True).stdout.strip()
    assert shown == "argb"
