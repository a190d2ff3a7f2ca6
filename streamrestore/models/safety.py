"""Inspects a weights file before anything loads it: it must not carry code, expand past a cap, or declare absurd settings.

Weights come from strangers (the web demo takes uploads; users download checkpoints), so a file is read
here as bytes first, without torch, and ``check_weights_file`` refuses what loading it could turn into
code or into an exhausted machine. Every loader (the ``model`` stage, ``train --init``/``--resume``) calls
it first; what passes is then read by restricted unpicklers (spandrel's, or torch's ``weights_only``) or
by safetensors, which run no code either.

- **Format by magic bytes, not by extension.** A zip (PyTorch ≥ 1.6), a bare pickle (older PyTorch) or
  safetensors (an 8-byte little-endian header length, then a JSON object). The pre-2018 tar format and
  anything else are refused: nothing current writes them.
- **No TorchScript, whatever the name.** ``torch.jit.load`` runs the archive's own code (a module's
  ``__setstate__`` can read or write any file), and ``torch.load`` hands any zip that looks like
  TorchScript to ``torch.jit.load``, even under a ``.pth`` name. A zip with a ``code/`` folder or a
  ``constants.pkl``/``bytecode.pkl`` member (what ``torch.jit.save`` and the mobile format write) is
  refused. A plain state dict never has them.
- **No decompression bomb.** ``torch.save`` stores members uncompressed, so a real checkpoint expands to
  its own size; the loader allocates each member's declared size. A zip whose members add up to more
  than ``MAX_EXPANSION`` × the file size (+ 1 MiB), or to more than ``MAX_UNCOMPRESSED_BYTES``, is refused
  before one byte is inflated.
- **Bounded declarations.** A safetensors header is at most ``MAX_HEADER_BYTES``, and the settings its
  metadata gives the ``model`` stage are bounded: border ≤ ``MAX_BORDER`` pixels, output scale ≤
  ``MAX_SCALE``, border mode ``reflect`` or ``replicate``. Real models need far less: Real-ESRGAN's
  wrapper reflects 10 px, waifu2x pads by its network's border (at most 18 px); the largest scale any
  known restoration network has is ×8.

Every refusal is one ``WeightsError`` line naming the file. Nothing here imports torch.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

from ..errors import WeightsError
from .entry import BORDER_KEY, BORDER_MODE_KEY, SCALE_KEY

MAX_EXPANSION = 4
"""A zip may expand to at most this many times its file size (+ 1 MiB); ``torch.save`` writes 1:1."""
MAX_UNCOMPRESSED_BYTES = 16 << 30
"""Largest checkpoint accepted at all: 16 GiB (the largest restoration networks are a few hundred MB)."""
MAX_HEADER_BYTES = 100_000_000
"""Largest safetensors header (safetensors' own limit)."""
MAX_BORDER = 64
MAX_SCALE = 16
BORDER_MODES = ("reflect", "replicate")

_TORCHSCRIPT_MEMBERS = {"constants.pkl", "bytecode.pkl", "model.json"}
_SLACK = 1 << 20


def check_weights_file(path: str | Path) -> str:
    """Refuse ``path`` unless it is safe to hand to a loader; returns its format: "zip", "pickle" or "safetensors"."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
            size = handle.seek(0, 2)
    except OSError as error:
        raise WeightsError(f"cannot read weights file {path}: {error.strerror or error}") from None
    if head.startswith(b"PK") or _is_zip(path):
        _check_zip(path, size, head)
        return "zip"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"  # pre-1.6 torch.save: unpickled through an allow-list, its storages read to their size
    if len(head) >= 9 and head[8:9] == b"{":
        _check_safetensors(path, size, struct.unpack("<Q", head[:8])[0])
        return "safetensors"
    raise WeightsError(f"cannot load {path} as a model: it is neither a PyTorch checkpoint nor safetensors")


def _is_zip(path: Path) -> bool:
    # The end-of-archive record, not the first bytes, is what zip readers (and torch.jit.load) look for:
    # a zip with bytes in front of it still opens.
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def _check_zip(path: Path, size: int, head: bytes) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()  # the central directory only: nothing is inflated
            comment = archive.comment
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as error:
        raise WeightsError(f"{path} is a damaged zip archive ({error})") from None
    # torch.save writes its first member at byte 0 and no comment. Bytes in front of the archive or a comment
    # are where two zip readers (Python's here, torch's miniz) could disagree on what the archive holds.
    if not head.startswith(b"PK\x03\x04") or comment or not members or min(m.header_offset for m in members):
        raise WeightsError(f"{path} is not a zip archive as torch.save writes one (data before its first "
                           "member, a comment, or no members); refused")
    for member in members:
        parts = member.filename.replace("\\", "/").split("/")
        if "code" in parts[:-1] or parts[-1] in _TORCHSCRIPT_MEMBERS:
            raise WeightsError(f"{path} is a TorchScript archive, which runs its own code when loaded; "
                               "refused (save the state dict instead: torch.save(model.state_dict(), …))")
    expanded = sum(member.file_size for member in members)
    if expanded > MAX_UNCOMPRESSED_BYTES:
        raise WeightsError(f"{path} expands to {_gib(expanded)}, over the {_gib(MAX_UNCOMPRESSED_BYTES)} "
                           "a weights file may have; refused")
    if expanded > MAX_EXPANSION * size + _SLACK:
        raise WeightsError(f"{path} expands from {_mib(size)} to {_mib(expanded)} "
                           f"({expanded / max(size, 1):.0f}×): a decompression bomb, not a checkpoint; refused")


def _check_safetensors(path: Path, size: int, header_bytes: int) -> None:
    if header_bytes > min(MAX_HEADER_BYTES, size - 8):
        raise WeightsError(f"{path}: its safetensors header claims {header_bytes} bytes "
                           f"(the file has {size}); refused")
    with open(path, "rb") as handle:
        handle.seek(8)
        raw = handle.read(header_bytes)
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise WeightsError(f"{path}: its safetensors header is not valid JSON ({str(error)[:80]})") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict):
        return
    border = _bounded_int(path, metadata, BORDER_KEY, 0, MAX_BORDER)
    scale = _bounded_int(path, metadata, SCALE_KEY, 0, MAX_SCALE)
    mode = metadata.get(BORDER_MODE_KEY, "reflect")
    if mode not in BORDER_MODES:
        raise WeightsError(f"{path}: metadata {BORDER_MODE_KEY} must be {' or '.join(BORDER_MODES)}, "
                           f"not {_short(mode)}")
    del border, scale  # checked here; the model stage reads them again from the file


def _bounded_int(path: Path, metadata: dict, key: str, low: int, high: int) -> int:
    value = metadata.get(key, "0")
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not low <= number <= high:
        raise WeightsError(f"{path}: metadata {key} must be a whole number from {low} to {high}, not {_short(value)}")
    return number


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"
