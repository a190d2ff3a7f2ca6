"""The one type that crosses stage boundaries: a batch of RGB frames with their timestamps.

Pixels are an N×3×H×W float tensor in [0, 1], RGB, whatever the source bit depth was: 8-bit and
10/16-bit sources both arrive here at full precision, and the writer quantises once at the end.

Temporal stages see neighbouring frames as *context*: the first ``context_before`` and the last
``context_after`` frames of a batch are there to be looked at, and the stage returns one output frame
for each frame in between (``batch.core``). The runner supplies the context, padding by repeating the
first or last frame at the ends of the stream, so a stage never has to know where a stream starts or
stops.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from .engine.transfer import full_scale, quantise


@dataclass(frozen=True)
class FrameBatch:
    pixels: torch.Tensor
    """N×3×H×W, float, values in [0, 1], RGB."""

    pts: tuple[int | None, ...]
    """Presentation timestamp of each frame in the source's time base (None for padding frames)."""

    context_before: int = 0
    context_after: int = 0

    def __post_init__(self) -> None:
        if self.pixels.ndim != 4 or self.pixels.shape[1] != 3:
            raise ValueError(f"FrameBatch needs N×3×H×W pixels, got shape {tuple(self.pixels.shape)}")
        if len(self.pts) != self.pixels.shape[0]:
            raise ValueError(f"FrameBatch has {self.pixels.shape[0]} frames but {len(self.pts)} timestamps")
        if self.context_before + self.context_after > len(self.pts):
            raise ValueError("FrameBatch context is longer than the batch")

    def __len__(self) -> int:
        return self.pixels.shape[0]

    @property
    def height(self) -> int:
        return self.pixels.shape[2]

    @property
    def width(self) -> int:
        return self.pixels.shape[3]

    @property
    def core_count(self) -> int:
        """How many frames a stage must return for this batch."""
        return len(self) - self.context_before - self.context_after

    @property
    def core_pts(self) -> tuple[int | None, ...]:
        return self.pts[self.context_before : len(self) - self.context_after]

    def with_pixels(self, pixels: torch.Tensor) -> FrameBatch:
        """The stage's result: new pixels for the core frames, same timestamps, no context."""
        return replace(self, pixels=pixels, pts=self.core_pts, context_before=0, context_after=0)


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """H×W×3 uint8 or uint16 RGB array -> 1×3×H×W float32 tensor in [0, 1]."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 RGB image, got shape {image.shape}")
    scale = full_scale(image.dtype)
    tensor = torch.from_numpy(np.ascontiguousarray(image)).to(torch.float32).div_(scale)
    return tensor.permute(2, 0, 1).unsqueeze(0)


def tensor_to_images(pixels: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    """N×3×H×W float tensor in [0, 1] -> N×H×W×3 array of ``dtype`` (uint8 or uint16), rounded once."""
    return quantise(pixels.detach().to("cpu"), dtype).numpy()
