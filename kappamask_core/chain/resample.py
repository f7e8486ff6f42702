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
              offset: int = 0) -> np.ndarray:
    """Fine rows [row0, row1) averaged onto a grid ``coarse`` x coarser: an area-weighted average of the pixels
    that have data.

    Each native pixel counts by the area it covers in a coarse cell: the value is
    what replicating the band onto the fine grid and averaging ``coarse`` x
    ``coarse`` blocks (edges repeated, as :func:`block_mean`) gives, computed
    without a copy at fine resolution. Pixels without data (0) do not count: a
    cell at the edge of the data is the mean of its valid pixels, not darkened
    by the missing ones (which, for DN that carry an offset, would stand for a
    negative reflectance).
    """
    if not np.issubdtype(native.dtype, np.integer):
        # float values: summed on the fine grid, in the order that decides their last bits
        fine = nearest_rows(native, factor, row0, row1, width, offset)
        if fine.all():
            return block_mean(fine, coarse)
        return _valid_mean(block_mean(fine, coarse), block_mean((fine != 0).astype(np.float32), coarse))
    # integers (stored DN): the block sums are exact, so they are taken separably, columns first on the native
    # rows and then rows on the coarse columns, and divided once, as block_mean divides its exact float32 sums
    rows = _fine_index(row0, row1 - row0, coarse) // factor - offset
    cols = _fine_index(0, width, coarse) // factor
    first = int(rows[0])
    gathered = native[first : int(rows[-1]) + 1][:, cols]
    cells = coarse * coarse
    means = _block_sums(gathered, rows - first, coarse).astype(np.float32) / cells
    if gathered.all():  # the common case: every pixel has data
        return means
    counts = _block_sums(gathered != 0, rows - first, coarse).astype(np.float32) / cells
    return _valid_mean(means, counts)


def _fine_index(start: int, n: int, coarse: int) -> np.ndarray:
    """Fine indices [start, start + n), the last repeated up to a multiple of ``coarse`` (block_mean's edges)."""
    return np.minimum(np.arange(start, start + n + (-n) % coarse), start + n - 1)


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


def block_any(mask: np.ndarray, factor: int) -> np.ndarray:
    """Whether any pixel of each f x f block is set (2-D); ragged edges repeat the edge pixels."""
    if factor == 1:
        return mask
    h, w = mask.shape
    mask = np.pad(mask, ((0, (-h) % factor), (0, (-w) % factor)), mode="edge")
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


def replicate(array: np.ndarray, factor: int, height: int, width: int) -> np.ndarray:
    """Nearest upsampling of the last two axes by ``factor``, cropped to (height, width)."""
    if factor == 1:
        return array[..., :height, :width]
    out = np.repeat(np.repeat(array, factor, axis=-2), factor, axis=-1)
    return out[..., :height, :width]
