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


def test_inputs_that_fail_are_summed_up_in_one_line_and_the_others_keep_their_files(bigearthnet, tmp_path):
    """A stream of inputs (a catalogue search) skips what fails; a Dask batch finishes the rest. Both end in the
    same line: how many of how many failed, which, and that the others have their files."""
    import pytest

    from kappamask_core import InputError
    from kappamask_core.faces.api import classify_to_files
    from kappamask_core.faces.batch import classify_many

    good = [str(p) for p in sorted(bigearthnet.iterdir()) if p.is_dir()][:2]
    broken = tmp_path / "not-a-product"
    broken.mkdir()
    (broken / "readme.txt").write_text("no bands here")
    inputs = [good[0], str(broken), good[1]]

    with pytest.raises(InputError) as streamed:
        classify_to_files(iter(inputs), tmp_path / "stream")
    with pytest.raises(InputError) as batched:
        classify_many(inputs, tmp_path / "dask", workers=2, scheduler="sync", progress=False)
    for error, folder in ((streamed, "stream"), (batched, "dask")):
        message = str(error.value)
        assert "\n" not in message and message.startswith(f"1 of 3 inputs failed ({broken}: "), message
        assert "the other 2 have their files" in message
        assert len(list((tmp_path / folder).glob("*_kappamask.tif"))) == 2
