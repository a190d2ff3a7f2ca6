"""Out-of-memory back-off: halve the batch, then tile; never drop, duplicate or reorder a frame.

The stages here raise ``torch.cuda.OutOfMemoryError`` (constructible without a GPU) whenever a call
exceeds a memory budget they are given, and record every call that went through.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from streamrestore.engine import backoff, threads
from streamrestore.errors import StageFailedError
from streamrestore.frames import FrameBatch
from streamrestore.media.reader import MediaReader
from streamrestore.media.writer import EncodeSettings, MediaWriter, OutputVideo
from streamrestore.presets import BuiltStage
from streamrestore.registry import spec_from_class
from streamrestore.engine.chain import ChainRunner
from streamrestore.stage import Capabilities, Option, Stage

from support.media import make_clip, panned_frames, video_frames


class Budgeted(Stage):
    """Pointwise (so tiles give exactly the whole-frame result) ×2 nearest up-scaling of ``1 - x``;
    runs out of "memory" when a call holds more than ``budget`` input pixels (0: never)."""

    summary = "test"
    options = {"budget": Option(int, 0, ""), "tileable": Option(bool, True, ""),
               "before": Option(int, 0, ""), "after": Option(int, 0, ""), "cublas": Option(bool, False, "")}

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.calls: list[tuple[int, int, int]] = []  # (frames, height, width) of each call that ran

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(scale=2, tileable=self.settings["tileable"], tile_overlap=4,
                            frames_before=self.settings["before"], frames_after=self.settings["after"])

    def process(self, batch: FrameBatch) -> FrameBatch:
        count, _, height, width = batch.pixels.shape
        if self.settings["budget"] and count * height * width > self.settings["budget"]:
            if self.settings["cublas"]:  # how cuBLAS reports it: a plain RuntimeError
                raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected by the test)")
        self.calls.append((count, height, width))
        core = batch.pixels[batch.context_before : count - batch.context_after]
        if batch.context_before or batch.context_after:  # temporal: mean over each frame's window
            window = batch.context_before + batch.context_after + 1
            core = torch.stack([batch.pixels[i : i + window].mean(0) for i in range(batch.core_count)])
        return batch.with_pixels(F.interpolate(1 - core, scale_factor=2, mode="nearest"))


def build(**settings) -> tuple[ChainRunner, Budgeted]:
    spec = spec_from_class("budgeted", Budgeted, "tests")
    stage = spec.build(settings)
    return ChainRunner([BuiltStage("budgeted", spec, stage)], device="cpu"), stage


def run_all(runner: ChainRunner, batches: list[FrameBatch]) -> FrameBatch:
    out = [r for r in (runner.push(b) for b in batches) if r is not None] + runner.flush()
    return FrameBatch(torch.cat([r.pixels for r in out]), tuple(p for r in out for p in r.pts))


def clip_batches(sizes: list[int], height: int = 24, width: int = 32) -> list[FrameBatch]:
    generator = torch.Generator().manual_seed(0)
    batches, start = [], 0
    for size in sizes:
        batches.append(FrameBatch(torch.rand(size, 3, height, width, generator=generator),
                                  tuple(range(start, start + size))))
        start += size
    return batches


def test_batches_are_halved_until_they_fit_and_stay_halved() -> None:
    batches = clip_batches([8, 8, 3, 8])
    expected = run_all(build()[0], batches)
    runner, stage = build(budget=2 * 24 * 32)  # two frames fit, three do not
    out = run_all(runner, batches)
    assert out.pts == expected.pts == tuple(range(27))
    assert torch.equal(out.pixels, expected.pixels)
    assert all(frames <= 2 for frames, _, _ in stage.calls)
    assert sum(frames for frames, _, _ in stage.calls) == 27  # each frame computed exactly once
    assert runner.nodes[0].calls.frames == 2
    # After the first failure the limit is kept: the later batches go straight to pairs.
    assert [frames for frames, _, _ in stage.calls] == [2, 2, 2, 2] + [2, 2, 2, 2] + [2, 1] + [2, 2, 2, 2]


def test_cublas_allocation_failures_take_the_same_path() -> None:
    batches = clip_batches([4, 4])
    expected = run_all(build()[0], batches)
    runner, stage = build(budget=2 * 24 * 32, cublas=True)
    out = run_all(runner, batches)
    assert torch.equal(out.pixels, expected.pixels) and out.pts == expected.pts
    assert [frames for frames, _, _ in stage.calls] == [2, 2, 2, 2]


def test_the_batch_grows_back_after_clean_batches() -> None:
    batches = clip_batches([8] * (1 + 2 * backoff.GROW_AFTER + 1))
    runner, stage = build(budget=2 * 24 * 32)
    runner.push(batches[0])  # memory runs out once (say another process held it) ...
    stage.settings["budget"] = 0  # ... and is free again
    node = runner.nodes[0]
    assert node.calls.frames == 2
    for batch in batches[1 : 1 + backoff.GROW_AFTER]:
        runner.push(batch)
    assert node.calls.frames == 4  # doubled after GROW_AFTER clean batches
    for batch in batches[1 + backoff.GROW_AFTER : 1 + 2 * backoff.GROW_AFTER]:
        runner.push(batch)
    assert node.calls.frames is None  # back to the planned batch
    stage.calls.clear()
    runner.push(batches[-1])
    assert [frames for frames, _, _ in stage.calls] == [8]


def test_a_limit_that_fails_again_waits_twice_as_long() -> None:
    batches = clip_batches([8] * (1 + backoff.GROW_AFTER + 1))
    runner, stage = build(budget=2 * 24 * 32)  # memory stays short
    for batch in batches[: 1 + backoff.GROW_AFTER]:
        runner.push(batch)
    node = runner.nodes[0]
    assert node.calls.frames == 4  # relaxed: not yet known to fail
    runner.push(batches[-1])
    assert node.calls.frames == 2 and node.calls.grow_after == 2 * backoff.GROW_AFTER
    assert sum(frames for frames, _, _ in stage.calls) == 8 * len(batches)  # every frame once


def test_tiles_grow_back_to_whole_frames() -> None:
    batches = clip_batches([1] * (1 + 2 * backoff.GROW_AFTER), height=192, width=256)
    runner, stage = build(budget=110 * 140)
    runner.push(batches[0])
    node = runner.nodes[0]
    assert node.calls.tile == 128
    stage.settings["budget"] = 0
    for batch in batches[1:]:
        runner.push(batch)
    assert node.calls.tile == 0


def test_a_frame_that_does_not_fit_is_tiled() -> None:
    batches = clip_batches([3, 2], height=192, width=256)
    expected = run_all(build()[0], batches)
    runner, stage = build(budget=110 * 140)  # 128-pixel tiles with their context fit, whole frames do not
    out = run_all(runner, batches)
    assert out.pts == expected.pts == (0, 1, 2, 3, 4)
    torch.testing.assert_close(out.pixels, expected.pixels, rtol=0, atol=1e-6)
    node = runner.nodes[0]
    assert (node.calls.frames, node.calls.tile) == (1, 128)
    assert all(frames == 1 and height * width <= 110 * 140 for frames, height, width in stage.calls)
    assert len(stage.calls) == 5 * 4  # four tiles a frame, each computed once


def test_temporal_batches_keep_their_context_when_halved() -> None:
    batches = clip_batches([6, 5])
    expected = run_all(build(before=1, after=2)[0], batches)
    runner, stage = build(before=1, after=2, budget=5 * 24 * 32)  # a window of two core frames fits
    out = run_all(runner, batches)
    assert out.pts == expected.pts == tuple(range(11))
    assert torch.equal(out.pixels, expected.pixels)
    assert runner.nodes[0].calls.frames is not None
    assert all(frames <= 5 for frames, _, _ in stage.calls)


@pytest.mark.parametrize("tileable,message", [(False, "cannot be tiled"), (True, "even on 64-pixel tiles")])
def test_a_stage_that_never_fits_fails_with_its_name(tileable: bool, message: str) -> None:
    runner, _ = build(budget=1, tileable=tileable)
    with pytest.raises(StageFailedError, match=f"stage 'budgeted' failed: OutOfMemoryError: .*{message}"):
        runner.push(clip_batches([2], height=200, width=256)[0])


def test_the_engine_writes_every_frame_once_in_order_despite_out_of_memory(tmp_path) -> None:
    pictures = panned_frames(10, width=48, height=32)
    source = make_clip(tmp_path / "in.mkv", pictures, codec="ffv1", pix_fmt="yuv444p").path

    def restore(budget: int, name: str) -> list[np.ndarray]:
        runner, _ = build(budget=budget)
        reader = MediaReader(str(source))
        output = OutputVideo(96, 64, "yuv444p", reader.info.color, reader.info)
        writer = MediaWriter(str(tmp_path / name), None, output, EncodeSettings(codec="ffv1", crf=None, preset=None),
                             [])
        threads.run_stream(reader, runner, writer, np.dtype(np.uint8), threads.StreamSettings(batch_size=4))
        writer.close()
        reader.close()
        return [frame.to_ndarray(format="rgb24") for frame in video_frames(tmp_path / name)]

    expected = restore(0, "plain.mkv")
    restored = restore(32 * 48, "backoff.mkv")  # one frame fits, a batch of four does not
    assert len(restored) == len(expected) == 10
    for got, want in zip(restored, expected):
        np.testing.assert_array_equal(got, want)


def test_an_upload_that_does_not_fit_is_run_in_halves() -> None:
    from streamrestore.media.reader import DecodedFrame
    from streamrestore.engine.transfer import Transfer

    class ShortTransfer(Transfer):
        def upload(self, images):
            if len(images) > 2:
                raise RuntimeError("CUDA error: out of memory")
            return super().upload(images)

    frames = [DecodedFrame(np.full((4, 6, 3), i, np.uint8), i) for i in range(5)]
    batches = list(threads._uploaded(ShortTransfer("cpu"), frames))
    assert [b.pts for b in batches] == [(0, 1), (2,), (3, 4)]
    assert [int(b.pixels[0, 0, 0, 0] * 255) for b in batches] == [0, 2, 3]
