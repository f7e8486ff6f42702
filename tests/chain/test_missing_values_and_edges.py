"""What a per-pixel identity model cannot show: values spreading between neighbours, and the ragged edges of a
working grid coarser than the product. Expectations here are computed independently of the pipeline's own
resampling functions (index arithmetic written out, not block_mean or replicate)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import conv3x3_onnx, dn_cube, identity_card, identity_onnx

from kappamask_core import classify

BANDS = ("B02", "B03", "B04", "B08")
CLASSES = ("clear", "cloud_shadow", "semi_transparent_cloud", "cloud")


def ground_block_means(values: np.ndarray, factor: int, lead: tuple[int, int]) -> np.ndarray:
    """(bands, H, W) -> means over the ground's factor x factor cells, the first starting ``lead`` (rows, columns)
    pixels before the raster; a cell partly outside is the mean of its pixels inside, written out cell by cell."""
    bands, height, width = values.shape
    out = np.zeros((bands, -(-(height + lead[0]) // factor), -(-(width + lead[1]) // factor)))
    for r in range(out.shape[1]):
        for c in range(out.shape[2]):
            rows = np.arange(max(0, r * factor - lead[0]), min(height, (r + 1) * factor - lead[0]))
            cols = np.arange(max(0, c * factor - lead[1]), min(width, (c + 1) * factor - lead[1]))
            out[:, r, c] = values[:, rows][:, :, cols].mean(axis=(1, 2))
    return out


def clamped_block_means(values: np.ndarray, factor: int) -> np.ndarray:
    """(bands, H, W) -> means over factor x factor blocks whose ragged last rows and columns repeat the edge pixel,
    written out cell by cell."""
    bands, height, width = values.shape
    out = np.zeros((bands, -(-height // factor), -(-width // factor)))
    for r in range(out.shape[1]):
        for c in range(out.shape[2]):
            rows = np.minimum(np.arange(r * factor, r * factor + factor), height - 1)
            cols = np.minimum(np.arange(c * factor, c * factor + factor), width - 1)
            out[:, r, c] = values[:, rows][:, :, cols].mean(axis=(1, 2))
    return out


@pytest.mark.parametrize("resolution", [10, 30])
def test_nan_and_infinite_pixels_do_not_spread_to_their_neighbours(tmp_path, resolution):
    """A 3 x 3 convolution spreads every input value to the neighbours: a NaN that reached the model would make
    its neighbours' scores NaN. The broken pixels must be missing and every other pixel exactly as if the
    broken values had been 0."""
    from kappamask_core import classify

    conv3x3_onnx(tmp_path / "conv.onnx", len(BANDS))
    card = identity_card(tmp_path / "card.json", BANDS, CLASSES, tile=64, overlap=8, resolution=resolution,
                         weights="conv.onnx", levels=("L1C",))
    clean = dn_cube(BANDS, 90, 96, seed=3).astype(np.float32)
    rng = np.random.default_rng(4)
    rows, cols, bands = rng.integers(0, 90, 12), rng.integers(0, 96, 12), rng.integers(0, 4, 12)
    broken, zeroed = clean.copy(), clean.copy()
    for i, (r, c, b) in enumerate(zip(rows, cols, bands)):
        broken.values[b, r, c] = (np.nan, np.inf, -np.inf)[i % 3]
        zeroed.values[b, r, c] = 0
    a = classify(broken, str(card), level="L1C", scores=True)
    b = classify(zeroed, str(card), level="L1C", scores=True)
    hit = np.zeros((90, 96), bool)
    hit[rows, cols] = True
    assert (a["classes"].values[hit] == 0).all()  # broken pixels are missing
    assert np.isfinite(a["scores"].values).all()
    np.testing.assert_array_equal(a["classes"].values[~hit], b["classes"].values[~hit])
    np.testing.assert_array_equal(a["scores"].values[:, ~hit], b["scores"].values[:, ~hit])


@pytest.mark.parametrize("shape,origin", [((31, 29), (0, 0)), ((32, 34), (1, 2)), ((30, 31), (2, 1)),
                                          ((33, 33), (1, 1))])
def test_a_coarse_working_grid_takes_the_grounds_cells_at_ragged_edges(tmp_path, shape, origin):
    """At 30 m the working cells are the ground's 30 m cells: a raster whose origin or size is not a multiple of
    30 m has cells that are partly outside it; their scores are the means over the pixels inside, and every 10 m
    pixel takes its cell's."""
    from kappamask_core import classify

    identity_onnx(tmp_path / "identity.onnx", len(BANDS))
    card = identity_card(tmp_path / "card.json", BANDS, CLASSES, tile=16, overlap=4, resolution=30,
                         levels=("L1C",))
    cube = dn_cube(BANDS, *shape, seed=7)
    # the first row's top edge origin[0] pixels south of a multiple of 30 m (4999710 = 30 x 166657), the first
    # column's left edge origin[1] pixels east of one
    cube = cube.assign_coords(y=4999710 - 10 * origin[0] - 10 * np.arange(shape[0]) - 5,
                              x=300000 + 10 * origin[1] + 10 * np.arange(shape[1]) + 5)
    out = classify(cube, str(card), level="L1C", scores=True)
    lead = origin  # the ground's pixels of the first cell before the raster
    means = ground_block_means(cube.values.astype(np.float64) / 10000, 3, lead)
    rows, cols = (np.arange(shape[0]) + lead[0]) // 3, (np.arange(shape[1]) + lead[1]) // 3
    expected = means[:, rows][:, :, cols]  # each 10 m pixel: its working cell
    scores = out["scores"].values  # five classes: 0 missing, then the four channels in order
    np.testing.assert_allclose(scores[1:], expected, rtol=1e-5)
    np.testing.assert_array_equal(out["classes"].values, 1 + expected.argmax(axis=0))


def test_block_mean_at_ragged_edges():
    from kappamask_core.chain.resample import block_mean

    values = np.random.default_rng(0).random((2, 7, 8)).astype(np.float32)
    np.testing.assert_allclose(block_mean(values, 3), clamped_block_means(values, 3), rtol=1e-6)


def test_non_finite_values_are_missing(tmp_path):
    bands = ("B02", "B03", "B04", "B08")
    identity_onnx(tmp_path / "identity.onnx", 4)
    card = identity_card(tmp_path / "card.json", bands, ("clear", "cloud_shadow", "semi_transparent_cloud", "cloud"),
                         tile=8, overlap=2)
    cube = dn_cube(bands, 12, 12, seed=1).astype(np.float32)
    cube[1, 3, 4], cube[2, 7, 7], cube[0, 0, 0] = np.inf, -np.inf, np.nan
    out = classify(cube, str(card), level="L1C").values
    assert out[3, 4] == 0 and out[7, 7] == 0 and out[0, 0] == 0
    assert (np.count_nonzero(out == 0)) == 3
    expected = classify(cube.where(np.isfinite(cube), 0), str(card), level="L1C").values
    finite = np.isfinite(cube.values).all(axis=0)
    np.testing.assert_array_equal(out[finite], expected[finite])  # neighbours are not disturbed either
