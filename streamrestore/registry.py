"""Finds stages through the ``streamrestore.stages`` entry points, checks them, resolves aliases.

Built-in and third-party stages come in through the same door. A plugin that fails to import or
breaks the contract is recorded as broken, with one line naming it, and every other stage keeps
working; only a chain that asks for a broken stage fails. Nothing is loaded at import time: a
``Registry`` reads the entry points when it is first asked.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Iterable

from .errors import ConfigError, PluginError, UnknownStageError
from .stage import ENTRY_POINT_GROUP, Option, Stage, StageSpec


MODEL_STAGE = "model"
"""The stage an alias given a weights file (``sr4=x.pth``) resolves to."""


@dataclass(frozen=True)
class Alias:
    """A short chain name (``denoise``, ``sr4``) that points at a stage with preset options."""

    target: str
    settings: dict[str, Any]
    summary: str
    model_settings: dict[str, Any] = field(default_factory=dict)
    """Preset options of the ``model`` stage, used instead when the user gives the alias a weights file."""
    repeat: int = 1
    """How many times the stage is applied in a row (``sr4`` = a ×2 network twice)."""


CONTENTS = ("photo", "anime")


def _model(name: str, summary: str, repeat: int = 1, **settings: Any) -> tuple[str, dict[str, Any], str, int]:
    return MODEL_STAGE, {"model": name, **settings}, summary, repeat


# The names users type, chosen by measurement on the development kit (README, "Default models";
# benchmarks/dev_kit.py reproduces every figure). Re-pointing an alias changes nothing else: the
# pipeline only ever sees the stage it resolves to. Given a weights file (`sr4=x.pth`) an alias keeps
# its meaning as an output scale: a ×2 network is resized to ×4, a ×4 network brought back to ×1.
# Where the GPU default differs, it is the better-scoring network that is too slow for the CPU.
_CLASSICAL = {
    "nlm": ("nlm-denoise", {}, "non-local means, strength from the estimated noise"),
    "tdenoise": ("nlm-temporal", {}, "temporal non-local means (5-frame window)"),
    # Tuned on one dev-kit photo (chelsea): +2.85 dB on the kit's Gaussian blur, but -2.0 dB on its
    # motion blur, which unsharp masking cannot undo at any strength (see README).
    "deblur": ("unsharp", {"amount": 6.0, "radius": 0.8}, "unsharp mask tuned for defocus / Gaussian blur"),
    "sharpen": ("unsharp", {}, "gentle unsharp mask"),
}
_NEURAL = {
    # ×2: ours, waifu2x's UpConv7 photo fine-tuned on bicubic downscales, 35.33 dB (the packaged one 35.20) at the
    # same speed. ×4: the packaged one twice, 29.53 (ours twice 29.51; our Compact ×4, faster, 29.39).
    ("photo", False): {
        "sr2": _model("sr2-upconv7", "×2: streamrestore's fidelity UpConv7 (fine-tuned waifu2x)"),
        "sr3": _model("sr2-upconv7", "×3: streamrestore's fidelity UpConv7 ×2, resized", outscale=3),
        "sr4": _model("waifu2x-upconv7-photo-x2", "×4: waifu2x UpConv7 photo ×2, twice", repeat=2),
    },
    # Ours: waifu2x's CUNet fine-tuned on bicubic downscales; 35.61 dB at ×2 (the packaged CUNet 35.43) and,
    # twice, 29.61 at ×4 (29.58).
    ("photo", True): {
        "sr2": _model("sr2-cunet", "×2: streamrestore's fidelity CUNet (fine-tuned waifu2x)"),
        "sr3": _model("sr2-cunet", "×3: streamrestore's fidelity CUNet ×2, resized", outscale=3),
        "sr4": _model("sr2-cunet", "×4: streamrestore's fidelity CUNet ×2, twice", repeat=2),
    },
    ("anime", False): {
        "sr2": _model("waifu2x-upconv7-art-x2", "×2: waifu2x UpConv7 anime-style art"),
        "sr3": _model("realesr-animevideov3-x3", "×3: Real-ESRGAN animevideov3"),
        "sr4": _model("realesr-animevideov3-x4", "×4: Real-ESRGAN animevideov3"),
    },
    ("anime", True): {
        "sr2": _model("realcugan-se-x2", "×2: Real-CUGAN"),
        "sr3": _model("realcugan-se-x3", "×3: Real-CUGAN"),
        "sr4": _model("realesrgan-x4plus-anime", "×4: Real-ESRGAN x4plus anime"),
    },
}
# The same network whatever the content and device.
_EVERY_TABLE = {
    # Our own blind denoiser (trained here, shipped in the package): on the kit's photos 33.10/31.33/28.70 dB
    # at σ15/25/50 against 31.89/28.84/25.76 for NLM tuned to each level, and on its noisy clips 37.19 dB
    # (tMAD 3.22) against per-frame NLM's 33.07 (4.41). `nlm` keeps the classical one.
    "denoise": _model("denoise-nafnet16", "blind denoiser, noise up to σ 50 and grain: streamrestore's NAFNet 16"),
    # Ours too: on the kit's old-film clips ×4 31.20 dB, tMAD 5.50, against bicubic's 30.33 / 6.23.
    "oldfilm": _model("oldfilm-compact64", "old film ×4: grain, blur and compression removed while upscaling "
                                           "(streamrestore's Compact 64)"),
    "jpeg": _model("waifu2x-cunet-noise2-x1", "JPEG/compression artefacts: waifu2x CUNet noise 2"),
    # The perceptual ×4 (sharpest by eye, below bicubic in PSNR; see README), its colour shift corrected by
    # back-projection (+1.29 dB on the kit, above bicubic).
    "sr4-gan": _model("realesrgan-x4plus", "×4 perceptual: Real-ESRGAN x4plus (GAN), colours kept", color_fix=True),
}
_OUTSCALE = {"denoise": 1, "nlm": 1, "tdenoise": 1, "deblur": 1, "sharpen": 1, "jpeg": 1, "oldfilm": 4,
             "sr2": 2, "sr3": 3, "sr4": 4, "sr4-gan": 4}


def default_aliases(content: str = "photo", accelerated: bool | None = None) -> dict[str, Alias]:
    """The alias table for ``content`` (photo or anime), for a GPU run or a CPU one."""
    if content not in CONTENTS:
        raise ConfigError(f"--content must be one of {', '.join(CONTENTS)}, got {content!r}")
    if accelerated is None:
        import torch

        accelerated = torch.cuda.is_available()
    table: dict[str, tuple[str, dict[str, Any], str, int]] = {
        name: (target, settings, summary, 1) for name, (target, settings, summary) in _CLASSICAL.items()
    }
    table.update(_NEURAL[(content, bool(accelerated))])
    table.update(_EVERY_TABLE)
    return {
        name: Alias(target, settings, summary, {"outscale": _OUTSCALE[name]}, repeat)
        for name, (target, settings, summary, repeat) in table.items()
    }


class Registry:
    """The stages available in this environment, discovered lazily."""

    def __init__(
        self,
        entry_points_: Iterable[EntryPoint] | None = None,
        extra: Iterable[StageSpec] = (),
        aliases: dict[str, Alias] | None = None,
        content: str = "photo",
        accelerated: bool | None = None,
    ) -> None:
        self._entry_points = entry_points_
        self._extra = list(extra)
        self.aliases = dict(default_aliases(content, accelerated) if aliases is None else aliases)
        self._specs: dict[str, StageSpec] | None = None
        self._broken: dict[str, str] = {}

    # -- discovery -------------------------------------------------------------------------------
    def _load(self) -> dict[str, StageSpec]:
        if self._specs is None:
            found = self._entry_points
            if found is None:
                found = entry_points(group=ENTRY_POINT_GROUP)
            specs: dict[str, StageSpec] = {}
            for ep in found:
                try:
                    specs[ep.name] = spec_from_entry_point(ep)
                except PluginError as error:
                    self._broken[ep.name] = str(error)
            for spec in self._extra:
                specs[spec.name] = spec
            self._specs = specs
        return self._specs

    @property
    def specs(self) -> dict[str, StageSpec]:
        return dict(self._load())

    @property
    def broken(self) -> dict[str, str]:
        """Plugins that could not be used, name -> one-line reason."""
        self._load()
        return dict(self._broken)

    def add(self, spec: StageSpec) -> None:
        """Register a stage programmatically (tests, notebooks)."""
        self._load()[spec.name] = spec

    # -- lookup ----------------------------------------------------------------------------------
    def resolve(self, name: str, settings: dict[str, Any] | None = None) -> tuple[StageSpec, dict[str, Any]]:
        """Stage name or alias, and the user's settings -> (spec, settings to build it with)."""
        settings = dict(settings or {})
        if name not in self.aliases:
            return self.get(name), settings
        alias = self.aliases[name]
        # The one place where a weights file changes the stage: `sr4=x.pth` (or `model:` under an
        # alias in YAML) means the `model` stage with the user's file at the alias's output scale.
        if "model" in settings:
            return self.get(MODEL_STAGE), {**alias.model_settings, **settings}
        return self.get(alias.target), {**alias.settings, **settings}

    def repeats(self, name: str, settings: dict[str, Any] | None = None) -> int:
        """How many times in a row the stage ``resolve`` gives is applied (1 with a user's weights)."""
        alias = self.aliases.get(name)
        return 1 if alias is None or "model" in (settings or {}) else alias.repeat

    def get(self, name: str) -> StageSpec:
        specs = self._load()
        if name in specs:
            return specs[name]
        if name in self._broken:
            raise PluginError(self._broken[name])
        known = sorted(set(specs) | set(self.aliases))
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"
        raise UnknownStageError(f"unknown stage {name!r}{hint}")


def spec_from_entry_point(ep: EntryPoint) -> StageSpec:
    """Import one entry point and check that it is a usable stage class."""
    package = ep.dist.name if ep.dist is not None else ep.module
    try:
        target = ep.load()
    except Exception as error:  # a plugin's import can fail in any way; name it and move on
        raise PluginError(
            f"stage plugin {ep.name!r} from {package} failed to import: {type(error).__name__}: {error}"
        ) from error
    return spec_from_class(ep.name, target, package)


def spec_from_class(name: str, target: Any, package: str) -> StageSpec:
    """Check a stage class against the contract and describe it."""
    where = f"stage plugin {name!r} from {package}"
    if not (inspect.isclass(target) and issubclass(target, Stage)):
        raise PluginError(f"{where} is not a streamrestore.stage.Stage subclass")
    if inspect.isabstract(target):
        missing = ", ".join(sorted(target.__abstractmethods__))
        raise PluginError(f"{where} does not implement {missing}")
    options = getattr(target, "options", {})
    if not isinstance(options, dict) or not all(isinstance(o, Option) for o in options.values()):
        raise PluginError(f"{where}: 'options' must map names to streamrestore.stage.Option")
    return StageSpec(name=name, package=package, factory=target, options=dict(options), summary=target.summary)
