"""Sentinel-2 band table: native resolution, level availability, common names.

One table serves the readers (which files to look for), the resampler (native
pixel size) and the STAC reader (asset keys of common catalogues).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Band:
    """One Sentinel-2 band: its native resolution, the levels that carry it, its quantification."""

    name: str
    resolution: int  # native pixel size in metres
    common_name: str | None  # STAC eo common name, where one exists
    levels: tuple[str, ...]  # product levels that carry the band
    quantification_key: str = "band"  # which quantification value applies

    @property
    def factor(self) -> int:
        """Native pixel size in units of the 10 m grid."""
        return self.resolution // 10


_BOTH = ("L1C", "L2A")
BANDS: tuple[Band, ...] = (
    Band("B01", 60, "coastal", _BOTH),
    Band("B02", 10, "blue", _BOTH),
    Band("B03", 10, "green", _BOTH),
    Band("B04", 10, "red", _BOTH),
    Band("B05", 20, "rededge1", _BOTH),
    Band("B06", 20, "rededge2", _BOTH),
    Band("B07", 20, "rededge3", _BOTH),
    Band("B08", 10, "nir", _BOTH),
    Band("B8A", 20, "nir08", _BOTH),
    Band("B09", 60, "nir09", _BOTH),
    Band("B10", 60, "cirrus", ("L1C",)),
    Band("B11", 20, "swir16", _BOTH),
    Band("B12", 20, "swir22", _BOTH),
    Band("AOT", 10, None, ("L2A",), quantification_key="AOT"),
    Band("WVP", 10, None, ("L2A",), quantification_key="WVP"),
    Band("SCL", 20, None, ("L2A",), quantification_key="none"),
)

BAND_BY_NAME = {b.name: b for b in BANDS}
SPECTRAL_BANDS = tuple(b.name for b in BANDS if b.common_name is not None)
# Index of each spectral band in the product metadata (band_id="0".."12").
BAND_ID = {name: i for i, name in enumerate(SPECTRAL_BANDS)}

DEFAULT_QUANTIFICATION = {"band": 10000.0, "AOT": 1000.0, "WVP": 1000.0, "none": 1.0}

# The units a product's values can be in. "dn": stored DN, never negative, 0 is no data, the product's offset still
# to be added. "harmonised": DN with the offset already added by whoever loaded them (reflectance x 10000, as
# Copernicus Data Space's openEO loader delivers Sentinel-2 bands: int16, not clipped), so as low as
# HARMONISED_FLOOR (reflectance -0.1, a stored DN of 0 less baseline 04.00's 1000), a 0 is reflectance 0 and only
# the loader's no-data value (NaN) is missing. "reflectance": reflectance, 0 and NaN no data.
UNITS = ("dn", "harmonised", "reflectance")
HARMONISED_FLOOR = -1000.0


def normalise_band_name(name: str) -> str:
    """Accept 'b2', 'B2', 'B02', 'b8a', 'B8A' and return the canonical name."""
    key = name.strip().upper()
    if key in BAND_BY_NAME:
        return key
    if key.startswith("B") and key[1:].isdigit():
        candidate = f"B{int(key[1:]):02d}"
        if candidate in BAND_BY_NAME:
            return candidate
    for band in BANDS:
        if band.common_name and band.common_name.upper() == key:
            return band.name
    raise KeyError(name)


RESOLUTION_SUFFIX = re.compile(r"^(.*?)[_-](\d{2})m$", re.IGNORECASE)  # "B02_10m", "SCL-20m"


def asset_band(key: str) -> tuple[str, int] | None:
    """(band name, resolution in m) of a band as catalogues and cubes label it: a Sentinel-2 name ('B02', 'b8a'),
    an eo common name ('blue', 'nir08', Earth Search's asset keys) or either with a resolution suffix
    ('B02_10m', CDSE's asset keys); None for anything else (thumbnails, metadata)."""
    base, resolution = str(key), None
    match = RESOLUTION_SUFFIX.match(base)
    if match:
        base, resolution = match.group(1), int(match.group(2))
    try:
        name = normalise_band_name(base)
    except KeyError:
        return None
    return name, resolution or BAND_BY_NAME[name].resolution
