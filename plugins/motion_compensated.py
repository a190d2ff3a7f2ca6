"""Motion-compensated temporal denoise: each frame averaged with its neighbours, warped onto it by optical flow.

Grain and sensor noise are new in every frame while the picture only moves, so a neighbour moved back into
place by its optical flow is a second, independent look at the same scene: averaging 2·radius + 1 of them
divides white noise by up to sqrt(2·radius + 1) without the smoothing a single-frame denoiser needs. This
is what archivists run before anything else (MVTools' MDegrain in AviSynth/VapourSynth); here the flow is
OpenCV's DIS (preset FAST: on grainy frames its coarser flow is steadier than MEDIUM's, and 1.5× quicker;
benchmarks/RESULTS.md) and the averaging is pixel by pixel:

- each neighbour is warped onto the frame (bicubic, at full precision: 10/16-bit sources stay so);
- its weight is exp(-(d / strength)²), where d is the local mean absolute difference to the frame (levels on
  the 0..255 scale, smoothed over a few pixels): where the flow is wrong (occlusion, a scene cut, a flash)
  the neighbour differs by far more than the noise, gets no weight, and nothing ghosts;
- pixels whose flow points outside the neighbour get no weight, and the padding frames the runner repeats at
  the ends of a stream are skipped, so the first and last frames average over the real frames only.
"""

from __future__ import annotations

import cv2
import numpy as np

from streamrestore.frames import FrameBatch
from streamrestore.stage import Capabilities, Option, Stage

from .classical import _stack, _to_hwc, estimate_noise_sigma

AUTO_STRENGTH_PER_SIGMA = 1.7
"""``strength`` when not given: this × the noise σ̂ of the stream's first frame. Two aligned frames with white
noise σ differ by 1.13 σ on average (``ALIGNED_DIFFERENCE_PER_SIGMA``), so noise alone keeps most of its weight
while a neighbour the flow moved a little wrong on fine detail, or another shot, loses it. Chosen on the dev
kit's noisy and old-film clips and on panned photos in the tests (README, "mc-denoise")."""

ALIGNED_DIFFERENCE_PER_SIGMA = 2.0 / np.sqrt(np.pi)
"""E|a - b| for two independent N(0, σ²) samples, in units of σ."""

MIN_AUTO_STRENGTH = 4.0
"""Levels: the least automatic ``strength``. MVTools' MDegrain, by default, gives a block no weight once its mean
difference passes 6.25 levels a pixel (thSAD 400 on 8×8); exp(-(6.25 / 4)²) = 0.09 is the same scale. Noise
that a codec smeared into blotches reads low in both σ̂ estimates (1-2 levels on the dev kit's crf-28 old film)
and still wants averaging; on clean sharp pans the floor costs at most ~1 level RMS (tests: over 47 dB)."""

MIN_FLOW_SIDE = 16
"""DIS flow refuses frames under 9 pixels a side: smaller luma planes are padded (border replicated) to this."""

DIFFERENCE_SMOOTHING = 1.5
"""Gaussian σ, pixels, of the smoothing of |neighbour - frame| before it is turned into a weight."""


def _luma8(rgb: np.ndarray) -> np.ndarray:
    """H×W×3 float RGB on the 0..255 scale -> 8-bit luma, the single channel DIS flow reads."""
    luma = 0.299 * rgb[:, :, 0] + 0.587 * rgb[:, :, 1] + 0.114 * rgb[:, :, 2]
    return np.clip(np.rint(luma), 0, 255).astype(np.uint8)


class MotionCompensatedDenoise(Stage):
    summary = "motion-compensated temporal denoise: neighbours warped by optical flow and averaged (MDegrain-like)"
    options = {
        "radius": Option(int, 3, "frames on each side that are averaged in (2·radius + 1 in all)", minimum=1, maximum=7),
        "strength": Option(float, None, "difference, in levels (0..255), at which a neighbour's weight falls to 1/e; "
                                        "auto = 1.7 × the noise σ of the first frames, at least 4", minimum=0.5,
                           maximum=100.0, auto=True),
    }

    @property
    def capabilities(self) -> Capabilities:
        radius = self.settings["radius"]
        return Capabilities(frames_before=radius, frames_after=radius)

    def working_pixels(self, height: int, width: int) -> int:
        """The window's frames as float arrays beside the batch, and one neighbour's warp at a time: measured at
        1920×1080, 0.34 KB a pixel above ``identity`` at radius 3 and 0.86 KB at radius 7, which this counts as
        (5·radius/2 + 2) frames of the engine's 48 bytes a working pixel (``engine.budget``)."""
        return height * width * ((5 * self.settings["radius"]) // 2 + 2)

    def start_stream(self) -> None:
        self.auto_strength: float | None = None
        self.flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)

    def _strength(self, frames: list[np.ndarray], lumas: list[np.ndarray], index: int,
                  neighbours: list[int]) -> float:  # fmt: skip
        """The weight scale, estimated once per stream (a weight that followed each frame would flicker).

        σ̂ is the smaller of two estimates that fail in opposite places: the spatial one (as non-local means)
        reads fine texture as noise, and the temporal one, the median difference to the nearest neighbour
        moved into place, reads what the flow gets wrong as noise; the first is right on smooth pictures and
        the second on sharp ones that move cleanly. Crf-28 grain smeared into blotches reads low in both."""
        if self.settings["strength"] is not None:
            return self.settings["strength"]
        if self.auto_strength is None and neighbours:
            estimates = []
            if min(lumas[index].shape) >= 3:  # the spatial estimator's 3×3 mask needs a pixel inside the border
                estimates.append(estimate_noise_sigma(np.clip(np.rint(frames[index]), 0, 255).astype(np.uint8)))
            _, difference, inside = self._warp(frames, lumas, index, min(neighbours, key=lambda k: abs(k - index)))
            if inside.any():
                estimates.append(float(np.median(difference[inside])) / ALIGNED_DIFFERENCE_PER_SIGMA)
            sigma = min(estimates, default=0.0)
            self.auto_strength = round(max(MIN_AUTO_STRENGTH, AUTO_STRENGTH_PER_SIGMA * sigma), 2)
        return self.auto_strength or MIN_AUTO_STRENGTH

    def process(self, batch: FrameBatch) -> FrameBatch:
        radius = self.settings["radius"]
        cores = range(batch.context_before, len(batch) - batch.context_after)
        windows = {index: [k for k in range(index - radius, index + radius + 1)
                           if k != index and 0 <= k < len(batch) and batch.pts[k] is not None] for index in cores}
        if not any(windows.values()):  # a still image, or a one-frame stream: nothing to average with
            return batch.with_pixels(batch.pixels[batch.context_before : len(batch) - batch.context_after])
        frames = [_to_hwc(frame) * 255.0 for frame in batch.pixels]
        lumas = [_luma8(frame) for frame in frames]
        out = []
        for index, neighbours in windows.items():
            strength = self._strength(frames, lumas, index, neighbours)
            out.append(self._average(frames, lumas, index, neighbours, strength))
        return batch.with_pixels(_stack(out, 255.0, batch.pixels))

    def _flow(self, centre: np.ndarray, neighbour: np.ndarray) -> np.ndarray:
        """Optical flow from ``centre`` to ``neighbour`` (8-bit lumas): centre(x) ≈ neighbour(x + flow(x))."""
        height, width = centre.shape
        pad_y, pad_x = max(0, MIN_FLOW_SIDE - height), max(0, MIN_FLOW_SIDE - width)
        if pad_y or pad_x:
            centre, neighbour = (cv2.copyMakeBorder(luma, 0, pad_y, 0, pad_x, cv2.BORDER_REPLICATE)
                                 for luma in (centre, neighbour))
        return self.flow.calc(centre, neighbour, None)[:height, :width]

    def _warp(self, frames: list[np.ndarray], lumas: list[np.ndarray], index: int,
              k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """Frame ``k`` moved onto frame ``index``; its smoothed difference to it (levels); where its flow stays inside."""
        centre = frames[index]
        height, width = centre.shape[:2]
        flow = self._flow(lumas[index], lumas[k])
        map_x = flow[:, :, 0] + np.arange(width, dtype=np.float32)[None, :]
        map_y = flow[:, :, 1] + np.arange(height, dtype=np.float32)[:, None]
        warped = cv2.remap(frames[k], map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        difference = cv2.GaussianBlur(np.abs(warped - centre).mean(axis=2), (0, 0), DIFFERENCE_SMOOTHING)
        inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
        return warped, difference, inside

    def _average(self, frames: list[np.ndarray], lumas: list[np.ndarray], index: int, neighbours: list[int],
                 strength: float) -> np.ndarray:  # fmt: skip
        total = frames[index].copy()
        weights = np.ones(total.shape[:2], np.float32)
        for k in neighbours:
            warped, difference, inside = self._warp(frames, lumas, index, k)
            weight = np.exp(-np.square(difference / strength)) * inside
            total += warped * weight[:, :, None]
            weights += weight
        return np.clip(total / weights[:, :, None], 0.0, 255.0)
