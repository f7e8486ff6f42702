"""Values as Copernicus Data Space's loader delivers them: the published processes on a date of processing baseline
04.00 or later (tests/helpers/openeo_backend.py: int16 DN with the -1000 offset added, not clipped, no-data kept,
so below 0 where the scene is darker than reflectance 0 and exactly 0 where a stored 1000 was).

The map of such a date is the map of the same product read with its offset declared (stored DN and the offset in
the metadata, as a SAFE product or a cube with CF attributes gives it): one scene, one map, whoever removed the
offset."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import ROOT, require
from helpers import openeo_backend as backend

from kappamask_core import InputError, classify
from kappamask_udf.processes import EXAMPLE_BBOX

require("openeo_processes_dask", "openeo_pg_parser_networkx")

L2A_EXTENT = {"west": 152.0816, "south": -11.85, "east": 152.10, "north": -11.76}  # T56LMM's strip of data
SIX = ["B02", "B03", "B04", "B08", "B11", "B12"]
DATES = {"L1C": ["2023-02-16", "2023-02-17"], "L2A": ["2023-02-20", "2023-02-21"]}
COLLECTION = {"L1C": "SENTINEL2_L1C", "L2A": "SENTINEL2_L2A"}
EXTENT = {"L1C": {}, "L2A": {"spatial_extent": L2A_EXTENT}}
MODEL = {"L1C": "ukis-csmask-6b-l1c", "L2A": "ukis-csmask-6b-l2a"}


def _declared_map(level: str) -> np.ndarray:
    """The product the harmonised date stands for, read as stored DN with its offset declared (CF attributes:
    reflectance = DN x 0.0001 - 0.1), over the whole scene with no data beyond it; cut to the last run's box."""
    whole = backend.stored_baseline_0400(backend.SCENES[COLLECTION[level]]().isel(t=0).sel(bands=SIX))
    whole = whole.astype(np.float32).assign_attrs(scale_factor=1e-4, add_offset=-0.1)  # NaN beyond it
    pad = 800  # beyond what any tile can reach
    padded = backend._padded_window(whole, -pad, whole.sizes["y"] + pad, -pad, whole.sizes["x"] + pad)
    return backend.crop_to_extent(classify(padded, MODEL[level], level=level), COLLECTION[level]).values


@pytest.mark.parametrize("level", ["L1C", "L2A"])
def test_a_harmonised_date_gives_the_map_of_the_product_with_its_offset_declared(level):
    process = f"kappamask_{level.lower()}"
    delivered = backend.crop_to_extent(backend.load_collection(COLLECTION[level], EXTENT[level].get(
        "spatial_extent", EXAMPLE_BBOX[level]), DATES[level], SIX), COLLECTION[level])
    values = delivered.values
    assert np.nanmin(values) < 0  # what a loader that clips nothing gives: the stored values would be refused
    out = backend.execute(process, temporal_extent=DATES[level], options={"model": MODEL[level]}, **EXTENT[level])
    executed = out.isel(t=0, bands=0).values
    np.testing.assert_array_equal(executed, _declared_map(level))
    has_data = np.isfinite(values[0]).all(axis=0)
    assert (executed[has_data] > 0).all() and (executed[~has_data] == 0).all()
    zero = (values[0] == 0).any(axis=0) & has_data  # a stored 1000: reflectance 0, a value, not missing
    if level == "L2A":
        assert zero.any()
    assert (executed[zero] > 0).all()


def test_the_mask_and_the_composite_run_on_a_harmonised_date_and_keep_its_values():
    options = {"model": MODEL["L2A"]}
    usable = backend.execute("kappamask_l2a", spatial_extent=L2A_EXTENT, temporal_extent=DATES["L2A"],
                             options={**options, "output": "usable"})
    masked = backend.execute("kappamask_mask", spatial_extent=L2A_EXTENT, temporal_extent=DATES["L2A"],
                             bands=["B11", "B12"], options=options)
    made = backend.execute("kappamask_composite", spatial_extent=L2A_EXTENT, temporal_extent=DATES["L2A"],
                           bands=["B11", "B12"], options=options)
    data = backend.crop_to_extent(backend.load_collection("SENTINEL2_L2A", L2A_EXTENT, DATES["L2A"], ["B11", "B12"]),
                                  "SENTINEL2_L2A")
    keep = usable.isel(t=0, bands=0).values == 1
    assert keep.any() and (~keep).any()
    np.testing.assert_array_equal(masked.isel(t=0).values[:, keep], data.isel(t=0).values[:, keep])
    assert (data.isel(t=0).values[:, keep] < 0).any()  # negative reflectance kept as the backend gave it
    assert np.isnan(masked.isel(t=0).values[:, ~keep]).all()
    np.testing.assert_array_equal(made.values[:, keep], data.isel(t=0).values[:, keep])


def _udf(cube, context):
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    code = (ROOT / "udf" / "kappamask_udf.py").read_text()
    return run_udf_code(code, UdfData(datacube_list=[XarrayDataCube(cube)], user_context=context))


def _chunk(low: float):
    """A float32 chunk as the UDF receives it, one pixel of B11 at ``low``."""
    from helpers import dn_cube

    cube = dn_cube(SIX, 64, 64).astype(np.float32)
    cube.loc[{"bands": "B11"}][10, 10] = low
    return cube


def test_harmonised_values_below_minus_1000_are_refused_and_stored_dn_below_0_name_the_units():
    _udf(_chunk(-1000), {"model": "default", "level": "L2A", "units": "harmonised"})  # the lowest harmonised value
    with pytest.raises(Exception, match=r"down to -1001 .*below the -1000 that harmonised DN reach"):
        _udf(_chunk(-1001), {"model": "default", "level": "L2A", "units": "harmonised"})
    with pytest.raises(Exception, match=r"negative values .*units 'harmonised'"):
        _udf(_chunk(-1), {"model": "default", "level": "L2A"})
    # an offset still to add lowers the floor's room: harmonised DN + offset may not go below -1000
    with pytest.raises(Exception, match=r"below the 0 that harmonised DN reach .*offset -1000 still to add"):
        _udf(_chunk(-1), {"model": "default", "level": "L2A", "units": "harmonised", "offset": -1000})


def test_harmonised_units_take_zero_as_a_value_and_the_nodata_value_as_missing():
    """An integer cube of harmonised DN with a no-data value: its 0 is reflectance 0, its no-data value missing."""
    from helpers import dn_cube

    cube = (dn_cube(SIX, 48, 48).astype(np.int16) - 1000).assign_attrs(nodata=-32768)
    cube[:, :8, :8] = 0
    cube[:, -8:, -8:] = -32768
    classes = classify(cube, "default", level="L2A", units="harmonised").values
    assert (classes[:8, :8] > 0).all() and (classes[-8:, -8:] == 0).all()
    assert (classes[8:-8, 8:-8] > 0).all()
    with pytest.raises(InputError, match="units must be 'dn', 'harmonised' or 'reflectance'"):
        classify(cube, "default", level="L2A", units="harmonized")
