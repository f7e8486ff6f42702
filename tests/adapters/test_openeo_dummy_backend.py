"""The published user-defined processes on an openEO backend: openeo-driver's dummy backend on 127.0.0.1.

What this proves, on openeo-python-driver's own code: the processes are stored, listed and read back
unchanged; a call by id and a call from a URL namespace load the card's bands with the caller's extents and
hand apply_neighborhood the chunk sizes and the context the UDF needs, with the caller's options resolved
inside it (the driver resolves references nested in objects); and which job options a batch job gets. The
dummy backend's cubes are mocks: nothing is executed here, so a broken UDF would pass; execution is
tests/adapters/test_openeo_execution.py's.

openeo-driver pins pystac 1.8, which this package does not accept, so it lives in an environment of its own:
the one named by KAPPAMASK_OPENEO_DRIVER_PYTHON, or a virtual environment this test creates once in the
user cache folder. tests/helpers/dummy_backend_session.py runs there (backend, a file server for the processes as
a URL namespace, the openEO client) and reports what the backend did; the assertions are made here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from helpers import ROOT, STRICT_ENV
from kappamask_udf.processes import (
    CDSE_UNITS,
    CHUNK,
    COLLECTIONS,
    MASK_OUTPUT,
    OVERLAP,
    TASK_CPUS,
    TIME_STEP,
    UDF_PYTHON,
    Publication,
    merge_job_options,
    write_templates,
)

from kappamask_core.foundation.bands import BANDS
from kappamask_core.models.resolve import resolve_card

OPENEO_DRIVER = "openeo-driver==0.136.0a4"
PUBLICATION = Publication("https://example.org/kappamask", "0" * 64)


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
            if os.environ.get(STRICT_ENV):  # CI installs from the package registry: a failure there is a failure
                pytest.fail(f"{OPENEO_DRIVER} cannot be installed: {lines[-1]}")
            pytest.skip(f"{OPENEO_DRIVER} cannot be installed here: {lines[-1]}")
        (env / "installed").write_text(OPENEO_DRIVER + "\n")
    return python

# another catalogue process that sets job options of its own (as APEx processes with a dependency archive do)
OTHER_UDP = {"id": "other_ndvi", "process_graph": {"ndvi1": {"process_id": "ndvi", "arguments": {
    "data": {"from_parameter": "data"}}, "result": True}},
    "parameters": [{"name": "data", "description": "a cube", "schema": {"type": "object", "subtype": "datacube"}}],
    "default_job_options": {"udf-dependency-archives": ["https://example.org/other.zip#other_deps"],
                            "executor-memory": "4G"}}


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """The processes as `kappamask openeo build --base-url` writes them (no archive needed for the graphs)."""
    folder = tmp_path_factory.mktemp("published")
    write_templates(folder, publication=PUBLICATION)
    return folder


@pytest.fixture(scope="module")
def specs(published) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in sorted(published.glob("*.json"))}


@pytest.fixture(scope="module")
def report(published, tmp_path_factory) -> dict:
    if sys.platform == "win32":
        pytest.skip("the session script serves on 127.0.0.1 with POSIX paths")
    python = _driver_python()
    bands = {cid: [b.name for b in BANDS if level in b.levels] for level, cid in COLLECTIONS.items()}
    collections = tmp_path_factory.mktemp("dummy") / "collections.json"
    collections.write_text(json.dumps(bands))
    composition = collections.with_name("composition.json")
    ours = json.loads((published / "kappamask_mask.json").read_text())["default_job_options"]
    composition.write_text(json.dumps({"other": OTHER_UDP, "folder": str(published),
                                       "explicit": merge_job_options(ours, OTHER_UDP["default_job_options"])}))
    run = subprocess.run([str(python), str(ROOT / "tests" / "helpers" / "dummy_backend_session.py"), str(published),
                          str(collections), str(composition)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def test_processes_are_stored_listed_and_read_back_unchanged(report, specs):
    assert report["listed"] == sorted(specs)
    for pid in specs:
        stored = report["processes"][pid]["stored"]
        assert stored["graph_equal"] and stored["parameters_equal"], pid


@pytest.mark.parametrize("way", ["by_id", "by_url"])
def test_a_call_loads_the_cards_bands_and_hands_the_udf_its_context(report, specs, way):
    for pid, spec in specs.items():
        entry = report["processes"][pid][way]
        evaluated, args = entry["evaluated"], entry["arguments"]
        level = "L1C" if pid == "kappamask_l1c" else "L2A"
        options_default = next(p["default"] for p in spec["parameters"] if p["name"] == "options")
        card = resolve_card(options_default["model"], level)
        loads = evaluated["loads"]
        assert loads[0]["collection"] == COLLECTIONS[level]
        assert loads[0]["bands"] == list(card.bands)
        for load in loads:
            assert load["temporal_extent"] == args["temporal_extent"]
            assert {k: load["spatial_extent"][k] for k in args["spatial_extent"]} == args["spatial_extent"]
        if pid in ("kappamask_mask", "kappamask_composite"):  # the masked bands: the 'bands' parameter's default
            assert loads[1]["bands"] == spec["parameters"][2]["default"]
        (neighborhood,) = evaluated["apply_neighborhood"]
        assert {s["dimension"]: s["value"] for s in neighborhood["size"]} == {"x": CHUNK, "y": CHUNK, "t": TIME_STEP}
        assert [s["value"] for s in neighborhood["overlap"]] == [OVERLAP, OVERLAP]
        # the caller's options (their default when not given) resolved inside the context, beside the archive,
        # the level of the collection the process loads and, for masking, the output the process sets itself
        expected = {"options": args.get("options", options_default), "level": level, "threads": TASK_CPUS,
                    "units": CDSE_UNITS, "dependency_archive": PUBLICATION.archive_url,
                    "dependency_sha256": PUBLICATION.archive_sha256}
        if level == "L1C":  # the L1C offset, a parameter of its own (default 0), resolved beside the options
            expected["offset"] = next(p["default"] for p in spec["parameters"] if p["name"] == "offset")
        if pid in ("kappamask_mask", "kappamask_composite"):
            expected["output"] = MASK_OUTPUT
        if pid == "kappamask_stats":  # the statistics count the classes, whatever output the caller asks for
            expected["output"] = "classes"
        assert neighborhood["context"] == expected
        (node,) = neighborhood["process"].values()
        assert node["process_id"] == "run_udf"
        assert node["arguments"]["version"] == UDF_PYTHON
        assert node["arguments"]["context"] == {"from_parameter": "context"}
        assert node["arguments"]["udf"] == (ROOT / "udf" / "kappamask_udf.py").read_text()
        assert evaluated["result_bytes"] > 0


def test_default_job_options_reach_a_job_only_from_a_url_namespace(report, specs):
    """The facts the openEO guide's job-options paragraph rests on, on openeo-driver as it is."""
    explicit = report["explicit_job_options"]
    for pid, spec in specs.items():
        entry = report["processes"][pid]
        defaults = spec["default_job_options"]
        assert defaults["udf-dependency-archives"] == [f"{PUBLICATION.archive_url}#kappamask_deps"]
        assert entry["stored"]["default_job_options"] is None  # save_user_defined_process does not keep them
        assert entry["by_id"]["job_options"] is None
        assert entry["by_id"]["job_options_explicit"] == explicit
        assert entry["by_url"]["job_options"] == defaults
        # the backend merges shallowly: the caller's archive list replaces ours ...
        assert entry["by_url"]["job_options_explicit"] == {**defaults, **explicit}
        # ... which merge_job_options avoids: both archives, the caller's other options too
        merged = merge_job_options(defaults, explicit)
        assert merged["udf-dependency-archives"] == (defaults["udf-dependency-archives"]
                                                      + explicit["udf-dependency-archives"])
        assert merged["python-memory"] == defaults["python-memory"]


def test_composition_with_another_process_that_sets_job_options(report, specs):
    """openeo-python-driver refuses a job whose graph calls two processes with default_job_options by URL; the way
    the openEO guide gives works: kappamask_mask stored in the user's account and called by id, the other by URL,
    with merge_job_options of both passed explicitly. The job then carries both archives and both settings."""
    composition = report["composition"]
    assert "Merging multiple default job options" in composition["both_by_url"]
    stored = composition["ours_by_id"]["job_options"]
    ours, theirs = specs["kappamask_mask"]["default_job_options"], OTHER_UDP["default_job_options"]
    assert stored["udf-dependency-archives"] == ours["udf-dependency-archives"] + theirs["udf-dependency-archives"]
    assert stored["python-memory"] == ours["python-memory"] and stored["executor-memory"] == "4G"
