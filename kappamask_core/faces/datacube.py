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
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..chain import scale
from ..chain.buffers import usable_mask
from ..chain.job import prepare
from ..chain.options import ClassifyOptions
from ..chain.pipeline import execute
from ..foundation.bands import BAND_BY_NAME, asset_band
from ..foundation.classes import CLASSES, encode
from ..foundation.errors import BandsError, InputError
from ..io.arrays import (array_crs, band_labels, dataset_bands, flips_to_north_up, from_dataarray,
                         pixel_size)
from ..io.product import check_level, level_evidence
from ..models.cards import ALIASES, AUTO, ModelCard
from ..models.resolve import Model, resolve_card, resolve_model
from ..models.runners import PROCESS_RUNNERS

if TYPE_CHECKING:
    import xarray

log = logging.getLogger(__name__)

# The band labels of each output: the UDF's apply_metadata renames the cube's bands to these
OUTPUT_BANDS = {
    "classes": ("kappamask",),  # the class values (0 missing .. 4 cloud, or the km_predict encoding)
    "scores": tuple(c.name for c in CLASSES),  # one score band per class
    "usable": ("usable",),  # 1 clear after buffering, 0 not, 255 missing
}
OUTPUTS = tuple(OUTPUT_BANDS)
# for composites: the classes and the cloudiness (cloud, semi-transparent cloud and shadow scores summed) of one pass
CLASSES_AND_CLOUDINESS = "classes+cloudiness"
CLOUDY = tuple(c.value for c in CLASSES if c.name in ("cloud_shadow", "semi_transparent_cloud", "cloud"))
# scores=True on a cube: the classes and every class's score of one pass
CLASSES_AND_SCORES = "classes+scores"
# the band count of each output with more than one band
MULTI_BAND = {"scores": len(CLASSES), CLASSES_AND_CLOUDINESS: 2, CLASSES_AND_SCORES: 1 + len(CLASSES)}
TIME_DIMS = ("time", "t")


def infer_level(band_names) -> str | None:
    """The level the cube's bands tell: L1C with B10 (only L1C carries it), L2A with AOT, WVP or SCL (only L2A
    carries them); None when they tell nothing (B02 to B12 are in both)."""
    return level_evidence({str(b).upper() for b in band_names})


def _model_level(model) -> str | None:
    """The level of a model that takes only one (a card id or path); None for aliases and 'auto'. An unknown
    model is an error here, before anything about levels or bands."""
    if isinstance(model, Model):
        model = model.card
    if not isinstance(model, ModelCard) and (str(model) in ALIASES or str(model) == AUTO):
        return None
    card = resolve_card(model)
    return card.levels[0] if len(card.levels) == 1 else None


def cube_level(model, level: str | None, band_names) -> str:
    """The level of a cube's dates: given, else the only one the model takes, else what the bands tell."""
    level = level or _model_level(model) or infer_level(band_names)
    if level is None:
        raise InputError(f"the cube's bands ({', '.join(map(str, band_names))}) are in L1C and L2A products "
                         "alike: give the level (\"L1C\" or \"L2A\"; UDF context \"level\")")
    if not isinstance(level, str) or level.upper() not in ("L1C", "L2A"):
        raise InputError(f"level must be \"L1C\" or \"L2A\", not {level!r}")
    return level.upper()


@dataclass(frozen=True)
class DateSpec:
    """What every date of a cube shares: its bands, level and units, the resolved model and how it runs. Small
    and picklable: a dask task carries it to the worker, where the model's session is made once per process."""

    names: tuple[str, ...]  # the cube's band labels, in the cube's order
    level: str
    model: Model
    units: str = "dn"
    offset: float = 0.0
    output: str = "classes"
    encoding: str = "kappamask"
    options: ClassifyOptions = field(default_factory=ClassifyOptions)
    attrs: dict = field(default_factory=dict)  # the cube's nodata and CF scaling attributes
    pixel_size: float = 10.0  # the cube's pixel size, from its coordinates (10 m where they do not tell)


def classify_values(values: np.ndarray, spec: DateSpec, when: str = "",
                    peaks: dict[str, float] | None = None, origin: tuple[int, int] | None = None,
                    window: tuple | None = None) -> np.ndarray:
    """One date: (bands, y, x) values, north-up, to the output's (k, y, x) values (:data:`OUTPUT_BANDS`).
    ``peaks`` (band -> largest valid value of the whole date) decides the units check where ``values`` is one
    chunk of the date. ``origin``: the ground's 10 m row and column index of the first pixel (:func:`ground_origin`),
    so that the tiles are the ground's; None for values with no location, whose tiles are their own. ``window``:
    the rows and columns whose classes are wanted, ((row0, row1), (col0, col1)), a chunk's core; the rest of the
    values is context (only the tiles that keep the window's pixels are run)."""
    import xarray as xr

    rows, cols = values.shape[1:]
    size = spec.pixel_size
    gy, gx = origin or (0, 0)
    coords = {"bands": list(spec.names), "y": -size * (gy + np.arange(rows) + 0.5),
              "x": size * (gx + np.arange(cols) + 0.5)}  # north-up, the cube's pixel size, on the ground
    da = xr.DataArray(values, dims=("bands", "y", "x"), coords=coords, attrs=spec.attrs)
    if origin is None:  # no location: the values' own tiles
        spec = replace(spec, options=replace(spec.options, tiles="raster"))
    elif window is not None:
        spec = replace(spec, options=replace(spec.options, window=window))
    opened = from_dataarray(da, level=spec.level, units=spec.units, peaks=peaks)
    if spec.offset:
        opened.offsets = {b: float(spec.offset) for b in opened.bands if BAND_BY_NAME[b].quantification_key == "band"}
    job = prepare(opened, spec.model, options=spec.options, runners=PROCESS_RUNNERS)
    if spec.level == "L1C" and scale.offset_suspected(opened, job.card.bands):
        log.warning("date %s: the darkest 0.1 %% of the pixels of every band are at or above %d DN, as if the "
                    "DN still carried the +1000 offset of processing baseline 04.00; if they do, pass offset "
                    "-1000 (the process's 'offset' parameter)", when[:10] or "of this chunk", scale.OFFSET_FLOOR_DN)
    result = execute(job)
    if spec.output == CLASSES_AND_CLOUDINESS and result.scores is not None:
        return np.stack([result.classes.astype(np.float32), result.scores[list(CLOUDY)].sum(axis=0)])
    if spec.output == CLASSES_AND_SCORES and result.scores is not None:
        return np.concatenate([encode(result.classes, spec.encoding)[None].astype(np.float32), result.scores])
    if spec.output == "classes":
        return encode(result.classes, spec.encoding)[None]
    if spec.output == "usable":
        return usable_mask(result.classes)[None]
    if result.scores is None:  # options.scores is set for this output: never the case
        raise RuntimeError("the scores were asked for but not kept")
    return result.scores


def ground_origin(step: "xarray.DataArray", tiles: str = "ground") -> tuple[int, int] | None:
    """The ground's 10 m row and column index of the first pixel of a north-up (bands, y, x) array: its top
    edge counted southwards and its left edge eastwards from the CRS's origin in pixels (the same for any cut of
    the same grid). None where it has no x and y coordinates, or where ``tiles`` is "raster"."""
    if tiles != "ground" or "x" not in step.coords or "y" not in step.coords:
        return None
    size = pixel_size(step) or 10.0
    x, y = float(step["x"].values[0]), float(step["y"].values[0])
    return round(-(y + size / 2) / size), round((x - size / 2) / size)


def date_spec(names, model, *, level: str | None, units: str = "dn", offset: float = 0.0, output: str = "classes",
              encoding: str = "kappamask", weights: str | None = None, options: ClassifyOptions | None = None,
              attrs: dict | None = None, pixel_size: float = 10.0) -> DateSpec:
    """Check the arguments and the cube's bands against the model, then resolve the model (once: its weights
    may be downloaded) into the :class:`DateSpec` of every date."""
    if output not in (*OUTPUTS, CLASSES_AND_CLOUDINESS, CLASSES_AND_SCORES):
        raise InputError(f"output must be one of {OUTPUTS}, not {output!r}")
    options = options or ClassifyOptions()
    if output in ("scores", CLASSES_AND_CLOUDINESS, CLASSES_AND_SCORES) and not options.scores:
        options = replace(options, scores=True)
    names = tuple(str(n) for n in names)
    band_labels(names)  # one band named twice, before anything else
    level = cube_level(model, level, names)
    check_level(level, _band_names(names), "", "the cube")  # a level the bands contradict, before any model
    card = resolve_card(model, level, _band_names(names))
    missing = [b for b in card.bands if b not in _band_names(names)]
    if missing:
        raise BandsError(f"model {card.id!r} needs band(s) {', '.join(missing)}, which the cube lacks (it has "
                         f"{', '.join(names)}); load them too")
    if level not in card.levels:
        raise BandsError(f"model {card.id!r} takes {'/'.join(card.levels)} products, but the cube is {level}")
    resolved = resolve_model(model, level, _band_names(names), weights, announce=False)
    return DateSpec(names, level, resolved, units, float(offset), output, encoding, options, dict(attrs or {}),
                    pixel_size)


def _band_names(labels) -> set[str]:
    return set(band_labels(labels))


# ----------------------------------------------------------------------------- the UDF's cubes (in memory)

def classify_datacube(cube: "xarray.DataArray", *, model: str = "auto", level: str | None = None, units: str = "dn",
                      offset: float = 0.0, output: str = "classes", encoding: str = "kappamask",
                      weights: str | None = None, options: ClassifyOptions | None = None,
                      context_px: int = 0) -> "xarray.DataArray":
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
                     pixel_size=pixel_size(cube) or 10.0)
    from .lazycube import context_needed

    # a buffer needs the classes within its radius of the core: those pixels are classified too
    radius = int(np.ceil(max(metres for _, metres in spec.options.buffers) / spec.pixel_size)) \
        if spec.options.buffers else 0
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

def band_cube(cube: Any) -> "xarray.DataArray":
    """A (time, bands, y, x) DataArray from what notebooks load: a DataArray with ``bands`` or stackstac's
    ``band`` and an optional ``time`` or ``t``, or an odc-stac ``Dataset`` of band variables. Band labels are the
    catalogues' (``B02``, ``blue``, ``nir08``, ``B8A_20m``); a label that names no Sentinel-2 band is an error."""
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
    unknown = [str(b) for b in cube["bands"].values if asset_band(str(b)) is None]
    if unknown:
        raise InputError(f"the cube's band(s) {', '.join(unknown)} are not Sentinel-2 bands: label them like B02 or "
                         "blue (the asset keys of Earth Search, CDSE and Planetary Computer are understood), or leave "
                         "them out")
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
                  weights: str | None = None,
                  options: ClassifyOptions | None = None) -> "xarray.DataArray | xarray.Dataset":
    """Classify every date of a cube (:func:`band_cube` says which cubes): a (time, y, x) uint8 DataArray of
    classes (or ``usable``), or (time, class, y, x) float32 scores (with ``options.scores``: a Dataset of both);
    coordinates, ``spatial_ref`` and attributes of the cube kept, so rioxarray and odc-geo writers work. A
    dask-backed cube gives a lazy result (see the module text); an in-memory one is classified at once."""
    import xarray as xr

    cube = band_cube(cube)
    array_crs(cube, "the cube")
    size = pixel_size(cube)
    if size is not None and not 9.5 <= size <= 10.5:
        raise InputError(f"the cube's pixels are {size:g} units wide; the models work on Sentinel-2's 10 m grid: "
                         "load the cube at 10 m in a projected CRS (odc.stac.load(..., resolution=10), "
                         "stackstac.stack(..., resolution=10))")
    both = output == "classes" and options is not None and options.scores  # as one image gives with scores=True
    spec = date_spec(cube["bands"].values, model, level=level, units=units, offset=offset,
                     output=CLASSES_AND_SCORES if both else output, encoding=encoding, weights=weights,
                     options=options, attrs=cube.attrs)
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
    dask-backed (:func:`~kappamask_core.faces.lazycube.lazy_values`)."""
    from .lazycube import is_dask, lazy_values

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
