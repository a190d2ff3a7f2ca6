"""The encoder's RGB frames: wrapped without a copy where a conversion follows, and bit-identical to a copy."""

from __future__ import annotations

import av
import numpy as np
import pytest

from streamrestore.media.color import ColorDescription, rgb_to_frame
from streamrestore.media.writer import rgb_frame

BT709 = ColorDescription(matrix=1, range=1, primaries=1, transfer=1)


def picture(dtype: type, height: int = 36, width: int = 50) -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, np.iinfo(dtype).max + 1, (height, width, 3), dtype=dtype)


@pytest.mark.parametrize("dtype,rgb_format,pix_fmt", [
    (np.uint8, "rgb24", "yuv420p"), (np.uint8, "rgb24", "yuv444p"), (np.uint8, "rgb24", "gbrp"),
    (np.uint16, "rgb48le", "yuv420p10le"), (np.uint16, "rgb48le", "yuv444p16le"),
])
def test_wrapped_frames_convert_exactly_like_copied_ones(dtype: type, rgb_format: str, pix_fmt: str) -> None:
    rgb = picture(dtype)
    wrapped = rgb_to_frame(rgb_frame(rgb, rgb_format, pix_fmt), BT709, pix_fmt)
    copied = rgb_to_frame(av.VideoFrame.from_ndarray(rgb, format=rgb_format), BT709, pix_fmt)
    assert wrapped.format.name == copied.format.name == pix_fmt
    assert np.array_equal(wrapped.to_ndarray(), copied.to_ndarray())  # the planes, without line padding


def test_a_frame_encoded_as_is_gets_its_own_copy() -> None:
    rgb = picture(np.uint8)
    frame = rgb_frame(rgb, "rgb24", "rgb24")  # no conversion follows: the encoder would read our memory
    rgb[:] = 0
    assert frame.to_ndarray().any()


def test_arrays_that_cannot_be_wrapped_are_copied() -> None:
    rgb = picture(np.uint8, 36, 100)[:, ::2]  # every other column: not contiguous
    frame = rgb_frame(rgb, "rgb24", "yuv420p")
    assert np.array_equal(frame.to_ndarray(), rgb)
