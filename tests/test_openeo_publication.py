"""Publishing the processes: `kappamask openeo build --base-url` writes what the openEO algorithm catalogue (ESA APEx)
takes: the processes naming their archive, the archive itself, an OGC API Records entry per process and a
benchmark scenario whose reference output the catalogue's own comparison (openeo.testing.results) accepts.

The record and scenario checks restate the catalogue's published rules (its schemas/record.json and
schemas/benchmark_scenario.json): required fields, the allowed link relations, and the relative links to the
provider's record and the platform catalogue.
"""

from __future__ import annotations

import json
import re
import zipfile

import numpy as np
import pytest

from conftest import require

require("openeo")

BASE = "https://example.org/kappamask/v0.1.0"
CODE = "https://example.org/kappamask-code"
LINK_RELATIONS = {"platform", "provider", "application", "service", "example-output", "example-input", "preview",
                  "order", "license", "about", "webapp", "code", "thumbnail", "cite-as", "notebook"}


@pytest.fixture(scope="module")
def published(tmp_path_factory, request):
    from kappamask_core.faces.cli import main

    wheel = request.getfixturevalue("onnxruntime_wheel")
    out = tmp_path_factory.mktemp("published")
    assert main(["openeo", "build", str(out), "--base-url", BASE, "--code-url", CODE, "--archive-model",
                 "ukis-csmask-4b-l1c", "--onnxruntime-wheel", str(wheel), "--contact-name", "A. Maintainer",
                 "--contact-email", "maintainer@example.org"]) == 0
    return out


from test_udf import onnxruntime_wheel  # noqa: E402,F401  (the cached wheel fixture)


def test_the_processes_name_the_archive_they_come_with(published):
    from kappamask_core.io.files import sha256_file

    digest = sha256_file(published / "kappamask_udf_deps.zip")
    with zipfile.ZipFile(published / "kappamask_udf_deps.zip") as zf:
        assert {"kappamask_core/faces/datacube.py", "onnxruntime/__init__.py", "models/model_4b_l1c.onnx"} <= set(
            zf.namelist())
    for pid in ("kappamask_l1c", "kappamask_l2a", "kappamask_mask"):
        spec = json.loads((published / f"{pid}.json").read_text())
        assert spec["default_job_options"]["udf-dependency-archives"] == [f"{BASE}/kappamask_udf_deps.zip#kappamask_deps"]
        text = json.dumps(spec["process_graph"])
        assert f'"dependency_archive": "{BASE}/kappamask_udf_deps.zip"' in text and digest in text
        assert all("default" in p for p in spec["parameters"])  # runs with no arguments


def test_records_follow_the_catalogue_rules(published):
    for pid in ("kappamask_l1c", "kappamask_l2a", "kappamask_mask"):
        record = json.loads((published / "records" / f"{pid}.json").read_text())
        assert record["id"] == pid and record["type"] == "Feature" and record["geometry"] is None
        assert {"https://www.opengis.net/spec/ogcapi-records-1/1.0/req/record-core",
                "https://apex.esa.int/core/openeo-udp"} <= set(record["conformsTo"])
        props = record["properties"]
        assert {"created", "updated", "type", "title", "description", "contacts", "themes", "formats"} <= set(props)
        assert props["type"] == "service" and props["license"] == "Apache-2.0" and "Sentinel-2" in props["keywords"]
        assert all({"name", "roles"} <= set(c) for c in props["contacts"])
        assert props["contacts"][0]["emails"] == [{"value": "maintainer@example.org"}]
        assert all({"concepts", "scheme"} <= set(t) for t in props["themes"])
        links = {link["rel"]: link for link in record["links"]}
        assert all({"rel", "type", "title", "href"} <= set(link) for link in record["links"])
        assert set(links) <= LINK_RELATIONS and {"service", "application", "provider", "platform"} <= set(links)
        assert links["application"]["href"] == f"{BASE}/{pid}.json" and links["code"]["href"] == CODE
        assert re.fullmatch(r"(?:\.\./){4}platform_catalog/[^\s]+\.json", links["platform"]["href"])
        assert re.fullmatch(r"(?:\.\./){2}record\.json", links["provider"]["href"])
        assert links["preview"]["href"] == f"{BASE}/reference/preview.png"


def test_the_benchmark_scenario_and_its_reference_work_with_the_catalogue_comparison(published, tmp_path):
    require("openeo_processes_dask", "openeo_pg_parser_networkx")
    import rasterio
    from openeo.testing.results import assert_job_results_allclose

    import sys

    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from openeo_reference import reference

    (scenario,) = json.loads((published / "benchmark_scenarios" / "kappamask.json").read_text())
    assert {"id", "type", "backend", "process_graph", "reference_data", "reference_options"} == set(scenario) - {
        "description"}
    (node,) = scenario["process_graph"].values()
    assert node["process_id"] == "kappamask_l1c" and node["namespace"] == f"{BASE}/kappamask_l1c.json"
    (name, url), = scenario["reference_data"].items()
    assert url == f"{BASE}/reference/{name}"
    expected = reference(tmp_path / "expected", published)
    actual = reference(tmp_path / "actual", published)
    assert [p.name for p in expected] == [name, "preview.png"]
    options = scenario["reference_options"]
    for folder in ("expected", "actual"):  # compare the data files, as the catalogue compares job results
        (tmp_path / folder / "reference" / "preview.png").unlink()
    assert_job_results_allclose(tmp_path / "actual" / "reference", tmp_path / "expected" / "reference", **options)
    # the tolerance is not vacuous: a map with one class changed on 10 % of its pixels fails
    with rasterio.open(actual[0], "r+") as ds:
        values = ds.read(1)
        changed = np.random.default_rng(0).random(values.shape) < 0.10
        values[changed] = np.where(values[changed] == 1, 4, 1)
        ds.write(values, 1)
    with pytest.raises(AssertionError, match="significantly differing pixels"):
        assert_job_results_allclose(tmp_path / "actual" / "reference", tmp_path / "expected" / "reference", **options)


@pytest.mark.parametrize("args,message", [
    (["--base-url", "http://example.org/x", "--code-url", CODE], "must be a public https:// URL"),
    (["--base-url", BASE], "--base-url needs --code-url"),
    (["--code-url", CODE], "--code-url belongs to a publication"),
])
def test_bad_publication_arguments_are_one_line(tmp_path, capsys, args, message):
    from kappamask_core.faces.cli import main

    assert main(["openeo", "build", str(tmp_path / "out"), *args]) == 2
    assert message in capsys.readouterr().err


def test_building_onto_a_file_is_refused(tmp_path, capsys):
    from kappamask_core.faces.cli import main

    target = tmp_path / "taken.json"
    target.write_text("{}")
    assert main(["openeo", "build", str(target)]) == 2
    assert "is a file; name a folder" in capsys.readouterr().err and target.read_text() == "{}"
