"""The process-graph templates: regenerated equal to the checked-in files, parseable, standard processes only."""

from __future__ import annotations

import json

import pytest
from helpers import ROOT, walk

PG_DIR = ROOT / "process_graphs"
STANDARD = {"load_collection", "apply_neighborhood", "run_udf", "reduce_dimension", "array_element", "neq", "mask",
            "median", "apply_dimension", "array_create", "eq", "divide", "rename_labels", "aggregate_spatial", "mean"}


def test_checked_in_templates_are_up_to_date(tmp_path):
    from kappamask_udf.processes import write_templates

    written = write_templates(tmp_path)
    assert {p.name for p in written} == {"kappamask_l1c.json", "kappamask_l2a.json", "kappamask_mask.json",
                                         "kappamask_composite.json", "kappamask_stats.json"}
    for path in written:
        assert path.read_text() == (PG_DIR / path.name).read_text(), (
            f"{path.name} is out of date: run 'kappamask openeo build process_graphs'")


@pytest.mark.parametrize("name", ["kappamask_l1c", "kappamask_l2a", "kappamask_mask", "kappamask_composite",
                                  "kappamask_stats"])
def test_templates_parse_and_use_standard_processes(name):
    from openeo_pg_parser_networkx import OpenEOProcessGraph

    spec = json.loads((PG_DIR / f"{name}.json").read_text())
    assert spec["id"] == name
    graph = OpenEOProcessGraph(pg_data=spec)
    assert len(graph.nodes) >= 3
    processes = {node["process_id"] for node in walk(spec["process_graph"])}
    assert processes <= STANDARD, processes - STANDARD
    for param in spec["parameters"]:
        assert param["description"] and param["schema"], param["name"]
        assert "default" in param and param["optional"], f"{param['name']}: every parameter has an example default"
    # the checked-in files are templates: they name no archive (publishing names it, see the next test)
    (neighborhood,) = [n for n in walk(spec["process_graph"]) if n["process_id"] == "apply_neighborhood"]
    assert "default_job_options" not in spec and "dependency_archive" not in neighborhood["arguments"]["context"]


def test_published_processes_name_their_archive_in_job_options_and_context(tmp_path):
    from kappamask_udf.processes import Publication, write_templates

    publication = Publication("https://example.org/releases/v1", "ab" * 32)
    for path in write_templates(tmp_path, publication=publication):
        spec = json.loads(path.read_text())
        assert spec["default_job_options"]["udf-dependency-archives"] == [
            "https://example.org/releases/v1/kappamask_udf_deps.zip#kappamask_deps"]
        (neighborhood,) = [n for n in walk(spec["process_graph"]) if n["process_id"] == "apply_neighborhood"]
        context = neighborhood["arguments"]["context"]
        assert context["options"] == {"from_parameter": "options"}
        assert (context["dependency_archive"], context["dependency_sha256"]) == (publication.archive_url, "ab" * 32)


def test_templates_embed_the_real_udf_and_its_geometry():
    udf_code = (ROOT / "udf" / "kappamask_udf.py").read_text()
    for name in ("kappamask_l1c", "kappamask_l2a", "kappamask_mask", "kappamask_composite", "kappamask_stats"):
        spec = json.loads((PG_DIR / f"{name}.json").read_text())
        nodes = list(walk(spec["process_graph"]))
        run_udf = next(n for n in nodes if n["process_id"] == "run_udf")
        assert run_udf["arguments"]["udf"] == udf_code
        neighborhood = next(n for n in nodes if n["process_id"] == "apply_neighborhood")
        # a 2048 px core and the context the ground's tiles of its pixels need (the UDF's own constants)
        assert [s["value"] for s in neighborhood["arguments"]["size"]] == [2048, 2048, "P1D"]
        assert [s["value"] for s in neighborhood["arguments"]["overlap"]] == [768, 768]
    l1c = json.loads((PG_DIR / "kappamask_l1c.json").read_text())
    load = next(n for n in walk(l1c["process_graph"]) if n["process_id"] == "load_collection")
    assert load["arguments"]["id"] == "SENTINEL2_L1C"
    assert load["arguments"]["bands"] == ["B02", "B03", "B04", "B08", "B11", "B12"]


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
