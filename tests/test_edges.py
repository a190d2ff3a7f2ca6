"""Frame edges: every alias and every model available offline leaves the outer rows and columns like the interior.

A network that pads inside itself (NAFNet pads to 16 with zeros) or a runtime that pads twice, in the wrong
mode, or crops in the wrong place shows as a line along the edges on any frame whose size is not a multiple
of what the network needs (the default ``denoise`` used to end a flat grey 1080p frame with rows of 128.9,
135.5 and 104.2). Each case runs a flat noisy grey frame and a smooth diagonal ramp at awkward sizes and
compares each outer row/column of the result with what it should be (the clean grey; the ramp resized),
relative to the same difference in the interior, within two levels plus the noise of a row's mean.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamrestore.aliases import default_aliases
from streamrestore.models.catalog import list_models
from streamrestore.models.weights import availability
from streamrestore.restore import PreparedChain, RunSettings

GREY = 128
FAST_SIZES = [(33, 17), (97, 61)]  # width × height: odd, and not multiples of 2, 4, 8 or 16
ALIASES = sorted(default_aliases("photo", accelerated=False))
SLOW_ALIASES = {"sr4-gan"}  # Real-ESRGAN x4plus: 16 M parameters at ×4, seconds per frame on 2 cores
OFFLINE_MODELS = [e.name for e in list_models() if availability(e) in ("installed", "cached")]
GAN_TRAINED = ("realesrgan", "realesr-", "realcugan")
"""Real-ESRGAN and Real-CUGAN are trained with a GAN loss to redraw textures: they terrace a gentle ramp and give
its folded edge their own contrast (3–4 levels at 33×17), by design. For them only the flat frame is checked,
which is where a padding or crop line shows."""


def flat_noisy(width: int, height: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A grey frame with mild noise, and the clean grey it stands for."""
    rng = np.random.default_rng(seed)
    noisy = np.clip(GREY + rng.normal(0, 4, (height, width, 3)), 0, 255).astype(np.uint8)
    return noisy, np.full((height, width, 3), GREY, np.uint8)


def ramp(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth diagonal ramp from 60, at most half a level a pixel, which is also its own clean version.

    Gentle, because any padding folds a ramp at the frame's edge and sharpening filters and networks then
    answer that fold by about one pixel's step; a line or a misplaced crop is far larger than that.
    """
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    value = 60 + min(0.5, 150 / (width + height)) * (x + y)
    image = np.repeat(np.rint(value)[..., None], 3, axis=2).astype(np.uint8)
    return image, image


def edge_errors(out: np.ndarray, clean: np.ndarray) -> dict[str, tuple[float, float]]:
    """For each outer row/column: (its mean bias against the clean frame resized, minus the interior's; tolerance)."""
    height, width = out.shape[:2]
    reference = cv2.resize(clean, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    diff = out.astype(np.float64) - reference
    inner = diff[height // 4 : height - height // 4, width // 4 : width - width // 4]
    bias, spread = inner.mean(), inner.std()
    edges = {"top": diff[0], "bottom": diff[-1], "left": diff[:, 0], "right": diff[:, -1]}
    return {name: (float(edge.mean() - bias), 2.0 + 4.0 * spread / np.sqrt(edge.size)) for name, edge in edges.items()}


def check_edges(prepared: PreparedChain, width: int, height: int, what: str, ramps: bool = True) -> None:
    for name, make in (("flat", flat_noisy), ("ramp", ramp))[: 2 if ramps else 1]:
        image, clean = make(width, height)
        out = prepared.restore_array(image)
        assert out.shape == (height * prepared.scale, width * prepared.scale, 3)
        bad = {edge: f"{error:+.1f} (tolerance {tol:.1f})" for edge, (error, tol) in edge_errors(out, clean).items()
               if abs(error) > tol}  # fmt: skip
        assert not bad, f"{what} on a {width}×{height} {name} frame: edges differ from the interior: {bad}"


def alias_params():
    for alias in ALIASES:
        marks = [pytest.mark.slow] if alias in SLOW_ALIASES else []
        yield pytest.param(alias, marks=marks, id=alias)


@pytest.mark.slow
@pytest.mark.parametrize("alias", list(alias_params()))
def test_every_alias_keeps_the_edges(alias: str) -> None:
    prepared = PreparedChain(alias, RunSettings(device="cpu"))
    model = str(default_aliases("photo", accelerated=False)[alias].settings.get("model", ""))
    for width, height in FAST_SIZES:
        check_edges(prepared, width, height, alias, ramps=not model.startswith(GAN_TRAINED))


@pytest.mark.slow
def test_the_default_denoiser_keeps_the_edges_at_a_size_off_its_multiple() -> None:
    """250×171: neither a multiple of NAFNet's 16 (the size of the bug), nor of 2."""
    check_edges(PreparedChain("denoise", RunSettings(device="cpu")), 250, 171, "denoise")


@pytest.mark.slow
def test_tiles_keep_the_edges_too() -> None:
    """The same frame in 32-pixel tiles: tiles at the frame's edges are framed like the whole frame."""
    check_edges(PreparedChain("denoise,sr2", RunSettings(device="cpu", tile=32)), 97, 61, "denoise,sr2 tiled")


@pytest.mark.slow
def test_the_default_denoiser_on_a_flat_grey_1080p_frame() -> None:
    """The issue's case: the last rows of a flat grey 1080p frame stay within a level of 128."""
    image, _ = flat_noisy(1920, 1080)
    out = PreparedChain("denoise", RunSettings(device="cpu")).restore_array(image).astype(np.float64)
    rows = [out[-i].mean() for i in (3, 2, 1)] + [out[:, -i].mean() for i in (3, 2, 1)]
    assert all(abs(v - GREY) <= 1.0 for v in rows), rows


@pytest.mark.slow
@pytest.mark.parametrize("content", ["photo", "anime"])
@pytest.mark.parametrize("accelerated", [False, True], ids=["cpu-table", "gpu-table"])
def test_every_alias_of_every_table_keeps_the_edges(content: str, accelerated: bool) -> None:
    from streamrestore.registry import Registry

    registry = Registry(content=content, accelerated=accelerated)
    for alias in sorted(registry.aliases):
        prepared = PreparedChain(alias, RunSettings(device="cpu"), registry)
        model = str(registry.aliases[alias].settings.get("model", ""))
        check_edges(prepared, 33, 17, f"{alias} ({content}, {'GPU' if accelerated else 'CPU'} table)",
                    ramps=not model.startswith(GAN_TRAINED))


@pytest.mark.slow
@pytest.mark.parametrize("model", OFFLINE_MODELS)
def test_every_model_available_offline_keeps_the_edges(model: str) -> None:
    prepared = PreparedChain(f"model={model}", RunSettings(device="cpu"))
    for width, height in FAST_SIZES:
        check_edges(prepared, width, height, model, ramps=not model.startswith(GAN_TRAINED))
