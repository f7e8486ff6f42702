"""Cloud statistics per area of interest: shares of each area's pixels weighted by the share of each pixel's square
the area covers, checked against the same count on a grid 20 times finer; the same table from an eager cube, a
lazy one and the COG of the same map; areas in another CRS; areas beyond the map; clear dates."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
import xarray as xr
from helpers import require

import kappamask_core as km
from kappamask_core import InputError, area_statistics, clear_dates
from kappamask_core.faces.class_maps import CLASS_NAMES

CRS = "EPSG:32633"
X0, Y0 = 300000.0, 5000000.0  # the map's top-left corner


def _maps(dates: int = 2, height: int = 120, width: int = 160, seed: int = 0) -> xr.DataArray:
    """Random classes in blobs of 4 x 4 px (no data in a corner), (time, y, x) on a 10 m grid."""
    rng = np.random.default_rng(seed)
    values = np.kron(rng.integers(1, 5, size=(dates, height // 4, width // 4)), np.ones((1, 4, 4))).astype(np.uint8)
    values[:, :12, :20] = 0
    return xr.DataArray(values, dims=("time", "y", "x"), coords={
        "time": np.array(["2024-05-01", "2024-05-11", "2024-05-21"][:dates], dtype="datetime64[ns]"),
        "y": Y0 - 10 * np.arange(height) - 5, "x": X0 + 10 * np.arange(width) + 5}, attrs={"crs": CRS})


def _areas() -> dict:
    centre = shapely.Point(X0 + 803, Y0 - 597)
    return {"field": shapely.Polygon([(X0 + 101, Y0 - 203), (X0 + 455, Y0 - 151), (X0 + 388, Y0 - 640),
                                      (X0 + 90, Y0 - 512)]),
            "ring": centre.buffer(260).difference(centre.buffer(90)),
            "two": shapely.MultiPolygon([shapely.box(X0 + 1201, Y0 - 300, X0 + 1333, Y0 - 77),
                                         shapely.box(X0 + 1400, Y0 - 1100, X0 + 1555, Y0 - 960)]),
            "corner": shapely.Point(X0 + 30, Y0 - 20).buffer(150),  # partly beyond the map, partly no data
            "beyond": shapely.box(X0 - 900, Y0 + 100, X0 - 300, Y0 + 700)}


def _fine_count(values: np.ndarray, geom, factor: int = 20) -> tuple[float, np.ndarray]:
    """(share of the area with data, shares of the four classes) counted on a grid ``factor`` times finer."""
    from affine import Affine
    from rasterio.features import rasterize

    size = 10 / factor
    margin = 100  # fine pixels around the map, where the area may lie beyond it
    h, w = values.shape
    fine = rasterize([geom], out_shape=(h * factor + 2 * margin, w * factor + 2 * margin),
                     transform=Affine(size, 0, X0 - margin * size, 0, -size, Y0 + margin * size)).astype(float)
    total = geom.area / size ** 2  # the whole area, beyond the fine grid too
    inside = fine[margin:-margin, margin:-margin].reshape(h, factor, w, factor).sum(axis=(1, 3))
    valid = (inside * (values > 0)).sum()
    shares = np.array([(inside * (values == c)).sum() for c in (1, 2, 3, 4)]) / valid if valid else np.full(4, np.nan)
    return valid / total, shares


def test_shares_are_those_of_a_count_on_a_grid_twenty_times_finer():
    maps = _maps()
    table = area_statistics(maps, _areas(), crs=CRS)
    assert len(table) == 2 * 5 and list(table.columns[:5]) == ["area_id", "datetime", "product_id", "area_m2",
                                                               "valid_fraction"]
    for (area_id, geom) in _areas().items():
        for t in range(2):
            row = table[(table["area_id"] == area_id) & (table["datetime"] == maps["time"].values[t])].iloc[0]
            valid, shares = _fine_count(maps.values[t], geom)
            assert row["area_m2"] == pytest.approx(geom.area)
            assert row["valid_fraction"] == pytest.approx(valid, abs=2e-3)
            if area_id == "beyond":  # no data at all: no shares, not zeros
                assert row["valid_fraction"] == 0 and row[list(CLASS_NAMES)].isna().all()
            else:
                np.testing.assert_allclose(row[list(CLASS_NAMES)].to_numpy(float), shares, atol=3e-3)
    corner = table[table["area_id"] == "corner"].iloc[0]
    assert 0 < corner["valid_fraction"] < 0.25  # a quarter on the map, part of that without data


def test_areas_in_another_crs_give_the_same_shares():
    from rasterio.warp import transform_geom

    areas = {k: v for k, v in _areas().items() if k != "beyond"}
    in_wgs84 = {k: shapely.geometry.shape(transform_geom(CRS, "EPSG:4326", shapely.geometry.mapping(
        shapely.segmentize(g, 5)))) for k, g in areas.items()}
    a = area_statistics(_maps(1), areas, crs=CRS)
    b = area_statistics(_maps(1), in_wgs84, crs="EPSG:4326")
    np.testing.assert_allclose(b[["valid_fraction", *CLASS_NAMES]].to_numpy(float),
                               a[["valid_fraction", *CLASS_NAMES]].to_numpy(float), atol=2e-3)
    geojson = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": k, "properties": {}, "geometry": shapely.geometry.mapping(g)}
        for k, g in in_wgs84.items()]}  # GeoJSON: WGS84
    c = area_statistics(_maps(1), geojson)
    assert list(c["area_id"]) == list(areas)
    np.testing.assert_allclose(c[["valid_fraction", *CLASS_NAMES]].to_numpy(float),
                               b[["valid_fraction", *CLASS_NAMES]].to_numpy(float))


def test_a_lazy_cube_and_the_cog_give_the_eager_table(tmp_path):
    from kappamask_core.foundation.grid import Grid
    from kappamask_core.io.writers import write_cog

    maps = _maps(3)
    eager = area_statistics(maps, _areas(), crs=CRS, buffers="cloud=40,shadow=20")
    assert eager["usable"].notna().any() and (eager["usable"].dropna() <= eager["clear"].dropna() + 1e-12).all()
    require("dask")
    lazy = area_statistics(maps.chunk({"time": 1, "y": 50, "x": 70}), _areas(), crs=CRS, buffers="cloud=40,shadow=20")
    np.testing.assert_allclose(lazy[["valid_fraction", *CLASS_NAMES, "usable"]].to_numpy(float),
                               eager[["valid_fraction", *CLASS_NAMES, "usable"]].to_numpy(float), atol=1e-9)
    from affine import Affine

    grid = Grid(maps.sizes["y"], maps.sizes["x"], Affine(10, 0, X0, 0, -10, Y0), CRS)
    path = tmp_path / "S2B_MSIL1C_20240511T101559_N0510_R065_T33UUU_20240511T104306_kappamask.tif"
    write_cog(path, maps.values[1], grid, encoding="km_predict")  # another encoding: read back as classes
    from_file = area_statistics(path, _areas(), crs=CRS, buffers="cloud=40,shadow=20")
    assert list(from_file["datetime"].unique()) == ["2024-05-11T10:15:59Z"]
    assert (from_file["product_id"] == path.stem.removesuffix("_kappamask")).all()
    second = eager[eager["datetime"] == maps["time"].values[1]]
    np.testing.assert_allclose(from_file[["valid_fraction", *CLASS_NAMES, "usable"]].to_numpy(float),
                               second[["valid_fraction", *CLASS_NAMES, "usable"]].to_numpy(float), atol=1e-9)


def test_clear_dates_keep_the_dates_a_user_calls_clear():
    values = np.ones((3, 40, 40), np.uint8)
    values[1, :, :8] = 4  # 20 % cloud
    values[2, :, :2] = 0  # 5 % without data, the rest clear
    maps = _maps(3, 40, 40).copy(data=values)
    table = area_statistics(maps, {"all": shapely.box(X0, Y0 - 400, X0 + 400, Y0)}, crs=CRS)
    kept = clear_dates(table, max_cloudy=0.10, min_valid=0.90)
    assert list(kept["datetime"]) == [maps["time"].values[0], maps["time"].values[2]]
    assert clear_dates(table, min_valid=0.99)["datetime"].tolist() == [maps["time"].values[0]]


@pytest.mark.parametrize("areas,kwargs,message", [
    ({"a": shapely.Point(X0, Y0)}, {"crs": CRS}, "is a Point; areas are polygons"),
    ({"a": shapely.Polygon([(X0, Y0), (X0 + 100, Y0 - 100), (X0 + 100, Y0), (X0, Y0 - 100)])}, {"crs": CRS},
     "not a valid polygon"),
    ([shapely.box(X0, Y0 - 10, X0 + 10, Y0)], {}, "give the areas' CRS"),
])
def test_areas_that_cannot_be_counted_are_refused_in_one_line(areas, kwargs, message):
    with pytest.raises(InputError, match=message):
        area_statistics(_maps(1), areas, **kwargs)


def test_the_command_line_writes_the_table_and_the_plot_of_a_run_folder(tmp_path, capsys):
    import json

    import pandas as pd
    from rasterio.warp import transform_geom

    from kappamask_core.faces.cli import main
    from kappamask_core.io import DEMO_DATA

    assert main(["classify", str(DEMO_DATA), "-o", str(tmp_path / "run"), "--model", "default"]) == 0
    fields = {"north": shapely.box(331000, 5819000, 333000, 5821000), "south": shapely.box(340000, 5816000, 342500, 5818000)}
    geojson = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": k},
         "geometry": transform_geom("EPSG:32633", "EPSG:4326", shapely.geometry.mapping(shapely.segmentize(g, 50)))}
        for k, g in fields.items()]}
    (tmp_path / "fields.geojson").write_text(json.dumps(geojson))
    capsys.readouterr()
    assert main(["stats", str(tmp_path / "run"), "--aoi", str(tmp_path / "fields.geojson"), "--id-column", "name",
                 "-o", str(tmp_path / "table.csv"), "--plot", str(tmp_path / "plot.png"), "--buffer", "cloud=300"]) == 0
    table = pd.read_csv(tmp_path / "table.csv")
    assert list(table["area_id"]) == ["north", "south"] and (table["datetime"] == "2017-02-16T10:21:01Z").all()
    assert (table["product_id"] == "T33UUU_20170216T102101").all() and "usable" in table
    np.testing.assert_allclose(table[list(CLASS_NAMES)].sum(axis=1), 1.0)
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the STAC item written beside the map names the same map, as a file and as a pystac Item
    import pystac

    item_path = next((tmp_path / "run").glob("*_kappamask.json"))
    for source in (item_path, pystac.Item.from_file(str(item_path))):
        again = km.area_statistics(source, str(tmp_path / "fields.geojson"), id_column="name", buffers="cloud=300")
        pd.testing.assert_frame_equal(again[table.columns[3:]].reset_index(drop=True), table[table.columns[3:]],
                                      check_dtype=False)
        assert list(again["datetime"]) == list(table["datetime"]) and list(again["product_id"]) == list(
            table["product_id"])
    assert "2 rows (2 areas x 1 dates)" in capsys.readouterr().out
    assert main(["stats", str(tmp_path / "run"), "--aoi", str(tmp_path / "fields.geojson"), "--id-column", "name",
                 "-o", str(tmp_path / "table.parquet")]) == 0
    require("pyarrow")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "table.parquet"), table.drop(columns="usable"),
                                  check_dtype=False)
    assert main(["stats", str(tmp_path / "run"), "--aoi", str(tmp_path / "fields.geojson"),
                 "-o", str(tmp_path / "table.xlsx")]) == 2
    assert "CSV or Parquet" in capsys.readouterr().err and not (tmp_path / "table.xlsx").exists()


def test_the_command_line_finds_published_masks_in_a_stac_api_where_the_areas_are(tmp_path, capsys):
    """A search of a STAC API of published masks (--stac-api, --collection, --datetime), in the areas' bbox when
    none is given: the items' masks give the table the run folder gives."""
    import json

    import pandas as pd
    from helpers import fake_http
    from helpers.fake_http import Answer

    from kappamask_core.faces.cli import main
    from kappamask_core.io import DEMO_DATA

    require("pystac_client")
    assert main(["classify", str(DEMO_DATA), "-o", str(tmp_path / "run"), "--model", "default"]) == 0
    item = json.loads(next((tmp_path / "run").glob("*_kappamask.json")).read_text())
    for asset in item["assets"].values():  # as a published item holds them: absolute hrefs
        asset["href"] = str(tmp_path / "run" / asset["href"])
    item["links"] = []
    item["collection"] = "masks"
    searches = []

    def answer(request, server):
        path = request.path.split("?")[0].rstrip("/")
        if path in ("", "/conformance"):
            return Answer(body=fake_http.landing(server.url))
        if path == "/search":
            searches.append(request.json() or request.path)
            return Answer(body=fake_http.page([item]))
        return Answer(404, {"detail": "no such page"})

    server = fake_http.serve(answer)
    try:
        area = shapely.box(331000, 5819000, 333000, 5821000)
        from rasterio.warp import transform_geom

        geojson = {"type": "FeatureCollection", "features": [{"type": "Feature", "id": "north", "properties": {},
                   "geometry": transform_geom("EPSG:32633", "EPSG:4326", shapely.geometry.mapping(area))}]}
        (tmp_path / "areas.geojson").write_text(json.dumps(geojson))
        assert main(["stats", "--stac-api", server.url, "--collection", "masks", "--datetime", "2017-02-01/2017-02-28",
                     "--aoi", str(tmp_path / "areas.geojson"), "-o", str(tmp_path / "searched.csv")]) == 0
        assert main(["stats", str(tmp_path / "run"), "--aoi", str(tmp_path / "areas.geojson"),
                     "-o", str(tmp_path / "local.csv")]) == 0
    finally:
        server.stop()
    searched, local = pd.read_csv(tmp_path / "searched.csv"), pd.read_csv(tmp_path / "local.csv")
    pd.testing.assert_frame_equal(searched, local)
    (search,) = searches
    west, south, east, north = search["bbox"]  # the areas' bbox, in degrees
    assert 12.5 < west < east < 12.6 and 52.4 < south < north < 52.6
    assert search["collections"] == ["masks"] and search["datetime"].startswith("2017-02-01")
