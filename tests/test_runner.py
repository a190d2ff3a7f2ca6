"""The chain runner: temporal context and flushing, order, padding, contract checks, failures."""

from __future__ import annotations

import pytest
import torch

from streamrestore.errors import StageFailedError
from streamrestore.frames import FrameBatch
from streamrestore.presets import BuiltStage
from streamrestore.registry import spec_from_class
from streamrestore.engine.chain import ChainRunner
from streamrestore.stage import Capabilities, Option, Stage


class WindowRecorder(Stage):
    """A temporal stage that outputs, for each core frame, the mean of its window (and records windows)."""

    summary = "test"
    options = {"before": Option(int, 2, ""), "after": Option(int, 1, "")}
    seen: list[tuple[int | None, ...]] = []

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(frames_before=self.settings["before"], frames_after=self.settings["after"])

    def process(self, batch: FrameBatch) -> FrameBatch:
        before, after = self.settings["before"], self.settings["after"]
        means = []
        for index in range(batch.context_before, len(batch) - batch.context_after):
            self.seen.append(tuple(float(f[0, 0, 0]) for f in batch.pixels[index - before : index + after + 1]))
            means.append(batch.pixels[index - before : index + after + 1].mean(0))
        return batch.with_pixels(torch.stack(means))


def built(stage_class: type[Stage], **settings) -> BuiltStage:
    spec = spec_from_class(stage_class.__name__.lower(), stage_class, "tests")
    return BuiltStage(spec.name, spec, spec.build(settings))


def frames(values: list[float], size: tuple[int, int] = (4, 5)) -> list[FrameBatch]:
    return [FrameBatch(torch.full((1, 3, *size), v), (i,)) for i, v in enumerate(values)]


def run_all(runner: ChainRunner, batches: list[FrameBatch]) -> list[FrameBatch]:
    out = [r for r in (runner.push(b) for b in batches) if r is not None]
    return out + runner.flush()


@pytest.mark.parametrize("before,after,count", [(2, 1, 7), (1, 3, 2), (2, 2, 1), (0, 2, 5)])
def test_temporal_stage_keeps_count_order_and_pads_ends(before: int, after: int, count: int) -> None:
    WindowRecorder.seen = []
    values = [float(v) for v in range(10, 10 + count)]
    runner = ChainRunner([built(WindowRecorder, before=before, after=after)], device="cpu")
    out = run_all(runner, frames(values))
    pts = [p for batch in out for p in batch.pts]
    assert pts == list(range(count))
    # Every window is the frame with its neighbours, the first/last frame repeated past the ends.
    for index, window in enumerate(WindowRecorder.seen):
        expected = [values[min(max(j, 0), count - 1)] for j in range(index - before, index + after + 1)]
        assert list(window) == expected


def test_temporal_then_spatial_then_temporal_flushes_through() -> None:
    WindowRecorder.seen = []
    chain = [built(WindowRecorder, before=1, after=2), built(WindowRecorder, before=2, after=2)]
    runner = ChainRunner(chain, device="cpu")
    batches = [FrameBatch(torch.rand(3, 3, 4, 4), (3 * i, 3 * i + 1, 3 * i + 2)) for i in range(3)]
    out = run_all(runner, batches)
    assert [p for b in out for p in b.pts] == list(range(9))
    assert runner.latency_frames == 4


def test_size_multiple_pads_and_crops() -> None:
    class NeedsEight(Stage):
        summary = "test"

        @property
        def capabilities(self) -> Capabilities:
            return Capabilities(size_multiple=8, scale=2)

        def process(self, batch: FrameBatch) -> FrameBatch:
            assert batch.height % 8 == 0 and batch.width % 8 == 0
            return batch.with_pixels(torch.nn.functional.interpolate(batch.pixels, scale_factor=2, mode="nearest"))

    runner = ChainRunner([built(NeedsEight)], device="cpu")
    source = torch.rand(2, 3, 13, 21)
    out = runner.push(FrameBatch(source, (0, 1)))
    assert out.pixels.shape == (2, 3, 26, 42)
    assert torch.equal(out.pixels[:, :, ::2, ::2], source)  # the real pixels, not the padding, come back


def test_stage_that_drops_a_frame_is_stopped_by_name() -> None:
    class Dropper(Stage):
        summary = "test"

        @property
        def capabilities(self) -> Capabilities:
            return Capabilities()

        def process(self, batch: FrameBatch) -> FrameBatch:
            return FrameBatch(batch.pixels[1:], batch.pts[1:])

    runner = ChainRunner([built(Dropper)], device="cpu")
    with pytest.raises(StageFailedError, match="'dropper' broke the contract"):
        runner.push(FrameBatch(torch.rand(3, 3, 4, 4), (0, 1, 2)))


def test_stage_exception_becomes_stage_failed_error() -> None:
    class Exploder(Stage):
        summary = "test"

        @property
        def capabilities(self) -> Capabilities:
            return Capabilities()

        def process(self, batch: FrameBatch) -> FrameBatch:
            raise RuntimeError("out of cheese")

    runner = ChainRunner([built(Exploder)], device="cpu")
    with pytest.raises(StageFailedError, match="'exploder' failed: RuntimeError: out of cheese"):
        runner.push(FrameBatch(torch.rand(1, 3, 4, 4), (0,)))


def test_max_batch_splits_spatial_batches() -> None:
    class OneAtATime(Stage):
        summary = "test"
        sizes: list[int] = []

        @property
        def capabilities(self) -> Capabilities:
            return Capabilities(scale=2, max_batch=2)

        def process(self, batch: FrameBatch) -> FrameBatch:
            self.sizes.append(len(batch))
            return batch.with_pixels(batch.pixels.repeat_interleave(2, -1).repeat_interleave(2, -2))

    runner = ChainRunner([built(OneAtATime)], device="cpu")
    pixels = torch.rand(5, 3, 4, 6)
    out = runner.push(FrameBatch(pixels, (10, 11, 12, 13, 14)))
    assert OneAtATime.sizes == [2, 2, 1]
    assert out.pts == (10, 11, 12, 13, 14) and out.pixels.shape == (5, 3, 8, 12)
    assert torch.equal(out.pixels[:, :, ::2, ::2], pixels)


class OverflowsInHalf(Stage):
    """Like a network whose activations overflow float16: NaN in float16, right in wider precisions."""

    summary = "test"
    options = {}

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.moves: list[torch.dtype] = []
        self.calls: list[torch.dtype] = []

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(dtypes=("float16", "bfloat16", "float32"))

    def to(self, device: torch.device, dtype: torch.dtype) -> None:
        self.moves.append(dtype)

    def process(self, batch: FrameBatch) -> FrameBatch:
        self.calls.append(batch.pixels.dtype)
        if batch.pixels.dtype == torch.float16:
            return batch.with_pixels(torch.full_like(batch.pixels, float("nan")))
        return batch.with_pixels(1 - batch.pixels)


@pytest.mark.parametrize("output_bits,fallback", [(8, torch.bfloat16), (10, torch.float32)])
def test_half_precision_that_gives_nan_falls_back_once_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, output_bits: int, fallback: torch.dtype
) -> None:
    from streamrestore.engine import placement as runtime

    monkeypatch.setattr(runtime, "_native", lambda name, device: True)  # as on a GPU, without one
    chain = [built(OverflowsInHalf)]
    runner = ChainRunner(chain, device="cpu", precision="float16", output_bits=output_bits)
    stage = chain[0].stage
    with caplog.at_level("WARNING", logger="streamrestore.engine.chain"):
        first = runner.push(FrameBatch(torch.full((2, 3, 4, 5), 0.25), (0, 1)))
        second = runner.push(FrameBatch(torch.full((1, 3, 4, 5), 0.5), (2,)))
    assert torch.equal(first.pixels, torch.full((2, 3, 4, 5), 0.75)) and first.pts == (0, 1)
    assert torch.equal(second.pixels, torch.full((1, 3, 4, 5), 0.5))
    assert stage.moves == [torch.float16, fallback]  # from float16 straight to its fallback, once
    assert stage.calls == [torch.float16, fallback, fallback]  # the first batch again, then the next one
    assert runner.nodes[0].placement.dtype == fallback
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [f"stage 'overflowsinhalf': float16 gave NaN or infinity on the first batch; "
                        f"it computes in {str(fallback).removeprefix('torch.')} instead"]


def test_nodes_sharing_a_stage_fall_back_together(monkeypatch: pytest.MonkeyPatch) -> None:
    """A repeated alias (sr4 = one ×2 stage twice) moves once; the second node follows the first."""
    from streamrestore.engine import placement as runtime

    monkeypatch.setattr(runtime, "_native", lambda name, device: True)
    shared = built(OverflowsInHalf)
    runner = ChainRunner([shared, shared], device="cpu", precision="float16")
    out = runner.push(FrameBatch(torch.full((1, 3, 4, 5), 0.25), (0,)))
    assert torch.equal(out.pixels, torch.full((1, 3, 4, 5), 0.25))  # 1 - (1 - x)
    assert [node.placement.dtype for node in runner.nodes] == [torch.bfloat16, torch.bfloat16]
    assert shared.stage.moves == [torch.float16, torch.float16, torch.bfloat16]
    assert shared.stage.calls == [torch.float16, torch.bfloat16, torch.bfloat16]
