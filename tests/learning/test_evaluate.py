"""Metrics against hand-computed cases, the scheme table, the SCL baseline and the evaluate command."""

from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio
from helpers import fail, leftovers

from kappamask_core.faces.cli import main
from kappamask_core.foundation.classes import CLEAR, CLOUD, CLOUD_SHADOW, MISSING, SEMI_TRANSPARENT_CLOUD
from kappamask_core.foundation.schemes import SCHEMES, UNDEFINED, to_classes
from kappamask_core.learning.evaluate import evaluate_arrays


def test_hand_computed_case():
    # reference: 4 clear, 2 shadow, 2 cloud; prediction gets 3 clear right, calls one clear 'cloud',
    # one shadow 'clear'; one pixel is missing in the prediction and is excluded
    ref = np.array([1, 1, 1, 1, 2, 2, 4, 4, 4])
    pred = np.array([1, 1, 1, 4, 1, 2, 4, 4, 0])
    ev = evaluate_arrays([("a", ref, pred)])
    rows = ev.per_class()
    assert ev.excluded == 1 and ev.total == 8
    # clear: TP 3, FP 1 (the shadow), FN 1 (called cloud) -> Dice 6/8, precision 3/4, recall 3/4
    assert rows["clear"]["dice"] == pytest.approx(0.75) and rows["clear"]["precision"] == pytest.approx(0.75)
    # shadow: TP 1, FN 1 -> Dice 2/3, precision 1, recall 1/2
    assert rows["cloud_shadow"]["dice"] == pytest.approx(2 / 3) and rows["cloud_shadow"]["recall"] == 0.5
    # cloud: TP 2, FP 1 -> Dice 4/5
    assert rows["cloud"]["dice"] == pytest.approx(0.8)
    # semi-transparent: absent from both -> no Dice, not in the mean
    assert np.isnan(rows["semi_transparent_cloud"]["dice"])
    assert ev.mean()["dice"] == pytest.approx(np.mean([0.75, 2 / 3, 0.8]))
    assert ev.overall_accuracy == pytest.approx(6 / 8)
    np.testing.assert_array_equal(ev.confusion, [[3, 0, 0, 1], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 2]])


def test_all_missing_tiles_and_empty_classes():
    ref = np.zeros((4, 4), np.uint8)
    ev = evaluate_arrays([("a", ref, np.full((4, 4), 4, np.uint8)), ("b", np.ones((2, 2)), np.ones((2, 2)))])
    assert ev.excluded == 16 and ev.total == 4
    assert ev.per_class()["clear"]["dice"] == 1.0 and np.isnan(ev.per_class()["cloud"]["dice"])
    assert "| Clear | 100.0 |" in ev.table()


def test_merge_semi_transparent_into_cloud():
    ref = np.array([3, 3, 4, 1])
    pred = np.array([4, 4, 4, 1])
    assert evaluate_arrays([("a", ref, pred)]).per_class()["cloud"]["dice"] == pytest.approx(2 / 4)
    merged = evaluate_arrays([("a", ref, pred)], merges={"semi_transparent_cloud": "cloud"})
    assert merged.per_class()["cloud"]["dice"] == 1.0


@pytest.mark.parametrize("scheme,values,expected", [
    ("sen2cor-scl", range(12), [MISSING, MISSING, CLEAR, CLOUD_SHADOW, CLEAR, CLEAR, CLEAR, UNDEFINED, CLOUD, CLOUD,
                                SEMI_TRANSPARENT_CLOUD, CLEAR]),
    ("km_predict", range(6), [MISSING, CLEAR, CLOUD_SHADOW, SEMI_TRANSPARENT_CLOUD, CLOUD, MISSING]),
    ("cloudsen12", range(4), [CLEAR, CLOUD, SEMI_TRANSPARENT_CLOUD, CLOUD_SHADOW]),
    ("fmask", [0, 1, 2, 3, 4, 255], [CLEAR, CLEAR, CLOUD_SHADOW, CLEAR, CLOUD, MISSING]),
    ("s2cloudless", [0, 1], [CLEAR, CLOUD]),
    ("kappamask", range(5), [MISSING, CLEAR, CLOUD_SHADOW, SEMI_TRANSPARENT_CLOUD, CLOUD]),
    ("kappaset", range(6), [UNDEFINED, CLEAR, CLOUD_SHADOW, SEMI_TRANSPARENT_CLOUD, CLOUD, MISSING]),
])
def test_scheme_table(scheme, values, expected):
    np.testing.assert_array_equal(to_classes(np.array(list(values)), scheme), expected)


def test_unlisted_values_are_undefined_and_nan_is_missing():
    assert set(SCHEMES) == {"kappamask", "kappaset", "km_predict", "sen2cor-scl", "cloudsen12", "fmask",
                            "s2cloudless", "landsat-qa-pixel", "hls-fmask"}
    np.testing.assert_array_equal(to_classes(np.array([12, -1, 99]), "sen2cor-scl"), [UNDEFINED] * 3)
    np.testing.assert_array_equal(to_classes(np.array([np.nan, 1.0]), "kappamask"), [MISSING, CLEAR])
    with pytest.raises(ValueError):
        to_classes(np.array([1.5]), "kappamask")


def test_real_kappamask_reference_outputs_read_through_the_scheme_table():
    from helpers import SHARED, need

    from kappamask_core.learning.evaluate import read_class_map

    folder = need(SHARED / "kappamask_reference_outputs")
    l1c = read_class_map(folder / "L1C_kappamask.tif")
    l2a = read_class_map(folder / "L2A_kappamask.tif")
    assert set(np.unique(l1c)) <= {1, 2, 3, 4, 5}
    ev = evaluate_arrays([("l2a_vs_l1c", l1c, l2a)], reference_scheme="km_predict", prediction_scheme="km_predict")
    # recomputed here: pixels where both maps hold one of the four classes (1..4 in km_predict), and how many agree
    both = np.isin(l1c, (1, 2, 3, 4)) & np.isin(l2a, (1, 2, 3, 4))
    assert ev.total == both.sum() > 0
    assert ev.overall_accuracy == pytest.approx((l1c == l2a)[both].mean())
    assert ev.excluded == l1c.size - both.sum()


def test_sen2cor_scl_model_on_t56lmm(t56lmm, tmp_path):
    from kappamask_core import run
    from kappamask_core.chain.resample import nearest_rows

    result = run(t56lmm, "sen2cor-scl")
    scl_band = result.product.bands["SCL"]
    scl = nearest_rows(scl_band.read(), scl_band.factor, 0, 10980, 10980)
    expected = to_classes(scl, "sen2cor-scl")
    expected[expected == UNDEFINED] = MISSING
    np.testing.assert_array_equal(result.classes, expected)
    assert (result.classes == MISSING).mean() > 0.99 and set(np.unique(result.classes)) > {MISSING}


def test_evaluate_default_model_against_scl_end_to_end(t56lmm, tmp_path, capsys):
    """Smoke test, not an accuracy claim: both maps from the real T56LMM SAFE through the CLI."""
    from kappamask_core.faces.cli import main

    assert main(["classify", str(t56lmm), "-o", str(tmp_path / "default"), "--no-stac", "--no-progress"]) == 0
    assert main(["classify", str(t56lmm), "-o", str(tmp_path / "scl"), "--model", "sen2cor-scl", "--no-stac",
                 "--no-progress"]) == 0
    capsys.readouterr()
    code = main(["evaluate", "--reference", str(tmp_path / "scl"), "--prediction", str(tmp_path / "default"),
                 "--merge", "semi_transparent_cloud=cloud", "-o", str(tmp_path / "eval")])
    assert code == 0
    out = capsys.readouterr().out
    assert "| Cloud |" in out and "Overall accuracy" in out
    assert (tmp_path / "eval" / "confusion_matrix.png").stat().st_size > 1000
    assert (tmp_path / "eval" / "metrics.csv").read_text().startswith("class,dice_percent")


def test_evaluate_refuses_what_is_not_a_class_map(tmp_path, capsys):
    ref = tmp_path / "ref.npy"
    np.save(ref, np.ones((4, 4), np.uint8))
    np.save(tmp_path / "float.npy", np.full((4, 4), 1.5))
    (tmp_path / "garbage.npy").write_bytes(b"\x93NUMPY garbage" + os.urandom(64))
    np.savez(tmp_path / "empty.npz")
    np.save(tmp_path / "missing.npy", np.zeros((4, 4), np.uint8))
    for name, message in (("float.npy", "fractional"), ("garbage.npy", "cannot read class map"),
                          ("empty.npz", "holds 0 arrays"), ("missing.npy", "no pixel was compared")):
        line = fail(capsys, "--reference", ref, "--prediction", tmp_path / name, command="evaluate")
        assert message in line or "whole numbers" in line, line


def test_evaluate_refuses_maps_on_different_grids(tmp_path, capsys):
    from affine import Affine
    from rasterio.crs import CRS

    classes = np.random.default_rng(0).integers(1, 5, (64, 64)).astype(np.uint8)

    def write(name, transform=Affine(10, 0, 300000, 0, -10, 5000000), crs=CRS.from_epsg(32633)):
        path = tmp_path / f"{name}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8", crs=crs,
                           transform=transform) as dst:
            dst.write(classes[None])
        return path

    reference = write("reference")
    assert main(["evaluate", "--reference", str(reference), "--prediction", str(write("same"))]) == 0
    capsys.readouterr()
    shifted = write("shifted", Affine(10, 0, 350000, 0, -10, 5000000))
    assert "different grids" in fail(capsys, "--reference", reference, "--prediction", shifted, command="evaluate")
    coarser = write("coarser", Affine(20, 0, 300000, 0, -20, 5000000))
    assert "pixel size 10 vs 20" in fail(capsys, "--reference", reference, "--prediction", coarser,
                                         command="evaluate")
    other = write("other", crs=CRS.from_epsg(32634))
    assert "EPSG:32634" in fail(capsys, "--reference", reference, "--prediction", other, command="evaluate")
    np.savez(tmp_path / "two.npz", a=classes, b=classes)
    assert "holds 2 arrays (a, b)" in fail(capsys, "--reference", tmp_path / "two.npz", "--prediction",
                                           tmp_path / "two.npz", command="evaluate")


def test_evaluate_leaves_out_what_a_nodata_tag_marks(tmp_path, capsys):
    from kappamask_core.faces.cli import main

    profile = {"driver": "GTiff", "width": 4, "height": 1, "count": 1, "dtype": "uint8"}
    with rasterio.open(tmp_path / "ref.tif", "w", **profile, nodata=4) as dst:
        dst.write(np.array([[1, 2, 4, 4]], np.uint8), 1)  # 4 is cloud in the scheme, but the tag says no data
    with rasterio.open(tmp_path / "pred.tif", "w", **profile) as dst:
        dst.write(np.array([[1, 2, 1, 1]], np.uint8), 1)
    assert main(["evaluate", "--reference", str(tmp_path / "ref.tif"), "--prediction", str(tmp_path / "pred.tif")]) == 0
    table = capsys.readouterr().out
    assert "2 pixels compared; 2 excluded" in table and "| Overall accuracy | 100.0 |" in table


def test_evaluation_files_appear_together_or_not_at_all(tmp_path, monkeypatch, capsys):
    from kappamask_core.faces.cli import main
    from kappamask_core.learning import evaluate

    profile = {"driver": "GTiff", "width": 4, "height": 1, "count": 1, "dtype": "uint8"}
    for name in ("ref", "pred"):
        with rasterio.open(tmp_path / f"{name}.tif", "w", **profile) as dst:
            dst.write(np.array([[1, 2, 3, 4]], np.uint8), 1)

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(evaluate, "confusion_image", broken)
    assert main(["evaluate", "--reference", str(tmp_path / "ref.tif"), "--prediction", str(tmp_path / "pred.tif"),
                 "-o", str(tmp_path / "metrics")]) == 2
    assert leftovers(tmp_path / "metrics") == []
    assert "No space left on device" in capsys.readouterr().err
