"""Decides where the output goes and makes writing it atomic.

The output is written to a hidden temporary file beside the destination and renamed over it only
when everything succeeded, so a failed or interrupted run leaves nothing under the destination
name. The input is never opened for writing; an output that is the input is refused, and so is an
existing output unless ``overwrite`` is set.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import OutputError
from .encoder import container_accepts
from .leftovers import remove_stale_temporaries, temporary_name
from .reader import STDIO, is_network_url

STREAM_FORMATS = {"mpegts": "mpegts", "matroska": "matroska", "mkv": "matroska", "nut": "nut", "mp4": "mp4"}
_FRAGMENTED_MP4 = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}


def default_output_path(source: str, codec: str | None = None) -> str:
    """``clip.mp4`` -> ``clip.restored.mp4`` beside it (``-`` and URLs need an explicit ``-o``).

    When the input's container cannot hold the ``codec`` video stream, another one is chosen: an
    animated GIF becomes ``NAME.restored.mp4`` (what GIF hosts convert to; plays everywhere), anything
    else (WebM given libx264, a raw ``.y4m``) ``NAME.restored.mkv``, which carries almost any stream.
    """
    if source == STDIO or is_network_url(source):
        raise OutputError("an input from standard input or the network needs -o PATH (or -o - for standard output)")
    path = Path(source)
    suffix = path.suffix or ".mkv"
    if codec is not None and not _holds(suffix, codec):
        suffix = ".mp4" if suffix.lower() == ".gif" and _holds(".mp4", codec) else ".mkv"
    return str(path.with_name(f"{path.stem}.restored{suffix}"))


def _holds(suffix: str, codec: str) -> bool:
    return container_accepts(f"probe{suffix}", codec)


class OutputTarget:
    """A destination path (written atomically) or standard output (``-``)."""

    def __init__(self, destination: str, source: str, overwrite: bool = False, stream_format: str | None = None):
        self.destination = destination
        self.is_stdout = destination == STDIO
        self.container_options: dict[str, str] = {}
        if self.is_stdout:
            name = stream_format or "mpegts"
            if name not in STREAM_FORMATS:
                raise OutputError(f"--format {name!r} is not a streaming format (use mpegts or matroska)")
            self.format: str | None = STREAM_FORMATS[name]
            if self.format == "mp4":
                self.container_options = dict(_FRAGMENTED_MP4)  # a pipe cannot seek back to write an index
            self.temporary = "pipe:1"
            return
        self.format = STREAM_FORMATS.get(stream_format) if stream_format else None
        target = Path(destination)
        if source not in (STDIO,) and not is_network_url(source) and _same_file(source, target):
            raise OutputError(f"output {destination!r} is the input; choose another name")
        if target.is_dir():
            raise OutputError(f"output {destination!r} is a directory; give a file name")
        if target.exists() and not overwrite:
            raise OutputError(f"output {destination!r} exists; use --overwrite to replace it")
        folder = target.parent if str(target.parent) else Path(".")
        if not folder.is_dir():
            raise OutputError(f"output directory {str(folder)!r} does not exist")
        if not os.access(folder, os.W_OK):
            raise OutputError(f"output directory {str(folder)!r} is not writable")
        remove_stale_temporaries(target)  # left by runs that were killed (SIGKILL, out of memory)
        # Keep the extension so FFmpeg picks the same container for the temporary file.
        self.temporary = str(folder / temporary_name(target, os.getpid()))

    def commit(self) -> None:
        if not self.is_stdout:
            try:
                os.replace(self.temporary, self.destination)
            except OSError as error:
                left = self.abort()
                raise OutputError(f"cannot move the finished output to {self.destination!r}: {error.strerror}"
                                  f"{left}") from None

    def abort(self) -> str:
        """Remove the temporary file; where the directory no longer allows that, empty it. Returns what is left,
        as words for a message ("" when nothing is)."""
        if self.is_stdout:
            return ""
        try:
            os.unlink(self.temporary)
        except FileNotFoundError:
            pass
        except OSError as error:
            # A directory made unwritable during the run lets nobody remove the file: at least free its space.
            try:
                os.truncate(self.temporary, 0)
            except OSError:
                return f"; its temporary file {self.temporary} could not be removed ({error.strerror})"
            return f"; its temporary file {self.temporary} was emptied but could not be removed ({error.strerror})"
        return ""


def _same_file(source: str, target: Path) -> bool:
    if os.path.abspath(source) == os.path.abspath(target):
        return True
    try:
        return target.exists() and os.path.samefile(source, target)
    except OSError:
        return False
