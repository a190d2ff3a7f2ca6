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
