"""The checked-in process graphs executed as Copernicus Data Space runs them (see tests/helpers/openeo_backend.py).

Every output each process advertises runs, on two dates (the second holds no data), with chunks on a layout
grid, real neighbouring data in the overlap, float32 input and float32 cell-centre coordinates. The last tests
show that these executions fail where a backend would: a UDF with a syntax error, an unsupported runtime
version, a band the collection does not have; and that a graph which drops the context gives another map."""

from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import pytest
from helpers import ROOT, identity_card, identity_onnx, require, tile_mean_onnx, walk
from helpers import openeo_backend as backend

require("openeo_processes_dask", "openeo_pg_parser_networkx")


UDF_CODE = (ROOT / "udf" / "kappamask_udf.py").read_text()
L2A_EXTENT = {"west": 152.0816, "south": -11.85, "east": 152.10, "north": -11.76}  # T56LMM's strip of data
L2A_DATES = ["2019-02-20", "2019-02-26"]  # the product's date and the test collection's date without data
SIX = ["B02", "B03", "B04", "B08", "B11", "B12"]


def spec(name: str) -> dict:
    return json.loads((backend.PG_DIR / f"{name}.json").read_text())


TWO_DATES = ["2017-02-16", "2017-02-20"]  # the product's date and the test collection's date without data


@pytest.fixture(scope="module")
def l1c_outputs():
    """kappamask_l1c on its example area over two dates, for each output it advertises."""
    return {output: backend.crop_to_extent(backend.execute("kappamask_l1c", temporal_extent=TWO_DATES, options={
        "model": "ukis-csmask-6b-l1c", "output": output}), "SENTINEL2_L1C")
        for output in ("classes", "usable", "scores")}


def _mutated(name: str, change) -> dict:
    data = copy.deepcopy(spec(name))
    change(data)
    return data


def _set_udf(data, edit):
    for node in walk(data["process_graph"]):
        if node["process_id"] == "run_udf":
            edit(node["arguments"])


def _set_node(data, process_id, edit):
    for node in walk(data["process_graph"]):
        if node["process_id"] == process_id:
            edit(node["arguments"])


MUTATIONS = {
    "a UDF with a syntax error": (
        lambda d: _set_udf(d, lambda a: a.update(udf=a["udf"].replace("def apply_datacube(", "def apply_datacube(("))),
        SyntaxError),
    "an unsupported runtime version": (lambda d: _set_udf(d, lambda a: a.update(version="9.99")), "InvalidVersion"),
    "a band the collection does not have": (
        lambda d: _set_node(d, "load_collection", lambda a: a.update(bands=["B02", "B03", "B04", "B08", "B11", "B13"])),
        "has no band"),
}
INLINE = '# /// script\n# dependencies = [\n#   "onnxruntime",\n# ]\n# ///\n'


def test_a_process_runs_with_no_arguments_at_all():
    """The example extents and default options make a call without arguments work (the openEO Web Editor)."""
    out = backend.execute("kappamask_l1c")
    assert out.sizes["t"] == 1 and [str(b) for b in out["bands"].values] == ["kappamask"]
    assert (out.values > 0).mean() > 0.99


def test_each_output_runs_on_every_date_with_what_the_backend_hands_the_udf(l1c_outputs):
    classes, usable, scores = (l1c_outputs[o] for o in ("classes", "usable", "scores"))
    assert [str(b) for b in classes["bands"].values] == ["kappamask"]
    assert [str(b) for b in usable["bands"].values] == ["usable"]
    assert [str(b) for b in scores["bands"].values] == ["missing", "clear", "cloud_shadow", "semi_transparent_cloud",
                                                        "cloud"]
    for cube in (classes, usable, scores):
        assert cube.dims == ("t", "bands", "y", "x") and cube.sizes["t"] == 2 and cube.dtype == np.float32
    # what each call of the UDF received: one date (t size P1D), float32 data and float32 coordinates, a 2048 px
    # core with 768 px of context around it
    chunks = backend.LOG["chunks"]
    assert chunks and all(c["dims"] == ("bands", "y", "x") and c["dtype"] == "float32" and
                          c["x_dtype"] == "float32" and c["shape"][1:] == (3584, 3584) for c in chunks)
    real, empty = classes.isel(t=0, bands=0).values, classes.isel(t=1, bands=0).values
    assert (empty == 0).all() and (usable.isel(t=1).values == 255).all() and (scores.isel(t=1).values == 0).all()
    assert (real > 0).all() and len(np.unique(real)) >= 3
    # the three outputs describe the same map: usable is clear (255 where missing), scores peak at the class
    np.testing.assert_array_equal(usable.values == 1, classes.values == 1)
    np.testing.assert_array_equal(usable.values == 255, classes.values == 0)
    np.testing.assert_array_equal(scores.isel(t=0).argmax("bands").values, real)


def _scene_map(whole, model: str):
    """One run over the whole scene as the backend holds it: no data beyond the product (what the chunks at its
    edges see), rather than the command line's mirror of the product at its edges."""
    from kappamask_core import classify

    pad = 800  # beyond what any tile can reach
    padded = backend._padded_window(whole, -pad, whole.sizes["y"] + pad, -pad, whole.sizes["x"] + pad)
    return backend.crop_to_extent(classify(padded, model, level="L1C"), "SENTINEL2_L1C").values


def test_the_executed_map_is_the_whole_scenes_map(l1c_outputs):
    """The bundled 30 m network (768 px tiles at 10 m) through the published process: the map over the bounding
    box is the map of one run over the whole scene, on every pixel."""
    whole = backend.scene("SENTINEL2_L1C").isel(t=0).sel(bands=list(SIX))
    np.testing.assert_array_equal(l1c_outputs["classes"].isel(t=0, bands=0).values,
                                  _scene_map(whole, "ukis-csmask-6b-l1c"))


@pytest.mark.parametrize("model,shift", [("ukis-csmask-6b-l1c", 1), ("ukis-csmask-6b-l1c", 3),
                                         ("ukis-csmask-6b-l1c", 100), ("ukis-csmask-6b-l1c", 224), ("kappamask-v2", 100)])
def test_chunks_anywhere_give_the_whole_scenes_map(request, monkeypatch, model, shift):
    """However the backend lays its chunks (the layout grid moved by 1, 3, 100 and 224 px), and in chunks smaller
    than the area (a 512 px core with the published 768 px overlap), the executed map is the whole scene's on
    every pixel, for the bundled network and for KappaMask v2's (the official architecture with the golden
    weights, on a smaller area: its tiles take seconds each here)."""
    monkeypatch.setattr(backend, "LAYOUT_OFFSET", (shift, (shift * 7) % 256))
    data = _mutated("kappamask_l1c", lambda d: _set_node(d, "apply_neighborhood", lambda a: a.update(
        size=[{**s, "value": 512} if s["dimension"] in ("x", "y") else s for s in a["size"]])))
    whole = backend.scene("SENTINEL2_L1C").isel(t=0)
    extent = None
    if model == "kappamask-v2":
        model = str(request.getfixturevalue("imported")["v2"][1])
        _set_node(data, "load_collection", lambda a: a.update(bands=[str(b) for b in whole["bands"].values]))
        extent = {"west": 12.55, "south": 52.48, "east": 12.57, "north": 52.49}
    else:
        whole = whole.sel(bands=SIX)
    out = backend.execute_spec(data, options={"model": model, "chunk_overlap": 768},
                               **({"spatial_extent": extent} if extent else {}))
    assert len(backend.LOG["chunks"]) >= 8
    executed = out.isel(t=0, bands=0).values
    assert extent or (executed > 0).mean() > 0.99  # (random weights may well say "missing")
    np.testing.assert_array_equal(executed, _scene_map(whole, model))


def test_a_context_free_model_gives_exactly_the_direct_result(tmp_path):
    """With a per-pixel (identity) model the executed graph equals a direct run on every pixel, dates and buffer
    edges included: chunking, overlap, layout offset, float32 coordinates and the options' path are exact."""
    from kappamask_core.faces.datacube import classify_datacube

    bands = ("B02", "B03", "B04", "B08", "B11", "B12")
    identity_onnx(tmp_path / "identity.onnx", 6)
    card = identity_card(tmp_path / "card.json", bands,
                         ("clear", "cloud_shadow", "semi_transparent_cloud", "cloud", "clear", "cloud"),
                         tile=64, overlap=8, levels=("L1C",))
    out = backend.execute("kappamask_l1c", temporal_extent=TWO_DATES, options={"model": str(card)})
    loaded = backend.load_collection("SENTINEL2_L1C", spec("kappamask_l1c")["parameters"][0]["default"],
                                     TWO_DATES, list(bands))
    direct = backend.crop_to_extent(classify_datacube(loaded, model=str(card), level="L1C"), "SENTINEL2_L1C")
    np.testing.assert_array_equal(out.values, direct.values.astype(np.float32))


def test_kappamask_mask_masks_exactly_the_unusable_pixels_whatever_output_is_asked():
    options = {"model": "ukis-csmask-6b-l2a", "buffer": {"cloud": 100}}
    # the caller asks for scores; the mask process sets its own output (usable) beside the options
    masked = backend.execute("kappamask_mask", spatial_extent=L2A_EXTENT, temporal_extent=L2A_DATES,
                             bands=["B04", "B08"], options={**options, "output": "scores"})
    usable = backend.execute("kappamask_l2a", spatial_extent=L2A_EXTENT, temporal_extent=L2A_DATES,
                             options={**options, "output": "usable"})
    data = backend.crop_to_extent(backend.load_collection("SENTINEL2_L2A", L2A_EXTENT, L2A_DATES, ["B04", "B08"]),
                                  "SENTINEL2_L2A")
    assert [str(b) for b in usable["bands"].values] == ["usable"]
    keep = (usable.isel(bands=0) == 1).values
    assert keep.any() and (~keep).any() and masked.sizes["t"] == 2
    assert np.isnan(masked.values[:, 0][~keep]).all() and np.isnan(masked.values[:, 1][~keep]).all()
    np.testing.assert_array_equal(masked.values[:, :, keep[0]], data.values[:, :, keep[0]])


def test_the_composite_is_the_median_of_the_clear_observations_over_dates_with_cloud_and_without_data():
    """Three dates: the product's, one without data and one of opaque cloud. The composite of each band is the
    median of the observations the usable masks call clear (the cloud date adds almost none, the empty one no
    observation at all), and no-data where there is none."""
    dates = ["2019-02-20", "2019-03-01"]
    options = {"model": "ukis-csmask-6b-l2a"}
    made = backend.execute("kappamask_composite", spatial_extent=L2A_EXTENT, temporal_extent=dates,
                           bands=["B04", "B08"], options=options)
    usable = backend.execute("kappamask_l2a", spatial_extent=L2A_EXTENT, temporal_extent=dates,
                             options={**options, "output": "usable"})
    data = backend.crop_to_extent(backend.load_collection("SENTINEL2_L2A", L2A_EXTENT, dates, ["B04", "B08"]),
                                  "SENTINEL2_L2A")
    assert usable.sizes["t"] == 3 and "t" not in made.dims and made.dims == ("bands", "y", "x")
    real, empty, cloud = (usable.isel(t=i, bands=0).values for i in range(3))
    has_data = np.isfinite(data.isel(t=0, bands=0).values)
    assert (empty[has_data] == 255).all() and (cloud[has_data] == 0).mean() > 0.99  # no data; cloud, not clear
    clear = usable.isel(bands=0).values == 1
    assert clear[0].any() and (~clear[0] & has_data).any()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pixels without a clear observation: NaN
        expected = np.nanmedian(data.where(clear[:, None]).values, axis=0)
    np.testing.assert_array_equal(made.values, expected)
    assert np.isnan(made.values[:, ~clear.any(axis=0)]).all()


def test_a_cloud_buffer_grows_cloud_and_nothing_else():
    plain = backend.execute("kappamask_l2a", spatial_extent=L2A_EXTENT, temporal_extent=L2A_DATES,
                            options={"model": "ukis-csmask-6b-l2a"})
    grown = backend.execute("kappamask_l2a", spatial_extent=L2A_EXTENT, temporal_extent=L2A_DATES,
                            options={"model": "ukis-csmask-6b-l2a", "buffer": {"cloud": 200}})
    a, b = plain.isel(t=0, bands=0).values, grown.isel(t=0, bands=0).values
    assert (a == 4).sum() > 0 and (b == 4).sum() > (a == 4).sum()
    assert ((a == 4) <= (b == 4)).all()  # no cloud pixel is lost
    changed = a != b
    assert (b[changed] == 4).all() and (a[changed] != 0).all()  # only clear/shadow became cloud; missing stays


@pytest.mark.parametrize("metres", [300, 2600])
def test_buffers_are_exact_up_to_the_chunk_overlap(tmp_path, metres):
    """A buffer needs the classes within its radius: up to the 768 px overlap less the 508 px this model's 512 px
    tiles reach beyond a pixel (2600 m) every chunk has them right, so the executed map equals a buffered direct
    run of the whole area. (The model's scores depend on its whole tile; a wider buffer would take classes of
    tiles cut at a chunk's edge, and the job log says so: tests/faces/test_one_map.py.)"""
    from kappamask_core import ClassifyOptions
    from kappamask_core.faces.datacube import classify_datacube

    bands = ("B02", "B03", "B04", "B08", "B11", "B12")
    tile_mean_onnx(tmp_path / "tile_mean.onnx", 6)
    card = identity_card(tmp_path / "card.json", bands, ("clear", "cloud_shadow", "semi_transparent_cloud", "cloud",
                                                         "clear", "clear"), tile=512, overlap=8, levels=("L1C",),
                         weights="tile_mean.onnx")
    options = {"model": str(card), "buffer": {"cloud": metres}}
    out = backend.execute("kappamask_l1c", options=options)
    loaded = backend.load_collection("SENTINEL2_L1C", spec("kappamask_l1c")["parameters"][0]["default"],
                                     spec("kappamask_l1c")["parameters"][1]["default"], list(bands))
    direct = backend.crop_to_extent(classify_datacube(loaded, model=str(card), level="L1C",
                                                      options=ClassifyOptions(buffers={"cloud": metres})),
                                    "SENTINEL2_L1C").values.astype(np.float32)
    unbuffered = backend.crop_to_extent(classify_datacube(loaded, model=str(card), level="L1C"),
                                        "SENTINEL2_L1C").values
    assert ((direct == 4) & (unbuffered != 4)).sum() > 100  # the buffer did grow the clouds
    np.testing.assert_array_equal(out.values, direct, err_msg=f"{metres} m")


@pytest.mark.parametrize("output,labels", [("classes", ["kappamask"]), ("usable", ["usable"]),
                                           ("scores", ["missing", "clear", "cloud_shadow",
                                                       "semi_transparent_cloud", "cloud"])])
def test_apply_metadata_names_the_bands_the_udf_returns(output, labels):
    from openeo.metadata import Band, BandDimension, CubeMetadata, SpatialDimension, TemporalDimension

    from kappamask_core.faces.datacube import OUTPUT_BANDS

    metadata = CubeMetadata(dimensions=[
        TemporalDimension(name="t", extent=None), SpatialDimension(name="x", extent=None),
        SpatialDimension(name="y", extent=None), BandDimension(name="bands", bands=[Band(b) for b in SIX])])
    namespace = {}
    exec(compile(UDF_CODE, "kappamask_udf.py", "exec"), namespace)
    assert namespace["OUTPUT_BANDS"] == OUTPUT_BANDS  # the UDF's copy (it runs without the archive) is the core's
    # the processes nest the caller's options: the keys beside them win
    assert namespace["apply_metadata"](metadata, {"options": {"output": "classes"}, "output": output}).band_names \
        == labels


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_an_execution_fails_where_a_backend_refuses(mutation):
    change, expected = MUTATIONS[mutation]
    broken = _mutated("kappamask_l1c", change)
    if isinstance(expected, type):
        with pytest.raises(expected):
            backend.execute_spec(broken, options={"model": "ukis-csmask-6b-l1c"})
    else:
        with pytest.raises(Exception, match=expected):
            backend.execute_spec(broken, options={"model": "ukis-csmask-6b-l1c"})


def test_a_graph_that_drops_the_context_fails_instead_of_running_another_model(tmp_path):
    """Without the context the UDF knows neither the caller's model nor the level (six bands are in L1C and
    L2A alike): it must refuse, not run its default model on a guessed level."""
    bands = ("B02", "B03", "B04", "B08", "B11", "B12")
    identity_onnx(tmp_path / "identity.onnx", 6)
    card = identity_card(tmp_path / "card.json", bands, ("clear", "cloud_shadow", "semi_transparent_cloud", "cloud",
                                                         "clear", "cloud"), tile=64, overlap=8, levels=("L1C",))
    kept = backend.execute("kappamask_l1c", options={"model": str(card)})
    assert kept.sizes["bands"] == 1
    with pytest.raises(ValueError, match='give the level'):
        backend.execute_spec(_mutated("kappamask_l1c", lambda d: _set_node(
            d, "apply_neighborhood", lambda a: a.pop("context"))), options={"model": str(card)})


def test_the_whole_time_series_per_call_gives_the_same_map():
    """Without a t size the UDF gets every date at once (more memory, the same result)."""
    def whole_series(data):
        _set_node(data, "apply_neighborhood", lambda a: a.update(size=[s for s in a["size"] if s["dimension"] != "t"]))

    per_date = backend.execute("kappamask_l1c", temporal_extent=TWO_DATES, options={"model": "ukis-csmask-6b-l1c"})
    whole = backend.execute_spec(_mutated("kappamask_l1c", whole_series), temporal_extent=TWO_DATES,
                                 options={"model": "ukis-csmask-6b-l1c"})
    assert all(c["dims"] == ("t", "bands", "y", "x") for c in backend.LOG["chunks"])
    np.testing.assert_array_equal(whole.values, per_date.values)


def test_the_published_processes_trigger_no_install_and_an_inline_block_would_cost_one_per_call(tmp_path):
    """geopyspark-driver pip-installs a UDF's inline (PEP 723) dependencies before every batch job and, in zip mode
    (Copernicus Data Space), unpacks them for every run_udf call. The published processes declare none: no
    install, no unpack. The same process with an inline block for onnxruntime: one install per job, one unpack of
    the whole onnxruntime per chunk and date."""
    from helpers import WHEEL_CACHE, cached_wheels
    from kappamask_udf.archive import onnxruntime_wheel
    from kappamask_udf.processes import Publication, build_templates

    wheel = cached_wheels(["onnxruntime-*cp311*manylinux*x86_64.whl"], lambda: [onnxruntime_wheel(WHEEL_CACHE)])[0]
    published = build_templates("default", Publication("https://example.org/kappamask", "0" * 64))["kappamask_l1c"]
    url = "https://example.org/kappamask/kappamask_l1c.json"
    caller = {"call1": {"process_id": "kappamask_l1c", "namespace": url, "arguments": {}, "result": True}}
    plain = copy.deepcopy(published)
    for node in walk(plain["process_graph"]):  # the archive's URL cannot be reached here: the test's own install
        if node["process_id"] == "apply_neighborhood":
            node["arguments"]["context"] = {k: v for k, v in node["arguments"]["context"].items()
                                            if not k.startswith("dependency_")}
    costs = {}
    for name, udf in (("published", UDF_CODE), ("inline block", INLINE + UDF_CODE)):
        spec_ = copy.deepcopy(plain)
        for node in walk(spec_["process_graph"]):
            if node["process_id"] == "run_udf":
                node["arguments"]["udf"] = udf
        work = tmp_path / name.replace(" ", "_")
        work.mkdir()
        state = backend.prepare_batch_job(caller, wheel.parent, work, specs={url: spec_})
        backend.execute_spec(spec_)
        costs[name] = dict(state, calls=len(backend.LOG["chunks"]))
    assert costs["published"]["dependencies"] == [] and costs["published"]["installs"] == 0
    assert costs["published"]["unpacks"] == 0
    inline = costs["inline block"]
    assert inline["dependencies"] == ["onnxruntime"] and inline["installs"] == 1
    assert inline["unpacks"] == inline["calls"] > 1
    print(f"\ninline block: install {inline['install_s']:.1f} s, {inline['unpacks']} unpacks of onnxruntime "
          f"({inline['unpack_s'] / inline['unpacks']:.2f} s each); published: none")


def test_a_failed_install_fails_the_job(tmp_path):
    spec_ = copy.deepcopy(spec("kappamask_l1c"))
    for node in walk(spec_["process_graph"]):
        if node["process_id"] == "run_udf":
            node["arguments"]["udf"] = INLINE.replace("onnxruntime", "no-such-package-kappamask") + UDF_CODE
    with pytest.raises(RuntimeError, match="UdfDependencyHandlingFailure"):
        backend.prepare_batch_job(spec_["process_graph"], tmp_path, tmp_path)


def test_the_statistics_process_gives_each_geometrys_shares_of_the_classes_by_pixel_centres():
    """kappamask_stats over the product's date, the empty date and the cloud date: per geometry, the share of its
    pixels (by centre, as aggregate_spatial counts them) with data, and each class's share of those; no shares
    where nothing is valid."""
    from rasterio.features import geometry_mask
    from rasterio.warp import transform_geom

    from kappamask_udf.processes import EXAMPLE_FIELDS, STATS_BANDS

    dates = ["2019-02-20", "2019-03-01"]
    options = {"model": "ukis-csmask-6b-l2a"}
    stats = backend.execute("kappamask_stats", temporal_extent=dates, options=options)
    classes = backend.execute("kappamask_l2a", temporal_extent=dates, options={**options, "output": "classes"})
    assert stats.dims == ("geometry", "t", "bands") and [str(b) for b in stats["bands"].values] == list(STATS_BANDS)
    assert stats.sizes["t"] == 3 and stats.sizes["geometry"] == len(EXAMPLE_FIELDS["features"])
    x, y = classes["x"].values, classes["y"].values
    from affine import Affine

    transform = Affine(float(x[1] - x[0]), 0, float(x[0] - (x[1] - x[0]) / 2), 0, float(y[1] - y[0]),
                       float(y[0] - (y[1] - y[0]) / 2))
    for g, feature in enumerate(EXAMPLE_FIELDS["features"]):
        geometry = transform_geom("EPSG:4326", backend.scene("SENTINEL2_L2A").attrs["crs"], feature["geometry"])
        inside = ~geometry_mask([geometry], out_shape=(len(y), len(x)), transform=transform)
        assert inside.sum() > 100
        for t in range(3):
            values = classes.isel(t=t, bands=0).values[inside]
            valid = values > 0
            row = stats.isel(geometry=g, t=t).values
            assert row[0] == pytest.approx(valid.mean())
            if valid.any():
                np.testing.assert_allclose(row[1:], [(values[valid] == c).mean() for c in (1, 2, 3, 4)])
            else:  # the empty date: no shares, not zeros
                assert np.isnan(row[1:]).all()
    assert (stats.isel(t=0).sel(bands="valid_fraction").values > 0.4).all()  # on the product's strip of data
    assert (stats.isel(t=1).sel(bands="valid_fraction").values == 0).all()
    assert (stats.isel(t=2).sel(bands="cloud").values > 0.99).all()  # the opaque cloud date
