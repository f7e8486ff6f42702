"""What training checks before any epoch: options, sub-tiles, output folder, checkpoints and base weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import fail, require


def _label_pair(folder: Path, name: str, size: int, kind="tif"):
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": size, "height": size, "dtype": "uint16"}
    with rasterio.open(folder / "images" / f"{name}.tif", "w", count=13, **profile) as dst:
        dst.write(np.full((13, size, size), 1000, np.uint16))
    with rasterio.open(folder / "labels" / f"{name}.tif", "w", count=1, **{**profile, "dtype": "uint8"}) as dst:
        dst.write(np.ones((1, size, size), np.uint8))


def test_training_from_another_networks_onnx_is_one_line(tmp_path, capsys):
    require("torch", "h5netcdf")
    from helpers import conv3x3_onnx
    from helpers.subtiles import synthetic_set

    data = synthetic_set(tmp_path / "data", products=2, per_product=2)
    other = conv3x3_onnx(tmp_path / "other.onnx", 13)
    line = fail(capsys, data, "-o", tmp_path / "run", "--from", other, "--epochs", "1", "--arch", "kappamask-v1",
                command="train")
    assert "--from" in line and "not those of kappamask-v1" in line
    (tmp_path / "garbage.onnx").write_bytes(b"not a model")
    line = fail(capsys, data, "-o", tmp_path / "run2", "--from", tmp_path / "garbage.onnx", "--epochs", "1",
                "--arch", "kappamask-v1", command="train")
    assert "not an ONNX model" in line


@pytest.mark.parametrize("option, message", [
    (["--val-fraction", "nan"], "--val-fraction must be a number above 0 and below 1"),
    (["--val-fraction", "0"], "--val-fraction must be"), (["--val-fraction", "1"], "--val-fraction must be"),
    (["--gamma", "-2"], "--gamma must be"), (["--gamma", "nan"], "--gamma must be"),
    (["--lr", "inf"], "learning rate (--lr) must be"),
    (["--threads", "-1"], "--threads must be a whole number of at least 1"),
])
def test_training_options_are_checked_before_training(tmp_path, capsys, option, message):
    require("torch")
    (tmp_path / "data").mkdir()
    line = fail(capsys, tmp_path / "data", "-o", tmp_path / "run", *option, command="train")
    assert message in line


def test_training_refuses_mixed_subtiles_and_bad_output_and_checkpoints(tmp_path, capsys):
    require("torch")
    data = tmp_path / "data"
    for name, size in (("a_1", 320), ("a_2", 320), ("b_1", 320), ("b_2", 320), ("d_1", 320), ("d_2", 320),
                       ("c_1", 336)):
        _label_pair(data, name, size)
    line = fail(capsys, data, "-o", tmp_path / "run", "--scheme", "kappamask", "--epochs", "1", "--batch-size", "2",
                command="train")
    assert "different sizes" in line
    (data / "images" / "c_1.tif").unlink(), (data / "labels" / "c_1.tif").unlink()
    (data / "x_1.nc").write_bytes(b"")
    assert "KappaSet .nc sub-tiles and images/" in fail(capsys, data, "-o", tmp_path / "run", command="train")
    (data / "x_1.nc").unlink()
    (tmp_path / "file").write_text("x")
    assert "is a file" in fail(capsys, data, "-o", tmp_path / "file", "--scheme", "kappamask", command="train")
    (tmp_path / "run").mkdir(exist_ok=True)
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    line = fail(capsys, data, "-o", tmp_path / "run", "--scheme", "kappamask", "--resume", "--batch-size", "2",
                command="train")
    assert "is not a checkpoint of this training" in line
