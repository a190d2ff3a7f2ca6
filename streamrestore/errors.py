"""The exception types of streamrestore, each with the exit code the CLI gives it.

Every error a user can cause (a bad path, a bad option, a broken file) is one of these, so the CLI can
print one line and exit with a code that says which kind of failure it was. Where a builtin type fits,
the error also inherits it (``InputNotFoundError`` is a ``FileNotFoundError``), as PyAV does.
"""

from __future__ import annotations


class StreamRestoreError(Exception):
    """Base class: anything streamrestore reports to a user."""

    exit_code = 1


class ConfigError(StreamRestoreError, ValueError):
    """A chain, preset file, option or command-line value is wrong."""

    exit_code = 2


class InputNotFoundError(StreamRestoreError, FileNotFoundError):
    """The input path does not exist."""

    exit_code = 3


class MediaError(StreamRestoreError):
    """The input cannot be read as media (not a media file, unsupported layout)."""

    exit_code = 4


class NoVideoStreamError(MediaError):
    """The input opens but carries no video stream."""

    exit_code = 5


class TruncatedInputError(MediaError):
    """The input ends before the frames its container announces."""

    exit_code = 6


class CorruptInputError(MediaError):
    """Packets could not be decoded and ``strict`` forbids repairing them."""

    exit_code = 7


class UnknownStageError(ConfigError):
    """A chain names a stage that no installed plugin provides."""

    exit_code = 8


class PluginError(StreamRestoreError):
    """A stage plugin failed to import or breaks the stage contract."""

    exit_code = 9


class OutputError(StreamRestoreError, OSError):
    """The output cannot be written (exists, same as input, directory not writable, bad container)."""

    exit_code = 10


class DiskFullError(OutputError):
    """The disk filled up while the output was written."""

    exit_code = 11


class WeightsError(StreamRestoreError):
    """Model weights are missing, fail their checksum or cannot be loaded."""

    exit_code = 12


class StageFailedError(StreamRestoreError):
    """A stage raised while processing frames; no frame is dropped silently."""

    exit_code = 13


class TooLargeError(StreamRestoreError):
    """The planned frames are over the pixel cap (``--max-pixels``) or need more memory than is available."""

    exit_code = 16


class Interrupted(StreamRestoreError):
    """The user stopped the run (Ctrl-C); the partial output was removed."""

    exit_code = 130


class JobMismatchError(ConfigError):
    """A job directory belongs to another input or other settings (``--restart`` starts over)."""

    exit_code = 14


class JobBusyError(StreamRestoreError):
    """Another process is running the same job: its job directory (or a folder's output) is locked."""

    exit_code = 17


class SomeFilesFailed(StreamRestoreError):
    """A run over many files finished, but at least one file failed (the summary names them)."""

    exit_code = 15
