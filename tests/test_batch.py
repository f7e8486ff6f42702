"""Many products with Dask: same outputs as a sequential run, and a valid collection."""

import numpy as np
import rasterio

from conftest import require

require("dask")


def test_parallel_run_equals_sequential(bigearthnet, tmp_path):
    from kappamask_core.faces.api import classify_to_files
    from kappamask_core.faces.batch import classify_many
    from kappamask_stac.validate import validate_path

    patches = [str(p) for p in sorted(bigearthnet.iterdir()) if p.is_dir()][:3]
    parallel = classify_many(patches, tmp_path / "par", workers=2, scheduler="processes", progress=False)
    sequential = classify_to_files(patches, tmp_path / "seq")
    for a, b in zip(parallel, sequential):
        with rasterio.open(a["cog"]) as x, rasterio.open(b["cog"]) as y:
            np.testing.assert_array_equal(x.read(1), y.read(1))
    report = validate_path(tmp_path / "par")
    assert "collection.json" in {p.rsplit("/", 1)[-1] for p in report} and all(e == [] for e in report.values())
