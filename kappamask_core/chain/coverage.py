"""Exact pixel coverage of an area: the share of each pixel's square that a polygon covers.

The polygon's rings are walked in pixel units and every edge is cut where it crosses a row or column line, so that
each piece lies in one pixel. By Green's theorem a closed ring's area in a pixel is the sum, over the pieces in the
pixel's column, of the area between each piece and the pixel's lower edge, clamped to the pixel: a piece adds its
signed width times its height above the lower edge to its own pixel, and its whole width to every pixel below it
in the column (a cumulative sum down the columns). Holes, wound the other way, take their area off. So every
fraction is exact (up to floating point), at a cost that grows with the polygon's perimeter in pixels, not its
area; no per-pixel geometry is built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine


@dataclass(frozen=True)
class Coverage:
    """Where a polygon lies on a raster grid: its window of rows and columns (inside the grid) and each pixel's
    covered share there (float32, 0 to 1). ``area_px`` is the polygon's whole area in pixels, the part beyond the
    grid included: a share of it that the grid does not hold is an area with no data."""

    rows: tuple[int, int]
    cols: tuple[int, int]
    fractions: np.ndarray
    area_px: float

    @property
    def empty(self) -> bool:
        return self.fractions.size == 0 or not self.fractions.any()


def pixel_coverage(polygon, transform: Affine, shape: tuple[int, int]) -> Coverage:
    """The coverage of ``polygon`` (a shapely Polygon or MultiPolygon in the grid's CRS) on the grid of
    ``transform`` (north-up) and ``shape`` (rows, columns)."""
    if transform.b != 0 or transform.d != 0 or transform.e >= 0 or transform.a <= 0:
        raise ValueError("pixel coverage needs a north-up grid")
    area_px = float(polygon.area) / abs(transform.a * transform.e)
    nothing = Coverage((0, 0), (0, 0), np.zeros((0, 0), np.float32), area_px)
    if polygon.is_empty:
        return nothing
    rings = [np.asarray(ring.coords)[:, :2] for part in getattr(polygon, "geoms", [polygon])
             for ring in (part.exterior, *part.interiors)]
    u = [(xy[:, 0] - transform.c) / transform.a for xy in rings]  # columns
    v = [(xy[:, 1] - transform.f) / transform.e for xy in rings]  # rows, downwards
    row0 = int(np.floor(min(r.min() for r in v)))
    col0 = int(np.floor(min(c.min() for c in u)))
    rows = int(np.ceil(max(r.max() for r in v))) - row0
    cols = int(np.ceil(max(c.max() for c in u))) - col0
    height, width = shape
    r0, r1, c0, c1 = max(row0, 0), min(row0 + rows, height), max(col0, 0), min(col0 + cols, width)
    if r0 >= r1 or c0 >= c1:
        return nothing
    under = np.zeros((rows, cols))  # each piece's area between it and its pixel's lower edge
    width_below = np.zeros((rows, cols))  # each piece's width, which every pixel below it in the column gets
    for cu, cv in zip(u, v):
        _add_ring(cu - col0, cv - row0, under, width_below)
    signed = under + np.cumsum(width_below, axis=0) - width_below
    total = signed.sum()
    fractions = np.clip(signed * np.sign(total), 0.0, 1.0).astype(np.float32) if total else signed.astype(np.float32)
    return Coverage((r0, r1), (c0, c1), fractions[r0 - row0:r1 - row0, c0 - col0:c1 - col0], area_px)


def _add_ring(u: np.ndarray, v: np.ndarray, under: np.ndarray, width_below: np.ndarray) -> None:
    """One closed ring's pieces (all its edges at once) added to the two sums."""
    u1, v1, u2, v2 = u[:-1], v[:-1], u[1:], v[1:]
    edges = np.arange(len(u1))
    cuts = [(edges, np.zeros(len(u1))), (edges, np.ones(len(u1)))]
    for a1, a2 in ((u1, u2), (v1, v2)):  # where each edge crosses a column line, then a row line
        lo, hi = np.minimum(a1, a2), np.maximum(a1, a2)
        first = np.floor(lo) + 1
        count = np.maximum(np.ceil(hi) - first, 0).astype(int)
        if count.sum() == 0:
            continue
        edge = np.repeat(edges, count)
        line = np.repeat(first, count) + (np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count))
        cuts.append((edge, (line - a1[edge]) / (a2[edge] - a1[edge])))
    edge = np.concatenate([e for e, _ in cuts])
    t = np.concatenate([t for _, t in cuts])
    order = np.lexsort((t, edge))
    edge, t = edge[order], t[order]
    pu, pv = u1[edge] + t * (u2[edge] - u1[edge]), v1[edge] + t * (v2[edge] - v1[edge])
    same = edge[1:] == edge[:-1]  # consecutive cuts of one edge bound a piece
    du = (pu[1:] - pu[:-1])[same]
    mid_u, mid_v = ((pu[1:] + pu[:-1]) / 2)[same], ((pv[1:] + pv[:-1]) / 2)[same]
    keep = du != 0
    du, mid_u, mid_v = du[keep], mid_u[keep], mid_v[keep]
    rows = np.clip(np.floor(mid_v).astype(int), 0, under.shape[0] - 1)
    cols = np.clip(np.floor(mid_u).astype(int), 0, under.shape[1] - 1)
    np.add.at(under, (rows, cols), du * (rows + 1 - mid_v))
    np.add.at(width_below, (rows, cols), du)
