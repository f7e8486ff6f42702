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

    Each native pixel counts by the area it covers in a coarse cell (it is
    replicated onto the fine grid, then f x f blocks are averaged), computed
    straight from the stored values without a float copy at fine resolution.
    Pixels without data (0) do not count: a cell at the edge of the data is
    the mean of its valid pixels, not darkened by the missing ones (which,
    for DN that carry an offset, would stand for a negative reflectance).
    """
    fine = nearest_rows(native, factor, row0, row1, width, offset)
    if fine.all():  # the common case: every pixel has data
        return block_mean(fine, coarse)
    valid = fine != 0
    counts = block_mean(valid.astype(np.float32), coarse)
    means = block_mean(fine, coarse)
    return np.divide(means, counts, out=np.zeros_like(means), where=counts > 0)


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
