"""The one loader: a model reference -> the network, its spandrel descriptor, and how it is meant to be run.

``load_model(ref)`` resolves ``ref`` (a path or a catalogue name: ``weights.resolve_weights``), reads the
file on the CPU and detects its architecture with a *copy* of spandrel's registry to which our own
architectures (``models.archs``: waifu2x, CUNet, EDSR, RDN, …) and, where installed, spandrel-extra-arches
(Restormer, MPRNet, …) are added; spandrel's global registry is never changed. The model stage, training
and the tests all load through here.

What comes back (``LoadedModel``) says how to call the network, so that the runtime can frame it:

- ``border``/``border_mode``: pixels padded around a frame before the network and cropped after, as the
  file's safetensors metadata says (``entry.BORDER_KEY``; Real-ESRGAN's wrappers reflect 10 px);
- ``size_multiple``: what the network needs its input to be a multiple of. Spandrel's descriptor says so
  for most networks, but not for NAFNet, which pads itself to 16 with zeros (a dark line along the bottom
  and right edges of every frame whose size is not a multiple); its own padder size is read here;
- ``tile_align``: the window grid of a window-attention network (SwinIR), on which tiles are cut;
- ``tile_context``: the least overlap of tiles for a network that reaches far (the gated deblur's
  deconvolutions); the model stage's ``tile_overlap`` is raised to it;
- ``scale``: the output scale of ``forward`` (the file's declared one, else the network's; a declared
  scale resizes the network's output bicubically: Real-ESRGAN animevideov3 x2 is its ×4, resized).

An unreadable or unknown file is a one-line ``WeightsError``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..errors import WeightsError
from .entry import BORDER_KEY, BORDER_MODE_KEY, SCALE_KEY
from .safety import check_weights_file
from .weights import resolve_weights

if TYPE_CHECKING:  # spandrel is imported on first load, so that chains without a model never pay for it
    import spandrel


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


@lru_cache(maxsize=1)
def architecture_registry() -> tuple[spandrel.ArchRegistry, bool]:
    """spandrel's registry, copied, with ours and spandrel-extra-arches added; and whether the extras are in."""
    import spandrel

    from .archs import our_architectures

    registry = spandrel.MAIN_REGISTRY.copy()
    registry.add(*our_architectures(), ignore_duplicates=True)
    try:
        with warnings.catch_warnings():
            # One of its architectures (CodeFormer) uses torch.jit.script, which torch now deprecates.
            warnings.simplefilter("ignore", FutureWarning)
            import spandrel_extra_arches
    except ModuleNotFoundError as error:
        if error.name != "spandrel_extra_arches":
            raise
        return registry, False
    registry.add(*spandrel_extra_arches.EXTRA_REGISTRY, ignore_duplicates=True)
    return registry, True


def model_loader() -> spandrel.ModelLoader:
    """A spandrel ``ModelLoader`` (CPU) over ``architecture_registry()``."""
    import spandrel

    return spandrel.ModelLoader("cpu", registry=architecture_registry()[0])


def load_network(path: Path) -> spandrel.ImageModelDescriptor:
    """Read ``path`` on the CPU and detect its architecture; anything unusable is a WeightsError."""
    check_weights_file(path)  # before any loader sees it: no TorchScript, no bomb, bounded metadata
    import spandrel

    extras = architecture_registry()[1]
    try:
        descriptor = model_loader().load_from_file(path)
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


@dataclass
class LoadedModel:
    """A network read from ``path``, with what its file and its architecture say about calling it."""

    path: Path
    descriptor: spandrel.ImageModelDescriptor
    declared: Declared

    @property
    def scale(self) -> int:
        """The scale of ``forward``: the file's declared one, else the network's."""
        return self.declared.scale or self.descriptor.scale

    @property
    def size_multiple(self) -> int:
        """What the input's height and width must be multiples of (see the module docstring)."""
        declared = self.descriptor.size_requirements.multiple_of
        internal = getattr(self.descriptor.model, "padder_size", 1)  # NAFNet: zero-pads to this itself
        return math.lcm(declared, internal if isinstance(internal, int) and internal > 0 else 1)

    @property
    def tile_align(self) -> int:
        """Tiles start on this grid: a window-attention network's window (1 for the others)."""
        window = getattr(self.descriptor.model, "window_size", 1)
        return window if isinstance(window, int) and window > 0 else 1

    @property
    def tile_context(self) -> int:
        """The least context around a tile, in input pixels, for a network whose output depends on pixels far
        away (the gated deblur's deconvolutions say how far); 0 for the others."""
        context = getattr(self.descriptor.model, "tile_context", 0)
        return context if isinstance(context, int) and context > 0 else 0

    def forward(self, pixels: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        """One call of the network on N×3×h×w -> N×3×(h·scale)×(w·scale), in [0, 1]. No padding: the
        caller (the runtime) gives sizes the network takes."""
        count = pixels.shape[0]
        net = self.descriptor
        if net.input_channels == 1:
            # A single-channel network (a grey denoiser) restores each colour plane on its own.
            pixels = pixels.reshape(count * 3, 1, *pixels.shape[-2:])
        # Always a private copy: some networks (RCAN) scale their input in place.
        out = net(pixels.clone(memory_format=torch.channels_last if channels_last else torch.contiguous_format))
        if self.scale != net.scale:  # e.g. Real-ESRGAN animevideov3 x2: its x4 network, resized
            size = (pixels.shape[-2] * self.scale, pixels.shape[-1] * self.scale)
            out = F.interpolate(out, size=size, mode="bicubic", align_corners=False).clamp_(0.0, 1.0)
        return out.reshape(count, 3, *out.shape[-2:])


def load_model(ref: str | Path) -> LoadedModel:
    """``ref`` (a path or a catalogue name) resolved, read on the CPU and detected; see the module docstring."""
    path = resolve_weights(str(ref))
    return LoadedModel(path, load_network(path), read_declarations(path))
