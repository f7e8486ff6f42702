"""A small true-colour picture of a product's data window, from a decimated read (JPEG 2000 and COG decode a
lower resolution level for it), beside each map's quicklook."""

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
    channels = []
    for name in RGB_BANDS:
        values = product.bands[name].read_decimated(shape, window)
        refl = scale.to_units(values, name, product, "reflectance")
        channels.append(np.clip(np.nan_to_num(refl, nan=0.0, posinf=0.0, neginf=0.0) / 0.3 * 255, 0, 255)
                        .astype(np.uint8))
    return np.dstack(channels)
