"""Data cubes: the openEO UDF's cubes and the lazy, many-date cubes of notebooks, classified date by date.

:func:`classify_datacube` is the UDF's path: a (t, bands, y, x) cube in memory, each date classified on its own and
the result in the UDF's band layout (:data:`OUTPUT_BANDS`). :func:`classify_cube` is the notebook's: a DataArray
with ``bands`` (or stackstac's ``band``) and optional ``time``, or an odc-stac ``Dataset`` of band variables; when it
is dask-backed the result is lazy, one task per date and spatial chunk, each chunk read with a halo of the model's
tile overlap (so tiles near a chunk's edge see their neighbourhood), and nothing is read before ``.compute()``.
Both classify one date with :func:`classify_values`; the model is resolved once, on the caller's side, and a worker
process builds its ONNX session once (``PROCESS_RUNNERS``), whatever the number of tasks it runs.

No openEO import here: the UDF in ``udf/`` only translates its context into these arguments.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from ..chain.buffers import reach_px
from ..chain.options import ClassifyOptions
from ..foundation.bands import asset_band, sensor_named
from ..foundation.errors import InputError
from ..io.array_grid import array_crs, centred, flips_to_north_up, pixel_size
from ..io.arrays import array_sensor, dataset_bands
from .dates import (
    CLASSES_AND_CLOUDINESS,
    CLASSES_AND_SCORES,
    CLOUDY,
    MULTI_BAND,
    OUTPUT_BANDS,
    OUTPUTS,
    TIME_DIMS,
    DateSpec,
    classify_values,
    cube_level,
    date_spec,
    ground_origin,
    infer_level,
)
from .lazycube import context_needed, is_dask, lazy_values

if TYPE_CHECKING:
    import xarray

log = logging.getLogger(__name__)
# the names other modules take from here
__all__ = ["CLASSES_AND_CLOUDINESS", "CLASSES_AND_SCORES", "CLOUDY", "MULTI_BAND", "OUTPUT_BANDS", "OUTPUTS",
           "TIME_DIMS", "DateSpec", "band_cube", "classify_cube", "classify_datacube", "classify_values",
           "cube_level", "cube_values", "date_spec", "ground_origin", "infer_level"]


# ----------------------------------------------------------------------------- the UDF's cubes (in memory)

def classify_datacube(cube: "xarray.DataArray", *, model: str = "auto", level: str | None = None, units: str = "dn",
                      offset: float = 0.0, output: str = "classes", encoding: str = "kappamask",
                      weights: str | None = None, options: ClassifyOptions | None = None,
                      context_px: int = 0, sensor: str | None = None) -> "xarray.DataArray":
    """(t?, bands, y, x) cube -> (t?, bands, y, x) cube whose bands are :data:`OUTPUT_BANDS` ``[output]``.

    ``context_px``: the pixels on each side that are context only (apply_neighborhood's overlap, which the
    backend drops from the result): only the tiles that keep the core's pixels are run. With the ground's tiles
    the core's classes are those of the whole scene where the context holds the tiles the core needs
    (:func:`~kappamask_core.faces.lazycube.context_needed`) and, with buffers (``options.buffers``), the tiles of
    the pixels within their radius of the core too.
    """
    import xarray as xr

    if "bands" not in cube.dims:
        raise InputError(f"the cube has no 'bands' dimension (dimensions: {cube.dims})")
    time_dim = next((d for d in TIME_DIMS if d in cube.dims), None)
    count = cube.sizes[time_dim] if time_dim else 1
    if count == 0:
        raise InputError(f"the cube has no dates (its '{time_dim}' dimension is empty)")
    if output not in OUTPUTS:
        raise InputError(f"output must be one of {OUTPUTS}, not {output!r}")
    extra = [d for d in cube.dims if d not in ("bands", "y", "x", time_dim)]
    if extra or not {"y", "x"} <= set(cube.dims):
        raise InputError(f"the cube must have dimensions (t, bands, y, x), got {tuple(cube.dims)}: reduce or select "
                         f"{', '.join(map(str, extra)) or 'the missing ones'} before the UDF")
    array_crs(cube, "the cube")
    spec = date_spec(cube["bands"].values, model, level=level, units=units, offset=offset, output=output,
                     encoding=encoding, weights=weights, options=options, attrs=cube.attrs,
                     pixel_size=pixel_size(cube), sensor=sensor or array_sensor(cube))
    # a buffer needs the classes within its radius of the core: those pixels are classified too
    radius = reach_px(spec.options.buffers, spec.pixel_size)
    needed = context_needed(spec) + radius
    if context_px and spec.options.tiles == "ground" and context_px < needed:
        log.warning("the chunks carry %d px of context around their core, but the tiles of model %s that keep a "
                    "core's pixels%s reach %d px beyond it: classes near the chunks' edges are not the whole "
                    "scene's (use an apply_neighborhood overlap of %d px)", context_px, spec.model.card.id,
                    " and the pixels within the buffers' radius" if radius else "", needed, needed)
    results = []
    for i in range(count):
        step = cube.isel({time_dim: i}) if time_dim else cube
        flip_y, flip_x = flips_to_north_up(step)
        values = np.asarray(step.transpose("bands", "y", "x").values)[:, ::-1 if flip_y else 1, ::-1 if flip_x else 1]
        when = str(step[time_dim].values) if time_dim and time_dim in step.coords else str(step.attrs.get("t", ""))
        north_up = step.isel(y=slice(None, None, -1) if flip_y else slice(None),
                             x=slice(None, None, -1) if flip_x else slice(None))
        rows, cols = values.shape[1:]
        inner = max(0, context_px - radius)  # the core and the pixels its buffers reach
        window = ((inner, rows - inner), (inner, cols - inner)) if inner and min(rows, cols) > 2 * inner else None
        mapped = classify_values(values, spec, when, origin=ground_origin(north_up, spec.options.tiles),
                                 window=window)[:, ::-1 if flip_y else 1, ::-1 if flip_x else 1]
        results.append(xr.DataArray(mapped, dims=("bands", "y", "x"),
                                    coords={"bands": list(OUTPUT_BANDS[output]), "y": step["y"], "x": step["x"]}
                                    if "x" in step.coords else {"bands": list(OUTPUT_BANDS[output])}))
    out = xr.concat(results, dim=time_dim) if time_dim else results[0]
    if time_dim:
        out = out.assign_coords({time_dim: cube[time_dim]}) if time_dim in cube.coords else out
        out = out.transpose(time_dim, "bands", "y", "x")
    return out


# ----------------------------------------------------------------------------- notebook cubes (lazy on dask)

def band_cube(cube: Any, sensor: str | None = None) -> "xarray.DataArray":
    """A (time, bands, y, x) DataArray from what notebooks load: a DataArray with ``bands`` or stackstac's
    ``band`` and an optional ``time`` or ``t``, or an odc-stac ``Dataset`` of band variables. Band labels are the
    catalogues' (``B02``, ``blue``, ``nir08``, ``B8A_20m``); a label that names no band of ``sensor`` (Sentinel-2
    where none is given) is an error."""
    import xarray as xr

    if isinstance(cube, xr.Dataset):
        shapes = {name: dict(var.sizes) for name, var in cube.data_vars.items()}
        if len({tuple(sorted(s.items())) for s in shapes.values()}) > 1:
            raise InputError(f"the Dataset's variables lie on different grids ({shapes}); load them onto one grid "
                             "(odc.stac.load(..., resolution=10) or crs= and resolution=)")
        cube = dataset_bands(cube)
    if not isinstance(cube, xr.DataArray):
        raise InputError(f"expected an xarray DataArray or Dataset, got {type(cube).__name__}")
    if "band" in cube.dims and "bands" not in cube.dims:
        cube = cube.rename(band="bands")
    if "bands" not in cube.dims or "bands" not in cube.coords:
        raise InputError(f"the cube has no labelled 'bands' (or 'band') dimension (dimensions: {cube.dims}); name the "
                         "bands like B02 or blue")
    info = sensor_named(sensor)
    unknown = [str(b) for b in cube["bands"].values if asset_band(str(b), info) is None]
    if unknown:
        raise InputError(f"the cube's band(s) {', '.join(unknown)} are not {info.title} bands: label them like "
                         f"{', '.join(list(info.bands)[1:3])} or blue (the asset keys of Earth Search, CDSE and "
                         "Planetary Computer are understood), or leave them out")
    time_dim = next((d for d in TIME_DIMS if d in cube.dims), None)
    if time_dim is None:
        cube = cube.expand_dims(time=1)
    elif time_dim != "time":
        cube = cube.rename({time_dim: "time"})
    missing = {"y", "x"} - set(cube.dims)
    if missing or len(cube.dims) != 4:
        raise InputError(f"the cube must have dimensions (time, bands, y, x), got {cube.dims}")
    if cube.sizes["time"] == 0:
        raise InputError("the cube has no dates (its time dimension is empty)")
    return cube.transpose("time", "bands", "y", "x")


def classify_cube(cube: Any, *, model: Any = "auto", level: str | None = None, units: str = "dn",
                  offset: float = 0.0, output: str = "classes", encoding: str = "kappamask",
                  weights: str | None = None, options: ClassifyOptions | None = None,
                  sensor: str | None = None) -> "xarray.DataArray | xarray.Dataset":
    """Classify every date of a cube (:func:`band_cube` says which cubes): a (time, y, x) uint8 DataArray of
    classes (or ``usable``), or (time, class, y, x) float32 scores (with ``options.scores``: a Dataset of both);
    coordinates, ``spatial_ref`` and attributes of the cube kept, so rioxarray and odc-geo writers work. A
    dask-backed cube gives a lazy result (see the module text); an in-memory one is classified at once."""
    import xarray as xr

    info = sensor_named(sensor or array_sensor(cube))
    cube = band_cube(cube, info.id)
    array_crs(cube, "the cube")
    size, native = pixel_size(cube), info.resolution
    if size is not None and not 0.95 * native <= size <= 1.05 * native:
        hint = (" (a Landsat or HLS cube? give its sensor: sensor='landsat-8', 'hls-l30')"
                if info.id == "sentinel-2" else "")
        raise InputError(f"the cube's pixels are {size:g} units wide; {info.title} products are classified on their "
                         f"{native} m grid: load the cube at {native} m in a projected CRS (odc.stac.load(..., "
                         f"resolution={native}), stackstac.stack(..., resolution={native})){hint}")
    both = output == "classes" and options is not None and options.scores  # as one image gives with scores=True
    spec = date_spec(cube["bands"].values, model, level=level, units=units, offset=offset,
                     output=CLASSES_AND_SCORES if both else output, encoding=encoding, weights=weights,
                     options=options, attrs=cube.attrs, sensor=info.id)
    values = cube_values(cube, spec)
    coords = {k: v for k, v in cube.coords.items() if "bands" not in v.dims}
    if both:
        scores = xr.DataArray(values[:, 1:], dims=("time", "class", "y", "x"),
                              coords={**coords, "class": list(OUTPUT_BANDS["scores"])}, name="scores")
        classes = xr.DataArray(values[:, 0].astype(np.uint8), dims=("time", "y", "x"), coords=coords, name="classes")
        return xr.Dataset({"classes": classes, "scores": scores}, attrs=_kept_attrs(cube))
    if output == "scores":
        return xr.DataArray(values, dims=("time", "class", "y", "x"),
                            coords={**coords, "class": list(OUTPUT_BANDS["scores"])}, name="scores",
                            attrs=_kept_attrs(cube))
    return xr.DataArray(values[:, 0], dims=("time", "y", "x"), coords=coords, name=output, attrs=_kept_attrs(cube))


def _kept_attrs(cube) -> dict:
    return {k: v for k, v in cube.attrs.items() if k in ("crs", "transform", "grid_mapping")}


def cube_values(cube: "xarray.DataArray", spec: DateSpec):
    """The (time, k, y, x) values of a :func:`band_cube`'s dates for ``spec``, in the cube's own order: each date
    turned north-up, located on the ground (:func:`ground_origin`) and classified, lazily where the cube is
    dask-backed (:func:`~kappamask_core.faces.lazycube.lazy_values`). Coordinates at the pixels' corners
    (stackstac's default) are taken as the corners they are (:func:`~kappamask_core.io.arrays.centred`)."""
    cube = centred(cube)
    flip_y, flip_x = flips_to_north_up(cube)
    north_up = cube.isel(y=slice(None, None, -1) if flip_y else slice(None),
                         x=slice(None, None, -1) if flip_x else slice(None))
    data = north_up.data
    origin = ground_origin(north_up.isel(time=0), spec.options.tiles)
    if is_dask(data):
        values = lazy_values(data, spec, origin)
    else:
        values = np.stack([classify_values(np.asarray(data[t]), spec, str(cube["time"].values[t]), origin=origin)
                           for t in range(data.shape[0])])
    return values[:, :, ::-1 if flip_y else 1, ::-1 if flip_x else 1]  # back to the cube's own order
