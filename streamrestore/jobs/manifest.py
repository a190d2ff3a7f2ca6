"""The job's manifest: what is being made from what, and which pieces are finished.

It names the input by size, modification time and a hash of its first and last MiB (fast on a
100 GB file, and a changed or replaced file fails it), the settings that decide the output's frames
and bitstream (a fingerprint), the segment plan, and each finished piece's size and SHA-256. It is
written atomically — a temporary file, fsync, rename, fsync of the folder — so a SIGKILL or power
cut leaves the previous manifest or the new one, never a torn one, and a piece is listed only after
it was completely written and renamed into place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import JobBusyError, JobMismatchError, OutputError
from .plan import Segment

VERSION = 1
NAME = "manifest.json"
_EDGE = 1 << 20
_LARGEST = 256 << 20
"""A manifest is a few kB per segment (a field-rate plan lists each frame's pts: ~2 MB for two hours)."""


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
    joined: dict | None = None
    """The joined output's ``{"bytes", "mtime_ns", "frames"}``, written just before it is renamed into place: a
    run killed after that rename but before the job directory was removed is finished, not redone."""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.settings)

    def to_json(self) -> dict:
        return {"version": VERSION, "source": self.source, "settings": self.settings,
                "segments": [s.to_json() for s in self.segments],
                "pieces": {str(k): v for k, v in sorted(self.pieces.items())}, "joined": self.joined}

    @classmethod
    def from_json(cls, data: object) -> Manifest:
        """Read a manifest, checking every field's type: the job directory is a file anyone may have edited."""
        if not isinstance(data, dict):
            raise TypeError("not an object")
        if data.get("version") != VERSION:
            raise JobMismatchError(f"the job directory was written by another version (manifest {str(data.get('version'))[:20]}); "
                                   "use --restart")
        source, settings, segments, pieces = data["source"], data["settings"], data["segments"], data["pieces"]
        if not (isinstance(source, dict) and isinstance(settings, dict) and isinstance(segments, list)
                and isinstance(pieces, dict)):
            raise TypeError("wrong types")
        joined = data.get("joined")
        if joined is not None and not (isinstance(joined, dict) and set(joined) == {"bytes", "mtime_ns", "frames"}
                                       and all(type(v) is int for v in joined.values())):
            raise TypeError("not an output")
        return cls(source, settings, [_segment(s) for s in segments],
                   {_index(k): _piece(v) for k, v in pieces.items()}, joined)

    def check(self, source: dict, settings: dict) -> None:
        """Refuse to resume a job for another input or other settings (one line, which one)."""
        if self.source != source:
            changed = [k for k in ("size", "mtime_ns", "edges_sha256") if self.source.get(k) != source.get(k)]
            raise JobMismatchError(f"the input changed since the job started ({', '.join(changed)}); "
                                   "use --restart to start over")
        if self.settings != settings:
            # Named from this run's settings only: the manifest's own keys may be anything (a newline, a megabyte).
            changed = sorted(k for k in settings if self.settings.get(k) != settings.get(k)) or ["unknown ones"]
            raise JobMismatchError(f"the job was started with other settings ({', '.join(changed)}); "
                                   "use --restart to start over, or the same options to resume")


def _segment(data: object) -> Segment:
    if not isinstance(data, dict) or set(data) != {f.name for f in dataclasses.fields(Segment)}:
        raise TypeError("not a segment")
    if not all(type(v) is int or (k == "end_pts" and v is None) for k, v in data.items()):
        raise TypeError("not a segment")
    return Segment(**data)


def _index(key: str) -> int:
    if not key.isdigit():  # piece names are made from this number: no sign, no path
        raise ValueError(key)
    return int(key)


def _piece(data: object) -> dict:
    if (not isinstance(data, dict) or not isinstance(data.get("sha256"), str)
            or not all(type(data.get(k)) is int for k in ("bytes", "frames"))):
        raise TypeError("not a piece")
    pts = data.get("pts")
    if pts is not None and not (isinstance(pts, list) and all(type(p) is int for p in pts)):
        raise TypeError("not a piece")
    return data


def load(folder: Path) -> Manifest | None:
    path = folder / NAME
    try:
        if path.stat().st_size > _LARGEST:
            raise ValueError("too large")
        text = path.read_text(encoding="utf-8")
        return Manifest.from_json(json.loads(text))
    except FileNotFoundError:
        return None
    except OSError as error:  # a folder named manifest.json, no permission
        raise JobMismatchError(f"cannot read {str(path)!r} ({error.strerror}); use --restart") from None
    except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: "[[[[…" nested too deep
        raise JobMismatchError(f"{str(path)!r} is not a streamrestore manifest; use --restart") from None


def leftovers(folder: Path) -> list[Path]:
    """Temporaries of pieces and manifests that a killed run left (under the lock no other run is writing them)."""
    return [*folder.glob("*.partial"), *folder.glob(f".{NAME}.*.tmp")]


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


_OWN = re.compile(r"piece-\d{5,}\.nut(\.\d+\.partial)?|" + re.escape(NAME) + r"|\." + re.escape(NAME) + r"\.\d+\.tmp")


def clear(folder: Path) -> None:
    """Remove what a job wrote in ``folder`` (manifest, pieces, their temporaries) and nothing else.

    ``--job DIR`` may name a folder that holds other files (even ``.``, the input's own folder), so the
    job never removes a folder's contents wholesale.
    """
    for path in folder.iterdir():
        if _OWN.fullmatch(path.name):
            discard(path)


def remove(folder: Path) -> None:
    """``clear``, then the lock file and the folder itself if nothing else is in it."""
    clear(folder)
    (folder / LOCK).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty: the user's own files were there


def discard(path: Path) -> None:
    """Remove one file of the job (a symlink is removed, never followed); a folder in its place is an error."""
    try:
        path.unlink(missing_ok=True)
    except OSError as error:
        raise OutputError(f"cannot remove {str(path)!r} from the job directory: {error.strerror}") from None


LOCK = ".lock"


@contextlib.contextmanager
def locked(folder: Path, what: str, name: str = LOCK) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (``flock`` on ``folder/name``) or raise ``JobBusyError`` at once.

    Two runs of one job would each delete the other's half-written pieces as leftovers and both write the
    output; the second stops in one line instead. The lock goes with the process (a ``kill -9`` releases
    it), and ``flock`` works across the nodes of an NFS mount (Linux emulates it with POSIX locks there).
    """
    path = folder / name
    try:
        # O_NOFOLLOW: a symlink planted as the lock file is refused, never opened for writing.
        handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise OutputError(f"cannot create the lock file {str(path)!r}: {error.strerror}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 32, 0).decode(errors="replace").strip()
            by = f"process {holder}" if holder.isdigit() else "another process"
            raise JobBusyError(f"{what} {str(folder)!r} is in use by {by}; wait for it to finish or stop it") from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(handle)
