"""The job's manifest: what is being made from what, and which pieces are finished.

It names the input by size, modification time and a hash of its first and last MiB (fast on a
100 GB file, and a changed or replaced file fails it), the settings that decide the output's frames
and bitstream (a fingerprint), the segment plan, and each finished piece's size and SHA-256. It is
written atomically — a temporary file, fsync, rename, fsync of the folder — so a SIGKILL or power
cut leaves the previous manifest or the new one, never a torn one, and a piece is listed only after
it was completely written and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import JobMismatchError, OutputError
from .plan import Segment

VERSION = 1
NAME = "manifest.json"
_EDGE = 1 << 20


def input_identity(path: str) -> dict:
    stat = os.stat(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(_EDGE))
        if stat.st_size > 2 * _EDGE:
            handle.seek(-_EDGE, os.SEEK_END)
            digest.update(handle.read(_EDGE))
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "edges_sha256": digest.hexdigest()}


def fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Manifest:
    source: dict
    settings: dict
    segments: list[Segment]
    pieces: dict[int, dict] = field(default_factory=dict)
    """Finished pieces by segment index: ``{"sha256", "bytes", "frames"}``."""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.settings)

    def to_json(self) -> dict:
        return {"version": VERSION, "source": self.source, "settings": self.settings,
                "segments": [s.to_json() for s in self.segments],
                "pieces": {str(k): v for k, v in sorted(self.pieces.items())}}

    @classmethod
    def from_json(cls, data: dict) -> Manifest:
        if data.get("version") != VERSION:
            raise JobMismatchError(f"the job directory was written by another version (manifest {data.get('version')}); "
                                   "use --restart")
        return cls(data["source"], data["settings"], [Segment.from_json(s) for s in data["segments"]],
                   {int(k): v for k, v in data["pieces"].items()})

    def check(self, source: dict, settings: dict) -> None:
        """Refuse to resume a job for another input or other settings (one line, which one)."""
        if self.source != source:
            changed = [k for k in ("size", "mtime_ns", "edges_sha256") if self.source.get(k) != source.get(k)]
            raise JobMismatchError(f"the input changed since the job started ({', '.join(changed)}); "
                                   "use --restart to start over")
        if self.settings != settings:
            changed = sorted(k for k in set(self.settings) | set(settings) if self.settings.get(k) != settings.get(k))
            raise JobMismatchError(f"the job was started with other settings ({', '.join(changed)}); "
                                   "use --restart to start over, or the same options to resume")


def load(folder: Path) -> Manifest | None:
    path = folder / NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return Manifest.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError):
        raise JobMismatchError(f"{str(path)!r} is not a streamrestore manifest; use --restart") from None


def save(folder: Path, manifest: Manifest) -> None:
    path = folder / NAME
    temporary = folder / f".{NAME}.{os.getpid()}.tmp"
    data = json.dumps(manifest.to_json(), indent=1).encode()
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as error:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        from ..media.writer import _output_error

        raise _output_error(str(path), error) from None


def ensure_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create the job directory {str(folder)!r}: {error.strerror}") from None
