"""Lazy cubes on dask: one task per date and spatial chunk, each chunk cut along the model's tile grid and read with
the context its tiles need (:func:`lazy_values`), and the chunk grid the openEO UDF's chunks are checked against
(:func:`context_needed`)."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from ..chain.buffers import buffer_classes, reach_px, usable_mask
from ..foundation.classes import encode
from ..foundation.errors import InputError
from ..foundation.grid import ChunkGrid
from ..io.arrays import band_labels, block_peaks, check_units
from .dates import CLASSES_AND_CLOUDINESS, CLASSES_AND_SCORES, MULTI_BAND, DateSpec, classify_values

log = logging.getLogger(__name__)


def is_dask(data) -> bool:
    return type(data).__module__.startswith("dask")


def lazy_values(data, spec: DateSpec, origin: tuple[int, int] | None = None):
    """The dask graph: one task per date and spatial chunk. Chunks are cut along the model's tile grid (the
    ground's where ``origin``, the ground's index of the cube's first pixel, is given; else the cube's own): a
    chunk's edges lie where crop stitching hands a pixel from one tile to the next, and each chunk is read with a
    halo of the rest of the tiles that keep its pixels, so that it runs exactly the tiles one run over the whole
    date runs for them. With crop stitching a chunk's classes are then those of one run over the whole date,
    seams included."""
    import dask.array as dsa

    grid = _chunk_grid(spec)
    chunks = (tuple(1 for _ in range(data.shape[0])), (data.shape[1],),
              grid.chunks(data.shape[2], max(data.chunks[2]), None if origin is None else origin[0]),
              grid.chunks(data.shape[3], max(data.chunks[3]), None if origin is None else origin[1]))
    if chunks != data.chunks:
        if chunks[2:] != data.chunks[2:]:
            log.info("rechunking the cube's y and x to %s and %s px chunks, along the model's tile grid (%d m "
                     "working pixels, tiles of %d with %d overlap)", max(chunks[2]), max(chunks[3]),
                     10 * grid.factor, grid.tile, grid.overlap)
        data = data.rechunk(chunks)
    # an axis of one chunk needs no halo (and one narrower than the halo could not have one)
    depth = {0: 0, 1: 0, 2: grid.halo if len(chunks[2]) > 1 else 0, 3: grid.halo if len(chunks[3]) > 1 else 0}
    grown = dsa.overlap.overlap(data, depth=depth, boundary="none")
    k = MULTI_BAND.get(spec.output, 1)
    dtype = np.uint8 if k == 1 else np.float32
    raw = replace(spec, output=spec.output if k > 1 else "classes", encoding="kappamask",
                  options=replace(spec.options, buffers=()))
    blocks = dsa.map_blocks(_classify_block, grown, raw, grid, origin, chunks[2:], (depth[2], depth[3]),
                            dtype=dtype, chunks=(grown.chunks[0], (k,), grown.chunks[2], grown.chunks[3]))
    values = dsa.overlap.trim_internal(blocks, depth, boundary="none")
    values = _checked_by_date(values, data, spec)
    if spec.output == "scores":
        return values
    if spec.output in (CLASSES_AND_CLOUDINESS, CLASSES_AND_SCORES):  # buffers on the classes, the scores as they are
        classes = buffered_classes(values[:, :1].astype(np.uint8), spec.options.buffers, spec.pixel_size)
        if spec.output == CLASSES_AND_SCORES:
            classes = classes.map_blocks(encode, spec.encoding, dtype=np.uint8)
        return dsa.concatenate([classes.astype(np.float32), values[:, 1:]], axis=1)
    return _finish_classes(values, spec)


def context_needed(spec: DateSpec) -> int:
    """The 10 m pixels beyond a chunk's core (cut anywhere) that the ground's tiles keeping the core's pixels can
    reach (:attr:`~kappamask_core.foundation.grid.ChunkGrid.reach`)."""
    return _chunk_grid(spec).reach


def _chunk_grid(spec: DateSpec) -> ChunkGrid:
    """The tile grid of the model and options of a cube's dates, along one axis."""
    card, options = spec.model.card, spec.options
    overlap = card.overlap if options.overlap is None else options.overlap
    margin = card.margin if options.margin is None else options.margin
    if isinstance(margin, tuple):
        raise InputError("a cube's tiles take one margin for rows and columns; give margin as one number")
    return ChunkGrid(card.resolution // 10, card.tile_size, overlap, margin, options.stitch)


def _classify_block(block: np.ndarray, spec: DateSpec, grid: ChunkGrid,
                    origin: tuple[int, int] | None, chunks: tuple, depth: tuple[int, int], block_id=None) -> np.ndarray:
    """One date's chunk read with the halo: (1, bands, y, x) -> (1, k, y, x) classes (or scores). With the
    ground's tiles the chunk is located on the ground and only the tiles that keep its core's pixels run. With
    the cube's own tiles the halo is symmetric for dask; a chunk keeps of it only the half overlap on its leading
    sides that its first tiles start at, and tiles of the first chunk of an axis start the model's margin before
    the edge. A chunk's units are not checked on their own (:func:`_checked_by_date` checks the date's)."""
    _, _, iy, ix = block_id
    date_peaks: dict[str, float] = {}  # no units check of the chunk alone: the whole date's gates the values
    if origin is not None:
        before = (depth[0] if iy else 0, depth[1] if ix else 0)
        offset = (sum(chunks[0][:iy]) - before[0], sum(chunks[1][:ix]) - before[1])
        window = ((before[0], before[0] + chunks[0][iy]), (before[1], before[1] + chunks[1][ix]))
        values = classify_values(np.asarray(block[0]), spec, peaks=date_peaks,
                                 origin=(origin[0] + offset[0], origin[1] + offset[1]), window=window)
        return values[None]
    extra = grid.halo - grid.lead * grid.factor  # halo rows before a chunk that no tile of it covers
    top, left = (extra if iy else 0), (extra if ix else 0)
    margins = (grid.margin if iy == 0 else 0, grid.margin if ix == 0 else 0)
    options = replace(spec.options, margin=margins if margins[0] != margins[1] else margins[0])
    values = classify_values(np.asarray(block[0, :, top:, left:]), replace(spec, options=options), peaks=date_peaks)
    return np.pad(values, ((0, 0), (top, 0), (left, 0)))[None]


def _checked_by_date(values, data, spec: DateSpec):
    """``values`` released only where the units check of their whole date (band by band, as one run over the date
    decides it) passes. The check comes after the classification, not before it: a classification that waited
    for a date's every chunk to be read would hold the date's whole input in memory at once, and memory would
    grow with the cube rather than with its chunks. A date's check reads its input chunks a second time only where
    dask has already let them go."""
    import dask.array as dsa

    peaks = data.map_blocks(block_peaks, list(spec.names), spec.attrs, dtype=np.float64,
                            chunks=(data.chunks[0], data.chunks[1], (1,) * len(data.chunks[2]),
                                    (1,) * len(data.chunks[3])))
    peaks = peaks.max(axis=(2, 3))  # (time, bands), one chunk of bands
    return dsa.blockwise(_checked_block, "tkyx", values, "tkyx", peaks, "tb", spec=spec, dtype=values.dtype,
                         concatenate=True)


def _checked_block(values: np.ndarray, peaks: np.ndarray, spec: DateSpec) -> np.ndarray:
    """One chunk of a date's values, once its date's peaks (1, bands) pass the units check."""
    position = {label: i for i, label in enumerate(spec.names)}
    date_peaks = {name: float(peaks[0, position[str(given[0])]])
                  for name, given in band_labels(spec.names, spec.sensor).items()}
    check_units({n: p for n, p in date_peaks.items() if p > 0}, spec.units, "xarray.DataArray array")
    return values


def buffered_classes(classes, buffers, resolution: float):
    """Lazy (time, 1, y, x) classes on a grid of ``resolution`` m grown by ``buffers`` (metres), each chunk read
    with a halo of the widest radius: the same as buffering each whole date."""
    import dask.array as dsa

    if not buffers:
        return classes
    radius = reach_px(buffers, resolution)
    depth = {0: 0, 1: 0, 2: radius, 3: radius}
    return dsa.map_overlap(_buffer_block, classes, depth=depth, boundary="none", dtype=np.uint8, buffers=buffers,
                           resolution=resolution)


def _finish_classes(classes, spec: DateSpec):
    """Buffers (exact across chunks), then the encoding or the usable mask."""
    classes = buffered_classes(classes, spec.options.buffers, spec.pixel_size)
    if spec.output == "usable":
        return classes.map_blocks(usable_mask, dtype=np.uint8)
    return classes.map_blocks(encode, spec.encoding, dtype=np.uint8)


def _buffer_block(classes: np.ndarray, buffers, resolution: float) -> np.ndarray:
    return buffer_classes(classes[0, 0], buffers, resolution)[None, None]
