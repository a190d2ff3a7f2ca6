"""Moves frames between host and device: 8/16-bit RGB in, float on the device, 8/16-bit RGB back.

``upload`` turns decoded H×W×3 arrays into the N×3×H×W float batch the stages take; ``download``
quantises a restored batch back to N×H×W×3 integers, and ``Download.images()`` (called by the encoder
thread) waits for the copy only when the pixels are needed.

On the CPU both are plain conversions (one pass each; no extra copy). The N×3×H×W batch is a view
of the N×H×W×3 memory, i.e. channels_last, which is the layout the model stage computes in there.

On CUDA (NOT YET MEASURED ON A GPU: written from the CUDA stream semantics, unit-tested only for its
CPU pass-through): frames are stacked into pinned host memory and copied on an upload stream; the
compute stream waits for that copy and does the uint8→float conversion on the device. Results are
quantised on the device (a quarter of the bytes of float32) and copied back on a download stream,
which waits for the compute stream, into pinned memory. Two copy streams, because one would queue
the upload of batch k+1 behind the download of batch k, which waits for k's compute. Nothing in the
calling thread waits, so while the compute stream runs batch k, batch k+1 uploads and k−1
downloads. Pinned blocks come from torch's caching host allocator, which reuses a block only after
the copies recorded on it have finished. Out of device memory while quantising, a batch is quantised
one frame at a time (``quantise_frames``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .oom import is_out_of_memory, release_cached_memory

_SAMPLE_TYPES = {np.dtype(np.uint8): (torch.uint8, 255.0), np.dtype(np.uint16): (torch.uint16, 65535.0)}


def sample_type(dtype: np.dtype) -> tuple[torch.dtype, float]:
    """The torch type and full-scale value of uint8 or uint16 samples."""
    try:
        return _SAMPLE_TYPES[np.dtype(dtype)]
    except KeyError:
        raise ValueError(f"unsupported image sample type {dtype}; use uint8 or uint16") from None


def full_scale(dtype: np.dtype) -> float:
    return sample_type(dtype)[1]


class Download:
    """A restored batch on its way to the host; ``images()`` waits for it (in the encoder thread)."""

    def __init__(self, host: torch.Tensor, copied: torch.cuda.Event | None = None) -> None:
        self._host = host
        self._copied = copied

    def images(self) -> np.ndarray:
        """N×H×W×3 uint8 or uint16."""
        if self._copied is not None:
            self._copied.synchronize()
        return self._host.numpy()


class Transfer:
    """Host↔device traffic for one device; ``device`` is where the first stage computes."""

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self._streams: dict[tuple[str, torch.device], torch.cuda.Stream] = {}

    def _stream(self, role: str, device: torch.device) -> torch.cuda.Stream:
        if (role, device) not in self._streams:
            self._streams[role, device] = torch.cuda.Stream(device)
        return self._streams[role, device]

    def upload(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """H×W×3 uint8/uint16 arrays (equal sizes) -> N×3×H×W tensor of ``dtype`` in [0, 1] on ``device``."""
        samples, scale = sample_type(images[0].dtype)
        if self.device.type != "cuda":
            return _to_unit_float(torch.from_numpy(np.stack(images)), self.dtype, scale)
        pinned = torch.empty((len(images), *images[0].shape), dtype=samples, pin_memory=True)
        np.stack(images, out=pinned.numpy())
        # No wait on the compute stream here (that would queue this copy behind batch k's compute): the
        # caching allocator only reuses memory for `raw` once record_stream's events say it is free.
        compute, upload = torch.cuda.current_stream(self.device), self._stream("upload", self.device)
        with torch.cuda.stream(upload):
            raw = pinned.to(self.device, non_blocking=True)
        compute.wait_stream(upload)
        raw.record_stream(compute)  # allocated on the upload stream, used on the compute stream
        return _to_unit_float(raw, self.dtype, scale)

    def download(self, pixels: torch.Tensor, dtype: np.dtype) -> Download:
        """Quantise N×3×H×W [0, 1] pixels to ``dtype`` (rounded once) and start bringing them to the host."""
        try:
            quantised = quantise(pixels, dtype)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            quantised = None  # the float32 copy of the whole batch did not fit: one frame at a time
        if quantised is None:
            release_cached_memory()
            quantised = quantise_frames(pixels, dtype)
        if quantised.device.type != "cuda":
            return Download(quantised)
        compute, download = torch.cuda.current_stream(quantised.device), self._stream("download", quantised.device)
        download.wait_stream(compute)
        with torch.cuda.stream(download):
            host = torch.empty(quantised.shape, dtype=quantised.dtype, pin_memory=True)
            host.copy_(quantised, non_blocking=True)
            # blocking: the encoder thread sleeps in synchronize() instead of spinning on a core
            copied = torch.cuda.Event(blocking=True)
            copied.record(download)
        quantised.record_stream(download)
        return Download(host, copied)


def quantise(pixels: torch.Tensor, dtype: np.dtype) -> torch.Tensor:
    """N×3×H×W float in [0, 1] -> N×H×W×3 ``dtype`` tensor on the same device (round half to even)."""
    target, scale = sample_type(dtype)
    # Work on the N×H×W×3 view: for channels_last results (the model stage's) that is the memory order.
    # float32 first (fp16 overflows at ×65535). Non-finite values (half precision overflowing) would
    # pass clamp() and cast to undefined integers: NaN becomes black, ±inf the nearest end. nan_to_num()
    # is out of place, since .to() may return the caller's own tensor, which must not change.
    unit = pixels.detach().permute(0, 2, 3, 1).to(torch.float32).nan_to_num(0.0, 1.0, 0.0)
    scaled = unit.clamp_(0.0, 1.0).mul_(scale).round_()
    return scaled.to(target, memory_format=torch.contiguous_format)


def quantise_frames(pixels: torch.Tensor, dtype: np.dtype) -> torch.Tensor:
    """``quantise`` one frame at a time into one result: a float32 copy of one frame at most."""
    target, _ = sample_type(dtype)
    count, _, height, width = pixels.shape
    out = torch.empty((count, height, width, 3), dtype=target, device=pixels.device)
    for index in range(count):
        out[index] = quantise(pixels[index : index + 1], dtype)[0]
    return out


def _to_unit_float(raw: torch.Tensor, dtype: torch.dtype, scale: float) -> torch.Tensor:
    # Divide in float32 (exact for 16-bit samples), then cast: fp16 cannot hold 65535.
    pixels = raw.permute(0, 3, 1, 2).to(torch.float32).div_(scale)
    return pixels if dtype == torch.float32 else pixels.to(dtype)
