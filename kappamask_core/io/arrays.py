"""xarray DataArrays as products: dimensions (bands, y, x) (and a length-1 time), bands labelled by name or
common name, turned north-up, checked for units (DN or reflectance) and data types, with CF ``scale_factor`` /
``add_offset`` and nodata attributes taken as the file readers take tags."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..foundation.bands import SENSORS, UNITS, asset_band, sensor_of_platforms
from ..foundation.errors import InputError
from .array_grid import array_crs, centred, flips_to_north_up, grid_from_coords, grid_steps
from .bandfiles import as_missing
from .product import Product, check_dtype, check_level, declared_scaling, merge_scaling

if TYPE_CHECKING:
    import xarray


class ArrayBand:
    """One band held in memory (xarray input), already on the product grid."""

    factor = 1

    def __init__(self, name: str, array: np.ndarray):
        self.name, self.array = name, array
        self.shape, self.dtype = array.shape, str(array.dtype)

    def read(self) -> np.ndarray:
        return self.array

    def open(self) -> "ArrayBand":
        return self

    def read_rows(self, row0: int, row1: int) -> np.ndarray:
        return self.array[row0:row1]

    def read_decimated(self, shape: tuple[int, int], window=None) -> np.ndarray:
        array = self.array if window is None else self.array[window[0] : window[1], window[2] : window[3]]
        sy, sx = -(-array.shape[0] // shape[0]), -(-array.shape[1] // shape[1])
        return array[::sy, ::sx]

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def array_sensor(cube) -> str | None:
    """The sensor an array's or a cube's own metadata names: stackstac's ``platform`` coordinate (one value per
    date) or a ``platform`` attribute (:func:`~kappamask_core.foundation.bands.sensor_of_platforms`); None where
    it names none."""
    if "platform" in getattr(cube, "coords", {}):
        return sensor_of_platforms([str(v) for v in np.atleast_1d(cube["platform"].values)], "the cube")
    platform = getattr(cube, "attrs", {}).get("platform")
    return sensor_of_platforms([platform], "the cube") if isinstance(platform, str) else None


def band_labels(given, sensor: str = "sentinel-2") -> dict[str, list]:
    """Role -> the label that names it ('B02', 'blue', 'B02_10m'; Landsat's 'nir08', 'SR_B5'), for the labels of
    an array's bands of ``sensor``; labels that name no band (masks, indices) are not ours to use. One band named
    twice is an error: which layer is meant cannot be known."""
    labels: dict[str, list] = {}
    for label in given:
        found = asset_band(str(label), sensor)
        if found is not None:
            labels.setdefault(found[0], []).append(label)
    repeated = sorted(name for name, named in labels.items() if len(named) > 1)
    if repeated:
        raise InputError(f"the array's band labels repeat ({', '.join(repeated)}): {[str(b) for b in given]}; "
                         "give each band once")
    return labels


def from_dataarray(da: "xarray.DataArray", level: str | None = None, units: str = "dn", product_id: str = "array",
                   peaks: dict[str, float] | None = None, sensor: str = "sentinel-2") -> Product:
    """A product of ``sensor`` from an xarray DataArray with dims ('bands', 'y', 'x') (and an optional length-1
    't'), turned north-up (:func:`flips_to_north_up`). ``peaks`` (band -> largest valid value,
    :func:`band_peaks`) decides the units check where the array is one chunk of a larger image: the whole image
    decides, as it does in one run."""
    import xarray as xr

    if not isinstance(da, xr.DataArray):
        raise InputError(f"expected an xarray.DataArray, got {type(da).__name__}")
    if units not in UNITS:
        raise InputError(f"units must be {', '.join(map(repr, UNITS[:-1]))} or {UNITS[-1]!r}, not {units!r}")
    for dim in ("t", "time"):
        if dim in da.dims:
            if da.sizes[dim] != 1:
                raise InputError(f"the array has {da.sizes[dim]} time steps; classify one image at a time")
            da = da.isel({dim: 0})
    if set(da.dims) != {"bands", "y", "x"}:
        raise InputError(f"the array must have dimensions ('bands', 'y', 'x'), got {da.dims}")
    if not (np.issubdtype(da.dtype, np.integer) or np.issubdtype(da.dtype, np.floating)):
        raise InputError(f"the array has data type {da.dtype}; expected integer DN or floating-point values")
    if "bands" not in da.coords:
        raise InputError("the array's 'bands' dimension has no labels; label it with band names such as B02")
    empty = [d for d in ("y", "x", "bands") if da.sizes[d] == 0]
    if empty:
        raise InputError(f"the array has no {' and no '.join(empty)} (shape {dict(da.sizes)})")
    source = f"xarray.DataArray {product_id}"
    da = centred(da)
    grid_steps(da, source)  # an irregular grid is refused before anything is turned or read
    flip_y, flip_x = flips_to_north_up(da)
    if flip_y or flip_x:
        da = da.isel(y=slice(None, None, -1) if flip_y else slice(None), x=slice(None, None, -1) if flip_x else slice(None))
    labels = band_labels(da["bands"].values.tolist(), sensor)
    order = da["bands"].values.tolist()
    nodata = dict(zip(map(str, order), per_band_attribute(da.attrs, "nodata", order, source)))
    bands = {}
    for name, given in labels.items():
        check_dtype(name, da.dtype, f"{source}: band {name}", units=units)
        values = np.asarray(da.sel(bands=given[0]).transpose("y", "x").values)
        marker = nodata[str(given[0])]
        if marker is not None:  # the array's own no-data value is missing like Sentinel-2's 0 (harmonised: NaN)
            values = nodata_as_nan(values, marker) if units == "harmonised" else as_missing(values.copy(), marker)
        bands[name] = ArrayBand(name, values)
    check_units(band_peaks({n: b.array for n, b in bands.items()}) if peaks is None else
                {n: p for n, p in peaks.items() if n in bands and p > 0}, units, source)
    product = Product(
        id=product_id,
        level=check_level(level, bands, "", source, sensor),
        grid=grid_from_coords(da, array_crs(da, source), source, SENSORS[sensor].resolution),
        bands=bands,
        units=units,
        source=source,
        sensor=sensor,
    )
    declared = _scaling_attributes(da.attrs, labels, order, source)
    if declared and units == "dn":  # raw values with CF scale_factor / add_offset (rioxarray, odc-stac without decoding)
        merge_scaling(product, *declared_scaling(declared, source, "the scale_factor and add_offset attributes"),
                      "the array's scale_factor and add_offset attributes")
    elif units == "dn" and sensor != "sentinel-2":
        raise InputError(f"{source}: {SENSORS[sensor].title} DN have the scale and offset of their own product "
                         "(Landsat Level-1's depend on the scene), which the array does not declare: give the "
                         "array's scale_factor and add_offset attributes, or the bands as reflectance (units "
                         "'reflectance'; stackstac's rescale=True gives it; HLS's reflectance x 10000: units "
                         "'harmonised')")
    return product


# The attributes that change values, each under the names the libraries write them with: CF, rioxarray, odc-stac
VALUE_ATTRIBUTES = {"scale_factor": ("scale_factor", "scales"), "add_offset": ("add_offset", "offsets"),
                    "nodata": ("nodata", "_FillValue")}


def per_band_attribute(attrs: dict, key: str, labels: list, source: str) -> list[float | None]:
    """The value of one of :data:`VALUE_ATTRIBUTES` for each of ``labels`` (the array's band labels, in its
    order): one number for every band, or one per band; None where the array declares none. A list of another
    length, or a value that is not a finite number, is refused: which band it belongs to cannot be known."""
    value = next((attrs[name] for name in VALUE_ATTRIBUTES[key] if name in attrs), None)
    if value is None:
        return [None] * len(labels)
    values = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value] * len(labels)
    if len(values) != len(labels):
        raise InputError(f"{source}: its {key} attribute has {len(values)} values for {len(labels)} bands; give "
                         "one value, or one per band in the array's band order")
    for v in values:
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float, np.number))
                              or not np.isfinite(v)):
            if key == "nodata" and isinstance(v, (float, np.floating)) and np.isnan(v):
                continue  # NaN marks missing floating-point values, which are missing anyway
            raise InputError(f"{source}: its {key} attribute holds {v!r}, which is not a finite number")
    return [None if v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)) else float(v)
            for v in values]


def _scaling_attributes(attrs: dict, labels: dict, order: list, source: str) -> dict[str, tuple[float, float]]:
    """{band: (scale, offset)} from CF ``scale_factor`` / ``add_offset`` (one number, or one per band in the
    array's band order) or rioxarray's ``scales`` / ``offsets``; empty where the array declares none."""
    scales = per_band_attribute(attrs, "scale_factor", order, source)
    offsets = per_band_attribute(attrs, "add_offset", order, source)
    position = {str(label): i for i, label in enumerate(order)}
    declared: dict[str, tuple[float, float]] = {}
    for name, given in labels.items():
        scale, offset = scales[position[str(given[0])]], offsets[position[str(given[0])]]
        declared[name] = (1.0 if scale is None else scale, 0.0 if offset is None else offset)
    return {} if all(v == (1.0, 0.0) for v in declared.values()) else declared


# The largest valid value tells DN (thousands) from reflectance (about 0 to 1.5; at most 6.5535).
DN_AT_LEAST, REFLECTANCE_AT_MOST = 10.0, 100.0


def nodata_as_nan(values: np.ndarray, nodata: float) -> np.ndarray:
    """Harmonised values with their no-data value as NaN (float32): a 0 among them is reflectance 0, not missing."""
    values = values.astype(np.float32)
    values[values == np.float32(nodata)] = np.nan
    return values


def band_peaks(arrays: dict) -> dict[str, float]:
    """Band -> the largest absolute valid value (neither 0, the no-data value, nor NaN), for bands with any."""
    peaks = {}
    for name, values in arrays.items():
        if name in ("SCL",):
            continue
        if np.issubdtype(values.dtype, np.floating):
            values = values[np.isfinite(values)]
        values = values[values != 0]
        if values.size:
            peaks[name] = float(np.abs(values).max())
    return peaks


def block_peaks(block: np.ndarray, labels: list, attrs: dict) -> np.ndarray:
    """One chunk of a (1, bands, y, x) cube -> (1, bands, 1, 1) largest valid values (0 where a band has none
    there), the cube's no-data values left out as :func:`from_dataarray` leaves them out: the maximum over a date's
    chunks is that date's :func:`band_peaks`, band by band in the cube's order."""
    nodata = per_band_attribute(attrs, "nodata", labels, "the cube")
    peaks = [band_peaks({"band": as_missing(np.array(block[0, i]), value)}).get("band", 0.0)
             for i, value in enumerate(nodata)]
    return np.asarray(peaks, np.float64).reshape(1, -1, 1, 1)


def check_units(peaks: dict[str, float], units: str, source: str) -> None:
    """Refuse values whose range contradicts ``units``, for the image and for each band (``peaks``:
    :func:`band_peaks`): a map made from them would be silently wrong (one band in reflectance among DN bands
    reads as black)."""
    if not peaks:
        return  # no data at all: nothing to tell, every pixel comes out missing
    peak = max(peaks.values())
    if units != "reflectance" and peak < DN_AT_LEAST:
        raise InputError(f"{source}: the largest value is {peak:.3g}, which is reflectance, not DN (Sentinel-2 DN "
                         "are in the thousands); pass units='reflectance' (UDF context: \"units\")")
    if units == "reflectance" and peak > REFLECTANCE_AT_MOST:
        raise InputError(f"{source}: the largest value is {peak:.6g}, which is DN, not reflectance; pass units='dn' "
                         "(UDF context: \"units\")")
    # AOT and WVP are small quantities on scales of their own
    spectral = {name: value for name, value in peaks.items() if name not in ("AOT", "WVP")}
    if units != "reflectance":
        odd = sorted(name for name, value in spectral.items() if value < DN_AT_LEAST)
        if odd:
            raise InputError(f"{source}: band(s) {', '.join(odd)} hold values up to {max(spectral[n] for n in odd):.3g} "
                             f"while the other bands reach {peak:.6g}: they are on another scale (reflectance?); "
                             "give every band as DN")
        # negative DN are refused where every reader's values pass (kappamask_core.chain.scale.check_values)
    if units == "reflectance":
        odd = sorted(name for name, value in spectral.items() if value > REFLECTANCE_AT_MOST)
        if odd:
            raise InputError(f"{source}: band(s) {', '.join(odd)} hold values up to {max(peaks[n] for n in odd):.6g}, "
                             "which is DN among reflectance bands; give every band as reflectance")


def dataset_bands(ds: "xarray.Dataset") -> "xarray.DataArray":
    """A Dataset of band variables (odc-stac) as one DataArray with a ``bands`` dimension, read like the same bands
    given as a DataArray: each variable's own attributes that change values become per-band attributes."""
    attrs = _dataset_attributes(ds)
    cube = ds.to_array("bands")
    cube.attrs = {**{k: v for k, v in cube.attrs.items() if k not in VALUE_NAMES}, **attrs}
    return cube


VALUE_NAMES = {name for names in VALUE_ATTRIBUTES.values() for name in names}


def _dataset_attributes(ds) -> dict:
    """The attributes of a Dataset's band variables that change values (scale, offset, nodata), as the one
    DataArray :meth:`xarray.Dataset.to_array` makes would need them: one value, or one per band in the variables'
    order (``to_array`` keeps only the Dataset's own attributes). Variables whose ``units`` differ are refused:
    bands on different scales would be classified as one."""
    names = list(ds.data_vars)
    units = {str(ds[name].attrs["units"]) for name in names if "units" in ds[name].attrs}
    if len(units) > 1:
        raise InputError(f"the Dataset's band variables are in different units ({', '.join(sorted(units))}); load "
                         "every band in one unit (DN or reflectance)")
    attrs = {}
    for key, aliases in VALUE_ATTRIBUTES.items():
        values = [per_band_attribute({**ds.attrs, **ds[name].attrs}, key, [name], f"the Dataset's variable {name}")[0]
                  for name in names]
        if all(v is None for v in values):
            continue
        if key == "nodata" and any(v is None for v in values):
            values = [float("nan") if v is None else v for v in values]
        elif key != "nodata":
            values = [(1.0 if key == "scale_factor" else 0.0) if v is None else v for v in values]
        attrs[key] = values[0] if len(set(map(str, values))) == 1 else values
    return attrs
