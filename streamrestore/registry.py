"""Finds stages through the ``streamrestore.stages`` entry points, checks them, resolves aliases.

Built-in and third-party stages come in through the same door. The short names users type (``denoise``,
``sr4``) are in ``aliases``; a ``Registry`` holds one alias table and resolves names through it. A plugin that fails to import or
breaks the contract is recorded as broken, with one line naming it, and every other stage keeps
working; only a chain that asks for a broken stage fails. Nothing is loaded at import time: a
``Registry`` reads the entry points when it is first asked.
"""

from __future__ import annotations

import difflib
import inspect
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Iterable

from .aliases import CONTENTS, MODEL_STAGE, Alias, default_aliases, joined_pairs
from .errors import PluginError, UnknownStageError
from .stage import ENTRY_POINT_GROUP, Option, Stage, StageSpec


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
        self.joined = joined_pairs(content) if aliases is None else {}
        """Alias pairs run as other stages (``denoise,sr4``: ``mc-denoise,oldfilm``); none with custom aliases."""
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

    def leads(self, name: str, settings: dict[str, Any] | None = None) -> tuple[tuple[str, dict[str, Any]], ...]:
        """Stages, (name, options), run before the one ``resolve`` gives (none with a user's weights)."""
        alias = self.aliases.get(name)
        return () if alias is None or "model" in (settings or {}) else alias.lead

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


__all__ = ["CONTENTS", "MODEL_STAGE", "Alias", "Registry", "default_aliases", "spec_from_class", "spec_from_entry_point"]
