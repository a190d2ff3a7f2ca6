"""Turns what a user writes — ``"denoise,sr4"`` or a YAML preset — into a validated chain of stages.

Chain syntax (CLI and API): stages separated by commas, each ``NAME[=MODEL][:KEY=VALUE[:KEY=VALUE…]]``.
``nlm:strength=12,sr4:tile=256`` sets options; ``sr4=weights/model.pth`` is short for
``sr4:model=weights/model.pth``, which runs that network in the ``model`` stage at output scale 4
(``Registry.resolve``). A chain string that names an existing ``.yaml``/``.yml`` file, or a
preset in ``configs/``, loads that preset.

Preset files::

    chain:
      - stage: tdenoise        # a stage name or alias
        strength: 8            # its options
      - sr4
    output:                    # optional encoder defaults, overridden by CLI flags
      codec: libx264
      crf: 18

Every key and value is checked; a bad one is reported with its name and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .registry import Registry
from .stage import BuiltStage, Option

OUTPUT_KEYS = {"codec": str, "crf": float, "preset": str, "pix_fmt": str, "threads": int}


@dataclass(frozen=True)
class StageRequest:
    """One element of a chain before it is built: the name the user typed and its raw settings."""

    name: str
    settings: dict[str, Any]
    where: str = ""
    """Where it came from, for messages (e.g. 'old_film.yaml line 4')."""


@dataclass(frozen=True)
class ChainPlan:
    stages: list[StageRequest]
    output: dict[str, Any] = field(default_factory=dict)


def parse_chain(text: str) -> ChainPlan:
    """A chain string or preset reference -> plan (not yet validated against the registry)."""
    text = text.strip()
    preset = find_preset(text)
    if preset is not None:
        return load_preset(preset)
    if not text:
        return ChainPlan([])
    requests = []
    for element in text.split(","):
        element = element.strip()
        if not element:
            raise ConfigError(f"empty stage in chain {text!r}")
        head, *pairs = element.split(":")
        settings: dict[str, Any] = {}
        if "=" in head:
            head, model = head.split("=", 1)
            settings["model"] = model
        for pair in pairs:
            if "=" not in pair:
                raise ConfigError(f"stage option {pair!r} in {element!r} needs the form key=value")
            key, value = pair.split("=", 1)
            settings[key.strip()] = value.strip()
        shown = element if len(element) <= 60 else element[:59] + "…"
        requests.append(StageRequest(head.strip(), settings, where=f"chain element {shown!r}"))
    return ChainPlan(requests)


def find_preset(text: str) -> Path | None:
    path = Path(text)
    if path.suffix in (".yaml", ".yml"):
        if path.is_file():
            return path
        raise ConfigError(f"preset file not found: {text!r}")
    if "," not in text and ":" not in text and "=" not in text and text:
        bundled = _preset_folder() / f"{text}.yaml"
        if bundled.is_file():
            return Path(str(bundled))
    return None


def available_presets() -> list[str]:
    folder = _preset_folder()
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _preset_folder():
    """Bundled presets: package data ``streamrestore.configs`` once installed, ``configs/`` in a checkout."""
    try:
        return resources.files("streamrestore.configs")
    except ModuleNotFoundError:  # imported from a source checkout (e.g. `python -m` in the repo root)
        return Path(__file__).resolve().parent.parent / "configs"


def load_preset(path: Path) -> ChainPlan:
    """Read and check a YAML preset; errors name the key and the line."""
    try:
        text = path.read_text(encoding="utf-8")
        _refuse_unsafe_yaml(text, path)
        root = yaml.compose(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path.name}{line}: not valid YAML ({getattr(error, 'problem', error)})") from None
    except OSError as error:
        raise ConfigError(f"cannot read preset {str(path)!r}: {error.strerror}") from None
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{path.name}: a preset is a mapping with a 'chain' list")
    document = _mapping(root, path)
    unknown = sorted(set(document) - {"chain", "output", "description"})
    if unknown:
        raise ConfigError(f"{path.name} line {document[unknown[0]][0] + 1}: unknown key {unknown[0]!r} "
                          "(expected chain, output, description)")
    if "chain" not in document:
        raise ConfigError(f"{path.name}: missing key 'chain'")
    line, chain_node = document["chain"]
    if not isinstance(chain_node, yaml.SequenceNode):
        raise ConfigError(f"{path.name} line {line + 1}: 'chain' must be a list of stages")
    stages = [_stage_request(item, path) for item in chain_node.value]
    output: dict[str, Any] = {}
    if "output" in document:
        out_line, out_node = document["output"]
        if not isinstance(out_node, yaml.MappingNode):
            raise ConfigError(f"{path.name} line {out_line + 1}: 'output' must be a mapping")
        for key, (key_line, value_node) in _mapping(out_node, path).items():
            if key not in OUTPUT_KEYS:
                raise ConfigError(f"{path.name} line {key_line + 1}: unknown output key {key!r} "
                                  f"(expected {', '.join(OUTPUT_KEYS)})")
            value = _value(value_node, f"{path.name} line {key_line + 1}")
            try:
                output[key] = OUTPUT_KEYS[key](value)
            except (TypeError, ValueError):
                raise ConfigError(f"{path.name} line {key_line + 1}: output {key!r} has a bad value {repr(value)[:60]}") from None
    return ChainPlan(stages, output)


# Tags a preset may spell out (``!!str 5``); any other (``!!python/object``) is refused, never constructed.
_PLAIN_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map")} | {"!"}


def _refuse_unsafe_yaml(text: str, path: Path) -> None:
    """Refuse anchors and aliases, and tags beyond the plain types, from the parser's events alone.

    A preset is a few lines written by hand and needs neither. Aliases let 540 bytes stand for billions of
    values ("billion laughs"): expanded, they exhaust memory, and a message quoting one runs to megabytes.
    """
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            line = f"{path.name} line {event.start_mark.line + 1}"
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise ConfigError(f"{line}: YAML anchors and aliases (& and *) are not allowed in a preset")
            tag = getattr(event, "tag", None)
            if tag is not None and tag not in _PLAIN_TAGS:
                tag = tag.replace("tag:yaml.org,2002:", "!!")
                shown = tag if len(tag) <= 40 else tag[:39] + "…"
                raise ConfigError(f"{line}: the YAML tag {shown!r} is not allowed in a preset")
    except yaml.YAMLError:
        return  # not valid YAML: compose() reports it with its line


def _mapping(node: yaml.MappingNode, path: Path) -> dict[str, tuple[int, yaml.Node]]:
    out = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise ConfigError(f"{path.name} line {key_node.start_mark.line + 1}: keys must be plain names")
        out[key_node.value] = (key_node.start_mark.line, value_node)
    return out


def _value(node: yaml.Node, where: str) -> Any:
    try:
        return yaml.safe_load(yaml.serialize(node))
    except (yaml.YAMLError, ValueError, TypeError) as error:  # e.g. `!!int abc`
        raise ConfigError(f"{where}: bad value ({str(error).splitlines()[0][:80]})") from None


def _stage_request(node: yaml.Node, path: Path) -> StageRequest:
    line = node.start_mark.line + 1
    where = f"{path.name} line {line}"
    if isinstance(node, yaml.ScalarNode):
        return StageRequest(node.value, {}, where)
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{where}: a chain entry is a stage name or a mapping with 'stage'")
    entries = _mapping(node, path)
    if "stage" not in entries:
        raise ConfigError(f"{where}: chain entry has no 'stage' key")
    settings = {}
    for key, (key_line, value_node) in entries.items():
        if key != "stage":
            settings[key] = _value(value_node, f"{path.name} line {key_line + 1}")
    return StageRequest(str(entries["stage"][1].value), settings, where)


def join_pairs(plan: ChainPlan, joined: dict[tuple[str, str], tuple[str, ...]]) -> tuple[ChainPlan, list[str]]:
    """``plan`` with each pair of ``joined`` aliases written side by side without options replaced by the stages
    that pair runs as (``denoise,sr4`` -> ``mc-denoise,oldfilm``), and one line per replacement saying so."""
    stages, notices, index = [], [], 0
    while index < len(plan.stages):
        pair = plan.stages[index : index + 2]
        names = tuple(request.name for request in pair)
        if len(pair) == 2 and names in joined and not any(request.settings for request in pair):
            stages.extend(StageRequest(name, {}, pair[0].where) for name in joined[names])
            notices.append(f"{','.join(names)} runs as {','.join(joined[names])}: one network trained to do both "
                           "(README, \"Joined aliases\"; give either an option to run them apart)")
            index += 2
        else:
            stages.append(plan.stages[index])
            index += 1
    return replace(plan, stages=stages), notices


def build_chain(plan: ChainPlan, registry: Registry) -> list[BuiltStage]:
    """Resolve names and aliases, validate options and instantiate every stage.

    An alias that repeats (``sr4`` = a ×2 network twice) is one stage used again, so its network is read
    once; an alias's lead stages (``denoise``: ``mc-denoise`` first) come before it, under the alias's name.
    ``tile`` in a chain element is run policy for that element's own stage (``BuiltStage.tile``), not an option.
    """
    built = []
    for request in plan.stages:
        try:
            settings = dict(request.settings)
            tile = _TILE.parse(request.name, "tile", settings.pop("tile")) if "tile" in settings else None
            spec, settings = registry.resolve(request.name, settings)
            stage = spec.build(settings)
            repeats = registry.repeats(request.name, request.settings)
            leads = [(registry.get(name), options) for name, options in registry.leads(request.name, request.settings)]
            built.extend(BuiltStage(request.name, lead, lead.build(options)) for lead, options in leads)
        except ConfigError as error:
            raise type(error)(f"{request.where}: {error}" if request.where else str(error)) from None
        built.extend([BuiltStage(request.name, spec, stage, tile)] * repeats)
    return built


_TILE = Option(int, 0, "tile side in input pixels; 0 = whole frames", minimum=0)
