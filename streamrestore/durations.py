"""Durations as a person reads them (``45 s``, ``12 min``, ``3.5 h``): the CLI's ETA and the demo's estimate."""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    """Whole seconds under 90 s, whole minutes under 90 min, hours with one decimal beyond."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
