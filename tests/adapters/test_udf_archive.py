"""The dependency archive carries the models (imported networks, faithful variants) and the UDF runs them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.variants import blocks_cube, level

from kappamask_core import ClassifyOptions
from kappamask_core.faces.cli import main
from kappamask_core.faces.quantize import make_variant


def test_precision_reaches_the_udf_and_the_archive_carries_the_faithful_variant(parent, tmp_path):
    import zipfile

    from kappamask_udf.archive import build_archive

    from kappamask_core.faces.datacube import classify_datacube

    made = make_variant(str(parent), calibrate=[level(blocks_cube(1))], check=[level(blocks_cube(2))])
    cube = blocks_cube(6).expand_dims(t=[np.datetime64("2020-01-01")])
    for precision in ("auto", "fp32", "int8"):
        out = classify_datacube(cube, model=str(parent), level="L1C", options=ClassifyOptions(precision=precision))
        assert out.sizes["bands"] == 1 and int(out.max()) in (1, 2, 4)
    with pytest.raises(Exception, match="precision"):
        ClassifyOptions(precision="int4")

    archive, _, _ = build_archive(tmp_path / "deps.zip", models=[str(parent)])
    names = zipfile.ZipFile(archive).namelist()
    assert "models/conv-test-int8.onnx" in names and "models/conv-test-int8.json" in names
    packed = json.loads(zipfile.ZipFile(archive).read("models/conv-test-int8.json"))
    assert packed["variant"]["check"]["faithful"] is True
    assert packed["weights"]["sha256"] == json.loads(made.card_path.read_text())["weights"]["sha256"]


def test_dependency_archive_carries_the_imported_network_and_the_udf_picks_it(imported, tmp_path, monkeypatch):
    import os
    import subprocess
    import sys
    import zipfile

    from helpers import ROOT

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
from kappamask_core.models import runners as infer
import os
print([runner.card.source for runner in infer.PROCESS_RUNNERS][0])
print(out.get_datacube_list()[0].get_array().shape, "KAPPAMASK_WEIGHTS_DIR" in os.environ)
"""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KAPPAMASK_WEIGHTS_DIR")}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path / "work", capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    card_source, shape = proc.stdout.strip().splitlines()
    assert card_source == str((tmp_path / "work" / "kappamask_deps" / "models" / "kappamask-v2-l1c.json").resolve())
    assert shape == "(1, 1, 64, 64) False" and "marked untrained" in proc.stderr  # the environment is left alone
