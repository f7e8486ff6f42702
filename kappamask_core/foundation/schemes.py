"""Class schemes of other masks and label sets, mapped onto the five output classes.

One table for every foreign encoding: the evaluation harness reads
references and predictions through it, and the Sen2Cor SCL "model" uses its
``sen2cor-scl`` row. Values not listed map to UNDEFINED, which evaluation
excludes (like missing). Sources: Table 1 of Domnich et al. (2021) for SCL,
Fmask and s2cloudless; CloudSEN12's label values; the official KappaMask
predictor's GeoTIFF values; the bit flags of Landsat Collection 2's QA_PIXEL
and HLS v2.0's Fmask (their product guides).
"""

from __future__ import annotations

import numpy as np

from .classes import CLEAR, CLOUD, CLOUD_SHADOW, MISSING, SEMI_TRANSPARENT_CLOUD

UNDEFINED = 255  # in a class map: a pixel that no output class describes (excluded from metrics)

SCHEMES: dict[str, dict[int, int]] = {
    # the paper's encoding, as written by this package
    "kappamask": {0: MISSING, 1: CLEAR, 2: CLOUD_SHADOW, 3: SEMI_TRANSPARENT_CLOUD, 4: CLOUD},
    # KappaSet sub-tiles ('Label', and the official test data's KML1C / KML2A): the network's output order
    "kappaset": {0: UNDEFINED, 1: CLEAR, 2: CLOUD_SHADOW, 3: SEMI_TRANSPARENT_CLOUD, 4: CLOUD, 5: MISSING},
    # the official predictor's GeoTIFF: 0 is outside the product
    "km_predict": {0: MISSING, 1: CLEAR, 2: CLOUD_SHADOW, 3: SEMI_TRANSPARENT_CLOUD, 4: CLOUD, 5: MISSING},
    # Sen2Cor scene classification, paper Table 1: 0 no data, 1 saturated/defective, 2 dark area,
    # 3 cloud shadow, 4 vegetation, 5 bare soil, 6 water, 7 unclassified, 8/9 cloud medium/high
    # probability, 10 thin cirrus, 11 snow
    "sen2cor-scl": {0: MISSING, 1: MISSING, 2: CLEAR, 3: CLOUD_SHADOW, 4: CLEAR, 5: CLEAR, 6: CLEAR,
                    7: UNDEFINED, 8: CLOUD, 9: CLOUD, 10: SEMI_TRANSPARENT_CLOUD, 11: CLEAR},
    # CloudSEN12 labels: 0 clear, 1 thick cloud, 2 thin cloud, 3 cloud shadow
    "cloudsen12": {0: CLEAR, 1: CLOUD, 2: SEMI_TRANSPARENT_CLOUD, 3: CLOUD_SHADOW},
    # Fmask: 0 clear land, 1 clear water, 2 cloud shadow, 3 snow, 4 cloud, 255 no observation
    "fmask": {0: CLEAR, 1: CLEAR, 2: CLOUD_SHADOW, 3: CLEAR, 4: CLOUD, 255: MISSING},
    # s2cloudless mask: 0 clear, 1 cloud
    "s2cloudless": {0: CLEAR, 1: CLOUD},
}


def _bit_scheme(fill: int | None, bits: tuple[tuple[int, int], ...], size: int, fill_value: int | None = None,
                undefined_bit: int | None = None) -> dict[int, int]:
    """A scheme of bit flags: the class of the first of ``bits`` (bit, class) set, UNDEFINED where only
    ``undefined_bit`` is, clear otherwise; MISSING where the ``fill`` bit is set or the value is ``fill_value``."""
    values = np.arange(size)
    classes = np.full(size, CLEAR, np.uint8)
    if undefined_bit is not None:
        classes[(values >> undefined_bit) & 1 == 1] = UNDEFINED
    for bit, cls in reversed(bits):
        classes[(values >> bit) & 1 == 1] = cls
    if fill is not None:
        classes[(values >> fill) & 1 == 1] = MISSING
    if fill_value is not None:
        classes[fill_value] = MISSING
    return dict(zip(values.tolist(), classes.tolist()))


# The masks Landsat and HLS products carry (bit flags): CFMask's QA_PIXEL of Collection 2 (bit 0 fill, 1 dilated
# cloud, 2 cirrus, 3 cloud, 4 cloud shadow; snow and water are clear) and HLS v2.0's Fmask (1 cloud, 2 next to
# cloud or shadow, 3 cloud shadow; 255 no data). Dilated cloud and adjacency are buffers, so undefined here.
SCHEMES["landsat-qa-pixel"] = _bit_scheme(0, ((3, CLOUD), (4, CLOUD_SHADOW), (2, SEMI_TRANSPARENT_CLOUD)), 65536,
                                          undefined_bit=1)
SCHEMES["hls-fmask"] = _bit_scheme(None, ((1, CLOUD), (3, CLOUD_SHADOW)), 256, fill_value=255, undefined_bit=2)
# the schemes of other algorithms' masks, which a map is compared with as agreement, never as accuracy
PRODUCT_MASKS = ("sen2cor-scl", "fmask", "s2cloudless", "landsat-qa-pixel", "hls-fmask")


def lookup_table(scheme: str) -> np.ndarray:
    """A 65536-entry table from the scheme's values to output classes (unlisted -> UNDEFINED)."""
    if scheme not in SCHEMES:
        raise KeyError(f"unknown class scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    lut = np.full(65536, UNDEFINED, dtype=np.uint8)
    for value, cls in SCHEMES[scheme].items():
        lut[value] = cls
    return lut


def to_classes(values: np.ndarray, scheme: str) -> np.ndarray:
    """Translate a class map in ``scheme`` into output classes (uint8; UNDEFINED where unlisted)."""
    values = np.asarray(values)
    lut = lookup_table(scheme)
    out = np.full(values.shape, UNDEFINED, np.uint8)
    if np.issubdtype(values.dtype, np.floating):
        finite = np.isfinite(values)
        if not np.array_equal(values[finite], np.round(values[finite])):
            raise ValueError("class maps must hold whole numbers")
        out[~finite] = MISSING  # NaN is no data
    else:
        finite = np.ones(values.shape, bool)
    codes = np.where(finite, values, -1).astype(np.int64)
    known = (codes >= 0) & (codes < lut.size)
    out[known] = lut[codes[known]]
    return out
