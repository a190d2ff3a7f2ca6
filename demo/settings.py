"""The demo server's caps and device, and the launcher's flags for them (``streamrestore demo --preview-seconds 2``).

Light on purpose (argparse and a dataclass): ``streamrestore demo`` parses its options with
``parse_arguments`` before Gradio, torch or OpenCV are imported.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from typing import Sequence

from streamrestore.errors import ConfigError


@dataclass(frozen=True)
class DemoSettings:
    max_pixels: int = 32_000_000
    """Largest input, and largest result, in pixels; beyond it a request is refused before any work."""
    tile: int = 512
    """Stages that can be tiled run in tiles of at most this many input pixels a side (unless the chain sets
    ``tile=``): the run's ``--tile``."""
    device: str | None = None
    """As the CLI's --device: None/auto, cpu, cuda, cuda:N."""
    cached_chains: int = 8
    """Prepared chains (with their loaded networks) kept for later requests (least recently used dropped first)."""
    keep_files_s: float = 3600.0
    """Results and uploaded checkpoints older than this are deleted from the work directory."""
    max_upload_mb: float = 2048.0
    """Largest uploaded file, in MB (10⁶ bytes); Gradio refuses a larger one before it is stored."""
    max_video_seconds: float = 3600.0
    """Longest video accepted (the page previews a few seconds of it and estimates the whole run)."""
    preview_seconds: float = 4.0
    """Longest preview restored from a video."""
    preview_pixels: int = 2_100_000
    """Largest preview frame, in pixels of the result (a 1080p frame is 2.07 MP)."""

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)


_DEFAULTS = DemoSettings()

# flag -> (field, type, help); the help's default is the dataclass's, so the two cannot drift apart.
FLAGS = {
    "--max-pixels": ("max_pixels", int, "largest image, and result, in pixels"),
    "--max-upload-mb": ("max_upload_mb", float, "largest uploaded file, in MB"),
    "--max-video-seconds": ("max_video_seconds", float, "longest video accepted, in seconds"),
    "--preview-seconds": ("preview_seconds", float, "longest video preview, in seconds"),
    "--preview-pixels": ("preview_pixels", int, "largest preview frame, in pixels of the result"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``demo`` command's options (``python demo/app.py`` takes the same)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0: all)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    for flag, (name, kind, text) in FLAGS.items():
        default = getattr(_DEFAULTS, name)
        shown = f"{default:g}" if isinstance(default, float) else str(default)
        parser.add_argument(flag, type=kind, dest=name, metavar="N", help=f"{text} (default {shown})")
    parser.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    """``streamrestore demo``'s options (``--help`` prints them and exits)."""
    parser = argparse.ArgumentParser(prog="streamrestore demo",
                                     description="The web page: restore a photo, or pick, compare and preview a video.")
    add_arguments(parser)
    parser.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> DemoSettings:
    """The settings the flags ask for; a cap must be above 0 (one line naming the flag otherwise)."""
    settings = replace(_DEFAULTS, device=args.device)
    for flag, (name, _, _) in FLAGS.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if value <= 0:
            raise ConfigError(f"{flag} must be above 0, got {value:g}")
        settings = replace(settings, **{name: value})
    return settings

