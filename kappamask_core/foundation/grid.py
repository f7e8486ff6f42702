"""Grid and tile arithmetic: no I/O, no xarray.

A :class:`Grid` is a raster's shape, affine transform and CRS; a
:class:`TileLayout` cuts one axis pair into overlapping square tiles. Tiles
start at multiples of the stride (tile - overlap); the last one may run past
the raster and is padded. With KappaMask's 512 px tiles and 32 px overlap a
10980 px product needs 1 + ceil((10980 - 512) / 480) = 23 tiles per axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
from affine import Affine


@dataclass(frozen=True)
class Grid:
    """A raster grid: its shape, affine transform and CRS (None for an unlocated 10 m grid)."""

    height: int
    width: int
    transform: Affine = Affine.identity()
    crs: Any = None  # rasterio CRS, or None for ungeoreferenced arrays

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def resolution(self) -> float:
        return abs(self.transform.a)

    def coarsen(self, factor: int) -> "Grid":
        """The grid with ``factor`` x larger pixels, covering at least this one."""
        return Grid(
            math.ceil(self.height / factor),
            math.ceil(self.width / factor),
            self.transform @ Affine.scale(factor),
            self.crs,
        )

    def coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates (y, x) along each axis."""
        t = self.transform
        x = t.c + t.a * (np.arange(self.width) + 0.5)
        y = t.f + t.e * (np.arange(self.height) + 0.5)
        return y, x


def tile_count(length: int, tile: int, overlap: int, margin: int = 0) -> int:
    """Number of tiles needed along an axis of ``length`` pixels (tiles start at -margin)."""
    if length <= 0:
        raise ValueError("length must be positive")
    span = length + margin
    if span <= tile:
        return 1
    return 1 + math.ceil((span - tile) / (tile - overlap))


@dataclass(frozen=True)
class TileLayout:
    """Overlapping tiles over a height x width raster.

    ``margin`` starts the first tile that many pixels before the raster edge
    (the pipeline fills them by padding), so edge pixels get context too;
    ``margin_x``, where given, is the margin of the columns (a chunk of a cube
    that lies on the raster's left edge but not its top one needs both).
    """

    height: int
    width: int
    tile: int
    overlap: int
    margin: int = 0
    margin_x: int | None = None

    def __post_init__(self):
        if not 0 <= self.overlap < self.tile:
            raise ValueError(f"overlap {self.overlap} must be in [0, tile size {self.tile})")
        for margin in (self.margin, self.col_margin):
            if not 0 <= margin < self.tile:
                raise ValueError(f"margin {margin} must be in [0, tile size {self.tile})")

    @property
    def col_margin(self) -> int:
        return self.margin if self.margin_x is None else self.margin_x

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    @property
    def rows(self) -> int:
        return tile_count(self.height, self.tile, self.overlap, self.margin)

    @property
    def cols(self) -> int:
        return tile_count(self.width, self.tile, self.overlap, self.col_margin)

    def __len__(self) -> int:
        return self.rows * self.cols

    def _starts(self, axis_len: int, margin: int) -> list[int]:
        n = tile_count(axis_len, self.tile, self.overlap, margin)
        return [i * self.stride - margin for i in range(n)]

    def row_starts(self) -> list[int]:
        return self._starts(self.height, self.margin)

    def col_starts(self) -> list[int]:
        return self._starts(self.width, self.col_margin)

    def row_padding(self) -> tuple[int, int]:
        """Pixels to pad above and below the raster so every tile lies inside."""
        return self.margin, self.row_starts()[-1] + self.tile - self.height

    def col_padding(self) -> tuple[int, int]:
        """Pixels to pad left and right of the raster so every tile lies inside."""
        return self.col_margin, self.col_starts()[-1] + self.tile - self.width

    def windows(self) -> Iterator[tuple[int, int]]:
        for y0 in self.row_starts():
            for x0 in self.col_starts():
                yield y0, x0


def axis_weights(tile: int, overlap: int, first: bool, last: bool, mode: str = "crop") -> np.ndarray:
    """1-D weights of one tile along an axis for stitching.

    ``crop`` is KappaMask's mosaic: each tile keeps its centre and drops half
    the overlap on every side it shares with a neighbour (weights 1 / 0), so
    each pixel comes from exactly one tile. ``blend`` ramps linearly across
    the overlap so that the two tiles' weights sum to 1 everywhere. Sides on
    the raster edge keep full weight in both modes.
    """
    w = np.ones(tile, dtype=np.float32)
    if overlap == 0:
        return w
    lead, trail = overlap // 2, overlap - overlap // 2
    if mode == "crop":
        if not first:
            w[:lead] = 0
        if not last:
            w[tile - trail :] = 0
    elif mode == "blend":
        ramp = np.arange(1, overlap + 1, dtype=np.float32) / (overlap + 1)
        if not first:
            w[:overlap] = ramp
        if not last:
            w[tile - overlap :] = np.minimum(w[tile - overlap :], ramp[::-1])
    else:
        raise ValueError(f"unknown stitch mode {mode!r}; use 'crop' or 'blend'")
    return w


@dataclass(frozen=True)
class ChunkGrid:
    """A model's tile grid along one axis of a 10 m cube: where chunks may end so that each holds exactly the tiles
    one run over the whole axis places (crop stitching), and the halo they are read with."""

    factor: int  # 10 m pixels per working pixel
    tile: int  # working pixels
    overlap: int
    margin: int

    @property
    def lead(self) -> int:  # the overlap a tile gives to the tile before it under crop stitching
        return self.overlap // 2

    @property
    def halo(self) -> int:
        return (self.overlap - self.lead) * self.factor

    def chunks(self, length: int, wanted: int) -> tuple[int, ...]:
        """Chunk sizes along an axis of ``length`` 10 m pixels, near ``wanted``, each ending where crop stitching
        passes from one tile to the next (the last at the axis's end)."""
        stride = self.tile - self.overlap
        per_chunk = max(1, round(wanted / (self.factor * stride)))
        ends: list[int] = []
        k = per_chunk
        while True:
            end = self.factor * (k * stride - self.margin + self.lead)
            if end >= length - self.halo:  # the rest is one chunk: none may be thinner than its halo
                break
            if end > (ends[-1] if ends else 0) + self.halo:
                ends.append(end)
            k += per_chunk
        bounds = [0, *ends, length]
        return tuple(b - a for a, b in zip(bounds, bounds[1:]))
