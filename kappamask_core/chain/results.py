"""What a run produces: :class:`Classification` (the class map on the 10 m grid, what made it, its picture and
timings), and :class:`ScoresArray`, the per-class scores kept in memory when asked for."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..foundation.classes import CLASSES, MISSING
from ..foundation.grid import Grid
from ..foundation.stages import Stages
from ..io.product import Product
from ..models.cards import ModelCard

if TYPE_CHECKING:
    import xarray


@dataclass
class Classification:
    """What a run produces: the class map on the 10 m grid and what made it."""

    classes: np.ndarray  # uint8 (H, W), values 0..4
    grid: Grid
    product: Product
    card: ModelCard
    scores: np.ndarray | None = None  # float32 (5, H, W) when requested
    preview: np.ndarray | None = None  # uint8 (h, w, 3) true colour of preview_window, small
    preview_window: tuple[int, int, int, int] | None = None  # rows and columns of the grid the preview shows
    timings: dict = field(default_factory=dict)
    runtime: dict = field(default_factory=dict)
    stages: Stages = field(default_factory=Stages, repr=False)  # where the run's time went, stage by stage
    _counts: np.ndarray | None = field(default=None, repr=False)

    def class_counts(self) -> np.ndarray:
        """Pixels per class value (0..4), counted in row blocks (a whole-map bincount would copy it as int64)."""
        if self._counts is None:
            counts = np.zeros(len(CLASSES), np.int64)
            for row in range(0, self.classes.shape[0], 1024):
                counts += np.bincount(self.classes[row : row + 1024].ravel(), minlength=len(CLASSES))[: len(CLASSES)]
            self._counts = counts
        return self._counts

    def class_percentages(self) -> dict[str, float]:
        """Share of each class over valid (non-missing) pixels, in percent (missing: 0)."""
        counts = self.class_counts()
        valid = counts[1:].sum()
        return {c.name: (0.0 if c.value == MISSING or valid == 0 else 100.0 * counts[c.value] / valid) for c in CLASSES}

    def to_xarray(self) -> "xarray.DataArray | xarray.Dataset":
        """classes as a DataArray (y, x); with scores, a Dataset of both."""
        import xarray as xr

        coords = {}
        if self.grid.crs is not None:
            y, x = self.grid.coords()
            coords = {"y": y, "x": x}
        attrs = {
            "flag_values": [c.value for c in CLASSES],
            "flag_meanings": " ".join(c.name for c in CLASSES),
            "model": self.card.id,
            "product": self.product.id,
            "level": self.product.level or "",
            "sensor": self.product.sensor,
            "transform": tuple(self.grid.transform)[:6],
        }
        if self.grid.crs is not None:
            attrs["crs"] = self.grid.crs.to_wkt()
        classes = xr.DataArray(self.classes, dims=("y", "x"), coords=coords, name="classes", attrs=attrs)
        if self.scores is None:
            return classes
        scores = xr.DataArray(
            self.scores, dims=("class", "y", "x"), coords={**coords, "class": [c.name for c in CLASSES]}, name="scores"
        )
        return xr.Dataset({"classes": classes, "scores": scores}, attrs=attrs)


class ScoresSink(Protocol):
    """Where a run puts the per-class scores, strip by strip: rows ``row`` .. ``row + block.shape[1]`` of the
    (classes, rows, width) scores (:class:`ScoresArray` in memory, a ``ScoresWriter`` on disk)."""

    def write(self, row: int, block: np.ndarray) -> None: ...


class ScoresArray:
    """Per-class scores kept in memory (the Python API's ``scores=True``)."""

    def __init__(self, grid: Grid):
        self.array = np.zeros((len(CLASSES), *grid.shape), dtype=np.float32)

    def write(self, row: int, block: np.ndarray) -> None:
        self.array[:, row : row + block.shape[1]] = block
