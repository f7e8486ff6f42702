"""The model's input, strip by strip: the native rows each strip of tiles needs are read from every band (windowed
reads; GDAL's block cache keeps the blocks two strips share), checked, resampled to the working grid, scaled to the
card's units and value range, and padded, in a worker thread while the caller runs the model on the previous
strip. Only a strip one tile high is held in floating point."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..foundation.errors import InputError
from ..foundation.machine import available_cores
from ..foundation.stages import Stages
from ..io.gdal import cache_env
from ..io.product import Product
from ..models.cards import ModelCard
from . import resample, scale
from .plan import TilePlan
from .preview import StripPreview


def read_threads(asked: int | None = None) -> int:
    """How many bands are decoded at once: ``asked``, or half the cores this process may use and at least 2, since
    decoding shares the cores with inference, which takes them all (a band is read by one thread at a time)."""
    return asked or max(2, available_cores() // 2)

BLOCK_CACHE_MIB = 384


def read_bands(product: Product, names, workers: int = 2) -> dict[str, np.ndarray]:
    """Decode each named band once, at native resolution, a few at a time."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        arrays = dict(zip(names, pool.map(lambda n: product.bands[n].read(), names)))
    for name, array in arrays.items():
        band = product.bands[name]
        if array.shape != tuple(band.shape):
            raise InputError(f"{product.source}: band {name} decoded to {array.shape}, expected {band.shape}")
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise InputError(f"{product.source}: band {name} has unsupported data type {array.dtype}")
    return arrays


@contextlib.contextmanager
def open_rows(product: Product, names):
    """Row readers for the named bands, open for the whole run (files stay open, GDAL caches blocks)."""
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(product.bands[name].open()) for name in names}


def working_rows(product: Product, rows: dict, bands, units: str, factor: int, r0: int, r1: int, method: str,
                 out: np.ndarray | None = None, seen: set | None = None, stages: Stages | None = None,
                 preview: StripPreview | None = None, threads: int = 2, lead: tuple[int, int] = (0, 0)):
    """Bands on the working grid for 10 m rows [r0, r1), in ``units`` (written into ``out`` when given).

    ``rows`` maps band names to open row readers (:func:`open_rows`); each band
    is read only over the native rows these 10 m rows need, and checked
    (:func:`kappamask_core.chain.scale.check_values`) whatever reader it came from.
    Returns (stack (bands, ceil((r1 - r0) / factor), working width) float32,
    valid (r1 - r0, width) bool at 10 m: every band has data there, and none is NaN).
    ``seen`` collects the names of the bands that hold data in these rows; ``stages`` times decoding and the rest;
    ``preview`` takes its samples of the colour bands; ``threads`` bands are decoded at once.
    """
    stages = stages or Stages()

    def read(name):
        band = product.bands[name]
        n0, n1 = resample.native_rows_needed(band.factor, r0, r1, band.shape[0])
        with stages("decode"):
            return rows[name].read_rows(n0, n1), n0

    # several bands decode at once (GDAL releases the GIL); each band file is read by one thread at a time
    with ThreadPoolExecutor(max_workers=threads) as pool:
        blocks = dict(zip(bands, pool.map(read, bands)))
    with stages("check, resample, scale"):
        return _to_working_grid(product, blocks, bands, units, factor, r0, r1, method, out, seen, preview, lead)


def _to_working_grid(product: Product, blocks: dict, bands, units: str, factor: int, r0: int, r1: int, method: str,
                     out: np.ndarray | None, seen: set | None, preview: StripPreview | None,
                     lead: tuple[int, int] = (0, 0)):
    """:func:`working_rows` after decoding: ``blocks`` maps each band to (its native rows, the first row's index)."""
    width = product.grid.width
    # A band decoded from a reduced resolution level blurs its nodata edge (a half-empty 2 x 2 block is not 0):
    # where bands are read exactly, only they decide which pixels have data
    exact = [n for n in bands if getattr(product.bands[n], "overview_level", None) is None] or list(bands)
    valid = np.ones((r1 - r0, width), dtype=bool)
    for name in bands:
        block, n0 = blocks[name]
        scale.check_values(block, name, product, n0)
        if preview is not None:
            preview.add(name, block, product.bands[name].factor, n0, r0, r1)
        invalid = scale.invalid_mask(block, product)  # no data (0 or NaN), at the band's own resolution
        if seen is not None and not invalid.all():
            seen.add(name)
        if name in exact and invalid.any():
            # a pixel is valid only where every band the model needs has data
            valid &= ~resample.nearest_rows(invalid, product.bands[name].factor, r0, r1, width, n0)
    shape = (len(bands), -(-(r1 - r0 + lead[0]) // factor), -(-(width + lead[1]) // factor))
    if out is None:
        out = np.empty(shape, np.float32)
    if not valid.any():  # nothing to classify here: skip the resampling
        out[...] = 0
        return out, valid
    for i, name in enumerate(bands):
        band = product.bands[name]
        block, n0 = blocks[name]
        if factor == 1:
            values = resample.upsample_rows(block, band.factor, r0, r1, width, method, n0, band.shape[0])
        else:  # coarser working grid: area average, straight from the stored values
            if np.issubdtype(block.dtype, np.floating):
                block = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
            values = resample.area_rows(block, band.factor, r0 - lead[0], r1, width, factor, n0, -lead[1])
        # NaN and infinities must not reach the model (they would spread to neighbours); those pixels are masked
        np.nan_to_num(values, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        # unit conversion is linear, so it runs after the averaging, on the smaller array
        out[i] = scale.to_units(values, name, product, units)
        # a band without data is 0 whatever its offset (not DN - 1000): the network sees no data alike wherever it
        # lies, in a product, a cube or a chunk of it, whatever the offset the backend did or did not take off
        out[i][values == 0] = 0
    return out, valid


class _StripMaker:
    """Builds the normalised, padded model input for one tile row."""

    def __init__(self, product: Product, card: ModelCard, rows: dict, plan: TilePlan, method: str,
                 stages: Stages, preview: StripPreview | None, threads: int):
        self.product, self.card, self.rows, self.method = product, card, rows, method
        self.f, self.layout, self.shift = plan.factor, plan.layout, plan.shift
        self.stages, self.preview, self.threads = stages, preview, threads
        self.seen: set = set()  # the bands that held data in some strip

    def __call__(self, y0: int):
        """(strip (C, T, padded width), valid 10 m mask, valid working mask (T, padded width), first 10 m row)."""
        card, grid, f, layout = self.card, self.product.grid, self.f, self.layout
        t, (shift_y, shift_x) = layout.tile, self.shift
        top, bottom = max(y0, 0), min(y0 + t, layout.height)
        r0, r1 = max(top * f - shift_y, 0), min(bottom * f - shift_y, grid.height)
        lead = (r0 - (top * f - shift_y), shift_x)  # 10 m pixels of the first working pixel before the raster
        height = bottom - top
        rows_pad = (top - y0, t - (top - y0) - height)
        cols_pad = layout.col_padding()
        # the padded strip is allocated once and filled in place: a strip of KappaMask's 13 bands is 290 MB
        strip = np.zeros((len(card.bands), t, cols_pad[0] + layout.width + cols_pad[1]), np.float32)
        inner = strip[:, rows_pad[0] : rows_pad[0] + height, cols_pad[0] : cols_pad[0] + layout.width]
        _, valid = working_rows(self.product, self.rows, card.bands, card.units, f, r0, r1, self.method, inner,
                                self.seen, self.stages, self.preview, self.threads, lead)
        with self.stages("check, resample, scale"):
            scale.apply_value_scaling(inner, card.value_scaling, card.clip_min)
            if card.pad_mode == "constant":
                stack = strip  # zeros around the data, as allocated
            else:
                # card.pad_mode is one of numpy's modes (the card schema's enum); numpy's stubs want a literal
                stack = np.pad(inner, ((0, 0), rows_pad, cols_pad), mode=card.pad_mode)  # type: ignore[call-overload]
            valid_work = np.pad(resample.block_any(valid, f, lead), (rows_pad, cols_pad))
        return stack, valid, valid_work, r0


def strips(card: ModelCard, plan: TilePlan, method: str, seen: set | None = None, stages: Stages | None = None,
           preview: StripPreview | None = None, threads: int | None = None):
    """The model input one tile row at a time, in order: (strip (C, T, padded width), valid 10 m mask, valid
    working mask (T, padded width), first 10 m row). The next strip is prepared in a worker thread while
    the caller works on the current one; ``seen`` collects the bands that held data somewhere, ``stages`` times
    the steps (the caller's waits for a strip included), ``preview`` samples the colour bands; ``threads`` bands
    are decoded at once (:func:`read_threads`)."""
    stages = stages or Stages()
    row_starts = plan.layout.row_starts()
    # consecutive strips share JPEG 2000 block rows (1024 px): the cache must hold two block rows of every band
    # read, so that no block is decoded twice; for all 13 bands of a full product that is 336 MiB
    with (cache_env(BLOCK_CACHE_MIB), open_rows(plan.reading, card.bands) as rows,
          ThreadPoolExecutor(max_workers=1) as prefetch):
        make_strip = _StripMaker(plan.reading, card, rows, plan, method, stages, preview, read_threads(threads))
        if seen is not None:
            make_strip.seen = seen
        pending = prefetch.submit(make_strip, row_starts[0])
        for r in range(len(row_starts)):
            with stages("wait for a strip"):
                strip = pending.result()
            if r + 1 < len(row_starts):
                pending = prefetch.submit(make_strip, row_starts[r + 1])
            yield strip


def tile_columns(plan: TilePlan) -> list[int]:
    """The first column of each tile of a row, in padded strip columns."""
    return [x0 + plan.layout.col_padding()[0] for x0 in plan.layout.col_starts()]


def model_tiles(card: ModelCard, plan: TilePlan, method: str = "bilinear"):
    """Every tile of a planned product that holds a valid pixel, as the network with ``card`` sees it (scaled,
    padded): (tile (C, T, T) float32, valid (T, T) bool on the working grid). For making and checking model
    variants."""
    t, columns = plan.layout.tile, tile_columns(plan)
    for stack, _, valid_work, _ in strips(card, plan, method):
        for x0 in columns:
            valid = valid_work[:, x0 : x0 + t]
            if valid.any():
                yield stack[:, :, x0 : x0 + t].copy(), valid.copy()
