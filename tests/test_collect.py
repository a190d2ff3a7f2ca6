"""Tests of streamrestore.training.collect: grouping by photograph, exclusions, prescaling and the manifest.

The Debian side is a fake cache of already unpacked packages made in tmp_path (``debian_candidates`` only runs
apt-get for a package whose folder is missing; here running anything fails the test). The pictures are
synthetic (gradients, discs, a fine texture), each seed a different picture; the exclusion list is the
test's own, so nothing depends on the shipped one except the last two tests, which check that list.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamrestore.training import collect
from streamrestore.training.collect import Candidate, build, debian_candidates, pypi_candidates, thumbnail
from streamrestore.training.data import excluded_digests
from streamrestore.models.weights import sha256_file

KDE = "plasma-workspace-wallpapers"
MATE = "mate-backgrounds"
NATURE = "usr/share/backgrounds/mate/nature"
PACKAGES = {KDE: (), MATE: (NATURE,)}
RESOLUTIONS = ((480, 300), (640, 400), (960, 600))  # width, height: one KDE photo, three files


def _photo(seed: int, height: int, width: int) -> np.ndarray:
    """A different picture per seed: a gradient between two colours, eight discs and ellipses, fine texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (xx * np.cos(angle) + yy * np.sin(angle)) / (height + width) + 0.5
    low, high = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    image = (low + (high - low) * ramp[..., None]).astype(np.float32)
    side = min(height, width)
    for _ in range(8):
        colour = tuple(float(v) for v in rng.uniform(0, 255, 3))
        centre = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
        axes = (int(rng.uniform(0.05, 0.4) * side), int(rng.uniform(0.05, 0.3) * side))
        cv2.ellipse(image, centre, axes, rng.uniform(0, 180), 0, 360, colour, -1, cv2.LINE_AA)
    texture = cv2.GaussianBlur(rng.normal(0, 12, (height, width)).astype(np.float32), (0, 0), 1.5)
    image = cv2.GaussianBlur(image, (0, 0), side / 300) + texture[..., None]
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


def _kde_wallpaper(root: Path, name: str, seed: int) -> dict[tuple[int, int], Path]:
    """One photograph at every resolution, as KDE ships it: ``NAME/contents/images/WxH.jpg``."""
    full = _photo(seed, RESOLUTIONS[-1][1], RESOLUTIONS[-1][0])
    images = root / name / "contents" / "images"
    _write(root / name / "contents" / "screenshot.png", cv2.resize(full, (200, 125), interpolation=cv2.INTER_AREA))
    return {size: _write(images / f"{size[0]}x{size[1]}.jpg", cv2.resize(full, size, interpolation=cv2.INTER_AREA))
            for size in RESOLUTIONS}  # fmt: skip


def _fail(*args, **kwargs):
    raise AssertionError(f"the tests must not run anything: {args}")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> dict:
    cache = tmp_path_factory.mktemp("debs")
    kde = cache / KDE / "usr/share/wallpapers"
    nature = cache / MATE / NATURE
    lake = _photo(3, 300, 400)
    meadow = _photo(4, 300, 400)
    files = {
        "pinned": _kde_wallpaper(kde, "Pinned", seed=1),
        "kept": _kde_wallpaper(kde, "Kept", seed=2),
        "lake": _write(nature / "lake.png", lake),
        "lake_copy": _write(nature / "lake-copy.jpg", lake),  # another encoding of an excluded picture
        "meadow": _write(nature / "meadow.png", meadow),
        "meadow_copy": _write(nature / "meadow-copy.png", meadow),
        "field": _write(nature / "Field.png", _photo(5, 320, 500)),
        "grey": _write(nature / "grey.png", cv2.cvtColor(_photo(6, 300, 400), cv2.COLOR_BGR2GRAY)),
        "glass": _write(nature / "glass.png", np.dstack([_photo(7, 300, 400), np.full((300, 400), 200, np.uint8)])),
        "tiny": _write(nature / "tiny.png", _photo(8, 200, 300)),
        "outside": _write(cache / MATE / "usr/share/backgrounds/mate/abstract/lines.png", _photo(9, 300, 400)),
    }
    assert sha256_file(files["lake"]) != sha256_file(files["lake_copy"])
    assert sha256_file(files["meadow"]) == sha256_file(files["meadow_copy"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(collect.subprocess, "run", _fail)  # no apt-get, no dpkg: the packages are unpacked
        candidates = debian_candidates(cache, PACKAGES)
    # One resolution of one wallpaper, and one plain file, are the "evaluation kit" sources.
    exclude = frozenset({sha256_file(files["pinned"][RESOLUTIONS[1]]), sha256_file(files["lake"])})
    return {"cache": cache, "files": files, "candidates": candidates, "exclude": exclude}


@pytest.fixture(scope="module")
def built(tree, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("out")
    return {"out": out, "summary": build(tree["candidates"], out, tree["exclude"])}


def _from(summary: dict) -> set[Path]:
    return {Path(k["from"]) for k in summary["kept"]}


def _skipped(summary: dict) -> set[Path]:
    lists = ("near_duplicates_of_excluded", "unusable", "duplicates")
    return {Path(p) for key in lists for p in summary[key]}


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


# --- candidates --------------------------------------------------------------------------------------


def test_candidates_are_grouped_by_photograph(tree):
    files, candidates = tree["files"], tree["candidates"]
    by_path = {c.path: c for c in candidates}
    for size in RESOLUTIONS:
        assert by_path[files["pinned"][size]] == Candidate(files["pinned"][size], f"debian:{KDE}", "wallpaper:pinned")
    assert by_path[files["field"]].group == "file:field" and by_path[files["field"]].source == f"debian:{MATE}"
    assert not any("screenshot" in c.path.name for c in candidates)
    assert files["outside"] not in by_path  # outside the package's photo folder
    assert len(candidates) == 2 * len(RESOLUTIONS) + 8


# --- exclusions --------------------------------------------------------------------------------------


def test_a_photograph_with_one_excluded_resolution_is_skipped_whole(tree, built, tmp_path):
    pinned, summary = set(tree["files"]["pinned"].values()), built["summary"]
    assert not pinned & _from(summary)
    assert not pinned & _skipped(summary)  # dropped by its group, before the thumbnail guard looks at it
    # Nor does any written picture look like it.
    pinned_thumb = thumbnail(_read(tree["files"]["pinned"][RESOLUTIONS[-1]]))
    for path in built["out"].glob("*.png"):
        assert np.abs(thumbnail(_read(path)) - pinned_thumb).mean() > 3 * collect.THUMB_TOLERANCE, path
    # Control: with nothing excluded, the same photograph is kept (at its largest resolution).
    open_summary = build(tree["candidates"], tmp_path, frozenset())
    assert tree["files"]["pinned"][RESOLUTIONS[-1]] in _from(open_summary)


def test_a_wallpaper_keeps_only_its_largest_resolution(tree, built):
    kept = [k for k in built["summary"]["kept"] if Path(k["from"]) in tree["files"]["kept"].values()]
    assert [Path(k["from"]) for k in kept] == [tree["files"]["kept"][RESOLUTIONS[-1]]]
    assert (kept[0]["width"], kept[0]["height"]) == (RESOLUTIONS[-1][0] // 2, RESOLUTIONS[-1][1] // 2)


def test_a_reencoded_copy_of_an_excluded_picture_is_dropped_as_near_duplicate(tree, built):
    files, summary = tree["files"], built["summary"]
    assert summary["near_duplicates_of_excluded"] == [str(files["lake_copy"])]
    assert not {files["lake"], files["lake_copy"]} & _from(summary)
    assert files["lake"] not in _skipped(summary)  # the excluded file itself is skipped silently


def test_identical_pictures_under_two_names_give_one_output(tree, built):
    files, summary = tree["files"], built["summary"]
    meadows = {files["meadow"], files["meadow_copy"]}
    assert len(meadows & _from(summary)) == 1
    assert [Path(p) for p in summary["duplicates"]] == [files["meadow_copy"]]  # "file:meadow" sorts first
    meadow_digest = sha256_file(files["meadow"])
    assert sum(k["source_sha256"] == meadow_digest for k in summary["kept"]) == 1


def test_greyscale_transparent_and_small_images_are_unusable(tree, built):
    files = tree["files"]
    assert sorted(built["summary"]["unusable"]) == sorted(str(files[key]) for key in ("grey", "glass", "tiny"))


# --- prescaling and the written files ---------------------------------------------------------------


def test_jpeg_sources_are_halved_and_lossless_ones_kept_at_size(tree, built):
    files, kept = tree["files"], {Path(k["from"]): k for k in built["summary"]["kept"]}
    assert set(kept) == {files["kept"][RESOLUTIONS[-1]], files["meadow"], files["field"]}
    for path, entry in kept.items():
        height, width = _read(path).shape[:2]
        factor = 2 if path.suffix == ".jpg" else 1
        assert (entry["width"], entry["height"]) == (width // factor, height // factor), path


def test_max_side_caps_both_kinds(tree, tmp_path):
    summary = build(tree["candidates"], tmp_path, tree["exclude"], max_side=300)
    sizes = {Path(k["from"]).name: (k["width"], k["height"]) for k in summary["kept"]}
    assert sizes == {"960x600.jpg": (300, 188), "meadow.png": (300, 225), "Field.png": (300, 192)}


def test_written_pixels_are_the_prescaled_source(built):
    for entry in built["summary"]["kept"]:
        source = _read(Path(entry["from"]))
        if entry["from"].endswith(".jpg"):
            height, width = source.shape[:2]
            source = cv2.resize(source, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
        written = _read(built["out"] / entry["file"])
        assert written.dtype == np.uint8 and np.array_equal(written, source), entry["file"]


def test_manifest_counts_match_the_files_on_disk(tree, built):
    out, summary = built["out"], built["summary"]
    assert json.loads((out / "manifest.json").read_text()) == summary
    written = sorted(out.glob("*.png"))
    assert [p.name for p in written] == sorted(k["file"] for k in summary["kept"])
    assert summary["images"] == len(written) == 3
    assert summary["pixels"] == sum(_read(p).shape[0] * _read(p).shape[1] for p in written)
    assert summary["candidate_files"] == len(tree["candidates"])
    on_list = [c for c in tree["candidates"] if sha256_file(c.path) in tree["exclude"]]
    assert summary["excluded_files"] == len(on_list) == 2
    assert summary["excluded_photographs"] == len({c.group for c in on_list}) == 2
    for entry in summary["kept"]:
        assert entry["sha256"] == sha256_file(out / entry["file"])
        assert entry["source_sha256"] == sha256_file(Path(entry["from"]))
        assert entry["sha256"] not in tree["exclude"] and entry["source_sha256"] not in tree["exclude"]


def test_a_wallpaper_and_a_file_of_the_same_name_both_survive(tmp_path):
    # Groups "wallpaper:foo" and "file:foo" once mapped to one output name: the second overwrote the first,
    # or, being a copy of it, unlinked it, and the manifest listed a file that was not there.
    root = tmp_path / "debs" / KDE / "usr/share/wallpapers"
    picture = _photo(10, 300, 400)
    _write(root / "Foo/contents/images/400x300.png", picture)
    _write(root / "foo.png", _photo(11, 300, 400))
    out = tmp_path / "out"
    summary = build(debian_candidates(tmp_path / "debs", {KDE: ()}), out, frozenset())
    assert summary["images"] == 2 and len({k["file"] for k in summary["kept"]}) == 2
    _write(root / "foo.png", picture)  # now the same picture: one output, and it must be on disk
    summary = build(debian_candidates(tmp_path / "debs", {KDE: ()}), out, frozenset())
    assert summary["images"] == 1 and len(summary["duplicates"]) == 1
    assert (out / summary["kept"][0]["file"]).is_file()


# --- the command -------------------------------------------------------------------------------------


def test_main_without_debian_collects_the_wheel_images(tree, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(collect, "pypi_candidates", lambda: tree["candidates"])
    monkeypatch.setattr(collect, "debian_candidates", _fail)
    extra = tmp_path / "kits.txt"
    extra.write_text("# extra kit sources\n" + "\n".join(d.upper() for d in sorted(tree["exclude"])) + "\n")
    out = tmp_path / "data"
    assert collect.main(["--out", str(out), "--no-debian", "--exclude", str(extra)]) == 0
    summary = json.loads((out / "manifest.json").read_text())
    printed = capsys.readouterr().out
    assert f"kept {summary['images']} images" in printed and summary["images"] == len(list(out.glob("*.png"))) == 3
    assert "skipped 2 excluded files = 2 photographs" in printed
    assert "1 near-duplicates, 3 unusable" in printed


# --- the real wheels and the shipped list -------------------------------------------------------------


def test_pypi_candidates_include_scikit_image_samples():
    import skimage

    data = Path(skimage.__file__).parent / "data"
    found = {c.path: c for c in pypi_candidates()}
    for name in ("astronaut.png", "chelsea.png", "retina.jpg"):
        assert found[data / name].source == "pypi:skimage"
    assert found[data / "chelsea.png"].group == "file:chelsea"
    # chelsea.png is an evaluation-kit source, so the shipped list must pin this very file.
    assert sha256_file(data / "chelsea.png") in excluded_digests()


def test_build_on_the_wheels_excludes_exactly_the_listed_files(tmp_path):
    candidates, shipped = pypi_candidates(), excluded_digests()
    listed = [c for c in candidates if sha256_file(c.path) in shipped]
    assert any(c.path.name == "chelsea.png" for c in listed)
    summary = build(candidates, tmp_path, shipped, max_side=256)
    assert summary["excluded_files"] == len(listed)
    assert summary["excluded_photographs"] == len({c.group for c in listed})
    listed_groups = {c.group for c in listed}
    by_path = {str(c.path): c for c in candidates}
    assert not [k["from"] for k in summary["kept"] if by_path[k["from"]].group in listed_groups]
    assert not {c.path for c in listed} & _skipped(summary)
    # Every photograph is accounted for: kept, reported, or listed.
    group = {c.path: c.group for c in candidates}
    accounted = {group[path] for path in _from(summary) | _skipped(summary)} | listed_groups
    assert accounted == set(group.values())
