"""The whole chain through ONNX Runtime with an identity model: exact expectations."""

import numpy as np
import pytest
from helpers import dn_cube, identity_card, identity_onnx

from kappamask_core import ClassifyOptions, classify, run
from kappamask_core.chain.resample import replicate
from kappamask_core.foundation.classes import CLEAR, CLOUD, CLOUD_SHADOW, MISSING, SEMI_TRANSPARENT_CLOUD

BANDS = ("B02", "B03", "B04", "B08")
MAPS = ("clear", "cloud_shadow", "semi_transparent_cloud", "cloud")
VALUES = np.array([CLEAR, CLOUD_SHADOW, SEMI_TRANSPARENT_CLOUD, CLOUD], np.uint8)


@pytest.fixture
def identity_model(tmp_path):
    def make(**card_kw):
        layout = card_kw.get("layout", "NCHW")
        identity_onnx(tmp_path / "identity.onnx", len(BANDS), layout=layout)
        return identity_card(tmp_path / "card.json", BANDS, MAPS, **card_kw)

    return make


@pytest.mark.parametrize("shape", [(5, 7), (16, 16), (37, 53), (100, 61)])
@pytest.mark.parametrize("overlap,margin,stitch", [(0, 0, "crop"), (4, 0, "crop"), (6, 3, "blend"), (10, 5, "crop")])
def test_identity_model_classes_are_argmax_of_bands(identity_model, shape, overlap, margin, stitch):
    cube = dn_cube(BANDS, *shape, seed=shape[0], nodata_box=((1, 3), (2, 4)))
    card = identity_model(overlap=overlap, margin=margin)
    out = classify(cube, card, level="L1C", stitch=stitch)
    expected = VALUES[np.argmax(cube.values.astype(np.float32), axis=0)]
    expected[(cube.values == 0).all(axis=0)] = MISSING
    np.testing.assert_array_equal(out.values, expected)
    assert out.dtype == np.uint8 and out.dims == ("y", "x")
    np.testing.assert_array_equal(out["x"].values, cube["x"].values)


@pytest.mark.parametrize("stitch", ["crop", "blend"])
def test_coarser_working_resolution_averages_down_and_replicates_back(identity_model, stitch):
    cube = dn_cube(BANDS, 50, 47, seed=3)
    card = identity_model(resolution=30, tile=8, overlap=2, margin=1, pad_mode="symmetric")
    out = classify(cube, card, level="L2A", stitch=stitch)
    # the ragged last 30 m cells lie partly outside the raster: the mean of their pixels inside
    inside = np.pad(cube.values.astype(np.float32) / 10000, ((0, 0), (0, 1), (0, 1)), constant_values=np.nan)
    work = np.nanmean(inside.reshape(len(BANDS), 17, 3, 16, 3), axis=(2, 4))
    expected = replicate(VALUES[np.argmax(work, axis=0)], 3, 50, 47)
    np.testing.assert_array_equal(out.values, expected)


def test_nhwc_models_and_scores_output(identity_model):
    cube = dn_cube(BANDS, 20, 20, seed=4)
    card = identity_model(layout="NHWC", tile=8, overlap=2)
    ds = classify(cube, card, level="L1C", scores=True)
    refl = cube.values / 10000
    np.testing.assert_allclose(ds["scores"].sel({"class": "cloud"}).values, refl[3], rtol=1e-5)
    assert (ds["scores"].sel({"class": "missing"}).values == 0).all()
    np.testing.assert_array_equal(ds["classes"].values, VALUES[np.argmax(refl, axis=0)])


def test_reflectance_input_with_nan_is_missing(identity_model):
    cube = dn_cube(BANDS, 12, 12, seed=5).astype(np.float32) / 10000
    cube[:, 0, 0] = np.nan
    out = classify(cube, identity_model(tile=8, overlap=2), level="L1C", units="reflectance")
    assert out.values[0, 0] == MISSING and (out.values[1:] != MISSING).all()


def test_all_nodata_tiles_are_skipped(identity_model):
    cube = dn_cube(BANDS, 40, 40, nodata_box=((0, 40), (0, 24)))
    result = run(cube, identity_model(tile=8, overlap=0), level="L1C", options=ClassifyOptions())
    # the ground's 8 px tiles: columns start at the raster's edge (x = 300000 m), rows 6 px before it (4999980 m is
    # 6 rows past a multiple of 80 m): 3 of 5 tile columns are empty in each of 6 rows
    assert result.runtime["tiles_skipped"] == 18
    assert (result.classes[:, :24] == MISSING).all() and (result.classes[:, 24:] != MISSING).all()


def test_time_dimension_of_length_one_is_accepted(identity_model):
    cube = dn_cube(BANDS, 9, 9).expand_dims(t=1)
    assert classify(cube, identity_model(tile=8, overlap=2), level="L1C").shape == (9, 9)
