"""Host↔device transfer on the CPU: exact conversions, channels_last batches, the caller's tensor untouched.

The CUDA path (pinned memory, copy stream, events) needs a GPU and is not exercised here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamrestore.frames import image_to_tensor
from streamrestore.engine.transfer import Transfer, quantise


def images(dtype: type, count: int = 3, size: tuple[int, int] = (5, 7)) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    peak = np.iinfo(dtype).max
    return [rng.integers(0, peak + 1, (*size, 3), dtype=dtype) for _ in range(count)]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_upload_matches_one_frame_at_a_time_and_is_channels_last(dtype: type) -> None:
    frames = images(dtype)
    pixels = Transfer("cpu").upload(frames)
    assert pixels.shape == (3, 3, 5, 7) and pixels.dtype == torch.float32
    assert torch.equal(pixels, torch.cat([image_to_tensor(f) for f in frames]))
    assert pixels.is_contiguous(memory_format=torch.channels_last)  # a view of the decoded memory order


def test_upload_in_half_precision_divides_before_rounding() -> None:
    frames = images(np.uint16)
    pixels = Transfer("cpu", torch.float16).upload(frames)
    assert pixels.dtype == torch.float16
    expected = torch.cat([image_to_tensor(f) for f in frames]).to(torch.float16)
    assert torch.equal(pixels, expected)  # 65535 would overflow fp16 if it were cast first


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_download_rounds_once_clamps_and_keeps_the_input(dtype: type) -> None:
    pixels = torch.tensor([-0.5, 0.0, 0.5 / 255, 1.5 / 255, 0.25, 1.0, 2.0]).reshape(1, 1, 1, 7).expand(2, 3, 1, 7)
    pixels = pixels.clone()
    before = pixels.clone()
    scale = float(np.iinfo(dtype).max)
    out = Transfer("cpu").download(pixels, np.dtype(dtype)).images()
    assert out.shape == (2, 1, 7, 3) and out.dtype == dtype and out.flags["C_CONTIGUOUS"]
    expected = np.round(np.clip(before.permute(0, 2, 3, 1).numpy(), 0, 1) * scale).astype(dtype)
    np.testing.assert_array_equal(out, expected)
    assert torch.equal(pixels, before)


def test_download_of_half_precision_to_16_bit_does_not_overflow() -> None:
    pixels = torch.ones(1, 3, 2, 2, dtype=torch.float16)
    assert (quantise(pixels, np.dtype(np.uint16)) == 65535).all()


def test_round_trip_is_lossless_for_channels_last_and_plain_layouts() -> None:
    frames = images(np.uint8, count=2, size=(6, 4))
    transfer = Transfer("cpu")
    pixels = transfer.upload(frames)
    for layout in (pixels, pixels.contiguous()):
        np.testing.assert_array_equal(transfer.download(layout, np.dtype(np.uint8)).images(), np.stack(frames))


def test_unsupported_sample_types_are_refused() -> None:
    with pytest.raises(ValueError, match="uint8 or uint16"):
        Transfer("cpu").upload([np.zeros((2, 2, 3), np.float32)])


@pytest.mark.parametrize("dtype,peak", [(np.uint8, 255), (np.uint16, 65535)])
@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16, torch.float32])
def test_non_finite_values_quantise_to_the_nearest_end(dtype: type, peak: int, half: torch.dtype) -> None:
    pixels = torch.full((2, 3, 2, 2), 0.5, dtype=half)
    pixels[0, 0, 0, 0], pixels[0, 1, 0, 1], pixels[1, 2, 1, 0] = float("nan"), float("inf"), float("-inf")
    before = pixels.clone()
    out = quantise(pixels, np.dtype(dtype)).numpy()
    assert (out[0, 0, 0, 0], out[0, 0, 1, 1], out[1, 1, 0, 2]) == (0, peak, 0)  # NaN black, +inf white, -inf black
    assert np.count_nonzero(out == round(0.5 * peak)) == out.size - 3
    assert torch.equal(pixels.isnan(), before.isnan())  # the caller's tensor is left as it was


def test_a_batch_that_does_not_fit_is_quantised_frame_by_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamrestore.engine import transfer

    pixels = torch.rand(4, 3, 6, 5).contiguous(memory_format=torch.channels_last)
    expected = quantise(pixels, np.dtype(np.uint16))
    assert torch.equal(transfer.quantise_frames(pixels, np.dtype(np.uint16)), expected)
    real = transfer.quantise

    def short_of_memory(batch: torch.Tensor, dtype: np.dtype) -> torch.Tensor:
        if batch.shape[0] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected by the test)")
        return real(batch, dtype)

    monkeypatch.setattr(transfer, "quantise", short_of_memory)
    assert np.array_equal(Transfer("cpu").download(pixels, np.dtype(np.uint16)).images(), expected.numpy())
