"""Exercise process_graphs/ on openeo-driver's dummy backend, as a user of an openEO backend would.

Runs in an environment of its own (openeo-driver pins pystac 1.8, which this package does not accept):
``python dummy_backend_session.py PROCESS_GRAPH_DIR COLLECTIONS_JSON`` serves the dummy backend and the folder
of JSON files on 127.0.0.1; stores, lists, fetches and calls the user-defined processes through the openEO
client, by id and from a URL namespace; creates batch jobs; and prints one JSON report on stdout.
COLLECTIONS_JSON maps collection ids to their band names. tests/adapters/test_openeo_dummy_backend.py asserts.
"""

import functools
import http.server
import itertools
import json
import logging
import os
import sys
import threading
from pathlib import Path

import openeo
import openeo_driver.dummy
from openeo_driver.dummy import dummy_backend
from openeo_driver.views import build_app
from werkzeug.serving import make_server

USER, PASSWORD = "john", "JOHN!!!"  # the dummy backend's basic-auth rule for names starting with a consonant
CUSTOM_OPTIONS = {"model": "auto", "buffer": {"cloud": 300}, "output": "usable"}
EXPLICIT_OPTIONS = {"udf-dependency-archives": ["https://example.org/deps.zip#kappamask_deps"]}
_extents = itertools.count()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(server) -> str:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


def add_collections(bands_by_collection: dict):
    """Sentinel-2 collections with the backend's band names (the dummy catalog has none)."""
    for cid, bands in bands_by_collection.items():
        dummy_backend.DummyCatalog._COLLECTIONS.append({
            "id": cid, "license": "proprietary", "links": [],
            "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [["2015-06-27", None]]}},
            "cube:dimensions": {
                "x": {"type": "spatial", "axis": "x", "step": 10, "reference_system": "AUTO:42001"},
                "y": {"type": "spatial", "axis": "y", "step": 10, "reference_system": "AUTO:42001"},
                "t": {"type": "temporal", "extent": ["2015-06-27", None]},
                "bands": {"type": "bands", "values": bands}},
            "summaries": {"eo:bands": [{"name": b} for b in bands]},
        })


def arguments() -> dict:
    """A new extent for every call: the dummy catalog caches loads with equal parameters and would not log them."""
    west = 5.0 + next(_extents) / 100
    return {"spatial_extent": {"west": west, "south": 51.0, "east": west + 0.05, "north": 51.05},
            "temporal_extent": ["2021-06-01", "2021-06-10"]}


def call(process_id: str, args: dict, namespace=None) -> dict:
    node = {"process_id": process_id, "arguments": args, "result": True}
    if namespace:
        node["namespace"] = namespace
    return {"call1": node}


def job_options_of(job_id: str):
    """The job options the backend stored with a job (GET /jobs/{id} does not return them)."""
    return next(m.job_options for (_, jid), m in dummy_backend.DummyBatchJobs._job_registry.items() if jid == job_id)


def record_loads() -> list:
    """Every load_collection the backend evaluates, with the mock cube it returned (which records its calls)."""
    loaded = []
    load = dummy_backend.DummyCatalog.load_collection

    def recording_load(self, collection_id, load_params, env):
        cube = load(self, collection_id, load_params, env)
        loaded.append((collection_id, load_params, cube))
        return cube

    dummy_backend.DummyCatalog.load_collection = recording_load
    return loaded


def evaluate(con, graph: dict, loaded: list) -> dict:
    """Synchronous processing of a graph on the dummy backend's mock cubes: what was loaded and applied."""
    loaded.clear()
    result = con.download(graph)
    loads, neighborhoods = [], []
    for cid, params, cube in loaded:
        loads.append({"collection": cid, "bands": params.bands, "spatial_extent": params.spatial_extent,
                      "temporal_extent": list(params.temporal_extent)})
        if cube.apply_neighborhood.called:
            kwargs = cube.apply_neighborhood.call_args.kwargs
            neighborhoods.append({k: kwargs[k] for k in ("process", "size", "overlap", "context")})
        cube.apply_neighborhood.reset_mock()
    return {"loads": loads, "apply_neighborhood": neighborhoods, "result_bytes": len(result)}


def main(graph_dir: Path, bands_by_collection: dict, composition: dict | None = None) -> dict:
    # the dummy backend's own configuration: basic auth, no OIDC round trips
    os.environ["OPENEO_BACKEND_CONFIG"] = str(Path(openeo_driver.dummy.__file__).with_name("dummy_config.py"))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    add_collections(bands_by_collection)
    loaded = record_loads()
    specs = {p.stem: json.loads(p.read_text()) for p in sorted(graph_dir.glob("*.json"))}
    backend = serve(make_server("127.0.0.1", 0, build_app(dummy_backend.DummyBackendImplementation()),
                                threaded=True))
    files = serve(http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(graph_dir))))

    con = openeo.connect(backend).authenticate_basic(USER, PASSWORD)
    report = {"processes": {}}
    for pid, spec in specs.items():
        entry = report["processes"][pid] = {"default_job_options": spec.get("default_job_options")}
        # the client's way of storing a process: graph and metadata (it has no argument for default_job_options)
        con.save_user_defined_process(
            pid, spec["process_graph"], parameters=spec["parameters"], summary=spec["summary"],
            description=spec["description"], returns=spec["returns"], categories=spec["categories"])
        stored = con.user_defined_process(pid).describe()
        entry["stored"] = {"graph_equal": stored["process_graph"] == spec["process_graph"],
                           "parameters_equal": stored["parameters"] == spec["parameters"],
                           "default_job_options": stored.get("default_job_options")}
        url = f"{files}/{pid}.json"
        for way, namespace, options in (("by_id", None, None), ("by_url", url, CUSTOM_OPTIONS)):
            args = arguments()
            if options:
                args["options"] = options
            entry[way] = {
                "arguments": args,
                "evaluated": evaluate(con, call(pid, args, namespace), loaded),
                "job_options": job_options_of(con.create_job(call(pid, args, namespace)).job_id),
                "job_options_explicit": job_options_of(con.create_job(
                    call(pid, args, namespace), additional={"job_options": EXPLICIT_OPTIONS}).job_id),
            }
    report["listed"] = sorted(p["id"] for p in con.list_user_defined_processes())
    report["explicit_job_options"] = EXPLICIT_OPTIONS
    if composition is not None:
        report["composition"] = compose(con, files, composition)
    return report


def compose(con, files: str, composition: dict) -> dict:
    """A user's graph with kappamask_mask and another catalogue process that carries default_job_options, both
    called by URL; then the way the openEO guide gives: kappamask_mask stored in the user's account and called by
    id, the other by URL, with the merged job options passed explicitly."""
    other = composition["other"]
    (Path(composition["folder"]) / "others").mkdir(exist_ok=True)
    (Path(composition["folder"]) / "others" / f"{other['id']}.json").write_text(json.dumps(other))
    other_url, ours_url = f"{files}/others/{other['id']}.json", f"{files}/kappamask_mask.json"
    args = arguments()
    graph = {"ours": {"process_id": "kappamask_mask", "namespace": ours_url, "arguments": args},
             "theirs": {"process_id": other["id"], "namespace": other_url,
                        "arguments": {"data": {"from_node": "ours"}}, "result": True}}
    result = {}
    try:
        con.create_job(graph)
        result["both_by_url"] = "created"
    except Exception as exc:  # the backend's answer, as a user sees it
        result["both_by_url"] = f"{type(exc).__name__}: {exc}"
    graph["ours"].pop("namespace")
    job = con.create_job(graph, additional={"job_options": composition["explicit"]})
    result["ours_by_id"] = {"job_options": job_options_of(job.job_id)}
    return result


if __name__ == "__main__":
    extra = json.loads(Path(sys.argv[3]).read_text()) if len(sys.argv) > 3 else None
    print(json.dumps(main(Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text()), extra)))
