"""One date of a cube: what every date shares (:class:`DateSpec`, made once by :func:`date_spec`, the model
resolved on the caller's side) and :func:`classify_values`, which classifies one date's values, or one chunk of them
located on the ground (:func:`ground_origin`), in any process. The in-memory and lazy paths
(:mod:`~kappamask_core.faces.datacube`, :mod:`~kappamask_core.faces.lazycube`) both call it; a worker process builds
its ONNX session once (``PROCESS_RUNNERS``), whatever the number of tasks it runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from ..chain import scale
from ..chain.buffers import usable_mask
from ..chain.job import prepare
from ..chain.options import ClassifyOptions
from ..chain.pipeline import execute
from ..foundation.bands import BAND_BY_NAME, sensor_named
from ..foundation.classes import CLASSES, encode
from ..foundation.errors import BandsError, InputError
from ..io.array_grid import pixel_size
from ..io.arrays import band_labels, from_dataarray
from ..io.product import check_level, level_evidence
from ..models.cards import ALIASES, AUTO, ModelCard
from ..models.resolve import Model, check_made_for, resolve_card, resolve_model
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


def infer_level(band_names, sensor: str = "sentinel-2") -> str | None:
    """The level the cube's bands tell: for Sentinel-2, L1C with B10 (only L1C carries it), L2A with AOT, WVP or
    SCL (only L2A carries them); L2A for HLS (surface reflectance only); None when they tell nothing."""
    return level_evidence({str(b).upper() for b in band_names}, "", sensor)


def _model_level(model) -> str | None:
    """The level of a model that takes only one (a card id or path); None for aliases and 'auto'. An unknown
    model is an error here, before anything about levels or bands."""
    if isinstance(model, Model):
        model = model.card
    if not isinstance(model, ModelCard) and (str(model) in ALIASES or str(model) == AUTO):
        return None
    card = resolve_card(model)
    return card.levels[0] if len(card.levels) == 1 else None


def cube_level(model, level: str | None, band_names, sensor: str = "sentinel-2") -> str:
    """The level of a cube's dates: given, else the only one the model takes, else what the bands tell."""
    level = level or _model_level(model) or infer_level(band_names, sensor)
    if level is None:
        raise InputError(f"the cube's bands ({', '.join(map(str, band_names))}) are in L1C and L2A products "
                         "alike: give the level (\"L1C\" or \"L2A\"; UDF context \"level\"; for Landsat, L1C is "
                         "Collection 2 Level-1, top-of-atmosphere reflectance, and L2A Level-2, surface reflectance)")
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
    pixel_size: float = 10.0  # the cube's pixel size, from its coordinates (the sensor's where they do not tell)
    sensor: str = "sentinel-2"  # whose bands the cube holds (a key of SENSORS)


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
    opened = from_dataarray(da, level=spec.level, units=spec.units, peaks=peaks, sensor=spec.sensor)
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
    if tiles != "ground" or "x" not in step.coords or "y" not in step.coords or 0 in (step.sizes["x"], step.sizes["y"]):
        return None
    size = pixel_size(step) or 10.0
    x, y = float(step["x"].values[0]), float(step["y"].values[0])
    return round(-(y + size / 2) / size), round((x - size / 2) / size)


def date_spec(names, model, *, level: str | None, units: str = "dn", offset: float = 0.0, output: str = "classes",
              encoding: str = "kappamask", weights: str | None = None, options: ClassifyOptions | None = None,
              attrs: dict | None = None, pixel_size: float | None = None, sensor: str | None = None) -> DateSpec:
    """Check the arguments and the cube's bands against the model, then resolve the model (once: its weights
    may be downloaded) into the :class:`DateSpec` of every date. ``sensor``: whose bands the cube holds
    (Sentinel-2 where none is given)."""
    if output not in (*OUTPUTS, CLASSES_AND_CLOUDINESS, CLASSES_AND_SCORES):
        raise InputError(f"output must be one of {OUTPUTS}, not {output!r}")
    options = options or ClassifyOptions()
    if output in ("scores", CLASSES_AND_CLOUDINESS, CLASSES_AND_SCORES) and not options.scores:
        options = replace(options, scores=True)
    info = sensor_named(sensor)
    names = tuple(str(n) for n in names)
    roles = set(band_labels(names, info.id))  # one band named twice, before anything else
    level = cube_level(model, level, names, info.id)
    check_level(level, roles, "", "the cube", info.id)  # a level the bands contradict, before any model
    card = resolve_card(model, level, roles, sensor=info.id)
    check_made_for(card, info.id)
    missing = [b for b in card.bands if b not in roles]
    if missing:
        hint = ("; a Landsat or HLS cube? give its sensor (sensor='landsat-8', 'hls-l30'; UDF context \"sensor\")"
                if info.id == "sentinel-2" else "")
        raise BandsError(f"model {card.id!r} needs band(s) {', '.join(map(info.label, missing))}, which the cube "
                         f"lacks (it has {', '.join(names)}); load them too{hint}")
    if level not in card.levels:
        raise BandsError(f"model {card.id!r} takes {'/'.join(card.levels)} products, but the cube is {level}")
    resolved = resolve_model(model, level, roles, weights, announce=False, sensor=info.id)
    return DateSpec(names, level, resolved, units, float(offset), output, encoding, options, dict(attrs or {}),
                    pixel_size or float(info.resolution), info.id)
