"""Archive jobs: a file restored as segments that can be resumed, run in parallel and spread over a Ray cluster.

``Job`` (plan / run / resume / status) is the library API; ``restore_range`` restores a time or frame
range; ``restore_many`` restores a folder, glob or list of files. The CLI (``run`` with a job option, or
``job``) calls these.

Modules: plan (keyframe segments), segment (one segment → one piece), join (pieces → output by
remuxing), manifest (the job directory's state), job (the API), local and ray_runner (where tasks
run), batch (many files), progress (the one progress display and its ETA), cli (the job options and
running a job from the command line). The names below are imported on first use, so
``streamrestore --help`` does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

DEFAULT_SEGMENT_SECONDS = 30.0
"""Segment length: a crash costs at most this much video per worker; per segment about 0.2 CPU s is spent
(open, seek, encoder start, an extra keyframe), under 0.1 % of 30 s (benchmarks/RESULTS.md)."""

_EXPORTS = {"Job": "job", "JobOptions": "job", "JobReport": "job", "JobStatus": "job", "default_workers": "job",
            "restore_range": "job", "FileOutcome": "batch", "restore_many": "batch"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'streamrestore.jobs' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
