"""The openEO notebook: its offline cells build a valid process graph with the real UDF."""

import json

from helpers import ROOT


class OfflineConnection:
    """Stands in for a backend connection: builds the same process graph, contacts nothing."""

    def load_collection(self, collection_id, **kwargs):
        from openeo.rest.datacube import DataCube

        return DataCube.load_collection(collection_id, connection=None, fetch_metadata=False, **kwargs)


def test_notebook_builds_the_documented_process_graph():
    nb = json.loads((ROOT / "examples" / "cdse_kappamask.ipynb").read_text())
    namespace = {"connection": OfflineConnection()}
    offline = [c for c in nb["cells"] if c["cell_type"] == "code" and "offline" in c["metadata"].get("tags", [])]
    assert len(offline) == 2
    for cell in offline:
        exec(compile("".join(cell["source"]), "notebook", "exec"), namespace)
    graph = namespace["classes"].flat_graph()
    nodes = {n["process_id"]: n for n in graph.values()}
    assert nodes["load_collection"]["arguments"]["bands"] == ["B02", "B03", "B04", "B08", "B11", "B12"]
    neighborhood = nodes["apply_neighborhood"]["arguments"]
    assert {s["dimension"]: s["value"] for s in neighborhood["size"]} == {"x": 2048, "y": 2048, "t": "P1D"}
    assert {s["dimension"]: s["value"] for s in neighborhood["overlap"]} == {"x": 768, "y": 768}
    udf = neighborhood["process"]["process_graph"]["runudf1"]["arguments"]
    assert udf["udf"] == (ROOT / "udf" / "kappamask_udf.py").read_text()
    assert udf["context"]["level"] == "L2A" and udf["context"]["dependency_archive"].endswith("kappamask_udf_deps.zip")
    assert namespace["job_options"]["udf-dependency-archives"][0].endswith("#kappamask_deps")
