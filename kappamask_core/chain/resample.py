"""Resampling between the native band grids, the 10 m grid and the working grid.

On a 10 m working grid every band is brought onto the 10 m grid by an integer
factor (2 for 20 m, 6 for 60 m bands): ``bilinear`` (default; pixel-centre
aligned, edges clamped) or ``nearest``. A coarser working grid (e.g. 30 m for
the default model) is made by area-weighted averaging: each native pixel
counts by the area it covers in a working cell. Class scores go back to 10 m
by replicating each working pixel, which keeps class boundaries on the
working grid.
All functions work on a band of rows, so the pipeline can stream.
"""

from __future__ import annotations

import numpy as np

METHODS = ("bilinear", "nearest")


def _bilinear_index(n_out: int, start: int, factor: int, n_in: int):
    centre = (np.arange(start, start + n_out) + 0.5) / factor - 0.5
    i0 = np.floor(centre).astype(np.int64)
    frac = (centre - i0).astype(np.float32)
    return np.clip(i0, 0, n_in - 1), np.clip(i0 + 1, 0, n_in - 1), frac


def native_rows_needed(factor: int, row0: int, row1: int, native_height: int) -> tuple[int, int]:
    """The native rows [n0, n1) that fine rows [row0, row1) need, for either method."""
    if factor == 1:
        return row0, row1
    lo = min(int(np.floor((row0 + 0.5) / factor - 0.5)), row0 // factor)
    hi = max(int(np.floor((row1 - 0.5) / factor - 0.5)) + 1, (row1 - 1) // factor)
    return max(0, lo), min(native_height, hi + 1)


def upsample_rows(native: np.ndarray, factor: int, row0: int, row1: int, width: int, method: str = "bilinear",
                  offset: int = 0, native_height: int | None = None) -> np.ndarray:
    """Rows [row0, row1) of a band on the fine grid, as float32 (row1 - row0, width).

    ``native`` may be a window of the band starting at native row ``offset``
    (see :func:`native_rows_needed`); ``native_height`` is the whole band's.
    """
    h = native_height or native.shape[0] + offset
    if factor == 1:
        return native[row0 - offset : row1 - offset, :width].astype(np.float32)
    if method == "nearest":
        return nearest_rows(native, factor, row0, row1, width, offset).astype(np.float32)
    if method != "bilinear":
        raise ValueError(f"unknown resampling method {method!r}; choose one of {METHODS}")
    r0, r1, fr = _bilinear_index(row1 - row0, row0, factor, h)
    lo, hi = native[r0 - offset].astype(np.float32), native[r1 - offset].astype(np.float32)
    rows = lo + (hi - lo) * fr[:, None]
    c0, c1, fc = _bilinear_index(width, 0, factor, native.shape[1])
    left, right = rows[:, c0], rows[:, c1]
    return left + (right - left) * fc[None, :]


def nearest_rows(native: np.ndarray, factor: int, row0: int, row1: int, width: int, offset: int = 0) -> np.ndarray:
    """Rows of a band on the fine grid by nearest neighbour (each native pixel repeated), keeping the dtype."""
    if factor == 1:
        return native[row0 - offset : row1 - offset, :width]
    first = row0 // factor
    block = native[first - offset : (row1 - 1) // factor + 1 - offset]
    skip = row0 - first * factor
    rows = np.repeat(block, factor, axis=0)[skip : skip + row1 - row0]
    return np.repeat(rows, factor, axis=1)[:, :width]


def area_rows(native: np.ndarray, factor: int, row0: int, row1: int, width: int, coarse: int,
              offset: int = 0, col0: int = 0) -> np.ndarray:
    """Fine rows [row0, row1) and columns [col0, width) averaged onto a grid ``coarse`` x coarser: an
    area-weighted average of the pixels that have data, as ((row1 - row0) / coarse, (width - col0) / coarse)
    float32, each rounded up.

    Each native pixel counts by the area it covers in a coarse cell: the value is what replicating the band onto
    the fine grid and averaging ``coarse`` x ``coarse`` blocks gives, computed without a copy at fine resolution.
    Pixels without data (0) do not count: a cell at the edge of the data is the mean of its valid pixels, not
    darkened by the missing ones (which, for DN that carry an offset, would stand for a negative reflectance).
    Fine pixels outside rows [0, row1) and columns [0, width) have no data either: the ground's coarse cells need
    not start at the raster's edge (``row0``, ``col0`` negative), nor end at its last row or column.
    """
    rows = _fine_index(row0, row1, coarse, row1)
    cols = _fine_index(col0, width, coarse, width)
    native_rows = np.where(rows >= 0, rows // factor - offset, -1)
    native_cols = np.where(cols >= 0, cols // factor, -1)
    used = native_rows[native_rows >= 0]
    first = int(used.min()) if used.size else 0
    # the native rows these fine rows need, their columns on the fine grid, and a row and a column of zeros (no
    # data) that the fine pixels outside the raster point at
    gathered = np.zeros((int(used.max()) - first + 2 if used.size else 1, native_cols.size + 1), native.dtype)
    if used.size:
        gathered[:-1, :-1] = native[first : int(used.max()) + 1][:, np.maximum(native_cols, 0)]
        gathered[:-1, :-1][:, native_cols < 0] = 0
    outside = gathered.shape[0] - 1  # the row of zeros
    row_map = np.where(native_rows >= 0, native_rows - first, outside)
    gathered = gathered[:, :-1]
    inside = bool((row_map != outside).all() and (native_cols >= 0).all())
    cells = coarse * coarse
    if not np.issubdtype(native.dtype, np.integer):
        # float values: summed on the fine grid, in the order that decides their last bits
        fine = gathered[row_map]
        if fine.all():
            return block_mean(fine, coarse)
        return _valid_mean(block_mean(fine, coarse), block_mean((fine != 0).astype(np.float32), coarse))
    # integers (stored DN): the block sums are exact, so they are taken separably, columns first on the native
    # rows and then rows on the coarse columns, and divided once, as block_mean divides its exact float32 sums
    means = _block_sums(gathered, row_map, coarse).astype(np.float32) / cells
    if inside and gathered[:-1].all():  # the common case: every pixel has data
        return means
    counts = _block_sums(gathered != 0, row_map, coarse).astype(np.float32) / cells
    return _valid_mean(means, counts)


def _fine_index(start: int, stop: int, coarse: int, extent: int) -> np.ndarray:
    """Fine indices [start, stop) rounded up to whole coarse cells; -1 where they lie outside [0, extent)."""
    n = stop - start
    index = np.arange(start, start + n + (-n) % coarse)
    return np.where((index >= 0) & (index < extent), index, -1)


def _block_sums(gathered: np.ndarray, rows: np.ndarray, coarse: int) -> np.ndarray:
    """Sums of ``coarse`` x ``coarse`` fine blocks: ``gathered`` holds the native rows with its columns already on
    the fine grid; ``rows`` maps each fine row onto them. Strided slices added up (exact in int32 for 16-bit
    values, in int64 for wider ones) are several times faster than a reduction over a short axis."""
    cols: np.ndarray = gathered[:, 0::coarse].astype(np.int32 if gathered.dtype.itemsize <= 2 else np.int64)
    for k in range(1, coarse):
        cols += gathered[:, k::coarse]
    sums = cols[rows[0::coarse]]
    for k in range(1, coarse):
        sums += cols[rows[k::coarse]]
    return sums


def _valid_mean(means: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The mean over a cell's valid pixels, from the mean over all and the valid share; 0 where none is valid."""
    return np.divide(means, counts, out=np.zeros_like(means), where=counts > 0)


def block_any(mask: np.ndarray, factor: int, lead: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Whether any pixel of each f x f block is set (2-D); ``lead`` unset pixels come before the first row and
    column (the ground's blocks need not start at the raster's edge), and ragged edges are filled unset."""
    if factor == 1:
        return mask
    h, w = mask.shape[0] + lead[0], mask.shape[1] + lead[1]
    mask = np.pad(mask, ((lead[0], (-h) % factor), (lead[1], (-w) % factor)))
    return np.asarray(mask.reshape(mask.shape[0] // factor, factor, -1, factor).any(axis=(1, 3)))


def block_mean(array: np.ndarray, factor: int) -> np.ndarray:
    """Average f x f blocks over the last two axes; ragged edges repeat the edge pixels."""
    if factor == 1:
        return array
    h, w = array.shape[-2:]
    ph, pw = (-h) % factor, (-w) % factor
    if ph or pw:
        pad = [(0, 0)] * (array.ndim - 2) + [(0, ph), (0, pw)]
        array = np.pad(array, pad, mode="edge")
    H, W = array.shape[-2:]
    shaped = array.reshape(*array.shape[:-2], H // factor, factor, W // factor, factor)
    return shaped.mean(axis=(-3, -1), dtype=np.float32).astype(np.float32, copy=False)


def replicate(array: np.ndarray, factor: int, height: int, width: int, lead: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Nearest upsampling of the last two axes by ``factor``, the first ``lead`` rows and columns dropped (they lie
    before the raster), cropped to (height, width)."""
    if factor == 1:
        return array[..., :height, :width]
    out = np.repeat(np.repeat(array, factor, axis=-2), factor, axis=-1)
    return out[..., lead[0] : lead[0] + height, lead[1] : lead[1] + width]
