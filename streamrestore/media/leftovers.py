"""Removes the temporary outputs of runs that were killed before they could clean up.

The output is written to ``.NAME.streamrestore-PID.EXT`` beside the destination and renamed at the end;
Ctrl-C and errors remove it, but a SIGKILL (the out-of-memory killer, ``kill -9``, a power cut) cannot.
The next run to the same destination removes such files whose process is gone, and says so on stderr.
A file whose PID is alive (another run writing the same name, or a recycled PID) is left alone.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path


def temporary_name(destination: Path, pid: int) -> str:
    """The hidden name a run with ``pid`` writes ``destination`` under (the extension kept, for FFmpeg)."""
    return f".{destination.stem}.streamrestore-{pid}{destination.suffix}"


def remove_stale_temporaries(destination: Path) -> list[Path]:
    """Delete the temporaries of ``destination`` left by processes that no longer exist; returns them."""
    folder = destination.parent if str(destination.parent) else Path(".")
    pattern = re.compile(re.escape(f".{destination.stem}.streamrestore-") + r"(\d+)" + re.escape(destination.suffix))
    removed = []
    try:
        candidates = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in candidates:
        match = pattern.fullmatch(entry.name)
        if match is None or int(match[1]) == os.getpid() or _alive(int(match[1])):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            os.unlink(entry.path)
        except OSError:
            continue  # not ours to remove (permissions), or another run got there first
        removed.append(Path(entry.path))
        print(f"streamrestore: removed {entry.path}, the temporary output of an earlier run "
              f"(process {match[1]}) that was killed before it finished", file=sys.stderr)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OverflowError:
        return False  # not a PID at all
    return True
