"""xarray DataArrays as products: dimensions (bands, y, x) (and a length-1 time), bands labelled by name or
common name, turned north-up, checked for units (DN or reflectance) and data types, with CF ``scale_factor`` /
``add_offset`` and nodata attributes taken as the file readers take tags."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from affine import Affine

from ..foundation.bands import asset_band
from ..foundation.errors import InputError
from ..foundation.grid import Grid
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


def _grid_from_coords(da, crs) -> Grid:
    h, w = da.sizes["y"], da.sizes["x"]
    if "x" in da.coords and "y" in da.coords and w > 1 and h > 1:
        x, y = np.asarray(da["x"], float), np.asarray(da["y"], float)
        dx, dy = x[1] - x[0], y[1] - y[0]
        if np.allclose(np.diff(x), dx) and np.allclose(np.diff(y), dy):
            transform = Affine(dx, 0, x[0] - dx / 2, 0, dy, y[0] - dy / 2)
            return Grid(h, w, transform, crs)
    return Grid(h, w, Affine(10, 0, 0, 0, -10, 0), crs)  # ungeoreferenced: assume 10 m pixels


def flips_to_north_up(da) -> tuple[bool, bool]:
    """(flip rows, flip columns) that turn ``da`` north-up and west-left, from its y and x coordinates.

    A network sees shapes and the direction of shadows: an image that is upside down or mirrored (y
    ascending, as some cubes come) must be turned before it is classified, and the map turned back."""
    def descending(name):
        if name not in da.coords or da.sizes.get(name, 0) < 2:
            return False
        values = np.asarray(da[name], float)
        return bool(values[0] > values[-1])

    return (not descending("y") and "y" in da.coords and da.sizes.get("y", 0) > 1), descending("x")


def band_labels(given) -> dict[str, list]:
    """Band name -> the label that names it ('B02', 'blue', 'B02_10m', ...), for the labels of an array's bands;
    labels that name no band (masks, indices) are not ours to use. One band named twice is an error: which layer
    is meant cannot be known."""
    labels: dict[str, list] = {}
    for label in given:
        found = asset_band(str(label))
        if found is not None:
            labels.setdefault(found[0], []).append(label)
    repeated = sorted(name for name, named in labels.items() if len(named) > 1)
    if repeated:
        raise InputError(f"the array's band labels repeat ({', '.join(repeated)}): {[str(b) for b in given]}; "
                         "give each band once")
    return labels


def from_dataarray(da: "xarray.DataArray", level: str | None = None, units: str = "dn", product_id: str = "array") -> Product:
    """A product from an xarray DataArray with dims ('bands', 'y', 'x') (and an optional length-1 't'), turned
    north-up (:func:`flips_to_north_up`)."""
    import xarray as xr

    if not isinstance(da, xr.DataArray):
        raise InputError(f"expected an xarray.DataArray, got {type(da).__name__}")
    if units not in ("dn", "reflectance"):
        raise InputError(f"units must be 'dn' or 'reflectance', not {units!r}")
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
    flip_y, flip_x = flips_to_north_up(da)
    if flip_y or flip_x:
        da = da.isel(y=slice(None, None, -1) if flip_y else slice(None), x=slice(None, None, -1) if flip_x else slice(None))
    labels = band_labels(da["bands"].values.tolist())
    source = f"xarray.DataArray {product_id}"
    nodata = _attribute(da.attrs, ("nodata", "_FillValue"))
    bands = {}
    for name, given in labels.items():
        check_dtype(name, da.dtype, f"{source}: band {name}", units=units)
        values = np.asarray(da.sel(bands=given[0]).transpose("y", "x").values)
        if nodata is not None:  # the array's own no-data value is missing like Sentinel-2's 0
            values = as_missing(values.copy(), nodata)
        bands[name] = ArrayBand(name, values)
    _check_units(bands, units, source)
    crs = da.attrs.get("crs")
    if crs is None and "spatial_ref" in da.coords:
        crs = da["spatial_ref"].attrs.get("crs_wkt")
    if crs is not None:
        from rasterio.crs import CRS
        from rasterio.errors import CRSError

        try:
            crs = CRS.from_user_input(crs)
        except CRSError as exc:
            raise InputError(f"{source}: its CRS {str(crs)[:80]!r} is not understood ({exc})") from None
    product = Product(
        id=product_id,
        level=check_level(level, bands, "", source),
        grid=_grid_from_coords(da, crs),
        bands=bands,
        units=units,
        source=source,
    )
    declared = _scaling_attributes(da.attrs, labels)
    if declared and units == "dn":  # raw values with CF scale_factor / add_offset (rioxarray, odc-stac without decoding)
        merge_scaling(product, *declared_scaling(declared, source, "the scale_factor and add_offset attributes"),
                      "the array's scale_factor and add_offset attributes")
    return product


def _attribute(attrs: dict, keys):
    """A finite number among ``attrs[keys]`` (the first present), or None."""
    for key in keys:
        value = attrs.get(key)
        if isinstance(value, (list, tuple, np.ndarray)) and len(value) >= 1:
            value = value[0]
        if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and np.isfinite(value):
            return float(value)
    return None


def _scaling_attributes(attrs: dict, labels: dict) -> dict[str, tuple[float, float]]:
    """{band: (scale, offset)} from CF ``scale_factor`` / ``add_offset`` (one number, or one per band in the
    array's band order) or rioxarray's ``scales`` / ``offsets``; empty where the array declares none."""
    scale = next((attrs[k] for k in ("scale_factor", "scales") if k in attrs), None)
    offset = next((attrs[k] for k in ("add_offset", "offsets") if k in attrs), None)
    if scale is None and offset is None:
        return {}
    order = [name for name in labels]
    def per_band(value, default):
        if value is None:
            return [default] * len(order)
        values = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value] * len(order)
        return values if len(values) == len(order) else [values[0]] * len(order)
    scales, offsets = per_band(scale, 1.0), per_band(offset, 0.0)
    declared = {name: (float(s), float(o)) for name, s, o in zip(order, scales, offsets)}
    return {} if all(v == (1.0, 0.0) for v in declared.values()) else declared


# The largest valid value tells DN (thousands) from reflectance (about 0 to 1.5; at most 6.5535).
DN_AT_LEAST, REFLECTANCE_AT_MOST = 10.0, 100.0


def _check_units(bands: dict, units: str, source: str) -> None:
    """Refuse values whose range contradicts ``units``, for the array and for each band: a map made from them
    would be silently wrong (one band in reflectance among DN bands reads as black)."""
    peaks = {}
    for band in bands.values():
        if band.name in ("SCL",):
            continue
        values = band.array
        if np.issubdtype(values.dtype, np.floating):
            values = values[np.isfinite(values)]
        values = values[values != 0]
        if values.size:
            peaks[band.name] = float(np.abs(values).max())
    if not peaks:
        return  # no data at all: nothing to tell, every pixel comes out missing
    peak = max(peaks.values())
    if units == "dn" and peak < DN_AT_LEAST:
        raise InputError(f"{source}: the largest value is {peak:.3g}, which is reflectance, not DN (Sentinel-2 DN "
                         "are in the thousands); pass units='reflectance' (UDF context: \"units\")")
    if units == "reflectance" and peak > REFLECTANCE_AT_MOST:
        raise InputError(f"{source}: the largest value is {peak:.6g}, which is DN, not reflectance; pass units='dn' "
                         "(UDF context: \"units\")")
    # AOT and WVP are small quantities on scales of their own
    spectral = {name: value for name, value in peaks.items() if name not in ("AOT", "WVP")}
    if units == "dn":
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
