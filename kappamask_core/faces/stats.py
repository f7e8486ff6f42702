"""Cloud statistics per area of interest: which dates are clear over a field, and how much of it.

:func:`area_statistics` takes class maps (a classified cube, eager or lazy; COGs this package wrote; run folders)
and areas (a GeoDataFrame, a GeoJSON file or mapping, shapely geometries with their CRS) and returns one row per
area and date: the share of the area with data, and each class's share of that (and the usable share where
buffers are given). Pixels count by the share of their square the area covers
(:func:`~kappamask_core.chain.coverage.pixel_coverage`), exactly, at the area's edges too; the part of an area
beyond the map has no data. :func:`clear_dates` keeps the rows a user would call clear.
"""

from __future__ import annotations

import numpy as np

from ..chain.buffers import buffer_classes, parse_buffers, reach_px, usable_mask
from ..chain.coverage import Coverage
from .areas import Areas, read_areas
from .class_maps import SUM_NAMES, CLASS_NAMES, ClassMap, class_maps, coverages, lazy_sums, weighted_sums

CLOUDY = ("cloud_shadow", "semi_transparent_cloud", "cloud")


def area_statistics(maps, areas, *, crs=None, id_column: str | None = None, buffers=None):
    """One row per area and date (a pandas DataFrame): ``area_id``, ``datetime``, ``product_id``, ``area_m2``,
    ``valid_fraction`` (the share of the area with data), the share of the valid area of each class (``clear``,
    ``cloud_shadow``, ``semi_transparent_cloud``, ``cloud``; NaN where nothing is valid) and, with ``buffers``
    (e.g. ``"cloud=300,shadow=100"``), ``usable`` (clear after buffering, of the valid area).

    ``maps``: a classified cube (xarray, (time,) y, x, with its CRS; lazy on dask: one task per date and chunk),
    COG paths this package wrote, their STAC items (files or pystac Items), run folders, or a list of these. ``areas``: see :func:`read_areas`."""
    import pandas as pd

    buffers = parse_buffers(buffers)
    areas = read_areas(areas, crs, id_column)
    rows = []
    lazy = lazy_sums(maps, areas, buffers)
    if lazy is not None:
        for class_map, area_px, sums in lazy:
            rows += _rows(areas, class_map.when, class_map.product_id, area_px, class_map.resolution, sums, buffers)
    else:
        placed: dict = {}  # the areas' coverage of each grid, made once for all the maps on it
        for class_map in class_maps(maps):
            grid = (tuple(class_map.transform), str(class_map.crs), tuple(class_map.shape))
            covers = placed[grid] = placed.get(grid) or coverages(areas, class_map)
            try:
                sums = np.stack([window_sums(class_map, cover, buffers) for cover in covers])
            finally:
                getattr(class_map.read, "close", lambda: None)()  # a file's map: closed once counted
            rows += _rows(areas, class_map.when, class_map.product_id, [c.area_px for c in covers],
                          class_map.resolution, sums, buffers)
    columns = ["area_id", "datetime", "product_id", "area_m2", "valid_fraction", *CLASS_NAMES] + (
        ["usable"] if buffers else [])
    return pd.DataFrame(rows, columns=columns)


def window_sums(class_map: ClassMap, cover: Coverage, buffers) -> np.ndarray:
    """The weighted sums (:data:`SUM_NAMES`) of one area on one map, from the window it covers (with the buffers'
    reach around it)."""
    sums = np.zeros(len(SUM_NAMES))
    if cover.empty:
        return sums
    (r0, r1), (c0, c1) = cover.rows, cover.cols
    reach = reach_px(buffers, class_map.resolution)
    height, width = class_map.shape
    a, b, c, d = max(r0 - reach, 0), min(r1 + reach, height), max(c0 - reach, 0), min(c1 + reach, width)
    classes = class_map.read((a, b), (c, d))
    usable = usable_mask(buffer_classes(classes, buffers, class_map.resolution)) if buffers else None
    inner = (slice(r0 - a, r1 - a), slice(c0 - c, c1 - c))
    return weighted_sums(classes[inner], None if usable is None else usable[inner], cover.fractions)


def _rows(areas: Areas, when, product_id, area_px, resolution: float, sums: np.ndarray, buffers) -> list[list]:
    """The table's rows of one map: shares of the valid area, NaN where an area has no valid pixel."""
    rows = []
    for i, area_id in enumerate(areas.ids):
        valid = sums[i, 1]
        # shares in [0, 1]: the weights and the area are summed apart, and differ in the last digits
        shares = np.clip(sums[i, 2:2 + len(CLASS_NAMES)] / valid, 0, 1) if valid > 0 else np.full(len(CLASS_NAMES),
                                                                                                   np.nan)
        row = [area_id, when, product_id, area_px[i] * resolution ** 2,
               min(valid / area_px[i], 1.0) if area_px[i] > 0 else np.nan, *shares]
        if buffers:
            row.append(min(sums[i, -1] / valid, 1.0) if valid > 0 else np.nan)
        rows.append(row)
    return rows


def clear_dates(table, max_cloudy: float = 0.10, min_valid: float = 0.90, area_id=None):
    """The rows of :func:`area_statistics` a user would call clear: at most ``max_cloudy`` of the valid area
    cloud, semi-transparent cloud or cloud shadow, and at least ``min_valid`` of the area with data (one area's,
    with ``area_id``)."""
    rows = table if area_id is None else table[table["area_id"] == area_id]
    cloudy = rows[list(CLOUDY)].sum(axis=1, min_count=1)
    return rows[(rows["valid_fraction"] >= min_valid) & (cloudy <= max_cloudy)]

