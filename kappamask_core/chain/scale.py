"""Scale band values into the units and value range a model card asks for.

Step 1, harmonise: DN + offset (RADIO_ADD_OFFSET / BOA_ADD_OFFSET, -1000 from
processing baseline 04.00 on, 0 before) puts every product on the pre-04.00
DN scale. Values a loader harmonised already (units ``harmonised``: openEO's
Sentinel-2 collections on Copernicus Data Space) are on that scale as they
come. Reflectance inputs are multiplied back by the quantification value.
Step 2, units: ``reflectance`` = harmonised DN / quantification;
``dn_fraction`` = harmonised DN / 65535, the official KappaMask predictor's
storage (its own baseline-04.00 handling is faulty; ours harmonises first).
Step 3, the card's per-band ``value_scaling`` (z-score or min-max), then an
optional lower clip.
"""

from __future__ import annotations

import numpy as np

from ..foundation.bands import BAND_BY_NAME, HARMONISED_FLOOR
from ..foundation.errors import InputError


def harmonised_dn(values: np.ndarray, band: str, product) -> np.ndarray:
    """Band values on the pre-04.00 DN scale, as float32."""
    values = values.astype(np.float32, copy=False)
    if product.units == "reflectance":
        return values * np.float32(quantification(band, product))
    offset = product.offsets.get(band, 0.0)
    return values + np.float32(offset) if offset else values


def quantification(band: str, product) -> float:
    return product.quantification[BAND_BY_NAME[band].quantification_key]


def to_units(values: np.ndarray, band: str, product, units: str) -> np.ndarray:
    """Raw band values (DN or reflectance, as ``product.units`` says) -> card units."""
    dn = harmonised_dn(values, band, product)
    if units == "reflectance":
        return dn / np.float32(quantification(band, product))
    if units == "dn_fraction":
        return dn / np.float32(65535.0)
    raise ValueError(f"unknown units {units!r}")


def apply_value_scaling(stack: np.ndarray, scaling, clip_min: float | None) -> np.ndarray:
    """Per-band scaling of a (bands, ...) float32 stack, in place."""
    for i, rule in enumerate(scaling):
        if rule is None:
            continue
        if rule["type"] == "z-score":
            stack[i] -= np.float32(rule["mean"])
            stack[i] /= np.float32(rule["stddev"])
        elif rule["type"] == "min-max":
            stack[i] -= np.float32(rule["minimum"])
            stack[i] /= np.float32(rule["maximum"] - rule["minimum"])
    if clip_min is not None:
        np.maximum(stack, np.float32(clip_min), out=stack)
    return stack


def zero_is_missing(product) -> bool:
    """Whether a value of 0 marks no data: for stored DN and reflectance, not for harmonised DN (where it is a
    stored 1000 less the offset: reflectance 0)."""
    return product.units != "harmonised"


def invalid_mask(values: np.ndarray, product) -> np.ndarray:
    """Pixels with no data in this band: NaN and infinities (openEO's no-data, broken values) and, where
    :func:`zero_is_missing`, 0."""
    if np.issubdtype(values.dtype, np.floating):
        broken = ~np.isfinite(values)
        return (values == 0) | broken if zero_is_missing(product) else broken
    return values == 0 if zero_is_missing(product) else np.zeros(values.shape, bool)


def check_values(values: np.ndarray, band: str, product, first_row: int = 0) -> None:
    """The rule every band's values meet, whatever read them: stored DN are never negative (an offset is declared
    separately, never stored in the values), and harmonised DN, after any offset still declared, never go below
    :data:`HARMONISED_FLOOR`. Unsigned integers need no look."""
    if product.units == "reflectance" or values.size == 0 or np.issubdtype(values.dtype, np.unsignedinteger):
        return
    floor = 0.0 if product.units == "dn" else HARMONISED_FLOOR - product.offsets.get(band, 0.0)
    if np.issubdtype(values.dtype, np.floating):
        finite = values[np.isfinite(values)]
        low = finite.min() if finite.size else 0
    else:
        low = values.min()
    if low >= floor:
        return
    row = first_row + int(np.argwhere(values < floor)[0][0])
    where = f"{product.source or product.id}: band(s) {band}"
    if product.units == "dn":
        raise InputError(f"{where} hold negative values (down to {low:.6g}, first in native row {row}), which stored "
                         "Sentinel-2 DN never are; values a loader harmonised already (Copernicus Data Space's "
                         "openEO collections are) reach down to -1000: give them as units 'harmonised' (UDF context "
                         "\"units\")")
    raise InputError(f"{where} hold values down to {low:.6g} (first in native row {row}), below the {floor:g} that "
                     "harmonised DN reach (reflectance -0.1, a stored 0 less the 1000 offset"
                     + (f", with the offset {product.offsets[band]:g} still to add" if product.offsets.get(band)
                        else "") + "): they are not Sentinel-2 values")


# An offset that was not removed. From processing baseline 04.00 on, L1C DN are reflectance x 10000 + 1000, so no
# valid pixel is below 1000; before it (and once the offset is removed), the darkest pixels of a scene are: water
# and shadows in the near and short-wave infrared, dark vegetation in the red, reach a few hundred DN.
OFFSET_FLOOR_DN = 1000
OFFSET_QUANTILE = 0.001  # the darkest 0.1 % of each band's valid pixels
OFFSET_MIN_PIXELS = 10000  # fewer valid pixels tell nothing


def offset_suspected(product, bands) -> bool:
    """True when the product's DN look as if they still carry the +1000 offset of baseline 04.00: in every one of
    ``bands`` the darkest 0.1 % of the valid pixels lie at or above 1000 DN (no band reaches down into the dark
    range clear scenes have), over at least 10,000 valid pixels. Products whose offset was declared are not
    looked at. What this costs in false alarms is measured in benchmarks/offset_rule.py."""
    if product.units == "reflectance" or any(product.offsets.get(b, 0.0) for b in bands):
        return False
    lows = []
    for name in bands:
        values = np.asarray(product.bands[name].read())
        values = values[~invalid_mask(values, product)]
        if values.size < OFFSET_MIN_PIXELS:
            return False
        lows.append(float(np.quantile(values, OFFSET_QUANTILE)))
    return bool(lows) and min(lows) >= OFFSET_FLOOR_DN
