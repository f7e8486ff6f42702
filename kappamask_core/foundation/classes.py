"""The five output classes and the encodings they are written in.

This is the single source of truth for class values, STAC-safe names,
descriptions and palette colours: the COG palette, the quicklook legend, the
STAC classification extension and the openEO UDF all read from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OutputClass:
    """One of the five classes: its value in the maps, its name, description and colour."""

    value: int
    name: str  # STAC-safe: ^[0-9A-Za-z-_]+$
    title: str
    description: str
    color: str  # RRGGBB, no '#'

    @property
    def rgb(self) -> tuple[int, int, int]:
        return tuple(int(self.color[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]


MISSING, CLEAR, CLOUD_SHADOW, SEMI_TRANSPARENT_CLOUD, CLOUD = 0, 1, 2, 3, 4

CLASSES: tuple[OutputClass, ...] = (
    OutputClass(MISSING, "missing", "Missing", "No data, or invalid input pixels", "000000"),
    OutputClass(CLEAR, "clear", "Clear", "No cloud and no cloud shadow", "4CAF50"),
    OutputClass(CLOUD_SHADOW, "cloud_shadow", "Cloud shadow", "Shadow cast by a cloud", "5A5A5A"),
    OutputClass(
        SEMI_TRANSPARENT_CLOUD,
        "semi_transparent_cloud",
        "Semi-transparent cloud",
        "Thin cloud through which the surface is visible (cirrus, haze)",
        "8FD3FF",
    ),
    OutputClass(CLOUD, "cloud", "Cloud", "Opaque cloud", "FFFFFF"),
)

CLASS_BY_NAME = {c.name: c for c in CLASSES}

USABLE, NOT_USABLE, USABLE_MISSING = 1, 0, 255  # values of the usable-pixel mask
# the usable mask's class table (value, name, description, the five-class colour it is drawn in); its COG's
# palette and tags and its STAC asset read it
USABLE_CLASSES = (
    (USABLE, "usable", "clear after buffering", CLEAR),
    (NOT_USABLE, "not_usable", "cloud, semi-transparent cloud or cloud shadow, buffers included", CLOUD_SHADOW),
    (USABLE_MISSING, "missing", "no data", MISSING),
)

# Output encodings: how the five classes are written to files.
# "kappamask" is the paper's encoding (0 missing .. 4 cloud).
# "km_predict" is the official KappaMask predictor's GeoTIFF encoding:
# clear 1, shadow 2, semi-transparent 3, cloud 4, missing 5.
ENCODINGS: dict[str, dict[int, int]] = {
    "kappamask": {c.value: c.value for c in CLASSES},
    "km_predict": {MISSING: 5, CLEAR: 1, CLOUD_SHADOW: 2, SEMI_TRANSPARENT_CLOUD: 3, CLOUD: 4},
}


def encode(classes: np.ndarray, encoding: str = "kappamask") -> np.ndarray:
    """Re-encode a class map (values 0..4) in the named file encoding."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; choose one of {sorted(ENCODINGS)}")
    lut = np.zeros(256, dtype=np.uint8)
    for value, code in ENCODINGS[encoding].items():
        lut[value] = code
    return lut[classes]


def palette(encoding: str = "kappamask") -> dict[int, tuple[int, int, int, int]]:
    """GDAL colour table (value -> RGBA) for a class map in ``encoding``.

    In the paper's encoding, missing (0) is the file's nodata value and is
    transparent; km_predict files have no nodata value, so it stays opaque.
    """
    mapping = ENCODINGS[encoding]
    transparent = MISSING if encoding == "kappamask" else None
    return {mapping[c.value]: (*c.rgb, 0 if c.value == transparent else 255) for c in CLASSES}


def data_bounds(classes: np.ndarray, block: int = 1024) -> tuple[int, int, int, int] | None:
    """(row0, row1, col0, col1) of the non-missing pixels, or None when there are none.

    Computed in row blocks: a whole-map comparison would allocate a full-size boolean array.
    """
    row_any = np.zeros(classes.shape[0], bool)
    col_any = np.zeros(classes.shape[1], bool)
    for row in range(0, classes.shape[0], block):
        valid = classes[row : row + block] != MISSING
        row_any[row : row + block] = valid.any(axis=1)
        col_any |= valid.any(axis=0)
    rows, cols = np.flatnonzero(row_any), np.flatnonzero(col_any)
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def data_window(classes: np.ndarray) -> tuple[int, int, int, int]:
    """The extent a picture of the map should show: the data's bounds plus a 2 % margin (everything if no data)."""
    height, width = classes.shape
    bounds = data_bounds(classes)
    if bounds is None:
        return 0, height, 0, width
    r0, r1, c0, c1 = bounds
    pad = max(2, max(r1 - r0, c1 - c0) // 50)
    return max(0, r0 - pad), min(height, r1 + pad), max(0, c0 - pad), min(width, c1 + pad)
