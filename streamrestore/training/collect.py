"""Build a folder of clean training photographs from Debian packages and images bundled in PyPI wheels.

    python -m streamrestore.training.collect --out ~/streamrestore-data

Sources: wallpaper packages fetched with ``apt-get download`` and unpacked with ``dpkg -x`` (no root, nothing
installed), and the sample images that installed Python packages ship (scikit-image, scikit-learn,
matplotlib). JPEG sources are downscaled at least ×2 (area filter) so their own compression blocks vanish;
lossless sources are only capped in size. Output: one PNG per photograph plus ``manifest.json``.

Honesty: every file whose sha256 is in the exclusion list (the evaluation kits' sources) is skipped — and so
is every *other file of the same photograph*. A KDE wallpaper ships one photo at a dozen resolutions
(``FallenLeaf/contents/images/640x480.jpg`` … ``2560x1600.jpg``) and the list pins only one of them, so files
are grouped by photograph (KDE wallpaper folder, else file stem) and a group with any excluded member is
dropped whole. A second guard drops any image whose small thumbnail matches an excluded file's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from streamrestore.errors import ConfigError
from streamrestore.models.weights import sha256_file

from .data import IMAGE_SUFFIXES, excluded_digests

# Packages with real photographs (checked by eye on a contact sheet; the rest of the archive's wallpaper
# packages are vector art). Paths narrow a package to its photo folders.
DEBIAN_SOURCES = {
    "lomiri-wallpapers-16.04": (),
    "lomiri-wallpapers-20.04": (),
    "lomiri-wallpapers": (),
    "mate-backgrounds": ("usr/share/backgrounds/mate/nature",),
    "plasma-workspace-wallpapers": (),
}
LOSSY_SUFFIXES = (".jpg", ".jpeg", ".webp")
MIN_SIDE = 256
THUMB = 16  # thumbnail side for the near-duplicate guard
THUMB_TOLERANCE = 6.0  # mean absolute difference (0..255) under which two thumbnails are the same photo


@dataclass(frozen=True)
class Candidate:
    path: Path
    source: str  # "debian:<package>" or "pypi:<package>"
    group: str  # one photograph, possibly at several resolutions


def photo_group(path: Path, source: str) -> str:
    parts = path.parts
    if "contents" in parts:  # KDE layout: NAME/contents/images[_dark]/WxH.ext
        return "wallpaper:" + parts[parts.index("contents") - 1].lower()
    return "file:" + path.stem.lower()


def debian_candidates(cache: Path, packages: dict[str, tuple[str, ...]]) -> list[Candidate]:
    found = []
    for package, subpaths in packages.items():
        root = cache / package
        if not root.is_dir():
            debs = cache / "debs"
            debs.mkdir(parents=True, exist_ok=True)
            fetched = subprocess.run(["apt-get", "download", package], cwd=debs, capture_output=True, text=True)
            archives = sorted(debs.glob(f"{package}_*.deb"))
            if fetched.returncode or not archives:
                print(f"skipped {package}: apt-get download failed ({fetched.stderr.strip()[:120]})", file=sys.stderr)
                continue
            unpacking = root.with_suffix(".partial")
            subprocess.run(["dpkg", "-x", str(archives[-1]), str(unpacking)], check=True)
            unpacking.rename(root)
        folders = [root / sub for sub in subpaths] or [root]
        for folder in folders:
            for path in sorted(folder.rglob("*")):
                if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and "screenshot" not in path.name:
                    found.append(Candidate(path, f"debian:{package}", photo_group(path, package)))
    return found


def pypi_candidates() -> list[Candidate]:
    """Sample photographs shipped inside installed wheels (whichever of these packages are installed)."""
    folders = []
    for module, sub in (("skimage", "data"), ("sklearn", "datasets/images"), ("matplotlib", "mpl-data/sample_data")):
        try:
            package = __import__(module)
        except ImportError:
            continue
        folders.append((module, Path(package.__file__).parent / sub))
    found = []
    for module, folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                found.append(Candidate(path, f"pypi:{module}", photo_group(path, module)))
    return found


def thumbnail(image: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)


def prescale(image: np.ndarray, lossy: bool, max_side: int) -> np.ndarray:
    factor = min(0.5 if lossy else 1.0, max_side / max(image.shape[:2]))
    if factor >= 1.0:
        return image
    size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def read_colour(path: Path) -> np.ndarray | None:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.dtype != np.uint8:
        return None
    if image.ndim == 2 or image.shape[2] == 1:
        return None  # greyscale photos would teach the colour networks nothing about colour
    if image.shape[2] == 4:
        if image[..., 3].min() < 255:
            return None  # transparency: not a photograph
        image = image[..., :3]
    return image


def build(candidates: list[Candidate], out: Path, exclude: frozenset[str], max_side: int = 1280) -> dict:
    """Write one prescaled PNG per kept photograph into ``out``; return the summary (also in manifest.json)."""
    digests = {c.path: sha256_file(c.path) for c in candidates}
    excluded_groups = {c.group for c in candidates if digests[c.path] in exclude}
    excluded_thumbs = [thumbnail(image) for c in candidates if digests[c.path] in exclude
                       if (image := read_colour(c.path)) is not None]  # fmt: skip
    largest: dict[str, tuple[int, Candidate]] = {}  # group -> (pixels at 1/8 size, its largest file)
    for c in candidates:
        if c.group in excluded_groups:
            continue
        reduced = cv2.imread(str(c.path), cv2.IMREAD_REDUCED_GRAYSCALE_8)
        size = 0 if reduced is None else reduced.size
        if c.group not in largest or size > largest[c.group][0]:
            largest[c.group] = (size, c)
    out.mkdir(parents=True, exist_ok=True)
    kept, near_duplicates, unusable, duplicates, seen_outputs, names = [], [], [], [], set(), set()
    for group, (_, c) in sorted(largest.items()):
        image = read_colour(c.path)
        if image is None or min(image.shape[:2]) < MIN_SIDE:
            unusable.append(str(c.path))
            continue
        thumb = thumbnail(image)
        if any(float(np.abs(thumb - other).mean()) < THUMB_TOLERANCE for other in excluded_thumbs):
            near_duplicates.append(str(c.path))
            continue
        image = prescale(image, c.path.suffix.lower() in LOSSY_SUFFIXES, max_side)
        stem = f"{c.source.replace(':', '-')}-{group.split(':', 1)[1]}".replace(" ", "_")
        # Groups "wallpaper:foo" and "file:foo" of one package would share a name: the second write would
        # overwrite the first (or, as its duplicate, unlink it), leaving the manifest listing a missing file.
        name, n = f"{stem}.png", 1
        while name in names:
            n += 1
            name = f"{stem}-{n}.png"
        target = out / name
        cv2.imwrite(str(target), image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
        digest = sha256_file(target)
        if digest in exclude or digests[c.path] in exclude:
            target.unlink()
            raise ConfigError(f"exclusion check failed for {c.path}")  # cannot happen unless the logic above breaks
        if digest in seen_outputs:  # the same picture under another name (packages copy each other)
            target.unlink()
            duplicates.append(str(c.path))
            continue
        seen_outputs.add(digest)
        names.add(name)
        kept.append({"file": name, "source": c.source, "from": str(c.path), "source_sha256": digests[c.path],
                     "sha256": digest, "width": image.shape[1], "height": image.shape[0]})  # fmt: skip
    summary = {
        "images": len(kept),
        "pixels": sum(k["width"] * k["height"] for k in kept),
        "candidate_files": len(candidates),
        "excluded_files": sum(digests[c.path] in exclude for c in candidates),
        "excluded_photographs": len(excluded_groups),
        "near_duplicates_of_excluded": near_duplicates,
        "unusable": unusable,
        "duplicates": duplicates,
        "kept": kept,
    }
    (out / "manifest.json").write_text(json.dumps(summary, indent=1))
    return summary


def load_exclusion(path: str | None) -> frozenset[str]:
    if path is None:
        return excluded_digests()
    lines = Path(path).read_text().split()
    return excluded_digests() | frozenset(word.lower() for word in lines if len(word) == 64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamrestore.training.collect", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for the PNGs and manifest.json")
    parser.add_argument("--cache", help="where .deb files are fetched and unpacked (default: a temporary folder)")
    parser.add_argument("--exclude", help="an extra sha256 list to skip (the built-in list always applies)")
    parser.add_argument("--no-debian", action="store_true", help="only images bundled in installed wheels")
    parser.add_argument("--max-side", type=int, default=1280)
    args = parser.parse_args(argv)
    exclude = load_exclusion(args.exclude)
    with tempfile.TemporaryDirectory(prefix="streamrestore-debs-") as scratch:
        cache = Path(args.cache) if args.cache else Path(scratch)
        candidates = pypi_candidates() + ([] if args.no_debian else debian_candidates(cache, DEBIAN_SOURCES))
        summary = build(candidates, Path(args.out), exclude, args.max_side)
    print(f"kept {summary['images']} images, {summary['pixels'] / 1e6:.1f} Mpixels, in {args.out}")
    print(f"skipped {summary['excluded_files']} excluded files = {summary['excluded_photographs']} photographs "
          f"(all their resolutions), {len(summary['near_duplicates_of_excluded'])} near-duplicates, "
          f"{len(summary['unusable'])} unusable (greyscale, transparent, < {MIN_SIDE} px)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
