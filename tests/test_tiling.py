"""Tiled execution: the same pixels as a whole-frame call for local operations, blends that sum to one, odd sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from streamrestore.engine.tiling import run_tiled


def upscale(scale: int):
    return lambda t: F.interpolate(t, scale_factor=scale, mode="nearest")


@pytest.mark.parametrize("height,width", [(37, 29), (53, 75), (16, 17), (100, 9)])
@pytest.mark.parametrize("tile,overlap,scale,align", [(8, 0, 1, 1), (16, 8, 2, 1), (24, 16, 3, 8), (9, 9, 4, 1)])
def test_pointwise_function_is_reproduced_exactly(height: int, width: int, tile: int, overlap: int,
                                                   scale: int, align: int) -> None:
    pixels = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(height * width))
    whole = upscale(scale)(pixels)
    tiled = run_tiled(upscale(scale), pixels, tile, overlap, scale, align)
    assert tiled.shape == whole.shape
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)


def test_blend_weights_sum_to_one_everywhere() -> None:
    ones = run_tiled(lambda t: torch.ones_like(upscale(2)(t)), torch.zeros(1, 3, 45, 61), 13, 10, 2)
    torch.testing.assert_close(ones, torch.ones(1, 3, 90, 122), rtol=0, atol=1e-6)


def test_network_with_receptive_field_within_half_the_overlap_is_exact() -> None:
    # Three 3×3 convolutions look 3 pixels away: with overlap 8 each kept pixel has 4 pixels of real context.
    torch.manual_seed(0)
    net = torch.nn.Sequential(*[torch.nn.Conv2d(3, 3, 3, padding=1) for _ in range(3)]).eval()
    pixels = torch.rand(1, 3, 41, 67)
    with torch.inference_mode():
        whole = net(pixels)
        tiled = run_tiled(net, pixels, 16, 8, 1)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-5)
    # With no overlap the zero padding at each tile edge shows: the comparison above is not vacuous.
    with torch.inference_mode():
        seams = run_tiled(net, pixels, 16, 0, 1)
    assert (seams - whole).abs().max() > 1e-2


def tile_windows(height: int, width: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int, int, int]]:
    """(top, left, height, width) of every tile ``run_tiled`` cuts, read from a coordinate image."""
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    coords = torch.stack([rows, cols, rows]).float()[None]
    seen = []

    def record(t: torch.Tensor) -> torch.Tensor:
        seen.append((int(t[0, 0, 0, 0]), int(t[0, 1, 0, 0]), *t.shape[-2:]))
        return t

    run_tiled(record, coords, tile, overlap, 1, align)
    return seen


def test_tiles_are_equal_sized_with_context() -> None:
    # 50 pixels in three cores of 17 (not 20 + 20 + 10), each with up to 4 pixels of context per side.
    windows = tile_windows(50, 50, 20, 4)
    assert sorted({(top, h) for top, _, h, _ in windows}) == [(0, 21), (13, 25), (30, 20)]
    assert len(windows) == 9


def test_tiles_start_on_the_alignment() -> None:
    windows = tile_windows(53, 75, 20, 6, align=8)
    # Cores of 24 rows (20 rounded up to 8); context rounded up to 8 too.
    assert sorted({(top, h) for top, _, h, _ in windows}) == [(0, 32), (16, 37), (40, 13)]
    assert all(top % 8 == 0 and left % 8 == 0 for top, left, _, _ in windows)


def test_frame_that_fits_in_one_tile_is_one_call() -> None:
    calls = []
    pixels = torch.rand(1, 3, 20, 30)
    out = run_tiled(lambda t: calls.append(t.shape) or t, pixels, 32, 8, 1)
    assert calls == [pixels.shape] and torch.equal(out, pixels)


def test_bad_tile_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="at least the overlap"):
        run_tiled(lambda t: t, torch.zeros(1, 3, 40, 40), 8, 16, 1)
    with pytest.raises(ValueError, match="tile must be"):
        run_tiled(lambda t: t, torch.zeros(1, 3, 40, 40), 0, 0, 1)
