"""The catalogue: every model streamrestore knows by name (the ncnn wheels' and our own), for lookup and listing."""

from __future__ import annotations

from typing import Mapping

from .entry import ModelEntry
from .packaged import packaged_entries
from .trained import trained_entries


def default_catalog() -> dict[str, ModelEntry]:
    """The models streamrestore knows by name, keyed by name (built per call: callers may extend it)."""
    return {entry.name: entry for entry in (*packaged_entries(), *trained_entries())}


def list_models(catalog: Mapping[str, ModelEntry] | None = None) -> list[ModelEntry]:
    """Every catalogue entry, sorted by name (for ``streamrestore models``)."""
    catalog = default_catalog() if catalog is None else catalog
    return sorted(catalog.values(), key=lambda entry: entry.name)


