"""A product's quality layers applied to its bands: the pixels a layer marks (Landsat's QA_PIXEL fill bit and
QA_RADSAT saturation bits, HLS's Fmask fill) read as missing, row window by row window, like the band itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..foundation.errors import InputError
from .bandfiles import FileBand
from .gdal import open_raster


class MaskedBand:
    """A band whose pixels its product's quality layers mark (fill, saturation) read as missing: 0, or NaN where
    the band reads its missing pixels as NaN. ``layers``: (path, test of the layer's values, name) each."""

    def __init__(self, band: FileBand, layers: list):
        self.band, self.layers = band, layers
        self.name, self.factor, self.shape, self.dtype = band.name, band.factor, band.shape, band.dtype
        self.layout, self.checksum = band.layout, None

    def missing(self, values: np.ndarray, marked: list) -> np.ndarray:
        for (_, marks, _), layer_values in zip(self.layers, marked):
            values[marks(_north_up_like(self.band, layer_values))] = np.nan if self.band.nan_missing else 0
        return values

    def read(self) -> np.ndarray:
        with self.open() as rows:
            return rows.read_rows(0, self.shape[0])

    def open(self) -> "_MaskedRows":
        return _MaskedRows(self)

    def read_decimated(self, shape: tuple[int, int], window=None) -> np.ndarray:
        from rasterio.enums import Resampling

        values = self.band.read_decimated(shape, window)
        f = self.factor
        window = window or (0, self.shape[0] * f, 0, self.shape[1] * f)
        region = self.band.file_window(window[0] // f, max(window[0] // f + 1, -(-window[1] // f)),
                                       window[2] // f, max(window[2] // f + 1, -(-window[3] // f)))
        marked = []
        for path, _, _ in self.layers:
            with open_raster(path) as ds:
                marked.append(ds.read(1, window=region, out_shape=shape, resampling=Resampling.nearest))
        return self.missing(values, marked)


class _MaskedRows:
    """An open masked band: its rows and the same rows of its quality layers."""

    def __init__(self, band: MaskedBand):
        self.band, self.rows = band, band.band.open()
        self.datasets = [open_raster(path) for path, _, _ in band.layers]

    def read_rows(self, row0: int, row1: int) -> np.ndarray:
        values = self.rows.read_rows(row0, row1)
        window = self.band.band.file_window(row0, row1, 0, self.band.shape[1])
        marked = []
        for (path, _, what), dataset in zip(self.band.layers, self.datasets):
            try:
                marked.append(dataset.read(1, window=window))
            except Exception as exc:
                raise InputError(f"cannot read {what} ({path}, rows {row0} to {row1}): {exc}; the file is "
                                 "damaged") from None
        return self.band.missing(values, marked)

    def close(self):
        self.rows.close()
        for dataset in self.datasets:
            dataset.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _north_up_like(band: FileBand, values: np.ndarray) -> np.ndarray:
    if band.layout.flip_y:
        values = values[::-1]
    if band.layout.flip_x:
        values = values[:, ::-1]
    return values


def check_layer(path: str, band: FileBand, what: str, source: str) -> None:
    """A quality layer lies on its bands' grid (the same size, corner and pixel size) and holds integer bits."""
    with open_raster(path) as ds:
        shape, transform, dtype = ds.shape, ds.transform, ds.dtypes[0]
    with open_raster(band.path) as ds:
        expected = (ds.shape, ds.transform)
    if (shape, transform) != expected:
        raise InputError(f"{source}: {what} ({Path(path).name}) is {shape[0]} x {shape[1]} px at "
                         f"{tuple(transform)[:6]}, not on its bands' grid ({expected[0]}, {tuple(expected[1])[:6]}); "
                         "it comes from another product")
    if not np.issubdtype(np.dtype(dtype), np.integer):
        raise InputError(f"{source}: {what} ({Path(path).name}) holds {dtype} values, not the bits of a quality layer")
