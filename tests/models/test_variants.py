"""Reduced-precision variants: made, checked against their parent, recorded, and chosen only when faithful.

The parent here is a float32 network whose class scores are each band's 3 x 3 mean (tests/helpers), run on a
synthetic scene of 16 px blocks in which one band is bright: its decisions are clear-cut, so an honest
int8 copy agrees with it, and one that was damaged does not. How closely int8 follows the real networks on
real scenes is measured in benchmarks/precision.py, not here."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import fail, require
from helpers.variants import BANDS, bf16_here, blocks_cube, edit_card, level

from kappamask_core import ClassifyOptions, run
from kappamask_core.faces import quantize as quantize_face
from kappamask_core.faces.api import classify_to_files
from kappamask_core.faces.cli import main
from kappamask_core.faces.quantize import make_variant, sample_tiles
from kappamask_core.foundation.grid import TileLayout
from kappamask_core.models import quantize
from kappamask_core.models.cards import card_from_dict, load_card
from kappamask_core.models.folders import weights_dir
from kappamask_core.models.quantize import check_variant
from kappamask_core.models.resolve import resolve_model


def damage_one_class(path: Path) -> None:
    """Scale the quantised weights of the first class's channel by 10 (through its dequantisation scale)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    scales = [t for t in model.graph.initializer if t.name.endswith("_scale") and "kernel" in t.name]
    assert scales, [t.name for t in model.graph.initializer]
    for tensor in scales:
        values = numpy_helper.to_array(tensor).copy()
        values.flat[0] *= 10
        tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    onnx.save(model, str(path))


HONEST = quantize.quantize_int8


def quantize_then_damage(parent, calibration, out, progress=False):
    HONEST(parent, calibration, out, progress)
    damage_one_class(out)


@pytest.fixture
def damaged(monkeypatch):
    monkeypatch.setattr(quantize, "quantize_int8", quantize_then_damage)


def _reseal(card_path: Path) -> None:
    """What a careful forger does: recompute the seal after the edit (the decisive fields still give it away)."""
    from kappamask_core.models.variants import sealed

    card_path.write_text(json.dumps(sealed(json.loads(card_path.read_text())), indent=2))


def level_folder(tmp_path: Path) -> Path:
    """The synthetic scene as an L1C band folder (GeoTIFFs named like Sentinel-2 bands), for the command line."""
    folder = tmp_path / "scene"
    folder.mkdir(exist_ok=True)
    cube = blocks_cube(4)
    transform = rasterio.transform.from_origin(300000, 5000000, 10, 10)
    for band in BANDS:
        data = cube.sel(bands=band).values
        with rasterio.open(folder / f"T33UUU_20200101T000000_{band}.tif", "w", driver="GTiff", width=data.shape[1],
                           height=data.shape[0], count=1, dtype="uint16", crs="EPSG:32633",
                           transform=transform) as dst:
            dst.write(data, 1)
    (folder / "T33UUU_20200101T000000_B10.tif").write_bytes((folder / "T33UUU_20200101T000000_B02.tif").read_bytes())
    return folder


def test_an_honest_variant_is_faithful_and_its_card_round_trips(parent, tmp_path):
    result = make_variant(str(parent), calibrate=[level(blocks_cube(1))], check=[level(blocks_cube(2))],
                          output=tmp_path / "variants")
    assert result.check.faithful, result.check.failures()
    assert result.check.agreement > 0.999 and result.check.tiles > 0
    assert set(result.check.judged) == {"clear", "cloud", "cloud_shadow"}
    assert result.card_path == tmp_path / "variants" / "conv-test-int8.json" and result.onnx.is_file()

    card = load_card(result.card_path)
    assert (card.id, card.precision, card.faithful) == ("conv-test-int8", "int8", True)
    assert card.variant == result.card["variant"]
    assert card_from_dict(json.loads(result.card_path.read_text())).raw == card.raw
    parent_model = resolve_model(str(parent))
    variant = card.variant
    assert variant["parent"]["id"] == "conv-test"
    assert variant["parent"]["weights_sha256"] == __import__("hashlib").sha256(
        parent_model.path.read_bytes()).hexdigest()
    # every tile of the scene holds data: the ground's tiles over its grid (corner at 500000 rows, 30000 columns)
    every_tile = len(TileLayout(192, 256, 64, 8, 0, anchor=(500000, 30000)))
    assert variant["calibration"]["tiles"] == every_tile and variant["check"]["tiles"] == every_tile
    assert variant["check"]["how"] == "named check products"
    assert variant["check"]["thresholds"] == {"agreement": 0.995, "dice": 0.98, "min_share": 0.001}
    # the variant runs like any model, and its file is the one its card names
    assert resolve_model(str(result.card_path)).path == result.onnx


def test_the_self_check_refuses_a_damaged_variant(parent, tmp_path, damaged, capsys):
    result = make_variant(str(parent), calibrate=[level(blocks_cube(1))], check=[level(blocks_cube(2))],
                          output=tmp_path / "variants")
    assert not result.check.faithful
    assert result.check.agreement < 0.9, result.check.agreement
    assert result.onnx is None and not (tmp_path / "variants" / "conv-test-int8.onnx").exists()
    assert result.card["variant"]["check"]["faithful"] is False

    # the command line: one line, exit 2, nothing written
    code = main(["models", "quantize", str(parent), "-o", str(tmp_path / "cli")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not faithful" in err[0] and "agreement" in err[0], err
    assert not list((tmp_path / "cli").glob("*.onnx"))


def test_check_compares_maps_on_valid_pixels_only(parent):
    model = resolve_model(str(parent))
    tiles = [t for _, _, t in sample_tiles([level(blocks_cube(3))], model.card, 8)]
    same = check_variant(model, model.path, tiles)
    assert same.agreement == 1.0 and all(same.dice[c] == 1.0 for c in same.judged) and same.faithful
    assert same.dice["semi_transparent_cloud"] is None  # in neither map
    assert same.valid_pixels == sum(int(valid.sum()) for _, valid in tiles)


def test_auto_runs_the_faithful_variant_on_cpu_and_never_a_failed_one(parent, tmp_path, monkeypatch, caplog):
    scene = level(blocks_cube(4))
    made = make_variant(str(parent), calibrate=[level(blocks_cube(1))], check=[level(blocks_cube(2))])
    assert made.check.faithful and made.card_path.parent == weights_dir()  # where auto looks, by default
    with caplog.at_level(logging.WARNING):
        auto = run(scene, str(parent))
    assert auto.card.id == "conv-test-int8" and auto.card.precision == "int8"
    assert any("running its int8 variant conv-test-int8" in r.message for r in caplog.records)
    exact = run(scene, str(parent), options=ClassifyOptions(precision="fp32"))
    assert exact.card.id == "conv-test" and exact.card.precision == "fp32"
    assert (auto.classes == exact.classes).mean() > 0.999

    # a variant that failed its check, kept on request, is never chosen by auto
    made.card_path.unlink()
    made.onnx.unlink()
    with monkeypatch.context() as patch:
        patch.setattr(quantize, "quantize_int8", quantize_then_damage)
        failed = make_variant(str(parent), calibrate=[level(blocks_cube(1))], check=[level(blocks_cube(2))],
                              keep_failed=True)
    assert failed.onnx.is_file() and not failed.check.faithful
    assert run(scene, str(parent)).card.id == "conv-test"
    # asked for by name, it runs, and says that it failed
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        forced = run(scene, str(parent), options=ClassifyOptions(precision="int8"))
    assert forced.card.id == "conv-test-int8" and not forced.card.faithful
    assert any("FAILED its check" in r.message for r in caplog.records)


def test_a_variant_of_other_weights_is_passed_over(parent, tmp_path):
    make_variant(str(parent), calibrate=[level(blocks_cube(1))], check=[level(blocks_cube(2))])
    scene = level(blocks_cube(4))
    assert run(scene, str(parent)).card.id == "conv-test-int8"
    # the parent's weights change (retrained, re-imported): its old variant must not stand in for it
    import onnx
    from onnx import numpy_helper

    onnx_path = parent.parent / "conv.onnx"
    model = onnx.load(str(onnx_path))
    kernel = model.graph.initializer[0]
    kernel.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(kernel) * 2, kernel.name))
    onnx.save(model, str(onnx_path))
    assert run(scene, str(parent)).card.id == "conv-test"
    with pytest.raises(Exception, match="no int8 variant"):
        run(scene, str(parent), options=ClassifyOptions(precision="int8"))


def test_outputs_record_the_precision(parent, tmp_path):
    make_variant(str(parent), calibrate=[level(blocks_cube(1))], check=[level(blocks_cube(2))])
    written = classify_to_files([level(blocks_cube(5))], tmp_path / "out", model=str(parent))[0]
    item = json.loads(Path(written["stac_item"]).read_text())
    model = item["properties"]["kappamask:model"]
    assert model["id"] == "conv-test-int8" and model["precision"] == "int8"
    assert model["variant"]["parent"] == "conv-test" and model["variant"]["faithful"] is True
    assert model["variant"]["agreement"] > 0.999
    assert "int8 variant of conv-test" in item["properties"]["processing:lineage"]
    with rasterio.open(written["cog"]) as src:
        tags = src.tags()
    assert tags["model_precision"] == "int8" and tags["model_variant_of"] == "conv-test"

    exact = classify_to_files([level(blocks_cube(5))], tmp_path / "exact", model=str(parent),
                              options=ClassifyOptions(precision="fp32"))[0]
    item = json.loads(Path(exact["stac_item"]).read_text())
    assert item["properties"]["kappamask:model"]["precision"] == "fp32"
    assert "variant" not in item["properties"]["kappamask:model"]
    with rasterio.open(exact["cog"]) as src:
        assert src.tags()["model_precision"] == "fp32"


def test_a_bf16_variant_is_checked_runs_on_openvino_and_auto_takes_it(parent, tmp_path, monkeypatch, caplog):
    bf16_here()
    made = make_variant(str(parent), "bf16", calibrate=[level(blocks_cube(1))])
    assert made.check.faithful and made.check.agreement > 0.999, made.check.failures()
    card = load_card(made.card_path)
    assert (card.id, card.precision, card.engine) == ("conv-test-bf16", "bf16", "openvino")
    assert card.weights["precision"] == "fp32"  # the file is the float32 network; OpenVINO rounds as it runs
    assert card.variant["calibration"]["tiles"] == 0 and card.variant["check"]["tiles"] > 0
    assert "openvino" in card.variant["software"]

    scene = level(blocks_cube(4))
    with caplog.at_level(logging.WARNING):
        auto = run(scene, str(parent))
    assert auto.card.id == "conv-test-bf16" and auto.runtime["providers"] == ["OpenVINO CPU (bf16)"]
    assert any("running its bf16 variant" in r.message for r in caplog.records)
    exact = run(scene, str(parent), options=ClassifyOptions(precision="fp32"))
    assert exact.card.id == "conv-test" and (auto.classes == exact.classes).mean() > 0.999

    written = classify_to_files([scene], tmp_path / "out", model=str(parent))[0]
    recorded = json.loads(Path(written["stac_item"]).read_text())["properties"]["kappamask:model"]
    assert recorded["precision"] == "bf16" and recorded["variant"]["parent"] == "conv-test"
    with rasterio.open(written["cog"]) as src:
        assert src.tags()["model_precision"] == "bf16" and src.tags()["model"] == "conv-test-bf16"

    # where the CPU has no bfloat16 arithmetic (or OpenVINO is missing), auto passes it over and says why
    from kappamask_core.models import variants

    monkeypatch.setattr(variants, "bf16_cpu", lambda: "this CPU has no bfloat16 arithmetic")
    with caplog.at_level(logging.INFO):
        assert run(scene, str(parent)).card.id == "conv-test"
    assert any("conv-test-bf16: not used: this CPU has no bfloat16" in r.message for r in caplog.records)


def test_the_self_check_refuses_a_damaged_bf16_variant(parent, tmp_path, monkeypatch):
    bf16_here()
    honest = quantize.float32_model

    def damaged(path):
        from onnx import numpy_helper

        model = honest(path)
        kernel = model.graph.initializer[0]
        values = numpy_helper.to_array(kernel).copy()
        values[0] *= 10  # the first class's scores, ten times too large
        kernel.CopyFrom(numpy_helper.from_array(values, kernel.name))
        return model

    monkeypatch.setattr(quantize, "float32_model", damaged)
    result = make_variant(str(parent), "bf16", calibrate=[level(blocks_cube(1))], output=tmp_path / "variants")
    assert not result.check.faithful and result.check.agreement < 0.9
    assert result.onnx is None and not list((tmp_path / "variants").glob("*.onnx"))


def test_no_bf16_variant_where_its_check_would_prove_nothing(parent, monkeypatch, capsys):
    monkeypatch.setattr(quantize_face, "bf16_cpu", lambda: "this CPU has no bfloat16 arithmetic")
    assert main(["models", "quantize", str(parent), "--precision", "bf16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no bfloat16 arithmetic" in err[0] and "would prove nothing" in err[0], err
    assert not list(weights_dir().glob("*bf16*"))


def test_a_failed_variant_edited_to_look_faithful_is_never_run_listed_or_shipped(parent, tmp_path, capsys):
    from kappamask_udf.archive import build_archive

    scene = level(blocks_cube(4))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(quantize, "quantize_int8", quantize_then_damage)
        failed = make_variant(str(parent), calibrate=[level(blocks_cube(1))], check=[level(blocks_cube(2))],
                              keep_failed=True)
    assert not failed.check.faithful

    def faithful_by_hand(raw):
        raw["variant"]["check"]["faithful"] = True
        raw["variant"]["check"]["agreement"] = 0.9999

    edit_card(failed.card_path, faithful_by_hand)
    assert run(scene, str(parent)).card.id == "conv-test"  # auto passes it over
    with pytest.raises(Exception, match="changed after it was made"):
        run(scene, str(parent), options=ClassifyOptions(precision="int8"))
    line = fail(capsys, str(level_folder(tmp_path)), "-o", tmp_path / "out", "--model", str(parent),
                "--precision", "int8")
    assert "cannot be used" in line and "changed after it was made" in line
    # the edit even of the flag alone counts: a card whose numbers fail is not faithful whatever it says
    raw = json.loads(failed.card_path.read_text())
    raw["variant"]["check"]["agreement"] = failed.check.agreement
    assert not card_from_dict(raw).faithful
    archive, _, _ = build_archive(tmp_path / "deps.zip", models=[str(parent)])
    assert not [n for n in __import__("zipfile").ZipFile(archive).namelist() if "int8" in n]


@pytest.mark.parametrize("edit", ["value_scaling", "bands"])
def test_a_faithful_variant_with_edited_scaling_or_bands_is_refused_even_when_resealed(parent, tmp_path, edit):
    made = make_variant(str(parent), calibrate=[level(blocks_cube(1))], check=[level(blocks_cube(2))])
    scene = level(blocks_cube(4))
    assert run(scene, str(parent)).card.id == "conv-test-int8"

    def change(raw):
        if edit == "value_scaling":
            raw["input"]["value_scaling"][0] = {"type": "z-score", "mean": 0.1, "stddev": 0.5}
        else:
            raw["input"]["bands"] = list(reversed(raw["input"]["bands"]))

    edit_card(made.card_path, change)
    with pytest.raises(Exception, match="changed after it was made"):
        run(scene, str(parent), options=ClassifyOptions(precision="int8"))
    _reseal(made.card_path)
    with pytest.raises(Exception, match="differ from its network"):
        run(scene, str(parent), options=ClassifyOptions(precision="int8"))
    assert run(scene, str(parent)).card.id == "conv-test"  # auto runs the network instead


def test_an_int8_variant_saved_under_the_bf16_name_is_refused(parent, tmp_path):
    made = make_variant(str(parent), calibrate=[level(blocks_cube(1))], check=[level(blocks_cube(2))])
    for suffix in (".onnx", ".json"):
        made.card_path.with_suffix(suffix).rename(made.card_path.with_name(f"conv-test-bf16{suffix}"))
    scene = level(blocks_cube(4))
    with pytest.raises(Exception, match="precision 'int8', not 'bf16'"):
        run(scene, str(parent), options=ClassifyOptions(precision="bf16"))
    assert run(scene, str(parent)).card.id == "conv-test"


def test_a_lazy_cube_on_dasks_threaded_scheduler_runs_the_bf16_variant_in_many_threads(parent):
    """Tasks of one process share its runner: OpenVINO gives each thread an infer request of its own (one shared
    request failed with 'Infer Request is busy'); the map equals the one made date by date in memory."""
    bf16_here()
    require("dask")
    import dask
    import xarray as xr

    from kappamask_core import classify

    made = make_variant(str(parent), "bf16", calibrate=[level(blocks_cube(1))])
    assert made.check.faithful
    cube = xr.concat([blocks_cube(s, 320, 320) for s in range(4)], dim="time")
    cube = cube.assign_coords(time=np.arange(4).astype("datetime64[D]"))
    eager = classify(cube, str(parent), level="L1C")
    lazy = classify(cube.chunk({"time": 1, "y": 128, "x": 128}), str(parent), level="L1C")
    assert len(lazy.chunks[1]) > 1  # several tasks per date
    with dask.config.set(scheduler="threads", num_workers=8):
        for _ in range(3):
            np.testing.assert_array_equal(lazy.compute().values, eager.values)
