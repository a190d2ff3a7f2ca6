"""Many files in one command: a folder (recursive), a glob, or a text file listing paths.

The output folder mirrors the input tree. Each video is a ``Job`` (so it resumes), each image is
restored as a PNG. A file that fails (corrupt, unsupported) is reported and the others go on. A
ledger in the output folder (``.streamrestore-done.json``) records each finished file with the
identity of its input and settings; a rerun skips those whose output is still there unchanged.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError, InputNotFoundError, OutputError, StreamRestoreError
from .job import Job, JobOptions
from . import manifest as manifests
from .manifest import input_identity

VIDEO_SUFFIXES = {".mkv", ".mp4", ".mov", ".m4v", ".avi", ".ts", ".m2ts", ".mts", ".webm", ".mpg", ".mpeg",
                  ".vob", ".flv", ".wmv", ".3gp", ".ogv", ".dv", ".mxf", ".nut", ".y4m"}
LEDGER = ".streamrestore-done.json"
LOCK = ".streamrestore-lock"
"""Held in the output folder while files are restored into it: two runs would race on the ledger and the files."""


@dataclass(frozen=True)
class FileOutcome:
    source: str
    output: str
    status: str
    """``done``, ``skipped`` (finished by an earlier run) or ``failed``."""
    frames: int = 0
    seconds: float = 0.0
    message: str = ""
    exit_code: int = 0


def is_many(spec: str) -> bool:
    """Whether an input names several files (a folder, a glob or a ``.txt`` list) rather than one."""
    return os.path.isdir(spec) or any(c in spec for c in "*?[") or spec.endswith(".txt")


def expand_inputs(spec: str) -> list[tuple[str, str]]:
    """(path, path relative to the tree's root) for every video and image the spec names, sorted."""
    from ..media.images import IMAGE_SUFFIXES

    wanted = VIDEO_SUFFIXES | set(IMAGE_SUFFIXES)
    if os.path.isdir(spec):
        root = Path(spec)
        found = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in wanted
                 and not any(part.startswith(".") for part in p.relative_to(root).parts)]
        if not found:
            raise InputNotFoundError(f"no media files in {spec!r}")
        return sorted((str(p), str(p.relative_to(root))) for p in found)
    if spec.endswith(".txt") and os.path.isfile(spec):
        lines = [line.strip() for line in Path(spec).read_text(encoding="utf-8").splitlines()]
        paths = [p for p in lines if p and not p.startswith("#")]
    else:
        paths = sorted(glob.glob(spec, recursive=True))
        paths = [p for p in paths if os.path.isfile(p) and Path(p).suffix.lower() in wanted]
    if not paths:
        raise InputNotFoundError(f"no media files match {spec!r}")
    root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    return [(p, os.path.relpath(os.path.abspath(p), root)) for p in paths]


def restore_many(spec: str, output_folder: str, chain: str, options: JobOptions = JobOptions(),
                 on_frames: Callable[[int], None] = lambda count: None,
                 on_file: Callable[[FileOutcome], None] = lambda outcome: None,
                 on_start: Callable[[str, Job | None], None] = lambda source, job: None,
                 on_piece: Callable[[Any], None] = lambda result: None) -> list[FileOutcome]:
    """Restore every file ``spec`` names into ``output_folder`` (mirrored tree); never stops at a failure.

    For a progress display: ``on_start(source, job)`` before a file is restored (``job`` is None for
    an image), then its ``on_frames`` and ``on_piece`` reports, then ``on_file`` (also for a file
    skipped or failed)."""
    files = outside(expand_inputs(spec), output_folder)
    out_root = Path(output_folder)
    if out_root.exists() and not out_root.is_dir():
        raise ConfigError(f"-o {output_folder!r} must be a folder when the input names several files")
    out_root.mkdir(parents=True, exist_ok=True)
    with manifests.locked(out_root, "the output folder", LOCK):
        return _restore_all(files, out_root, chain, options, on_frames, on_file, on_start, on_piece)


def outside(files: list[tuple[str, str]], output_folder: str) -> list[tuple[str, str]]:
    """The inputs, less the earlier runs' outputs when ``output_folder`` is inside the input tree (a rerun would
    restore them again into a folder one level deeper). The tree's own root as output folder is refused: each
    output would be written over its input."""
    if not files:
        return files
    path, relative = files[0]
    root = os.path.realpath(Path(os.path.abspath(path)).parents[len(Path(relative).parts) - 1])
    out = os.path.realpath(output_folder)
    if out == root:
        raise ConfigError(f"-o {output_folder!r} is the input folder: each output would replace its input; "
                          "choose another folder")
    if os.path.commonpath([out, root]) != root:
        return files  # outside the tree: nothing in it is an output
    return [(p, r) for p, r in files if os.path.commonpath([os.path.realpath(p), out]) != out]


def _restore_all(files: list[tuple[str, str]], out_root: Path, chain: str, options: JobOptions,
                 on_frames: Callable[[int], None], on_file: Callable[[FileOutcome], None],
                 on_start: Callable[[str, Job | None], None], on_piece: Callable[[Any], None]) -> list[FileOutcome]:
    from ..media.images import IMAGE_SUFFIXES

    ledger = _Ledger(out_root / LEDGER)
    outcomes = []
    claimed: dict[Path, str] = {}
    for source, relative in files:
        is_image = Path(source).suffix.lower() in IMAGE_SUFFIXES
        target = out_root / (Path(relative).with_suffix(".png") if is_image else Path(relative))
        started = time.perf_counter()
        try:
            # x.jpg and x.png both become x.png: the second would replace the first's output.
            if claimed.setdefault(target, source) != source:
                raise OutputError(f"its output {str(target)!r} is {claimed[target]!r}'s too; rename one of them")
            if not os.path.isfile(source):  # a list may name files that are not there
                raise InputNotFoundError(f"input not found: {source!r}")
            key = _key(source, chain, options)
            if ledger.finished(relative, key, target):
                outcome = FileOutcome(source, str(target), "skipped")
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                frames = _restore_one(source, str(target), chain, options, is_image, on_frames, on_start, on_piece)
                ledger.record(relative, key, target)
                outcome = FileOutcome(source, str(target), "done", frames, time.perf_counter() - started)
        except StreamRestoreError as error:
            outcome = FileOutcome(source, str(target), "failed", 0, time.perf_counter() - started,
                                  str(error).replace("\n", " "), error.exit_code)
        except OSError as error:  # unreadable input, a folder we cannot write: this file only
            outcome = FileOutcome(source, str(target), "failed", 0, time.perf_counter() - started,
                                  f"{error.strerror or error}: {error.filename or source}", 1)
        outcomes.append(outcome)
        on_file(outcome)
    return outcomes


def _restore_one(source: str, target: str, chain: str, options: JobOptions, is_image: bool,
                 on_frames: Callable[[int], None], on_start: Callable[[str, Job | None], None],
                 on_piece: Callable[[Any], None]) -> int:
    if is_image:
        on_start(source, None)
        from ..restore import PreparedChain

        from .segment import first_device

        PreparedChain(chain, first_device(options.run)).restore_image_file(source, target, overwrite=True)
        on_frames(1)
        return 1
    # The ledger, not the output's existence, says whether a file is finished: an output left by
    # something else is replaced.
    job = Job(source, target, chain, dataclasses.replace(options, job_dir=None,
                                                         output=dataclasses.replace(options.output, overwrite=True)))
    on_start(source, job)
    return job.run(on_frames=on_frames, on_piece=on_piece).frames


def _key(source: str, chain: str, options: JobOptions) -> str:
    identity = input_identity(source)
    settings = {k: v for k, v in dataclasses.asdict(options).items() if k not in ("workers", "ray", "keep_job",
                                                                                    "restart", "job_dir")}
    text = json.dumps([identity, chain, settings], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):  # none yet, or not one: every file is done again
            entries = {}
        # Anyone may have edited it: an entry that is not what record() writes is not a finished file.
        self.entries = {k: v for k, v in entries.items() if isinstance(v, dict)} if isinstance(entries, dict) else {}

    def finished(self, relative: str, key: str, target: Path) -> bool:
        entry = self.entries.get(relative)
        if entry is None or entry.get("key") != key or not target.is_file():
            return False
        stat = target.stat()
        return entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns

    def record(self, relative: str, key: str, target: Path) -> None:
        stat = target.stat()
        self.entries[relative] = {"key": key, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(self.entries, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(temporary, self.path)


def pending(files: list[tuple[str, str]], output_folder: str, chain: str,
            options: JobOptions) -> list[tuple[str, str]]:
    """The files an earlier run has not finished (what the progress display should count)."""
    from ..media.images import IMAGE_SUFFIXES

    root = Path(output_folder)
    ledger = _Ledger(root / LEDGER)
    left = []
    for source, relative in outside(files, output_folder):
        image = Path(source).suffix.lower() in IMAGE_SUFFIXES
        target = root / (Path(relative).with_suffix(".png") if image else Path(relative))
        try:
            if ledger.finished(relative, _key(source, chain, options), target):
                continue
        except OSError:
            pass
        left.append((source, relative))
    return left


def count_frames(files: list[tuple[str, str]]) -> int:
    """Frames in all the videos (packet index only; an unreadable file counts 0), images count 1."""
    from ..media.images import IMAGE_SUFFIXES
    from .plan import index_source

    total = 0
    for source, _ in files:
        if Path(source).suffix.lower() in IMAGE_SUFFIXES:
            total += 1
            continue
        try:
            total += len(index_source(source).pts)
        except StreamRestoreError:
            pass
    return total
