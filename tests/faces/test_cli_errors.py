"""Options and arguments of the command line that make no sense are refused at once with one line."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import xarray as xr
from helpers import fail, identity_card, identity_onnx, require

SIX = ("B02", "B03", "B04", "B08", "B11", "B12")


@pytest.mark.parametrize("option,message", [
    (["--threads", "-1"], "threads must be a whole number from 1 to 1024"),
    (["--batch-size", "0"], "batch size must be a whole number from 1 to 1024"),
    (["--overlap", "255"], "leaves a stride of 1 px"),
])
def test_options_that_make_no_sense_are_refused(band_folder, tmp_path, capsys, option, message):
    assert message in fail(capsys, band_folder, "-o", tmp_path / "out", "--model", "default", *option)


def test_verify_refuses_a_threshold_that_is_not_a_percentage(tmp_path, capsys):
    for value in ("nan", "-1", "101"):
        line = fail(capsys, "verify", "default", "--subtiles", tmp_path, "--min-equal", value, command="models")
        assert "--min-equal must be a percentage" in line


@pytest.mark.parametrize("option, message", [
    (["--buffer", "cloud=1e12"], "must be a distance from 0 to 5000 m"),
    (["--buffer", "cloud=300,cloud=0"], "given twice"),
    (["--threads", "99999999999"], "threads must be a whole number from 1 to 1024"),
    (["--threads", "100000"], "threads must be a whole number from 1 to 1024"),
    (["--workers", "0"], "workers must be a whole number from 1 to 256"),
    (["--workers", "-3"], "workers must be a whole number"),
    (["--scheduler", "garbage"], "the scheduler must be one of"),
])
def test_options_beyond_reason_are_refused_at_once(band_folder, tmp_path, capsys, option, message):
    started = time.perf_counter()
    line = fail(capsys, band_folder, "-o", tmp_path / "out", *option)
    assert message in line and time.perf_counter() - started < 10


def test_commands_that_would_write_onto_a_file_say_so(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert "is a file" in fail(capsys, "build", tmp_path / "file", command="openeo")


def test_verify_on_subtiles_smaller_than_the_tile_is_one_line(tmp_path, capsys):
    require("h5netcdf")
    identity_onnx(tmp_path / "identity.onnx", len(SIX))
    card = identity_card(tmp_path / "card.json", SIX, ["clear"] * 6, tile=64, levels=("L1C",))
    raw = json.loads(card.read_text())
    raw["input"]["units"] = "dn_fraction"  # what KappaSet sub-tiles hold, as the KappaMask cards take
    card.write_text(json.dumps(raw))
    ds = xr.Dataset({b: (("y", "x"), np.full((32, 32), 0.1, np.float32)) for b in SIX})
    ds["Label"] = (("y", "x"), np.ones((32, 32), np.uint8))
    (tmp_path / "subtiles").mkdir()
    ds.to_netcdf(tmp_path / "subtiles" / "small_1.nc", engine="h5netcdf")
    line = fail(capsys, "verify", card, "--subtiles", tmp_path / "subtiles", command="models")
    assert "a 32 x 32 px sub-tile" in line
