"""Lookup models: a mask the product already carries (e.g. Sentinel-2's own scene classification, SCL) read and
translated into the five classes through the class scheme table, in row blocks; no network runs."""

from __future__ import annotations

import time

import numpy as np

from ..foundation.classes import CLASSES, MISSING, data_window
from ..foundation.errors import InputError
from ..foundation.schemes import UNDEFINED, lookup_table
from . import resample
from .buffers import buffered
from .preview import true_colour
from .results import Classification, ScoresArray
from .strips import read_bands

LOOKUP_ROWS = 1024  # rows of the 10 m grid per block of a lookup model (bounded memory)


def run_lookup(job, scores) -> Classification:
    """A mask the product already carries (e.g. Sen2Cor SCL): nearest to 10 m, then the class scheme, in row blocks."""
    t0 = time.perf_counter()
    product, card, buffers = job.product, job.card, job.options.buffers
    band = card.bands[0]
    grid = product.grid
    with job.stages("decode"):
        native = read_bands(product, card.bands)[band]
    lut = lookup_table(card.scheme)
    lut[lut == UNDEFINED] = MISSING  # the five-class map has no 'undefined'
    codes = _class_codes(native, f"{product.source}: band {band}")
    classes = np.empty(grid.shape, np.uint8)
    for a in range(0, grid.height, LOOKUP_ROWS):
        b = min(a + LOOKUP_ROWS, grid.height)
        rows = lut[resample.nearest_rows(codes, product.bands[band].factor, a, b, grid.width)]
        classes[a:b] = rows
        if scores is not None:
            scores.write(a, np.stack([(rows == c.value).astype(np.float32) for c in CLASSES]))
    classes, buffer_s = buffered(classes, buffers, grid)
    elapsed = time.perf_counter() - t0
    return Classification(
        classes=classes, grid=grid, product=product, card=card,
        scores=scores.array if isinstance(scores, ScoresArray) else None,
        preview=true_colour(product, data_window(classes)), preview_window=data_window(classes),
        timings={"read_s": elapsed, "infer_s": 0.0, "total_s": time.perf_counter() - job.started},
        runtime={"device": "cpu", "method": f"lookup ({card.scheme})", "resampling": "nearest",
                 "working_resolution": 10, "stitch": None, "overlap": None,
                 **({"buffers_m": dict(buffers)} if buffers else {})},
        stages=job.stages,
    )


def _class_codes(values: np.ndarray, what: str) -> np.ndarray:
    """A band of class codes as uint16; NaN (openEO nodata) becomes 0, which every scheme reads as no data."""
    if np.issubdtype(values.dtype, np.floating):
        finite = np.isfinite(values)
        if not np.array_equal(values[finite], np.round(values[finite])):
            raise InputError(f"{what} holds fractional values, not class codes")
        values = np.where(finite, values, 0)
    elif not np.issubdtype(values.dtype, np.integer):
        raise InputError(f"{what} holds {values.dtype} values, not class codes")
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise InputError(f"{what} holds values from {values.min()} to {values.max()}, not class codes")
    return values.astype(np.uint16, copy=False)
