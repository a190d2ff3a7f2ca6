"""The ``model`` stage: any restoration network spandrel recognises, its architecture detected from the weights.

``model=PATH`` takes a .pth/.pt/.ckpt/.safetensors file (or a name the catalogue knows); it is read by
``streamrestore.models.loader.load_model``, whose answer says what the network can do and how it is
called: scale, the size multiple it needs, fp16/bf16, whether it tiles, a border to pad around each frame
(Real-ESRGAN's wrappers reflect 10 px; ``border=auto`` follows the file, ``border=N`` overrides it) and a
window grid for tiles. The stage turns that into ``Capabilities``; the runtime (``streamrestore.engine``)
pads, tiles, crops and backs off when memory runs out. ``process`` only computes: the network on the frame
it is given, then the ``outscale`` resize, ``color_fix`` and ``keep_input``.

Cost: building the stage only stores its options (``streamrestore stages`` builds one with no model
and gets neutral capabilities). The file is read once, on the CPU, when the capabilities are first
asked for, since scale and size rules come from the weights; ``to()`` then moves that network to the
chosen device and precision. An unreadable or unknown file is a one-line ``WeightsError``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamrestore.errors import ConfigError
from streamrestore.frames import FrameBatch
from streamrestore.models.loader import LoadedModel, load_model
from streamrestore.stage import Capabilities, Option, Stage

# spandrel documents batch size 1, so an architecture gets batches of frames only once measured here:
# a batch of 3 frames gave the same output as 3 single-frame calls (max difference < 1e-6, CPU, fp32;
# tests/test_model_stage.py re-checks each). RCAN scales its input in place (`x *= rgb_range`), which
# looks like a batching bug when the caller reuses that tensor; the stage always hands a network its
# own copy, after which RCAN batches too. UpConv7 and CUNet (SE averages are per frame): likewise, checked
# in tests/test_packaged_models.py. Any other architecture runs one frame at a time.
BATCH_VERIFIED = frozenset({"Compact", "ESRGAN", "SwinIR", "RCAN", "Restormer", "MPRNet", "NAFNet", "UpConv7", "CUNet",
                            "GatedDeblur"})

_COLOR_FIX_AT_X1 = "stage 'model': color_fix needs an output larger than the input (outscale ≥ 2)"
_KEEP_INPUT_ABOVE_X1 = "stage 'model': keep_input needs an output the size of the input (a ×1 network or outscale=1)"


class ModelStage(Stage):
    summary = "a restoration network from a weights file; architecture detected by spandrel"
    options = {
        "model": Option(str, "", "weights: a .pth/.pt/.ckpt/.safetensors path or a known model name"),
        "tile_overlap": Option(int, 16, "context around each tile, input pixels (half of it is cross-faded; at "
                                        "least what the network needs: 98 for deblur's deconvolutions); tiles: "
                                        "--tile, or NAME:tile=N in a chain",
                               minimum=0, maximum=256),
        "outscale": Option(int, 0, "output scale; 0 = the network's own, else its output is resized "
                                   "(area down, bicubic up), e.g. a ×4 network as a ×1 denoiser",
                           minimum=0, maximum=16),
        "border": Option(int, None, "pixels padded around each frame before the network and cropped after; "
                                    "auto = as the weights file says (converted ncnn models), else 0",
                         minimum=0, maximum=256, auto=True),
        "color_fix": Option(bool, False, "keep the input's colours: correct the output so that, shrunk back to "
                                         "the input's size, it equals the input (needs a scale of 2 or more)"),
        "ensemble": Option(int, 1, "geometric self-ensemble: the network on N flipped/transposed copies of the "
                                   "frame (1, 2, 4 or 8), outputs averaged; N times the time for a cleaner result",
                           minimum=1, maximum=8),
        "keep_input": Option(float, 0.0, "share of the input kept in the output: (1 − k) × network + k × input, "
                                         "leaving a little of the input's fine grain and texture in; ×1 outputs "
                                         "only", minimum=0.0, maximum=1.0),
    }

    def __init__(self, **options) -> None:
        super().__init__(**options)
        if self.settings["color_fix"] and self.settings["outscale"] == 1:
            raise ConfigError(_COLOR_FIX_AT_X1)  # known without reading the file; a ×1 network is caught in to()
        if self.settings["keep_input"] and self.settings["outscale"] > 1:
            raise ConfigError(_KEEP_INPUT_ABOVE_X1)  # likewise; a ×2 network without outscale is caught in to()
        if self.settings["ensemble"] not in ENSEMBLE_SIZES:
            raise ConfigError(f"stage 'model': ensemble must be one of {', '.join(map(str, ENSEMBLE_SIZES))}, "
                              f"not {self.settings['ensemble']}")
        self._loaded: LoadedModel | None = None
        self._channels_last = False
        self._dtype: torch.dtype | None = None  # the precision the network was last moved to

    # -- what it can do --------------------------------------------------------------------------
    @property
    def loaded(self) -> LoadedModel:
        """The network and how to call it, read from the file on first use."""
        if self._loaded is None:
            ref = self.settings["model"]
            if not ref:
                raise ConfigError("stage 'model' needs a weights file: model=PATH (or e.g. sr4=PATH in a chain)")
            self._loaded = load_model(ref)
        return self._loaded

    @property
    def network(self):
        """The spandrel descriptor."""
        return self.loaded.descriptor

    @property
    def capabilities(self) -> Capabilities:
        overlap = self.settings["tile_overlap"]
        if not self.settings["model"]:
            # Listing the stage without a model: nothing is known until a file is given.
            return Capabilities(devices=("cpu", "cuda"), tileable=True, tile_overlap=overlap)
        import spandrel

        loaded, net = self.loaded, self.loaded.descriptor
        border = self.settings["border"]
        # Preferred first: the runtime takes the first one the device supports, fp32 on the CPU.
        dtypes = [name for name, ok in (("float16", net.supports_half), ("bfloat16", net.supports_bfloat16)) if ok]
        return Capabilities(
            scale=self.settings["outscale"] or loaded.scale,
            dtypes=(*dtypes, "float32"),
            devices=("cpu", "cuda"),
            border=loaded.declared.border if border is None else border,
            border_mode=loaded.declared.border_mode,
            size_multiple=loaded.size_multiple,
            tileable=net.tiling != spandrel.ModelTiling.INTERNAL,
            tile_overlap=max(overlap, loaded.tile_context),
            tile_align=loaded.tile_align,
            max_batch=None if net.architecture.id in BATCH_VERIFIED else 1,
        )

    def to(self, device: torch.device, dtype: torch.dtype) -> None:
        if self.settings["color_fix"] and self.capabilities.scale == 1:
            raise ConfigError(_COLOR_FIX_AT_X1)
        if self.settings["keep_input"] and self.capabilities.scale != 1:
            raise ConfigError(_KEEP_INPUT_ABOVE_X1)
        if self._dtype is not None and self._dtype != dtype:
            self._loaded = None  # a new precision (the runner's fallback after NaN): from the file's own weights
        self._dtype = dtype
        net = self.network.to(device, dtype).eval()
        # channels_last on the CPU: 1.1-1.8× faster for every seed architecture, none slower
        # (benchmarks/channels_last.py). Not measured on CUDA, so not used there.
        self._channels_last = device.type == "cpu"
        net.model.to(memory_format=torch.channels_last if self._channels_last else torch.contiguous_format)

    def working_pixels(self, height: int, width: int) -> int:
        # The network's output is at its own scale before the outscale resize (a file may declare ×16 and be
        # resized down to outscale=1): count it, on the frame the runtime pads.
        border = self.capabilities.border
        padded = (height + 2 * border) * (width + 2 * border)
        pixels = max(super().working_pixels(height, width), padded * self.loaded.scale**2)
        # A self-ensemble also holds the running sum of the outputs, in float32.
        return pixels + (padded * self.loaded.scale**2 if self.settings["ensemble"] > 1 else 0)

    # -- frames ----------------------------------------------------------------------------------
    def process(self, batch: FrameBatch) -> FrameBatch:
        """The network on the (already padded, maybe tiled) frames, resized to ``outscale``, colours kept,
        ``keep_input`` of the input mixed back in."""
        out = self._forward(batch.pixels)
        out = self._rescale(out, batch.pixels.shape[-2:])
        if self.settings["color_fix"]:
            out = back_project(out, batch.pixels)
        if self.settings["keep_input"]:
            out = torch.lerp(out, batch.pixels.to(out.dtype), self.settings["keep_input"])
        return batch.with_pixels(out)

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """The network's output, averaged over ``ensemble`` flipped/transposed copies (each undone after)."""
        count = self.settings["ensemble"]
        if count == 1:
            return self.loaded.forward(pixels, self._channels_last)
        total = None
        for transpose, flip_h, flip_w in ENSEMBLE_TRANSFORMS[:count]:
            # No copy of the view here: forward() hands the network its own copy, in its memory format.
            view = _geometry(pixels, transpose, flip_h, flip_w)
            out = _geometry(self.loaded.forward(view, self._channels_last), transpose, flip_h, flip_w, undo=True)
            total = out.float() if total is None else total.add_(out.float())
        return total.div_(count).to(pixels.dtype)

    def _rescale(self, out: torch.Tensor, size: torch.Size) -> torch.Tensor:
        """Resize the network's output to ``outscale`` (as Real-ESRGAN's --outscale does)."""
        scale, native = self.settings["outscale"], self.loaded.scale
        if not scale or scale == native:
            return out
        target = (size[0] * scale, size[1] * scale)
        if scale < native:
            return F.interpolate(out, size=target, mode="area")
        return F.interpolate(out, size=target, mode="bicubic", align_corners=False).clamp_(0.0, 1.0)


# Self-ensemble (as in EDSR's "+" results): the eight symmetries of the square, the cheapest (flips) first.
ENSEMBLE_SIZES = (1, 2, 4, 8)
ENSEMBLE_TRANSFORMS = ((False, False, False), (False, False, True), (False, True, False), (False, True, True),
                       (True, False, False), (True, False, True), (True, True, False), (True, True, True))  # fmt: skip


def _geometry(pixels: torch.Tensor, transpose: bool, flip_h: bool, flip_w: bool, undo: bool = False) -> torch.Tensor:
    """Transpose H/W and flip, or (``undo``) the inverse: flips first, then the transpose."""
    dims = [dim for dim, flip in ((-2, flip_h), (-1, flip_w)) if flip]
    if not undo and transpose:
        pixels = pixels.transpose(-2, -1)
    if dims:
        pixels = pixels.flip(dims)
    if undo and transpose:
        pixels = pixels.transpose(-2, -1)
    return pixels


def back_project(out: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``out`` corrected so that its area-downscale to ``source``'s size equals ``source``.

    GAN upscalers (Real-ESRGAN x4plus) shift mean brightness and colour by up to 13 levels on some photos;
    the difference at the input's resolution, brought back up bicubically, removes that shift and leaves
    the detail the network added above the input's resolution (dev kit ×4: 26.86 → 28.15 dB PSNR-Y).
    """
    error = source.to(out.dtype) - F.interpolate(out, size=source.shape[-2:], mode="area")
    return (out + F.interpolate(error, size=out.shape[-2:], mode="bicubic", align_corners=False)).clamp_(0.0, 1.0)
