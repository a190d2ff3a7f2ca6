"""Hostile files for the security tests, each made on the spot: a TorchScript archive that writes a file when
loaded, a deflate bomb dressed as a checkpoint, safetensors with lying metadata, a YAML alias bomb.

Shared by tests/test_security.py (the CLI, presets, training) and tests/test_demo.py (the web demo's API).
"""

from __future__ import annotations

import collections
import io
import pickle
import warnings
import zipfile
import zlib
from pathlib import Path

import torch
from spandrel.architectures.Compact import Compact


def torchscript_writer(path: Path, marker: Path) -> Path:
    """A TorchScript module saved at ``path`` whose ``__setstate__`` creates ``marker`` (8 bytes of "A").

    ``torch.jit.load`` runs ``__setstate__`` while loading: this is code from the file, run by the loader.
    ``torch.from_file(..., shared=True)`` maps the file in, creating it; filling it writes it.
    """
    from typing import Tuple

    class Writer(torch.nn.Module):
        def __init__(self, target: str) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(3, 3, 3, 3))
            self.target = target

        @torch.jit.export
        def __getstate__(self) -> Tuple[torch.Tensor, str, bool]:  # noqa: UP006 - TorchScript's spelling
            return (self.weight, self.target, self.training)

        @torch.jit.export
        def __setstate__(self, state: Tuple[torch.Tensor, str, bool]) -> None:  # noqa: UP006
            mark = torch.from_file(state[1], True, 8, dtype=torch.uint8)
            mark.fill_(65)
            self.weight = state[0] + mark.float().sum() * 0.0  # used, so the compiler keeps the lines above
            self.target = state[1]
            self.training = state[2]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.conv2d(x, self.weight, padding=1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated, not gone
        torch.jit.script(Writer(str(marker))).save(str(path))
    return path


def tiny_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random ×2 Compact network (Real-ESRGAN's SRVGGNetCompact), a few KB."""
    torch.manual_seed(seed)
    return Compact(num_feat=8, num_conv=2, upscale=2).state_dict()


def tiny_model(path: Path) -> Path:
    torch.save({"params": tiny_state_dict()}, path)
    return path


def safetensors_with(path: Path, metadata: dict[str, str]) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tiny_state_dict().items()}, str(path), metadata=metadata)
    return path


def deflate_bomb(path: Path, gib: int) -> Path:
    """A checkpoint-shaped zip whose one storage inflates to ``gib`` GiB of zeros, from about ``gib`` MB.

    ``data.pkl`` is what ``torch.save`` writes for a float tensor of that size, so a loader that trusts the
    archive allocates and inflates all of it. The deflate stream repeats one fully flushed block of 64 MiB of
    zeros (valid: a flushed block refers to nothing before it), so making it costs no compression time; the
    CRC is left at 0 (torch does not check it before inflating).
    """
    chunk = 64 << 20
    numel = (gib << 30) // 4

    class Store:
        pass

    class Rebuild:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, (Store(), 0, (numel,), (1,), False, collections.OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel) if isinstance(obj, Store) else None

    data = io.BytesIO()
    Pickler(data, protocol=2).dump({"conv.weight": Rebuild()})
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = packer.compress(bytes(chunk)) + packer.flush(zlib.Z_FULL_FLUSH)

    class Repeat:
        def compress(self, _data: bytes) -> bytes:
            return block

        def flush(self) -> bytes:
            return b"\x03\x00"  # an empty final block

    saved = zipfile._get_compressor, zipfile.crc32
    zipfile._get_compressor = lambda kind, *a, **k: Repeat() if kind == zipfile.ZIP_DEFLATED else saved[0](kind, *a, **k)
    zipfile.crc32 = lambda data, crc=0: 0
    try:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", data.getvalue())
            archive.writestr("archive/byteorder", "little")
            archive.writestr("archive/version", "3\n")
            member = zipfile.ZipInfo("archive/data/0")
            member.compress_type = zipfile.ZIP_DEFLATED
            zeros = bytes(chunk)
            with archive.open(member, "w", force_zip64=True) as stream:
                for _ in range((gib << 30) // chunk):
                    stream.write(zeros)
    finally:
        zipfile._get_compressor, zipfile.crc32 = saved
    return path


def alias_bomb(path: Path, levels: int = 9) -> Path:
    """A "billion laughs" preset: each level nine references to the last; ``9**levels`` strings expanded."""
    # Under `description`, which the preset format takes without looking inside: only the value quoted in
    # the error about `amount` (it is not a number) expands.
    lines = ["description:", '  a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        lines.append(f"  a{level}: &a{level} [" + ",".join([f"*a{level - 1}"] * 9) + "]")
    lines += ["chain:", "  - stage: sharpen", f"    amount: *a{levels - 1}"]
    path.write_text("\n".join(lines) + "\n")
    return path
