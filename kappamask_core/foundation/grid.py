"""Grid and tile arithmetic: no I/O, no xarray.

A :class:`Grid` is a raster's shape, affine transform and CRS; a
:class:`TileLayout` cuts one axis pair into overlapping square tiles. Tiles
start at multiples of the stride (tile - overlap).

Where the raster is located (a CRS, or coordinates), the tiles are the ground's,
not the raster's: one grid per model, its working pixels and its tiles at
multiples of their size in metres from the CRS's origin (:func:`ground_anchor`),
and every pixel owned by the one tile whose kept part covers it. A file, an
array, a chunk of a lazy cube and an openEO chunk then give a pixel the same
tile, whatever their extent, and the same class, provided each reads the
context that tile needs. Beyond the raster's edges the card's ``pad_mode``
fills the tiles, on every path that knows the edges (an openEO chunk sees no
data there). A raster with no location keeps its own tiles: the first starts
``margin`` pixels before its edge and the edge tiles keep their edge.
With KappaMask's 512 px tiles and 32 px overlap an unlocated 10980 px array
needs 1 + ceil((10980 - 512) / 480) = 23 tiles per axis; a located product 23
or 24, as its origin falls on the ground's grid.
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
    located: bool | None = None  # whether the transform places it on the ground; None: where it has a CRS

    @property
    def is_located(self) -> bool:
        return self.crs is not None if self.located is None else self.located

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
            self.located,
        )

    def coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates (y, x) along each axis."""
        t = self.transform
        x = t.c + t.a * (np.arange(self.width) + 0.5)
        y = t.f + t.e * (np.arange(self.height) + 0.5)
        return y, x


def ground_anchor(grid: Grid) -> tuple[int, int] | None:
    """The ground's 10 m pixel index (rows counted southwards from the CRS's origin, columns eastwards) of the
    raster's first row and column; None for a raster with no location. Every path computes it from the same
    coordinates, so the same pixel has the same index in a file, an array and any chunk of either."""
    if not grid.is_located:
        return None
    t = grid.transform
    size = abs(t.a) or 10.0
    return round(-t.f / size) if t.e < 0 else round(t.f / size), round(t.c / size)


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
    """Overlapping tiles over a height x width raster (working pixels).

    Without ``anchor`` (a raster with no location) the tiles are the raster's own: the first starts ``margin``
    pixels before its edge (``margin_x``, where given, for the columns), the edge tiles keep their outer side and
    the padding around the raster is the card's ``pad_mode``. With ``anchor``, the ground's working-pixel index
    of the raster's first row and column, the tiles are the ground's: they start where the ground index is
    -``margin`` modulo the stride, every tile keeps only its own part (crop stitching: the stride, from half the
    overlap on), and only the tiles whose kept part meets ``window`` ((row0, row1), (col0, col1), the whole
    raster by default) are placed. In both, the card's ``pad_mode`` fills what lies beyond the raster.
    ``stitch`` says which part a tile keeps (``blend`` keeps all it covers).
    """

    height: int
    width: int
    tile: int
    overlap: int
    margin: int = 0
    margin_x: int | None = None
    anchor: tuple[int, int] | None = None
    window: tuple[tuple[int, int], tuple[int, int]] | None = None
    stitch: str = "crop"

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
    def grounded(self) -> bool:
        """Whether the tiles are the ground's (the raster is located) rather than the raster's own, whose first and
        last tile of an axis keep their outer side."""
        return self.anchor is not None

    @property
    def rows(self) -> int:
        return len(self.row_starts())

    @property
    def cols(self) -> int:
        return len(self.col_starts())

    def __len__(self) -> int:
        return self.rows * self.cols

    def _starts(self, axis: int) -> list[int]:
        length, margin = (self.height, self.margin) if axis == 0 else (self.width, self.col_margin)
        if self.anchor is None:
            n = tile_count(length, self.tile, self.overlap, margin)
            return [i * self.stride - margin for i in range(n)]
        lo, hi = (0, length) if self.window is None else self.window[axis]
        # the part of a tile starting at s that it keeps: [s + kept_from, s + kept_to)
        kept_from, kept_to = (self.overlap // 2, self.overlap // 2 + self.stride) if self.stitch == "crop" else \
            (0, self.tile)
        phase = -margin - self.anchor[axis]  # tiles start at phase + k * stride (raster pixels)
        first = (lo - kept_to - phase) // self.stride + 1  # the first k whose kept part ends after lo
        starts = []
        k = first
        while phase + k * self.stride + kept_from < hi:
            starts.append(phase + k * self.stride)
            k += 1
        return starts

    def row_starts(self) -> list[int]:
        return self._starts(0)

    def col_starts(self) -> list[int]:
        return self._starts(1)

    def row_padding(self) -> tuple[int, int]:
        """Pixels to pad above and below the raster so every tile lies inside."""
        starts = self.row_starts()
        return max(0, -starts[0]), max(0, starts[-1] + self.tile - self.height)

    def col_padding(self) -> tuple[int, int]:
        """Pixels to pad left and right of the raster so every tile lies inside."""
        starts = self.col_starts()
        return max(0, -starts[0]), max(0, starts[-1] + self.tile - self.width)

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
    one run over the whole axis places for its pixels, and the halo they are read with."""

    factor: int  # 10 m pixels per working pixel
    tile: int  # working pixels
    overlap: int
    margin: int
    stitch: str = "crop"

    @property
    def lead(self) -> int:  # the overlap a tile gives to the tile before it under crop stitching
        return self.overlap // 2

    @property
    def halo(self) -> int:
        """10 m pixels a chunk that ends where one tile hands over to the next reads beyond each side: the rest of
        the tiles that keep its pixels (crop), or of all the tiles that cover them (blend)."""
        kept_after = self.overlap - self.lead if self.stitch == "crop" else self.tile - self.lead
        return kept_after * self.factor

    @property
    def reach(self) -> int:
        """10 m pixels beyond a pixel that the tiles keeping it can cover: a tile less its leading half overlap
        (crop) or a whole tile (blend), plus the alignment of the ground's working cells."""
        return (self.tile - self.lead if self.stitch == "crop" else self.tile) * self.factor + self.factor - 1

    def chunks(self, length: int, wanted: int, first: int | None = None) -> tuple[int, ...]:
        """Chunk sizes along an axis of ``length`` 10 m pixels, near ``wanted``, each ending where crop stitching
        passes from one tile to the next (the last at the axis's end). ``first``: the ground's 10 m index of the
        axis's first pixel, where the tiles are the ground's (see :class:`TileLayout`); None: the axis's own
        tiles, which start ``margin`` before its first pixel."""
        stride = self.tile - self.overlap
        per_chunk = max(1, round(wanted / (self.factor * stride)))
        origin = 0 if first is None else first

        def end(k: int) -> int:  # where tile k hands over to tile k + 1, in the axis's pixels
            return self.factor * (k * stride - self.margin + self.lead) - origin

        k = per_chunk if first is None else -(-(origin // self.factor + self.margin - self.lead) // stride) + per_chunk - 1
        # a chunk is never thinner than its halo, and one at the axis's ends holds as much as a tile can reach
        # beyond the axis: the padding there (a mirror, for some models) is made of the same pixels as in one run
        edge = max(self.halo, self.reach)
        ends: list[int] = []
        while True:
            if end(k) >= length - edge:  # the rest is one chunk
                break
            if end(k) > (ends[-1] + self.halo if ends else edge):
                ends.append(end(k))
            k += per_chunk
        bounds = [0, *ends, length]
        return tuple(b - a for a, b in zip(bounds, bounds[1:]))
