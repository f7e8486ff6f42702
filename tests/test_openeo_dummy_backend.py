"""The user-defined processes on an openEO backend: openeo-driver's dummy backend on 127.0.0.1.

openeo-driver pins pystac 1.8, which this package does not accept, so it lives in an environment of its own:
the one named by KAPPAMASK_OPENEO_DRIVER_PYTHON, or a virtual environment this test creates once in the
user cache folder. tests/dummy_backend_session.py runs there (backend, a file server for process_graphs/ as
a URL namespace, the openEO client) and reports what the backend did; the assertions are made here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from conftest import ROOT
from kappamask_core.bands import BANDS
from kappamask_core.cards import resolve_card
from udf.openeo_build import CHUNK, COLLECTIONS, OVERLAP, UDF_PYTHON

OPENEO_DRIVER = "openeo-driver==0.136.0a4"
PG_DIR = ROOT / "process_graphs"


def _driver_python() -> Path:
    given = os.environ.get("KAPPAMASK_OPENEO_DRIVER_PYTHON")
    if given:
        return Path(given)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    env = cache / "kappamask-tests" / OPENEO_DRIVER.replace("==", "-")
    python = env / "bin" / "python"
    if not (env / "installed").exists():
        venv.create(env, with_pip=True, clear=True)
        pip = subprocess.run([str(python), "-m", "pip", "install", "-q", OPENEO_DRIVER],
                             capture_output=True, text=True, timeout=900)
        if pip.returncode != 0:
            lines = (pip.stderr or pip.stdout).strip().splitlines() or ["no output"]
            pytest.skip(f"{OPENEO_DRIVER} cannot be installed here: {lines[-1]}")
        (env / "installed").write_text(OPENEO_DRIVER + "\n")
    return python


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    if sys.platform == "win32":
        pytest.skip("the session script serves on 127.0.0.1 with POSIX paths")
    python = _driver_python()
    bands = {cid: [b.name for b in BANDS if level in b.levels] for level, cid in COLLECTIONS.items()}
    collections = tmp_path_factory.mktemp("dummy") / "collections.json"
    collections.write_text(json.dumps(bands))
    run = subprocess.run([str(python), str(ROOT / "tests" / "dummy_backend_session.py"), str(PG_DIR),
                          str(collections)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


SPECS = {p.stem: json.loads(p.read_text()) for p in sorted(PG_DIR.glob("*.json"))}


def test_processes_are_stored_listed_and_read_back_unchanged(report):
    assert report["listed"] == sorted(SPECS)
    for pid in SPECS:
        stored = report["processes"][pid]["stored"]
        assert stored["graph_equal"] and stored["parameters_equal"], pid


@pytest.mark.parametrize("way", ["by_id", "by_url"])
def test_a_call_loads_the_cards_bands_and_runs_the_udf_in_chunks(report, way):
    for pid, spec in SPECS.items():
        entry = report["processes"][pid][way]
        evaluated, args = entry["evaluated"], entry["arguments"]
        level = "L1C" if pid == "kappamask_l1c" else "L2A"
        card = resolve_card(spec["parameters"][-1]["default"]["model"], level)
        loads = evaluated["loads"]
        assert loads[0]["collection"] == COLLECTIONS[level]
        assert loads[0]["bands"] == list(card.bands)
        for load in loads:
            assert load["temporal_extent"] == args["temporal_extent"]
            assert {k: load["spatial_extent"][k] for k in args["spatial_extent"]} == args["spatial_extent"]
        if pid == "kappamask_mask":  # the masked bands: the 'bands' parameter's default
            assert loads[1]["bands"] == spec["parameters"][2]["default"]
        (neighborhood,) = evaluated["apply_neighborhood"]
        assert [s["value"] for s in neighborhood["size"]] == [CHUNK, CHUNK]
        assert [s["value"] for s in neighborhood["overlap"]] == [OVERLAP, OVERLAP]
        # the options parameter reaches the UDF context: its default when not given, else the caller's object
        expected = args.get("options", spec["parameters"][-1]["default"])
        assert neighborhood["context"] == expected
        (node,) = neighborhood["process"].values()
        assert node["process_id"] == "run_udf"
        assert node["arguments"]["version"] == UDF_PYTHON
        assert node["arguments"]["context"] == {"from_parameter": "context"}
        assert node["arguments"]["udf"] == (ROOT / "udf" / "kappamask_udf.py").read_text()
        assert evaluated["result_bytes"] > 0


def test_default_job_options_reach_a_job_only_from_a_url_namespace(report):
    """The fact README's 'Job options' paragraph rests on, on openeo-driver as it is."""
    explicit = report["explicit_job_options"]
    for pid, spec in SPECS.items():
        entry = report["processes"][pid]
        defaults = spec["default_job_options"]
        assert defaults["udf-dependency-archives"][0].endswith("#kappamask_deps")
        assert entry["stored"]["default_job_options"] is None  # save_user_defined_process does not keep them
        assert entry["by_id"]["job_options"] is None
        assert entry["by_id"]["job_options_explicit"] == explicit
        assert entry["by_url"]["job_options"] == defaults
        assert entry["by_url"]["job_options_explicit"] == {**defaults, **explicit}  # explicit options win
