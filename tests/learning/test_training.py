"""Fine-tuning: losses by hand, the split, learning a known rule (judged on a product held
out of training and validation, through the core), fine-tuning from imported official-format weights through
the command line, resuming and bad input."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from helpers import require
from helpers.subtiles import BANDS, TILE, rule, synthetic_set, write_subtile

from kappamask_core.faces.cli import main
from kappamask_core.foundation.errors import InputError, TrainingError
from kappamask_core.learning.training import dice_loss, train
from kappamask_core.learning.training_data import IGNORE, SubTile, find_subtiles, split_by_product

require("torch", "h5netcdf")

import torch  # noqa: E402


def blocky_scene(rng, size: int) -> np.ndarray:
    """13 bands of per-pixel noise, except B02 and B11: blocks (32 and 40 px, so their edges do not coincide) at
    a level on either side of the rule's threshold, with per-pixel noise up to 500 DN from the threshold."""
    dn = rng.integers(500, 4000, (13, size, size)).astype(np.float32)
    b02 = rng.choice([1800, 4200], (-(-size // 32), -(-size // 32)))
    b11 = rng.choice([1500, 3500], (-(-size // 40), -(-size // 40)))
    dn[1] = np.kron(b02, np.ones((32, 32)))[:size, :size] + rng.integers(-700, 700, (size, size))
    dn[11] = np.kron(b11, np.ones((40, 40)))[:size, :size] + rng.integers(-500, 500, (size, size))
    return dn


def write_scenes(folder, products: int, per_product: int, size: int = 320, seed: int = 0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for p in range(products):
        for k in range(per_product):
            dn = blocky_scene(rng, size)
            write_subtile(folder / f"S2B_MSIL1C_2021030{p}T000000_T00YY{p}_{k}.nc", dn, rule(dn))
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """KappaMask v2 (the default architecture) trained for 12 epochs on nine 320 px sub-tiles of three products."""
    data = write_scenes(tmp_path_factory.mktemp("synthetic"), products=3, per_product=3)
    out = tmp_path_factory.mktemp("run")
    result = train(data, out, epochs=12, batch_size=2, lr=2e-3, val_fraction=0.34, seed=1, threads=2)
    return data, out, result


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


def test_training_learns_a_known_rule(trained):
    """Judged on a product that neither training nor the choice of the best epoch saw, classified by the core."""
    import xarray as xr

    from kappamask_core import classify
    from kappamask_core.learning.evaluate import evaluate_arrays

    data, out, result = trained
    print(f"validation Dice by class after {len(result.history)} epochs (best {result.best_epoch}): "
          + ", ".join(f"{k} {v:.3f}" for k, v in result.validation_dice.items()))
    assert len(result.validation_dice) == 4 and all(math.isfinite(v) for v in result.validation_dice.values())
    dn = blocky_scene(np.random.default_rng(99), 512)  # a fourth product, held out
    cube = xr.DataArray(dn, dims=("bands", "y", "x"), coords={"bands": list(BANDS)})
    classes = classify(cube, str(result.card), level="L1C").values
    held_out = evaluate_arrays([("held-out", rule(dn), classes)], reference_scheme="kappaset")
    dice = {name: row["dice"] for name, row in held_out.per_class().items()}
    print("held-out product, through classify: " + ", ".join(f"{k} {v:.3f}" for k, v in dice.items()))
    assert len(dice) == 4 and all(math.isfinite(v) and v >= 0.85 for v in dice.values()), dice
    card = json.loads(result.card.read_text())
    training = card["provenance"]["training"]
    assert training["validation_dice"] == result.validation_dice and len(training["training_set_sha256"]) == 64
    assert training["loss"] == "DSC++" and training["gamma"] == 2.0 and card["id"] == "kappamask-v2-l1c-finetuned"
    assert card["trained"] is True and (out / "training_log.csv").is_file() and (out / "training.png").is_file()
    assert "Dice" in (out / "validation_metrics.md").read_text()


def test_fine_tuning_starts_from_imported_official_format_weights_through_the_command_line(tmp_path, capsys):
    """`kappamask train --from FILE.hdf5`: with a learning rate too small to move them, the fine-tuned network's
    convolution kernels are the imported ones (random kernels would differ everywhere)."""
    import onnx
    from helpers import GOLDEN, GOLDEN_FILES, need
    from onnx import numpy_helper

    from kappamask_core.io.files import sha256_file
    from kappamask_core.models.weights import import_keras

    golden = need(GOLDEN) / GOLDEN_FILES["v2"]
    # three training sub-tiles in batches of two: the last single one joins the batch before it
    data = write_scenes(tmp_path / "data", products=2, per_product=3, seed=5)
    assert main(["train", str(data), "-o", str(tmp_path / "run"), "--from", str(golden), "--epochs", "1",
                 "--lr", "1e-9", "--batch-size", "2", "--val-fraction", "0.5", "--threads", "2",
                 "--no-progress"]) == 0
    written = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    imported, _ = import_keras(golden, outdir=tmp_path / "imported", trained=False)
    kernels = lambda path: {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer  # noqa
                            if len(t.dims) == 4}
    ours, theirs = kernels(written["onnx"]), kernels(imported)
    assert ours.keys() == theirs.keys() and len(ours) > 50
    largest = max(float(np.abs(ours[k] - theirs[k]).max()) for k in ours)
    assert largest < 1e-6, f"the kernels moved by up to {largest}"
    base = json.loads(open(written["card"]).read())["provenance"]["training"]["base_weights"]
    assert base["sha256"] == sha256_file(golden)


def test_kappamask_v2_refuses_sub_tiles_too_small_for_its_dilated_convolutions(tmp_path):
    with pytest.raises(InputError, match="at least 304 px"):
        train(synthetic_set(tmp_path / "small", products=2, per_product=2), tmp_path / "out0", epochs=1)


def test_kappamask_v2_refuses_batches_of_one_sub_tile(tmp_path, capsys):
    data = write_scenes(tmp_path / "data", products=2, per_product=2)
    assert main(["train", str(data), "-o", str(tmp_path / "run"), "--batch-size", "1", "--epochs", "1"]) == 2
    assert "at least 2 sub-tiles per batch" in capsys.readouterr().err


def test_batches_never_leave_one_sub_tile_alone():
    from kappamask_core.learning.training_data import batches

    assert [list(b) for b in batches(5, 2)] == [[0, 1], [2, 3, 4]]
    assert [list(b) for b in batches(4, 2)] == [[0, 1], [2, 3]]
    assert [list(b) for b in batches(1, 4)] == [[0]] and [list(b) for b in batches(7, 3)] == [[0, 1, 2], [3, 4, 5, 6]]


def test_a_resumed_run_ends_equal_to_an_uninterrupted_one(tmp_path, caplog):
    """On a run that learns: the resumed call runs only the epochs after its checkpoint, and its last epoch's
    weights (not the best epoch's, which may lie before the interruption) equal the uninterrupted run's, which
    needs the optimiser's state restored too."""
    import logging

    data = write_scenes(tmp_path / "data", products=3, per_product=2, seed=5)
    common = dict(batch_size=2, lr=2e-3, val_fraction=0.34, seed=3, threads=2)
    whole = train(data, tmp_path / "whole", epochs=3, **common)
    losses = [row["val_loss"] for row in whole.history]
    assert losses[-1] < 0.8 * losses[0], f"the run does not learn: validation loss {losses}"
    train(data, tmp_path / "parts", epochs=1, **common)  # 'interrupted' after the first epoch
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kappamask_core.learning.training"):
        resumed = train(data, tmp_path / "parts", epochs=3, resume=True, **common)
    run = [int(m.group(1)) for r in caplog.records if (m := re.match(r"epoch (\d+):", r.getMessage()))]
    assert run == [2, 3]
    assert resumed.history == whole.history
    last = [torch.load(tmp_path / folder / "checkpoint.pt", weights_only=False)["model"] for folder in
            ("whole", "parts")]
    assert last[0].keys() == last[1].keys() and all(torch.equal(last[0][k], last[1][k]) for k in last[0])


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
    import kappamask_core.learning.training as training

    data = synthetic_set(tmp_path / "data", products=2, per_product=2, seed=9)
    common = dict(arch="kappamask-v1", batch_size=2, lr=1e-3, seed=0, threads=1)
    train(data, tmp_path / "run", epochs=1, **common)
    saved = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    real = training.dice_loss
    monkeypatch.setattr(training, "dice_loss", lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(TrainingError, match="last good checkpoint \\(epoch 1\\)"):
        train(data, tmp_path / "run", epochs=3, resume=True, **common)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == saved


def test_a_class_absent_from_validation_gives_a_card_the_project_accepts(tmp_path):
    """Labels of two classes only (B11 never above the rule's threshold): the other classes have no validation
    Dice. The card records them as null, not NaN, and loads like any other; a run that writes such a card ends."""
    import h5netcdf  # noqa: F401  (the sub-tiles' format)
    import xarray as xr

    from kappamask_core.models.cards import load_card

    data = synthetic_set(tmp_path / "d", products=3, per_product=2)
    for path in sorted(data.iterdir()):
        ds = xr.load_dataset(path, engine="h5netcdf")
        ds["B11"] = ds["B11"] * 0 + np.float32(1000 / 65535)
        dn = np.stack([ds[b].values * 65535 for b in BANDS])
        label = rule(dn)
        label[:2, :2] = 5
        ds["Label"] = (("y", "x"), label)
        ds.to_netcdf(path, engine="h5netcdf")
    result = train(data, tmp_path / "run", arch="kappamask-v1", epochs=1, batch_size=2, val_fraction=0.34, threads=2)
    absent = [name for name, value in result.validation_dice.items() if value is None]
    assert absent and all(v is None or math.isfinite(v) for v in result.validation_dice.values())
    card = load_card(result.card)  # the project's own rules accept what it wrote
    assert card.provenance["training"]["validation_dice"] == result.validation_dice
