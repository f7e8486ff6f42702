"""Where an array lies: its CRS, its coordinates (checked: monotonic, unique, regular, square pixels; centres,
or stackstac's corners), its grid and which way it faces. Every array path (a DataArray, a notebook cube, an
openEO chunk) reads its location here, so the same pixels lie at the same place whatever holds them."""

from __future__ import annotations

import numpy as np
from affine import Affine

from ..foundation.errors import InputError
from ..foundation.grid import Grid


def _axis_step(values: np.ndarray, name: str, source: str) -> float | None:
    """The signed step of a coordinate axis that is strictly monotonic, unique and regular (to the precision its
    values are stored in: float32 cell centres of openEO chunks are exact to a fraction of a metre only); None for
    an axis of one value. Anything else is one line that names the axis: a map made on it would be wrong."""
    if values.size < 2:
        return None
    x = values.astype(np.float64)
    if not np.isfinite(x).all():
        raise InputError(f"{source}: its {name} coordinates hold NaN or infinite values")
    diffs = np.diff(x)
    if (diffs == 0).any():
        raise InputError(f"{source}: its {name} coordinates repeat ({int((diffs == 0).sum())} repeated value(s)); "
                         "each row and column must lie at a place of its own")
    if (diffs > 0).any() and (diffs < 0).any():
        raise InputError(f"{source}: its {name} coordinates are not in order (rising and falling, as when parts of "
                         "the cube were swapped or shuffled); sort the cube by x and y (cube.sortby(['y', 'x']))")
    step = (x[-1] - x[0]) / (x.size - 1)
    ulp = float(np.spacing(np.abs(values).max().astype(values.dtype))) if np.issubdtype(values.dtype, np.floating) \
        else 0.0
    tolerance = max(0.01 * abs(step), 2 * ulp)
    worst = float(np.abs(x - (x[0] + step * np.arange(x.size))).max())
    if worst > tolerance:
        raise InputError(f"{source}: its {name} coordinates are not evenly spaced (steps from {abs(diffs).min():g} "
                         f"to {abs(diffs).max():g}; a gap, or parts at other resolutions): load the cube onto one "
                         "regular grid")
    return float(step)


def array_crs(da, source: str):
    """The CRS an array names (its ``crs`` attribute, or a ``spatial_ref`` coordinate's WKT), parsed; None where
    it names none. A CRS that is not in metres (degrees, feet) is refused: the models work on metres."""
    crs = da.attrs.get("crs")
    if crs is None and "spatial_ref" in da.coords:
        crs = da["spatial_ref"].attrs.get("crs_wkt") or da["spatial_ref"].attrs.get("spatial_ref")
    if crs is None:
        return None
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        crs = CRS.from_user_input(crs)
    except CRSError as exc:
        raise InputError(f"{source}: its CRS {str(crs)[:80]!r} is not understood ({exc})") from None
    units = crs.linear_units if crs.is_projected else "degree"
    if str(units).lower() not in ("metre", "meter", "m"):
        raise InputError(f"{source}: its CRS ({crs.to_string()[:60]}) is in {units}s, not metres; the models work on "
                         "a grid in metres: load the cube in a projected CRS such as the product's UTM zone")
    return crs


def grid_steps(da, source: str) -> tuple[float, float] | None:
    """(x step, y step) of an array's coordinates, checked by one rule for every path (files aside): each axis
    strictly monotonic, unique and regular, the pixels square. An axis of one value takes the other's size; None
    where the coordinates tell no size (none, or one pixel)."""
    steps = {name: _axis_step(np.asarray(da[name].values), name, source) if name in da.coords else None
             for name in ("x", "y")}
    dx, dy = steps["x"], steps["y"]
    if dx is not None and dy is not None:
        if abs(abs(dx) - abs(dy)) > 0.01 * max(abs(dx), abs(dy)):
            raise InputError(f"{source}: its pixels are {abs(dx):g} by {abs(dy):g} units (x by y): not square; "
                             "load the cube onto a grid with one resolution")
        return dx, dy
    if dx is not None:
        return dx, -abs(dx)
    if dy is not None:
        return abs(dy), dy
    return None


def centred(da):
    """``da`` with x and y coordinates at its pixels' centres. stackstac places them at the top-left corners by
    default (``xy_coords="topleft"``), which its ``transform`` attribute shows: a coordinate that lies a whole
    number of pixels from the transform's origin is a corner. Taken as centres, such coordinates would put every
    pixel half a pixel off and its tiles elsewhere than a file's."""
    transform = da.attrs.get("transform")
    if transform is None or "x" not in da.coords or "y" not in da.coords or 0 in (da.sizes["x"], da.sizes["y"]):
        return da
    try:
        a, _, c, _, e, f = (float(v) for v in tuple(transform)[:6])
    except (TypeError, ValueError):
        return da
    if not a or not e:
        return da

    def at_corner(value: float, origin: float, step: float) -> bool:
        offset = (value - origin) / step
        return abs(offset - round(offset)) < 1e-3

    if at_corner(float(da["x"].values[0]), c, a) and at_corner(float(da["y"].values[0]), f, e):
        return da.assign_coords(x=da["x"] + a / 2, y=da["y"] + e / 2)
    return da


def pixel_size(da, source: str = "the cube") -> float | None:
    """The checked pixel size of an array's grid (:func:`grid_steps`), or None where its coordinates tell none."""
    steps = grid_steps(da, source)
    return None if steps is None else abs(steps[0])


def grid_from_coords(da, crs, source: str, default_size: float = 10.0) -> Grid:
    """The grid of a north-up array: its checked coordinates (cell centres) and CRS, or an unlocated grid of the
    sensor's pixel size (``default_size``: 10 m for Sentinel-2, 30 m for Landsat and HLS)."""
    h, w = da.sizes["y"], da.sizes["x"]
    steps = grid_steps(da, source)
    if steps is None or "x" not in da.coords or "y" not in da.coords:
        if steps is None and ("x" in da.coords or "y" in da.coords) and h * w > 1:
            raise InputError(f"{source}: it has coordinates for one axis only; give both x and y, or neither")
        size = default_size if steps is None else abs(steps[0])
        if "x" in da.coords and "y" in da.coords:  # one pixel: where its coordinates say, the sensor's size
            x0, y0 = float(da["x"].values[0]), float(da["y"].values[0])
            return Grid(h, w, Affine(size, 0, x0 - size / 2, 0, -size, y0 + size / 2), crs, located=True)
        return Grid(h, w, Affine(size, 0, 0, 0, -size, 0), crs, located=False)  # ungeoreferenced: the sensor's pixels
    dx, dy = steps
    x0, y0 = float(da["x"].values[0]), float(da["y"].values[0])
    return Grid(h, w, Affine(dx, 0, x0 - dx / 2, 0, dy, y0 - dy / 2), crs, located=True)


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
