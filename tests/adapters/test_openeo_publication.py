"""Publishing the processes: `kappamask openeo build --base-url` writes a tree in the openEO algorithm catalogue's
(ESA APEx) layout, checked here as the catalogue checks it: its own JSON schemas (tests/data/apex, unchanged),
the record path rule of its test_records.py, the relative provider and platform links, every link into the
publication answered by a file of it, and one benchmark scenario per process whose reference data are what the
catalogue downloads (``include_stac_metadata=True``: the GeoTIFF and ``job-results.json``), compared with the
comparison it runs (``openeo.testing.results.assert_job_results_allclose``)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from helpers import ROOT, require

from kappamask_core import __version__
from kappamask_core.faces.cli import main

require("openeo", "jsonschema")


BASE = "https://example.org/kappamask/v0.1.0"
CODE = "https://example.org/kappamask-code"
ORG = "kappamask_team"
PIDS = ("kappamask_l1c", "kappamask_l2a", "kappamask_mask", "kappamask_composite", "kappamask_stats")
SCHEMAS = ROOT / "tests" / "data" / "apex"


@pytest.fixture(scope="module")
def published(tmp_path_factory, request):
    from kappamask_core.faces.cli import main

    wheel = request.getfixturevalue("onnxruntime_wheel")
    out = tmp_path_factory.mktemp("published")
    assert main(["openeo", "build", str(out), "--base-url", BASE, "--code-url", CODE, "--org-id", ORG,
                 "--archive-model", "ukis-csmask-4b-l1c", "--onnxruntime-wheel", str(wheel), "--contact-name",
                 "A. Maintainer", "--organization", "KappaMask team", "--contact-email",
                 "maintainer@example.org"]) == 0
    return out


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.json").read_text())


def test_the_tree_has_the_catalogues_layout_and_the_processes_name_their_archive(published):
    from kappamask_core.io.files import sha256_file

    digest = sha256_file(published / "kappamask_udf_deps.zip")
    with zipfile.ZipFile(published / "kappamask_udf_deps.zip") as zf:
        assert {"kappamask_core/faces/datacube.py", "onnxruntime/__init__.py", "models/model_4b_l1c.onnx"} <= set(
            zf.namelist())
    assert (published / "algorithm_catalog" / ORG / "record.json").is_file()
    for pid in PIDS:
        folder = published / "algorithm_catalog" / ORG / pid
        assert {p.name for p in folder.iterdir()} >= {"openeo_udp", "records", "benchmark_scenarios"}
        spec = json.loads((folder / "openeo_udp" / f"{pid}.json").read_text())
        options = spec["default_job_options"]
        assert options["udf-dependency-archives"] == [f"{BASE}/kappamask_udf_deps.zip#kappamask_deps"]
        # sized from the measured peak address space of a worker (bundled model, a 3584 px chunk: 3298 MiB) x 1.25,
        # rounded up to 100 MiB, x 2 workers
        assert (options["executor-cores"], options["task-cpus"], options["python-memory"]) == (2, 1, "8400m")
        assert "executor-memoryOverhead" not in options
        text = json.dumps(spec["process_graph"])
        assert f'"dependency_archive": "{BASE}/kappamask_udf_deps.zip"' in text and digest in text
        assert all("default" in p for p in spec["parameters"])  # runs with no arguments


def test_records_pass_the_catalogues_own_checks(published):
    import jsonschema

    jsonschema.validate(json.loads((published / "algorithm_catalog" / ORG / "record.json").read_text()),
                        schema("provider"))
    records = sorted(published.glob("algorithm_catalog/*/*/records/*.json"))
    assert [p.stem for p in records] == sorted(PIDS)
    for path in records:
        record = json.loads(path.read_text())
        # test_records.py: the record lies at */{id}/records/{id}.json, and validates against the schema
        assert path.as_posix().endswith(f"{record['id']}/records/{record['id']}.json")
        jsonschema.validate(record, schema("record"))
        props, links = record["properties"], {link["rel"]: link for link in record["links"]}
        abouts = [link for link in record["links"] if link["rel"] == "about"]
        assert props["contacts"][0]["organization"] == "KappaMask team"
        # the catalogue's cost in its usual unit, with the rule it was made by
        assert 0 < props["cost_estimate"] < 1 and props["cost_unit"].startswith("platform credits per km²")
        assert "credits per CPU-hour" in props["cost_unit"] and "GB-hour" in props["cost_unit"]
        assert links["cite-as"]["href"] == "https://doi.org/10.3390/rs13204100"
        # the Documentation button (the first 'about' link) and the code, at the released version's tag
        assert abouts[0]["href"] == f"{CODE}/blob/v{__version__}/docs/guide/openeo.md"
        assert links["code"]["href"] == f"{CODE}/tree/v{__version__}"
        assert links["thumbnail"]["type"] == "image/png"
        # the network is named where it is not KappaMask's (the bundled default is DLR's ukis-csmask)
        assert "ukis-csmask" in abouts[1]["href"] and "not a KappaMask network" in abouts[1]["title"]
        assert "ukis-csmask" in props["title"] or "ukis" in props["title"].lower()
        # every link into the publication is answered by a file of it; relative ones point where the catalogue
        # keeps the provider and the platform records
        for link in record["links"]:
            href = link["href"]
            if href.startswith(BASE):
                assert (published / href.removeprefix(BASE + "/")).is_file(), href
            elif not href.startswith("https://"):
                target = (path.parent / href).resolve()
                assert target.relative_to(published.resolve()).parts[0] in ("algorithm_catalog",
                                                                            "platform_catalog"), href
        assert (path.parent / links["provider"]["href"]).resolve() == (
            published / "algorithm_catalog" / ORG / "record.json").resolve()
        has_preview = (path.parent / "preview.png").is_file()
        assert has_preview == ("preview" in links) == (record["id"] == "kappamask_l1c")


def test_each_process_has_a_scenario_without_a_reference_until_one_is_recorded(published):
    import jsonschema

    from kappamask_udf.benchmark import scenarios

    found = scenarios(published)
    assert sorted(scenario["id"] for _, scenario in found) == sorted(PIDS)
    for path, scenario in found:
        jsonschema.validate(scenario, schema("benchmark_scenario"))
        (node,) = scenario["process_graph"].values()
        pid = scenario["id"]
        assert node["process_id"] == pid and node["namespace"] == f"{BASE}/algorithm_catalog/{ORG}/{pid}/openeo_udp/{pid}.json"
        assert "reference_data" not in scenario and "No reference yet" in scenario["description"]
        assert not (path.parents[1] / "reference").exists()


def _local_runs(published, calls):
    """What the fake backend's jobs run: the scenario's call of the process from its namespace (the published JSON),
    executed on the tests' backend, written as a GTiff batch job's results."""
    from helpers import openeo_backend as backend

    def run(process_graph, job_options):
        (node,) = process_graph.values()
        spec = json.loads((published / node["namespace"].removeprefix(BASE + "/")).read_text())
        calls.append((node["process_id"], job_options))
        folder = published.parent / f"run-{len(calls)}"
        backend.write_job_results(folder, spec, node["arguments"])
        return folder

    return run


def test_a_reference_is_recorded_from_what_the_backend_returns_and_later_runs_are_compared_with_it(
        published, tmp_path, capsys, monkeypatch):
    """`kappamask openeo benchmark --record` runs the scenario as a batch job on a backend (here a fake openEO API
    whose jobs run on the tests' backend), writes what it downloads as the reference and names it in the scenario;
    a later run compares with it as the catalogue does; a changed reference fails; a failed job fails in one line and
    writes nothing; the password goes to the backend only."""
    require("openeo_processes_dask", "openeo_pg_parser_networkx", "rasterio")
    import shutil

    import jsonschema
    import rasterio
    from helpers.fake_openeo import PASSWORD, USER, serve_jobs

    copy = tmp_path / "published"
    shutil.copytree(published, copy)
    calls = []
    server = serve_jobs(_local_runs(copy, calls))
    monkeypatch.setenv("KAPPAMASK_OPENEO_PASSWORD", PASSWORD)
    base = ["openeo", "benchmark", str(copy), "--backend", server.url, "--auth", "basic", "--user", USER,
            "--process", "kappamask_l1c"]
    try:
        assert main(base + ["--record"]) == 0
        folder = copy / "algorithm_catalog" / ORG / "kappamask_l1c"
        (scenario,) = json.loads((folder / "benchmark_scenarios" / "kappamask_l1c.json").read_text())
        jsonschema.validate(scenario, schema("benchmark_scenario"))
        names = sorted(p.name for p in (folder / "reference").iterdir())
        assert names == sorted(scenario["reference_data"]) == ["job-results.json", "openEO_2017-02-16Z.tif"]
        for name, url in scenario["reference_data"].items():
            assert url == f"{BASE}/algorithm_catalog/{ORG}/kappamask_l1c/reference/{name}"
        assert f"on {server.url}" in scenario["description"] and "No reference yet" not in scenario["description"]
        assert calls[0][0] == "kappamask_l1c"
        derived = json.loads((folder / "reference" / "job-results.json").read_text())["links"]
        assert [link["href"] for link in derived if link["rel"] == "derived_from"] == ["T33UUU_20170216T102101"]
        # a later run: compared with the reference, as the catalogue compares
        assert main(base) == 0
        assert "kappamask_l1c: the results match the reference" in capsys.readouterr().out
        # not vacuous: a reference with one class changed on 10 % of its pixels fails
        with rasterio.open(folder / "reference" / "openEO_2017-02-16Z.tif", "r+") as ds:
            values = ds.read(1)
            changed = np.random.default_rng(0).random(values.shape) < 0.10
            values[changed] = np.where(values[changed] == 1, 4, 1)
            ds.write(values, 1)
        assert main(base) == 1
        assert "differ from the reference" in capsys.readouterr().out
        # a job that fails: one line, exit 2, the scenario and its reference untouched
        before = (folder / "benchmark_scenarios" / "kappamask_l1c.json").read_bytes()
        server.jobs.clear()
        failing = serve_jobs(lambda graph, options: (_ for _ in ()).throw(RuntimeError("executor lost")))
        try:
            code = main(["openeo", "benchmark", str(copy), "--backend", failing.url, "--auth", "basic", "--user",
                         USER, "--process", "kappamask_l1c", "--record"])
        finally:
            failing.stop()
        err = capsys.readouterr().err
        assert code == 2 and "the backend's job failed" in err and len(err.strip().splitlines()) == 1
        assert (folder / "benchmark_scenarios" / "kappamask_l1c.json").read_bytes() == before
    finally:
        server.stop()
    # a login never goes over plain http to another machine: refused before anything is sent
    assert main(["openeo", "benchmark", str(copy), "--backend", "http://backend.example.org", "--auth", "basic",
                 "--user", USER]) == 2
    assert "a login goes over https only" in capsys.readouterr().err
    # the password went to the backend's credentials endpoint only, and into no output
    sent = [r for r in server.requests if "Authorization" in r.headers and r.headers["Authorization"].startswith("Basic")]
    assert sent and all(r.path == "/credentials/basic" for r in sent)
    out = capsys.readouterr()
    assert PASSWORD not in out.out + out.err


@pytest.mark.parametrize("args,message", [
    (["--base-url", "http://example.org/x", "--code-url", CODE], "--base-url must be an https:// URL"),
    (["--base-url", BASE], "--base-url needs --code-url"),
    (["--code-url", CODE], "--code-url belongs to a publication"),
    (["--base-url", BASE, "--code-url", CODE, "--org-id", "Bad Org"], "organization id"),
    (["--base-url", "https://user:pw-s3cret@example.org/km", "--code-url", CODE], "must not hold a user or password"),
    (["--base-url", "https://example.org/km?token=pw-s3cret", "--code-url", CODE], "must not hold a query string"),
    (["--base-url", "https://example.org/km#view", "--code-url", CODE], "must not hold a fragment"),
    (["--base-url", "https://", "--code-url", CODE], "names no host"),
    (["--base-url", "https://example.org/k m", "--code-url", CODE], "holds a space"),
    (["--base-url", BASE, "--code-url", "https://bob:pw-s3cret@git.example/km"], "must not hold a user or password"),
    (["--base-url", BASE, "--code-url", 'https://git.example/"km"'], "which a URL cannot hold"),
    (["--base-url", BASE, "--code-url", "https://git.example/km\r\n"], "which a URL cannot hold"),
    (["--base-url", "https://example.org/kappamask/latest", "--code-url", CODE, "--contact-email", "a@example.org"],
     "does not name the released version"),
    (["--base-url", BASE, "--code-url", CODE], "--contact-email is needed"),
    (["--base-url", BASE, "--code-url", CODE, "--contact-email", "a@example.org", "--onnx-deps",
      "--onnxruntime-wheel", "x.whl"], "give no --onnxruntime-wheel"),
])
def test_bad_publication_arguments_are_one_line_and_write_nothing(tmp_path, capsys, args, message):
    from kappamask_core.faces.cli import main

    assert main(["openeo", "build", str(tmp_path / "out"), *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "pw-s3cret" not in captured.err + captured.out
    assert not (tmp_path / "out").exists()


def test_building_onto_a_file_is_refused(tmp_path, capsys):
    from kappamask_core.faces.cli import main

    target = tmp_path / "taken.json"
    target.write_text("{}")
    assert main(["openeo", "build", str(target)]) == 2
    assert "is a file; name a folder" in capsys.readouterr().err and target.read_text() == "{}"


def test_a_publication_that_fails_midway_leaves_nothing(tmp_path, capsys, monkeypatch, onnxruntime_wheel):
    from kappamask_udf import catalogue

    from kappamask_core.faces.cli import main

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(catalogue, "benchmark_scenario", broken)
    assert main(["openeo", "build", str(tmp_path / "out"), "--base-url", BASE, "--code-url", CODE,
                 "--archive-model", "ukis-csmask-4b-l1c", "--onnxruntime-wheel", str(onnxruntime_wheel),
                 "--contact-email", "a@example.org"]) == 2
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


def test_with_onnx_deps_the_archive_is_small_and_jobs_take_onnxruntime_from_the_hosted_one(tmp_path):
    from kappamask_udf.processes import HOSTED_ONNX_DEPS

    out = tmp_path / "out"
    assert main(["openeo", "build", str(out), "--base-url", BASE, "--code-url", CODE, "--org-id", ORG,
                 "--archive-model", "ukis-csmask-4b-l1c", "--contact-email", "a@example.org", "--onnx-deps"]) == 0
    with zipfile.ZipFile(out / "kappamask_udf_deps.zip") as zf:
        names = zf.namelist()
    assert "kappamask_core/faces/datacube.py" in names and not any(n.startswith("onnxruntime/") for n in names)
    spec = json.loads((out / "algorithm_catalog" / ORG / "kappamask_l1c" / "openeo_udp" / "kappamask_l1c.json")
                      .read_text())
    assert spec["default_job_options"]["udf-dependency-archives"] == [
        f"{BASE}/kappamask_udf_deps.zip#kappamask_deps", f"{HOSTED_ONNX_DEPS}#onnx_deps"]


def test_openeo_build_for_a_one_level_model_writes_only_its_processes(tmp_path, caplog):
    require("openeo")
    with caplog.at_level("WARNING"):
        assert main(["openeo", "build", str(tmp_path / "pg"), "--model", "ukis-csmask-6b-l1c"]) == 0
    assert sorted(p.name for p in (tmp_path / "pg").iterdir()) == ["kappamask_l1c.json"]
    assert "kappamask_l2a, kappamask_mask, kappamask_composite, kappamask_stats not written" in caplog.text
