"""A small true-colour picture of a product's data window beside each map's quicklook: gathered from the bands as
the strips read them (:class:`StripPreview`), or, where the model does not read the colour bands or the data
window is small, from a decimated read (JPEG 2000 and COG decode a lower resolution level for it)."""

from __future__ import annotations

import math

import numpy as np

from ..io.product import Product
from . import scale

RGB_BANDS = ("B04", "B03", "B02")
PREVIEW_SIZE = 1024


def true_colour(product: Product, window: tuple[int, int, int, int]) -> np.ndarray | None:
    """A small true-colour image of ``window`` (reflectance 0..0.3 stretched to 0..255), from a decimated read."""
    if not all(b in product.bands for b in RGB_BANDS):
        return None
    height, width = window[1] - window[0], window[3] - window[2]
    step = max(1, math.ceil(max(height, width) / PREVIEW_SIZE))
    shape = (max(1, height // step), max(1, width // step))
    return _stretch(product, {name: product.bands[name].read_decimated(shape, window) for name in RGB_BANDS})


def _stretch(product: Product, values: dict) -> np.ndarray:
    """The colour bands' stored values as an 8-bit picture: reflectance 0..0.3 onto 0..255."""
    channels = []
    for name in RGB_BANDS:
        refl = scale.to_units(values[name], name, product, "reflectance")
        channels.append(np.clip(np.nan_to_num(refl, nan=0.0, posinf=0.0, neginf=0.0) / 0.3 * 255, 0, 255)
                        .astype(np.uint8))
    return np.dstack(channels)


def _samples(n: int, step: int) -> np.ndarray:
    """The 10 m rows (or columns) a picture ``step`` x smaller samples: the nearest to each of its pixels' centres."""
    size = max(1, n // step)
    return ((np.arange(size) + 0.5) * n / size).astype(np.int64)


class StripPreview:
    """The true-colour picture of the whole product, sampled (nearest) from the colour bands as the strips read
    them, so that the run does not decode those bands a second time for its quicklook."""

    def __init__(self, product: Product):
        height, width = product.grid.shape
        self.step = max(1, math.ceil(max(height, width) / PREVIEW_SIZE))
        self.rows, self.cols = _samples(height, self.step), _samples(width, self.step)
        self.values: dict[str, np.ndarray] = {}
        self.filled = {name: np.zeros(len(self.rows), bool) for name in RGB_BANDS}

    def add(self, name: str, block: np.ndarray, factor: int, first_row: int, r0: int, r1: int) -> None:
        """Take the samples of 10 m rows [r0, r1) from ``block``: the band's native rows from ``first_row`` on, at
        ``factor`` x 10 m."""
        if name not in self.filled:
            return
        rows = (self.rows >= r0) & (self.rows < r1)
        if not rows.any():
            return
        cols = np.minimum(self.cols // factor, block.shape[1] - 1)
        picked = block[self.rows[rows] // factor - first_row][:, cols]
        target = self.values.setdefault(name, np.zeros((len(self.rows), len(self.cols)), block.dtype))
        target[rows] = picked
        self.filled[name][rows] = True

    def picture(self, product: Product, window: tuple[int, int, int, int]) -> np.ndarray | None:
        """The picture of ``window``, or None where the strips did not read every colour band over it or the
        window is too small for the whole product's sampling (a small window is read anew, at its own scale)."""
        rows = (self.rows >= window[0]) & (self.rows < window[1])
        cols = (self.cols >= window[2]) & (self.cols < window[3])
        if max(rows.sum(), cols.sum()) < PREVIEW_SIZE // 2:
            return None
        if not all(self.filled[name][rows].all() for name in RGB_BANDS):
            return None
        return _stretch(product, {name: self.values[name][rows][:, cols] for name in RGB_BANDS})
