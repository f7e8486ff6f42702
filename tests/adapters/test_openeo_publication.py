"""Publishing the processes: `kappamask openeo build --base-url` writes a tree in the openEO algorithm catalogue's
(ESA APEx) layout, checked here as the catalogue checks it: its own JSON schemas (tests/data/apex, unchanged),
the record path rule of its test_records.py, the relative provider and platform links, every link into the
publication answered by a file of it, and one benchmark scenario per process whose reference data are what the
catalogue downloads (``include_stac_metadata=True``: the GeoTIFF and ``job-results.json``), compared with the
comparison it runs (``openeo.testing.results.assert_job_results_allclose``)."""

from __future__ import annotations

import json
import sys
import zipfile

import numpy as np
import pytest
from helpers import ROOT, require

from kappamask_core.faces.cli import main

require("openeo", "jsonschema")


BASE = "https://example.org/kappamask/v0.1.0"
CODE = "https://example.org/kappamask-code"
ORG = "kappamask_team"
PIDS = ("kappamask_l1c", "kappamask_l2a", "kappamask_mask", "kappamask_composite")
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
        # sized from the measured peak of a worker (bundled model, a 3584 px chunk: 2552 MiB) x 2 workers x 1.5
        assert (options["executor-cores"], options["task-cpus"], options["python-memory"]) == (2, 1, "7700m")
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
        assert props["contacts"][0]["organization"] == "KappaMask team"
        assert props["cost_estimate"] > 0 and "CPU-seconds per km²" in props["cost_unit"]
        assert links["cite-as"]["href"] == "https://doi.org/10.3390/rs13204100"
        # the network is named where it is not KappaMask's (the bundled default is DLR's ukis-csmask)
        assert "ukis-csmask" in links["about"]["href"] and "not a KappaMask network" in links["about"]["title"]
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


def test_each_process_has_a_scenario_whose_reference_is_what_the_catalogue_downloads(published, tmp_path):
    """Reference and actual results written as download_results(include_stac_metadata=True) writes them pass the
    catalogue's comparison; a reference without job-results.json (the scenario as an earlier version wrote it)
    fails it with a file-set mismatch; and the tolerance is not vacuous."""
    require("openeo_processes_dask", "openeo_pg_parser_networkx", "rasterio")
    import jsonschema
    import rasterio
    from openeo.testing.results import assert_job_results_allclose

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from openeo_reference import job_results, scenario_folders

    found = list(scenario_folders(published))
    assert sorted(pid for pid, *_ in found) == sorted(PIDS)
    results = {}
    for pid, folder, spec, scenario in found:
        jsonschema.validate(scenario, schema("benchmark_scenario"))  # each scenario of the file
        (node,) = scenario["process_graph"].values()
        assert node["process_id"] == pid and node["namespace"] == f"{BASE}/algorithm_catalog/{ORG}/{pid}/openeo_udp/{pid}.json"
        expected = job_results(folder / "reference", spec, scenario)  # what a maintainer serves
        assert sorted(scenario["reference_data"]) == sorted(p.name for p in expected)
        assert "job-results.json" in scenario["reference_data"]
        for name, url in scenario["reference_data"].items():
            assert (published / url.removeprefix(BASE + "/")).is_file() and url.endswith(f"/reference/{name}")
        actual = job_results(tmp_path / pid / "actual", spec, scenario)  # what the catalogue's run downloads
        options = scenario["reference_options"]
        assert_job_results_allclose(actual[0].parent, expected[0].parent, **options)
        # the earlier scenario's reference: the GeoTIFF alone
        alone = tmp_path / pid / "tif_alone"
        alone.mkdir()
        (alone / expected[0].name).write_bytes(expected[0].read_bytes())
        with pytest.raises(AssertionError, match="File set mismatch"):
            assert_job_results_allclose(actual[0].parent, alone, **options)
        results[pid] = (actual, expected, options)
    # not vacuous: a class map with one class changed on 10 % of its pixels fails
    actual, expected, options = results["kappamask_l1c"]
    with rasterio.open(actual[0], "r+") as ds:
        values = ds.read(1)
        changed = np.random.default_rng(0).random(values.shape) < 0.10
        values[changed] = np.where(values[changed] == 1, 4, 1)
        ds.write(values, 1)
    with pytest.raises(AssertionError, match="significantly differing pixels"):
        assert_job_results_allclose(actual[0].parent, expected[0].parent, **options)


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
                 "--archive-model", "ukis-csmask-4b-l1c", "--onnxruntime-wheel", str(onnxruntime_wheel)]) == 2
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


def test_openeo_build_for_a_one_level_model_writes_only_its_processes(tmp_path, caplog):
    require("openeo")
    with caplog.at_level("WARNING"):
        assert main(["openeo", "build", str(tmp_path / "pg"), "--model", "ukis-csmask-6b-l1c"]) == 0
    assert sorted(p.name for p in (tmp_path / "pg").iterdir()) == ["kappamask_l1c.json"]
    assert "kappamask_l2a, kappamask_mask, kappamask_composite not written" in caplog.text
