"""Classify an xarray data cube with dimensions (t, bands, y, x), as openEO hands one to a UDF.

No openEO import here: the UDF in ``udf/`` only translates its context into
these arguments. Each time step is classified on its own; the ONNX session
is cached per process.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from ..chain import scale
from ..chain.buffers import usable_mask
from ..chain.job import prepare
from ..chain.options import ClassifyOptions
from ..chain.pipeline import execute
from ..foundation.bands import BAND_BY_NAME
from ..foundation.classes import CLASSES, encode
from ..foundation.errors import InputError
from ..io.arrays import flips_to_north_up, from_dataarray
from ..io.product import level_evidence
from ..models.cards import ALIASES, AUTO, ModelCard
from ..models.resolve import Model, resolve_card
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


def infer_level(band_names) -> str | None:
    """The level the cube's bands tell: L1C with B10 (only L1C carries it), L2A with AOT, WVP or SCL (only L2A
    carries them); None when they tell nothing (B02 to B12 are in both)."""
    return level_evidence({str(b).upper() for b in band_names})


def _model_level(model: str) -> str | None:
    """The level of a model that takes only one (a card id or path); None for aliases and 'auto'. An unknown
    model is an error here, before anything about levels or bands."""
    if str(model) in ALIASES or str(model) == AUTO:
        return None
    card = resolve_card(model)
    return card.levels[0] if len(card.levels) == 1 else None


def classify_datacube(cube: "xarray.DataArray", *, model: str = "auto", level: str | None = None, units: str = "dn",
                      offset: float = 0.0, output: str = "classes", encoding: str = "kappamask",
                      weights: str | None = None, options: ClassifyOptions | None = None) -> "xarray.DataArray":
    """(t?, bands, y, x) cube -> (t?, bands, y, x) cube whose bands are :data:`OUTPUT_BANDS` ``[output]``.

    Buffers (``options.buffers``) are exact within a chunk's core as long as they
    are no wider than the chunk's overlap (32 px = 320 m in the templates).
    """
    import xarray as xr

    if output not in OUTPUTS:
        raise InputError(f"output must be one of {OUTPUTS}, not {output!r}")
    if "bands" not in cube.dims:
        raise InputError(f"the cube has no 'bands' dimension (dimensions: {cube.dims})")
    options = options or ClassifyOptions()
    if output == "scores" and not options.scores:
        from dataclasses import replace

        options = replace(options, scores=True)
    time_dim = next((d for d in ("t", "time") if d in cube.dims), None)
    count = cube.sizes[time_dim] if time_dim else 1
    if count == 0:
        raise InputError(f"the cube has no dates (its '{time_dim}' dimension is empty)")
    level = level or _model_level(model) or infer_level(cube["bands"].values)
    if level is None:
        raise InputError(f"the cube's bands ({', '.join(map(str, cube['bands'].values))}) are in L1C and L2A products "
                         "alike: give the level (\"L1C\" or \"L2A\"; UDF context \"level\")")
    if not isinstance(level, str) or level.upper() not in ("L1C", "L2A"):
        raise InputError(f"level must be \"L1C\" or \"L2A\", not {level!r}")
    level = level.upper()

    def product(i):
        """Date ``i`` as a product, opened only when it is classified: a long time series is never copied whole."""
        step = cube.isel({time_dim: i}) if time_dim else cube
        opened = from_dataarray(step, level=level, units=units)
        if offset:
            opened.offsets = {b: float(offset) for b in opened.bands if BAND_BY_NAME[b].quantification_key == "band"}
        return step, opened

    results: list = []
    asked: str | os.PathLike | ModelCard | Model = model
    for i in range(count):
        step, opened = product(i)
        # the first date resolves the model (and checks the cube's bands before anything of weights); the others
        # reuse it, and the process's session
        job = prepare(opened, asked, weights=weights, options=options, runners=PROCESS_RUNNERS)
        asked = job.asked
        if level == "L1C" and scale.offset_suspected(opened, job.card.bands):
            when = step[time_dim].values if time_dim and time_dim in step.coords else step.attrs.get("t", "")
            log.warning("date %s: the darkest 0.1 %% of the pixels of every band are at or above %d DN, as if the "
                        "DN still carried the +1000 offset of processing baseline 04.00; if they do, pass offset "
                        "-1000 (the process's 'offset' parameter)", str(when)[:10] or "of this chunk",
                        scale.OFFSET_FLOOR_DN)
        result = execute(job)
        if output == "classes":
            values = encode(result.classes, encoding)[None]
        elif output == "usable":
            values = usable_mask(result.classes)[None]
        else:
            if result.scores is None:  # options.scores is set for this output: never the case
                raise RuntimeError("the scores were asked for but not kept")
            values = result.scores
        labels = list(OUTPUT_BANDS[output])
        flip_y, flip_x = flips_to_north_up(step)
        values = values[:, ::-1 if flip_y else 1, ::-1 if flip_x else 1]  # the map in the cube's own order
        results.append(xr.DataArray(values, dims=("bands", "y", "x"),
                                    coords={"bands": labels, "y": step["y"], "x": step["x"]} if "x" in step.coords
                                    else {"bands": labels}))
    out = xr.concat(results, dim=time_dim) if time_dim else results[0]
    if time_dim:
        out = out.assign_coords({time_dim: cube[time_dim]}) if time_dim in cube.coords else out
        out = out.transpose(time_dim, "bands", "y", "x")
    return out
