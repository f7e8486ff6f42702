"""The parent network of the variant tests: a float32 network whose class scores are each band's 3 x 3 mean, and
synthetic scenes it classifies (16 px blocks, each with one bright band)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import conv3x3_onnx, identity_card, require

BANDS = ["B02", "B08", "B11"]
CLASSES = ["cloud", "clear", "cloud_shadow"]  # the class each band's score stands for


def make_parent(tmp_path: Path) -> Path:
    """The parent's card (id conv-test, L1C), with its ONNX file beside it."""
    folder = tmp_path / "parent"
    folder.mkdir()
    conv3x3_onnx(folder / "conv.onnx", len(BANDS))
    path = identity_card(folder / "conv.json", BANDS, CLASSES, tile=64, overlap=8, weights="conv.onnx",
                         levels=("L1C",))
    raw = json.loads(path.read_text())
    raw["id"], raw["name"] = "conv-test", "3 x 3 mean (test)"
    path.write_text(json.dumps(raw))
    return path


def blocks_cube(seed: int, height: int = 192, width: int = 256):
    """DN of a scene of 16 px blocks, each with one bright band (6000) over dark ones (1000), plus noise."""
    import xarray as xr

    rng = np.random.default_rng(seed)
    bright = rng.integers(0, len(BANDS), size=(height // 16, width // 16)).repeat(16, 0).repeat(16, 1)
    data = np.where(np.arange(len(BANDS))[:, None, None] == bright[None], 6000, 1000)
    data = (data + rng.normal(0, 50, data.shape)).clip(1, None).astype(np.uint16)
    return xr.DataArray(data, dims=("bands", "y", "x"),
                        coords={"bands": BANDS, "y": 5000000 - 10 * np.arange(height) - 5,
                                "x": 300000 + 10 * np.arange(width) + 5},
                        attrs={"crs": "EPSG:32633"})


def level(cube):
    """The synthetic scenes carry no level; the products of the tests are L1C."""
    from kappamask_core.io import from_dataarray

    return from_dataarray(cube, level="L1C")


def bf16_here() -> None:
    """OpenVINO (test extra) must import; a CPU without bfloat16 arithmetic cannot prove a bf16 variant."""
    from kappamask_core.models.variants import bf16_cpu

    require("openvino")
    if bf16_cpu():
        pytest.skip(f"bf16 variants cannot be checked here: {bf16_cpu()}")


def edit_card(card_path: Path, change) -> None:
    """Edit a card's JSON in place (``change`` takes the dict), as a user would by hand."""
    raw = json.loads(card_path.read_text())
    change(raw)
    card_path.write_text(json.dumps(raw, indent=2))
