"""The process-graph templates: regenerated equal to the checked-in files, parseable, standard processes only."""

import json

import pytest

from conftest import ROOT

PG_DIR = ROOT / "process_graphs"
STANDARD = {"load_collection", "apply_neighborhood", "run_udf", "reduce_dimension", "array_element", "neq", "mask"}


def walk(graph):
    for node in graph.values():
        yield node
        for arg in node["arguments"].values():
            if isinstance(arg, dict) and "process_graph" in arg:
                yield from walk(arg["process_graph"])


def test_checked_in_templates_are_up_to_date(tmp_path):
    from udf.openeo_build import write_templates

    written = write_templates(tmp_path)
    assert {p.name for p in written} == {"kappamask_l1c.json", "kappamask_l2a.json", "kappamask_mask.json"}
    for path in written:
        assert path.read_text() == (PG_DIR / path.name).read_text(), (
            f"{path.name} is out of date: run 'kappamask openeo build process_graphs'")


@pytest.mark.parametrize("name", ["kappamask_l1c", "kappamask_l2a", "kappamask_mask"])
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
    assert "udf-dependency-archives" in spec["default_job_options"]


def test_templates_embed_the_real_udf_and_its_geometry():
    udf_code = (ROOT / "udf" / "kappamask_udf.py").read_text()
    for name in ("kappamask_l1c", "kappamask_l2a", "kappamask_mask"):
        spec = json.loads((PG_DIR / f"{name}.json").read_text())
        nodes = list(walk(spec["process_graph"]))
        run_udf = next(n for n in nodes if n["process_id"] == "run_udf")
        assert run_udf["arguments"]["udf"] == udf_code
        neighborhood = next(n for n in nodes if n["process_id"] == "apply_neighborhood")
        assert [s["value"] for s in neighborhood["arguments"]["size"]] == [448, 448]
        assert [s["value"] for s in neighborhood["arguments"]["overlap"]] == [32, 32]
    l1c = json.loads((PG_DIR / "kappamask_l1c.json").read_text())
    load = next(n for n in walk(l1c["process_graph"]) if n["process_id"] == "load_collection")
    assert load["arguments"]["id"] == "SENTINEL2_L1C"
    assert load["arguments"]["bands"] == ["B02", "B03", "B04", "B08", "B11", "B12"]
