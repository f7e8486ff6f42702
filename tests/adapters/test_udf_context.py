"""The UDF's context and cubes: what cannot be used is named, never guessed."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import ROOT, dn_cube

SIX = ("B02", "B03", "B04", "B08", "B11", "B12")


def _udf_error(cube, context):
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    code = (ROOT / "udf" / "kappamask_udf.py").read_text()
    with pytest.raises(Exception) as info:
        run_udf_code(code, UdfData(datacube_list=[XarrayDataCube(cube)], user_context=context))
    return str(info.value)


def _udf_cube(bands=SIX, height=48, width=48):
    cube = dn_cube(bands, height, width).astype(np.float64)
    return cube.expand_dims(t=[np.datetime64("2020-05-01")])


MODEL_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")  # what the bundled model reads


def test_udf_context_errors_name_the_key_and_only_band_errors_mention_bands():
    import xarray as xr
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    cube = xr.DataArray(np.full((1, 6, 16, 16), 1000.0), dims=("t", "bands", "y", "x"),
                        coords={"bands": ["B02", "B03", "B04", "B08", "B11", "B12"]})
    code = (ROOT / "udf" / "kappamask_udf.py").read_text()

    def error(context):
        with pytest.raises(Exception) as info:
            run_udf_code(code, UdfData(datacube_list=[XarrayDataCube(cube)], user_context=context))
        return str(info.value)

    assert error({"batch_size": "eight"}) == "KappaMask UDF: context 'batch_size' must be a whole number, not 'eight'"
    assert error({"offset": "minus"}) == "KappaMask UDF: context 'offset' must be a number, not 'minus'"
    assert error({"overlap": -3}).startswith("KappaMask UDF: context 'overlap' must be at least 0")
    unrelated = error({"model": "no-such-model"})
    assert unrelated.startswith("KappaMask UDF: unknown model") and "load_collection" not in unrelated
    # 6 bands: KappaMask v2 L2A needs 14
    assert "load_collection(bands=...)" in error({"model": "kappamask-v2", "level": "L2A"})
    # six bands that L1C and L2A products both have: the level must be given, never guessed
    assert 'give the level' in error({"model": "kappamask-v2"})


@pytest.mark.parametrize("context, message", [
    ({"level": "L1C", "offset": float("nan")}, "context 'offset' must be a number"),
    ({"level": "L1C", "offset": float("inf")}, "context 'offset' must be a number"),
    ({"level": "L1C", "buffer": 300}, "context 'buffer' must be a string"),
    ({"level": "L1C", "buffer": True}, "context 'buffer' must be a string"),
    ({"level": "L1C", "buffer": ["cloud", 300]}, "context 'buffer' must be a string"),
    ({"level": 1}, "context 'level' must be a string"),
    ({"level": "L1C", "weights": 7}, "context 'weights' must be a string"),
    ({"level": "L1C", "dependency_folder": 3}, "context 'dependency_folder' must be a string"),
    ({}, "give the level"),
])
def test_udf_context_values_of_the_wrong_kind_name_the_key(context, message):
    error = _udf_error(_udf_cube(), context)
    assert error.startswith("KappaMask UDF:") and message in error, error


def test_udf_cubes_that_cannot_be_classified_are_named():
    negative = _udf_cube()
    negative[0, 0, :3] = -20
    assert "negative values" in _udf_error(negative, {"level": "L1C"})
    same = _udf_cube().assign_coords(bands=["B02"] * 6)
    assert "band labels repeat (B02)" in _udf_error(same, {"level": "L1C"})
    assert "has no y" in _udf_error(_udf_cube(height=0), {"level": "L1C"})
    common = _udf_cube().assign_coords(bands=["blue", "green", "red", "nir", "swir16", "swir22"])
    error = _udf_error(common, {})
    assert "give the level" in error and "requested" not in error


def test_an_implausible_offset_in_the_udf_is_refused():
    from helpers import ROOT, dn_cube
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    cube = dn_cube(MODEL_BANDS, 32, 32).expand_dims(t=[np.datetime64("2020-01-01")]).astype(float)
    data = UdfData(datacube_list=[XarrayDataCube(cube)], user_context={"level": "L1C", "offset": 20000})
    with pytest.raises(ValueError, match="DN offset 20000"):
        run_udf_code((ROOT / "udf" / "kappamask_udf.py").read_text(), data)
