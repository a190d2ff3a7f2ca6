"""Motion-compensated temporal denoise (`mc-denoise`): neighbours moved back into place by optical flow, then
averaged, on panned real photos with fresh noise in every frame, across a scene cut, at the ends of a stream,
on frames of a few pixels, below the 8-bit step, and through a file as a user runs it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streamrestore.engine.chain import ChainRunner
from streamrestore.errors import TooLargeError
from streamrestore.frames import FrameBatch
from streamrestore.presets import BuiltStage, build_chain, parse_chain
from streamrestore.registry import Registry
from streamrestore.restore import OutputSettings, restore_image, restore_video
from support.media import camera_pan, make_clip, photo, player_rgb, video_frames, video_times


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def with_noise(pictures: list[np.ndarray], sigma: float, seed: int) -> list[np.ndarray]:
    """Fresh Gaussian noise in every frame, as grain is; uint8 like a decoded frame."""
    rng = np.random.default_rng(seed)
    return [np.clip(np.rint(p + rng.normal(0, sigma, p.shape)), 0, 255).astype(np.uint8) for p in pictures]


def mc_denoise(pictures: list[np.ndarray], scale: float = 255.0, **settings) -> list[np.ndarray]:
    """Run the registered stage over ``pictures`` (one frame per batch, as a decoder delivers them) with the
    chain runner, which supplies the neighbours and the padding at the ends; returns floats on ``scale``."""
    spec = Registry().get("mc-denoise")
    runner = ChainRunner([BuiltStage("mc-denoise", spec, spec.build(settings))], device="cpu")
    batches = [FrameBatch(torch.from_numpy(np.asarray(p, np.float32) / scale).permute(2, 0, 1)[None], (i,))
               for i, p in enumerate(pictures)]
    out = [r for r in (runner.push(b) for b in batches) if r is not None] + runner.flush()
    assert [p for batch in out for p in batch.pts] == list(range(len(pictures)))
    return [frame.permute(1, 2, 0).numpy() * scale for batch in out for frame in batch.pixels]


def test_a_panning_noisy_clip_is_cleaned_where_a_plain_temporal_mean_smears() -> None:
    clean = camera_pan(9, 160, 120)
    noisy = with_noise(clean, 12.0, seed=1)
    restored = mc_denoise(noisy, radius=3)
    for index, (out, before, truth) in enumerate(zip(restored, noisy, clean)):
        # 4 to 7 looks at each pixel (white noise could fall 6-8.5 dB); the flow, found on noisy frames, is not exact.
        assert psnr(out, truth) > psnr(before, truth) + 2.5, index
    plain_mean = np.mean(np.stack(noisy[1:8]).astype(np.float64), axis=0)  # the same 7 frames, not moved back
    assert psnr(restored[4], clean[4]) > psnr(plain_mean, clean[4]) + 5.0


def test_a_scene_cut_does_not_ghost_into_the_next_shot() -> None:
    shots = camera_pan(5, 128, 96, "astronaut") + camera_pan(5, 128, 96, "chelsea")
    noisy = with_noise(shots, 3.0, seed=2)
    restored = mc_denoise(noisy, radius=3)
    for index in (3, 4, 5, 6):  # the frames whose windows reach across the cut
        # Nothing of the other shot: the result is as close to its own picture as the noisy frame was, or closer.
        assert np.abs(restored[index] - shots[index]).mean() < np.abs(noisy[index] - shots[index].astype(float)).mean()
        assert psnr(restored[index], shots[index]) > psnr(noisy[index], shots[index])


def test_the_ends_of_a_stream_average_real_frames_only() -> None:
    # Flat frames 100, 101, 102, 103: with radius 2 the first frame looks at 0, 1, 2; the runner's padding
    # (frame 0 repeated) must not count, or the mean would lean to 100.
    flats = [np.full((24, 32, 3), level, np.float32) for level in (100.0, 101.0, 102.0, 103.0)]
    restored = mc_denoise(flats, radius=2, strength=100.0)
    assert restored[0] == pytest.approx(np.full((24, 32, 3), 101.0), abs=0.01)
    assert restored[3] == pytest.approx(np.full((24, 32, 3), 102.0), abs=0.01)
    assert restored[1] == pytest.approx(np.full((24, 32, 3), (100 + 101 + 102 + 103) / 4), abs=0.01)


def test_detail_below_the_8_bit_step_is_kept_and_tiny_frames_pass() -> None:
    rng = np.random.default_rng(3)
    still = (rng.integers(0, 65536, (40, 56, 3)) / 65535.0).astype(np.float32)  # 16-bit detail, the same in each frame
    restored = mc_denoise([still] * 5, scale=1.0, radius=2)
    for frame in restored:
        assert np.abs(frame - still).max() < 1e-5  # identical frames average to themselves, not to 8-bit steps
    for height, width in ((1, 1), (2, 3), (17, 1), (5, 40)):
        pictures = with_noise([np.full((height, width, 3), 128.0)] * 4, 4.0, seed=height)
        restored = mc_denoise(pictures, radius=1)
        assert [frame.shape for frame in restored] == [(height, width, 3)] * 4


def test_a_noisy_file_comes_out_cleaner_with_every_frame_and_timestamp(tmp_path: Path) -> None:
    clean = camera_pan(12, 192, 108, step=(2.5, 1.25))
    source = make_clip(tmp_path / "grainy.mkv", with_noise(clean, 10.0, seed=4), codec="ffv1", pix_fmt="yuv444p")
    restored_path = tmp_path / "restored.mkv"
    restore_video(source.path, str(restored_path), "mc-denoise",
                  output=OutputSettings(codec="ffv1", pix_fmt="yuv444p", overwrite=True))
    assert video_times(restored_path) == video_times(source.path)
    before = [player_rgb(f) for f in video_frames(source.path)]
    after = [player_rgb(f) for f in video_frames(restored_path)]
    gains = [psnr(a, c) - psnr(b, c) for a, b, c in zip(after, before, clean)]
    assert min(gains) > 3.0, gains


def test_a_still_image_passes_through_unchanged() -> None:
    picture = photo("astronaut", 64, 48)
    assert np.array_equal(restore_image(picture, "mc-denoise"), picture)
    deep = photo("astronaut", 64, 48, dtype=np.uint16)
    assert np.array_equal(restore_image(deep, "mc-denoise"), deep)


def test_the_denoise_alias_averages_in_time_first_unless_given_weights() -> None:
    registry = Registry()
    built = build_chain(parse_chain("denoise,sr2"), registry)
    assert [b.spec.name for b in built] == ["mc-denoise", "model", "model"]
    assert [b.name for b in built] == ["denoise", "denoise", "sr2"]
    own = build_chain(parse_chain("denoise:model=denoise-nafnet16"), registry)
    assert [b.spec.name for b in own] == ["model"]  # a user's network runs as given, without the lead



def test_the_memory_check_counts_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamrestore.engine import budget

    monkeypatch.setattr(budget, "available_memory", lambda: 2 * 1024**3)  # a machine with 2 GiB free
    registry = Registry()
    chain = lambda text: build_chain(parse_chain(text), registry)  # noqa: E731
    budget.check_frames(chain("identity"), 2160, 3840, budget.DEFAULT_MAX_PIXELS)  # one 4K frame: 0.4 GB
    budget.check_frames(chain("mc-denoise:radius=1"), 1080, 1920, budget.DEFAULT_MAX_PIXELS)
    with pytest.raises(TooLargeError, match="memory"):  # seven 4K frames and their warps: about 3.6 GB
        budget.check_frames(chain("mc-denoise"), 2160, 3840, budget.DEFAULT_MAX_PIXELS)
