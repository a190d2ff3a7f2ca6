"""The stage contract: what a plugin declares about itself and the one method it implements.

A stage is a class. Its class attributes say what it is (``summary``) and which options it takes
(``options``); an instance, built from validated option values, says what it can do
(``capabilities``) and turns one ``FrameBatch`` into another (``process``). The runtime decides device,
precision, batching, tiling and temporal context from the capabilities, in one place; a stage never
sees a container, a codec, a CLI flag or the web demo.

Building a stage must be cheap (``streamrestore stages`` builds each one to show its capabilities):
load weights in ``to()``, which the runtime calls once with the chosen device and precision.

Third-party packages publish stages under the entry-point group ``streamrestore.stages``, exactly as
the built-ins in ``plugins/`` do.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch

from .errors import ConfigError
from .frames import FrameBatch

ENTRY_POINT_GROUP = "streamrestore.stages"


@dataclass(frozen=True)
class Capabilities:
    """What a configured stage can do; the runtime plans around these and nothing else."""

    scale: int = 1
    """Output size = input size × scale."""

    frames_before: int = 0
    frames_after: int = 0
    """Temporal window: how many neighbouring frames the stage needs before and after each frame."""

    dtypes: tuple[str, ...] = ("float32",)
    """Tensor precisions the stage can compute in, preferred first ("float32", "float16", "bfloat16")."""

    devices: tuple[str, ...] = ("cpu",)
    """Device types the stage runs on ("cpu", "cuda")."""

    border: int = 0
    """Pixels the runtime pads around each frame before ``process`` and crops (× scale) after."""

    border_mode: str = "reflect"
    """How the border is filled: "reflect" or "replicate" (reflection needs more pixels than it adds;
    a frame that small is replicated)."""

    size_multiple: int = 1
    """Height and width ``process`` is given are multiples of this: after the border, the runtime pads the
    bottom and right by reflection (replication where the frame is too small) and crops the result."""

    tileable: bool = False
    """Whether a frame may be cut into overlapping tiles and processed piecewise."""

    tile_overlap: int = 0
    """Pixels of overlap a tile needs so that seams do not show (input pixels)."""

    tile_align: int = 1
    """Tiles start on multiples of this (and of ``size_multiple``): a window-attention network sees the same
    window grid in a tile as on the whole frame."""

    max_batch: int | None = None
    """Most frames the stage accepts at once (None: no limit); the runner splits larger spatial batches."""

    @property
    def is_temporal(self) -> bool:
        return self.frames_before > 0 or self.frames_after > 0


@dataclass(frozen=True)
class Option:
    """One declared stage option: its type, default, allowed values and help text."""

    type: type
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None
    auto: bool = False
    """Whether the word ``auto`` is accepted; it parses to None and the stage decides the value."""

    def parse(self, stage: str, name: str, value: Any) -> Any:
        """Convert ``value`` (a YAML value or a command-line string) and check its range."""
        if self.auto and (value is None or str(value).strip().lower() == "auto"):
            return None
        shown = _short(value)  # a value can be anything a preset or a page sends: quote at most a few words
        try:
            converted = _convert(self.type, value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"stage {stage!r}: option {name!r} needs {self.type.__name__}, got {shown}") from None
        if isinstance(converted, float) and not math.isfinite(converted):
            # NaN passes every range check (all comparisons are false) and turns pictures black.
            raise ConfigError(f"stage {stage!r}: option {name!r} needs a finite number, got {shown}")
        if self.choices is not None and converted not in self.choices:
            allowed = ", ".join(str(c) for c in self.choices)
            raise ConfigError(f"stage {stage!r}: option {name!r} must be one of {allowed}, got {shown}")
        if self.minimum is not None and converted < self.minimum:
            raise ConfigError(f"stage {stage!r}: option {name!r} must be ≥ {self.minimum}, got {shown}")
        if self.maximum is not None and converted > self.maximum:
            raise ConfigError(f"stage {stage!r}: option {name!r} must be ≤ {self.maximum}, got {shown}")
        return converted


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _convert(kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(value)
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    if kind in (int, float) and isinstance(value, bool):
        raise ValueError(value)
    return kind(value)


class Stage(ABC):
    """Base class of every stage. Subclasses set ``summary`` and ``options`` and implement the rest."""

    summary: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}

    def __init__(self, **options: Any) -> None:
        self.settings = dict(options)

    @property
    @abstractmethod
    def capabilities(self) -> Capabilities:
        """What this configured stage can do (may depend on its options)."""

    @abstractmethod
    def process(self, batch: FrameBatch) -> FrameBatch:
        """Return one frame for each of ``batch.core_count`` frames, scaled by ``capabilities.scale``."""

    def start_stream(self) -> None:
        """Called before the first frame of each stream (or image); reset any per-stream state here."""

    def to(self, device: torch.device, dtype: torch.dtype) -> None:
        """Move weights to ``device``/``dtype``; stages without weights need not override this."""

    def working_pixels(self, height: int, width: int) -> int:
        """The largest frame, in pixels, this stage holds while turning one ``height``×``width`` frame into its
        output (``engine.budget`` plans memory with it): the frame as the runtime pads it (``border``,
        ``size_multiple``), and its result. A stage that works at a larger scale than its output overrides this."""
        caps = self.capabilities
        padded_h, padded_w = height + 2 * caps.border, width + 2 * caps.border
        padded_h, padded_w = padded_h + -padded_h % caps.size_multiple, padded_w + -padded_w % caps.size_multiple
        return padded_h * padded_w * max(1, caps.scale) ** 2

    @classmethod
    def describe_options(cls) -> str:
        return ", ".join(
            f"{name}={'auto' if opt.auto and opt.default is None else repr(opt.default)}"
            for name, opt in cls.options.items()
        )


@dataclass(frozen=True)
class StageSpec:
    """A stage as discovered: its name, where it comes from, and how to build it."""

    name: str
    package: str
    factory: Callable[..., Stage]
    options: dict[str, Option] = field(default_factory=dict)
    summary: str = ""

    def build(self, settings: dict[str, Any]) -> Stage:
        """Validate ``settings`` against the declared options and instantiate the stage."""
        unknown = sorted(set(settings) - set(self.options))
        if unknown == ["tile"] or (unknown and unknown[0] == "tile"):
            raise ConfigError(f"stage {self.name!r}: tile is run policy, not a stage option: use --tile N "
                              "(or NAME:tile=N in a chain)")
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise ConfigError(f"stage {self.name!r} has no option {unknown[0]!r} (options: {known})")
        values = {name: opt.default for name, opt in self.options.items()}
        for name, raw in settings.items():
            values[name] = self.options[name].parse(self.name, name, raw)
        return self.factory(**values)


@dataclass(frozen=True)
class BuiltStage:
    """One element of a built chain: the name the user typed, its spec, the stage, and its run policy."""

    name: str
    spec: StageSpec
    stage: Stage
    tile: int | None = None
    """Tile side in input pixels this element asked for (``sr4:tile=256``); None: the run's ``--tile``."""
