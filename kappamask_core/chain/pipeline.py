"""The classification chain: read -> scale -> resample -> tile -> infer -> stitch.

:func:`run` streams a product through the chain one tile row at a time: a
worker thread reads the native rows the next strip needs from each band file
(windowed reads; GDAL's block cache keeps the blocks two strips share, so no
block is decoded twice), resamples and scales them, while the model runs on
the current strip. Only a strip one tile high is held in floating point.
Tiles without a single valid input pixel are not sent to the model.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from ..foundation.classes import CLASSES, MISSING, data_window
from ..foundation.errors import BandsError, InputError
from ..foundation.grid import Grid, TileLayout
from ..foundation.schemes import UNDEFINED, lookup_table
from ..io.gdal import cache_env
from ..io.readers import Product, open_product
from ..models.cards import ModelCard
from ..models.resolve import Model, resolve_card, resolve_model
from ..models.variants import PRECISIONS, with_precision
from . import resample, scale
from .buffers import buffer_classes, parse_buffers
from .infer import DEVICES, Runner, cached_runner, choose_providers, open_runner
from .stitch import RowStitcher

log = logging.getLogger(__name__)

RGB_BANDS = ("B04", "B03", "B02")
DECODES = ("reduced", "full")
READ_THREADS = 2
BLOCK_CACHE_MIB = 384
LOOKUP_ROWS = 1024  # rows of the 10 m grid per block of a lookup model (bounded memory)
PREVIEW_SIZE = 1024
MAX_THREADS = 1024  # beyond any machine's cores: ONNX Runtime would try to start them all
MAX_BATCH = 1024


@dataclass(frozen=True)
class ClassifyOptions:
    """How to run a model; every face (API, CLI, UDF) passes one of these."""

    overlap: int | None = None  # working-grid pixels; None = the card's
    margin: int | None = None  # tiles start this far before the edge; None = the card's
    stitch: str = "crop"  # "crop" (KappaMask's centre-crop mosaic) or "blend"
    batch_size: int | None = None  # tiles per inference call; None: 1 on CPU (least memory, same speed), 8 on CUDA
    device: str = "auto"  # auto | cpu | cuda | tensorrt
    threads: int | None = None  # ONNX Runtime intra-op threads; None = all cores
    fp16: bool = False  # run the model in float16 (GPUs; needs the gpu extra)
    precision: str = "auto"  # auto: a faithful int8/bf16 variant on CPUs where one was made; fp32: the exact network
    resampling: str = "bilinear"  # 20/60 m bands on a 10 m working grid; coarser grids use area averages
    decode: str = "reduced"  # coarser working grid: decode bands at a reduced resolution level ("full": never)
    buffers: tuple = ()  # grow classes by metres after stitching: "cloud=300,shadow=100", a dict, or pairs
    scores: bool = False  # also return per-class scores (float32, 5 x H x W)
    progress: bool = False  # tqdm progress bar on stderr

    def __post_init__(self):
        object.__setattr__(self, "buffers", parse_buffers(self.buffers))  # one hashable form for every spelling
        if self.stitch not in ("crop", "blend"):
            raise InputError(f"stitch must be 'crop' or 'blend', not {self.stitch!r}")
        if self.resampling not in resample.METHODS:
            raise InputError(f"resampling must be one of {resample.METHODS}, not {self.resampling!r}")
        if self.decode not in DECODES:
            raise InputError(f"decode must be one of {DECODES}, not {self.decode!r}")
        for name in ("overlap", "margin"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise InputError(f"{name} must be zero or positive")
        if self.device not in DEVICES:
            raise InputError(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.fp16 and self.precision in ("int8", "bf16"):
            raise InputError(f"fp16 and precision {self.precision} exclude each other: choose one")
        for name, most in (("batch_size", MAX_BATCH), ("threads", MAX_THREADS)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most):
                raise InputError(f"{name.replace('_', ' ')} must be a whole number from 1 to {most}, not {value!r}")
        for name in ("overlap", "margin"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise InputError(f"{name} must be a whole number of pixels, not {value!r}")


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

    def to_xarray(self):
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


OFFSET_RANGE = (-2000.0, 0.0)  # Sentinel-2's DN offsets: -1000 from processing baseline 04.00 on, 0 before


def check_compatible(product: Product, card: ModelCard) -> None:
    """The product can be classified by ``card``: its level, its bands, and offsets a Sentinel-2 product can have."""
    for name in card.bands:
        offset = product.offsets.get(name, 0.0)
        if not (isinstance(offset, (int, float)) and OFFSET_RANGE[0] <= offset <= OFFSET_RANGE[1]):
            raise InputError(f"{product.source or product.id}: band {name} has the DN offset {offset!r}; Sentinel-2 "
                             "offsets are -1000 (processing baseline 04.00 and later) or 0, so this one would shift "
                             "every value (UDF context \"offset\": give -1000 or 0)")
    if product.level is None:
        raise InputError(
            f"{product.source or product.id}: cannot tell whether this is L1C or L2A; pass the level (--level L1C|L2A)"
        )
    if product.level not in card.levels:
        raise BandsError(
            f"model {card.id!r} takes {'/'.join(card.levels)} products, but {product.id} is {product.level}"
        )
    product.require(card.bands)


def make_runner(model: Model, options: ClassifyOptions, cached: bool = False) -> Runner:
    """A session (ONNX Runtime, or OpenVINO for a bf16 variant) for ``model`` with the options' device, threads, batch size and precision;
    ``cached``: one per process (the UDF).

    The runner's card is the one to record: for a KappaMask card whose weights were just downloaded, it is
    the converted model's card; where a reduced-precision variant runs (:func:`with_precision`), the variant's.
    """
    cpu = choose_providers(options.device) == ["CPUExecutionProvider"] and not options.fp16
    model = with_precision(model, options.precision, cpu)
    opener = cached_runner if cached else open_runner
    return opener(model, options.device, options.threads, options.batch_size, options.fp16)


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
                 out: np.ndarray | None = None, seen: set | None = None):
    """Bands on the working grid for 10 m rows [r0, r1), in ``units`` (written into ``out`` when given).

    ``rows`` maps band names to open row readers (:func:`open_rows`); each band
    is read only over the native rows these 10 m rows need, and checked
    (:func:`kappamask_core.chain.scale.check_values`) whatever reader it came from.
    Returns (stack (bands, ceil((r1 - r0) / factor), working width) float32,
    valid (r1 - r0, width) bool at 10 m: every band has data there, and none is NaN).
    ``seen`` collects the names of the bands that hold data in these rows.
    """
    width = product.grid.width

    def read(name):
        band = product.bands[name]
        n0, n1 = resample.native_rows_needed(band.factor, r0, r1, band.shape[0])
        return rows[name].read_rows(n0, n1), n0

    # two bands decode at once (GDAL releases the GIL); each band file is read by one thread at a time
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        blocks = dict(zip(bands, pool.map(read, bands)))
    # A band decoded from a reduced resolution level blurs its nodata edge (a half-empty 2 x 2 block is not 0):
    # where bands are read exactly, only they decide which pixels have data
    exact = [n for n in bands if getattr(product.bands[n], "overview_level", None) is None] or list(bands)
    valid = np.ones((r1 - r0, width), dtype=bool)
    for name in bands:
        block, n0 = blocks[name]
        scale.check_values(block, name, product, n0)
        invalid = scale.invalid_mask(block)  # no data (0) or NaN, at the band's own resolution
        if seen is not None and not invalid.all():
            seen.add(name)
        if name in exact and invalid.any():
            # a pixel is valid only where every band the model needs has data
            valid &= ~resample.nearest_rows(invalid, product.bands[name].factor, r0, r1, width, n0)
    shape = (len(bands), -(-(r1 - r0) // factor), -(-width // factor))
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
            values = resample.area_rows(block, band.factor, r0, r1, width, factor, n0)
        # NaN and infinities must not reach the model (they would spread to neighbours); those pixels are masked
        np.nan_to_num(values, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        # unit conversion is linear, so it runs after the averaging, on the smaller array
        out[i] = scale.to_units(values, name, product, units)
    return out, valid


class _StripMaker:
    """Builds the normalised, padded model input for one tile row."""

    def __init__(self, product: Product, card: ModelCard, rows: dict, factor: int, layout: TileLayout, method: str):
        self.product, self.card, self.rows, self.f, self.layout, self.method = product, card, rows, factor, layout, method
        self.seconds = 0.0  # time spent reading and preparing strips (in the worker thread)
        self.seen: set = set()  # the bands that held data in some strip

    def __call__(self, y0: int):
        """(strip (C, T, padded width), valid 10 m mask, valid working mask (T, padded width), first 10 m row)."""
        card, grid, f, layout = self.card, self.product.grid, self.f, self.layout
        t = layout.tile
        started = time.perf_counter()
        top, bottom = max(y0, 0), min(y0 + t, layout.height)
        r0, r1 = top * f, min(bottom * f, grid.height)
        height = -(-(r1 - r0) // f)
        rows_pad = (top - y0, t - (top - y0) - height)
        cols_pad = layout.padding(layout.width)
        # the padded strip is allocated once and filled in place: a strip of KappaMask's 13 bands is 290 MB
        strip = np.zeros((len(card.bands), t, cols_pad[0] + layout.width + cols_pad[1]), np.float32)
        inner = strip[:, rows_pad[0] : rows_pad[0] + height, cols_pad[0] : cols_pad[0] + layout.width]
        _, valid = working_rows(self.product, self.rows, card.bands, card.units, f, r0, r1, self.method, inner,
                                self.seen)
        scale.apply_value_scaling(inner, card.value_scaling, card.clip_min)
        if card.pad_mode == "constant":
            stack = strip  # zeros around the data, as allocated
        else:
            stack = np.pad(inner, ((0, 0), rows_pad, cols_pad), mode=card.pad_mode)
        valid_work = np.pad(resample.block_mean(valid.astype(np.float32), f) > 0, (rows_pad, cols_pad))
        self.seconds += time.perf_counter() - started
        return stack, valid, valid_work, r0


@dataclass(frozen=True)
class TilePlan:
    """How a product is cut into model tiles: the working-grid factor, the tile layout and the product as read."""

    factor: int
    layout: TileLayout
    reading: Product  # the product with the band sources the run decodes (see _reading_product)
    overlap: int
    margin: int


def plan_tiles(product: Product, card: ModelCard, options: ClassifyOptions) -> TilePlan:
    """The tiles a network with ``card`` sees of ``product`` under ``options``."""
    factor = max(1, round(card.resolution / product.grid.resolution))
    work = product.grid.coarsen(factor)
    overlap = card.overlap if options.overlap is None else options.overlap
    margin = card.margin if options.margin is None else options.margin
    for name, value in (("overlap", overlap), ("margin", margin)):
        if value >= card.tile_size:
            raise InputError(f"{name} {value} must be smaller than the model's tile size {card.tile_size}")
    if card.tile_size - overlap < card.tile_size / 4:
        many = TileLayout(work.height, work.width, card.tile_size, overlap, margin)
        raise InputError(f"overlap {overlap} leaves a stride of {card.tile_size - overlap} px, less than a quarter of "
                         f"the model's {card.tile_size} px tiles: {len(many)} tiles instead of "
                         f"{len(TileLayout(work.height, work.width, card.tile_size, card.overlap, margin))}; use an "
                         f"overlap of at most {card.tile_size * 3 // 4}")
    layout = TileLayout(work.height, work.width, card.tile_size, overlap, margin)
    plan = TilePlan(factor, layout, _reading_product(product, card.bands, factor, options.decode), overlap, margin)
    need, have = memory_needed(plan, card, product.grid, options), available_memory()
    if have is not None and need > have:
        raise InputError(f"{product.id}: this run needs about {need / 2**30:.1f} GiB of memory (model {card.id}: "
                         f"{len(card.bands)} bands in strips of {card.tile_size} x {layout.width + 2 * margin} px, "
                         f"a {product.grid.height} x {product.grid.width} px map), but only {have / 2**30:.1f} GiB "
                         "are available")
    return plan


def memory_needed(plan: TilePlan, card: ModelCard, grid: Grid, options: ClassifyOptions) -> int:
    """Bytes a run holds at its peak, roughly: three strips of model input (the one inferred, the one being
    prepared, a padded copy), the stitcher's sums, the class map, the 10 m valid masks of a strip, and the
    scores when they are kept in memory. The network's own working memory comes on top."""
    strip_px = plan.layout.tile * (plan.layout.width + 2 * plan.margin)
    strips_bytes = 3 * len(card.bands) * strip_px * 4 + 2 * len(card.outputs) * strip_px * 4
    rows_10m = min(grid.height, plan.layout.tile * plan.factor)
    masks = 2 * rows_10m * grid.width
    scores = 5 * grid.height * grid.width * 4 if options.scores else 0
    return strips_bytes + masks + grid.height * grid.width + scores


def available_memory() -> int | None:
    """Bytes the system can give without swapping (Linux MemAvailable); None where it cannot tell."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


@dataclass
class StripTimes:
    prepare_s: float = 0.0  # reading and preparing strips (in the worker thread)
    wait_s: float = 0.0  # the consumer waiting for a strip
    bands_with_data: set = field(default_factory=set)  # the bands that held data somewhere


def strips(card: ModelCard, plan: TilePlan, method: str, times: StripTimes | None = None):
    """The model input one tile row at a time, in order: (strip (C, T, padded width), valid 10 m mask, valid
    working mask (T, padded width), first 10 m row). The next strip is prepared in a worker thread while
    the caller works on the current one."""
    times = times if times is not None else StripTimes()
    row_starts = plan.layout.row_starts()
    # consecutive strips share JPEG 2000 block rows (1024 px): the cache must hold two block rows of every band
    # read, so that no block is decoded twice; for all 13 bands of a full product that is 336 MiB
    with (cache_env(BLOCK_CACHE_MIB), open_rows(plan.reading, card.bands) as rows,
          ThreadPoolExecutor(max_workers=1) as prefetch):
        make_strip = _StripMaker(plan.reading, card, rows, plan.factor, plan.layout, method)
        try:
            pending = prefetch.submit(make_strip, row_starts[0])
            for r in range(len(row_starts)):
                t1 = time.perf_counter()
                strip = pending.result()
                times.wait_s += time.perf_counter() - t1
                if r + 1 < len(row_starts):
                    pending = prefetch.submit(make_strip, row_starts[r + 1])
                yield strip
        finally:
            times.prepare_s = make_strip.seconds
            times.bands_with_data = make_strip.seen


def tile_columns(plan: TilePlan) -> list[int]:
    """The first column of each tile of a row, in padded strip columns."""
    return [x0 + plan.layout.margin for x0 in plan.layout.col_starts()]


def model_tiles(source, card: ModelCard, *, level: str | None = None, units: str = "dn",
                options: ClassifyOptions | None = None):
    """Every tile of ``source`` that holds a valid pixel, as the network with ``card`` sees it (scaled, padded):
    (tile (C, T, T) float32, valid (T, T) bool on the working grid). For making and checking model variants."""
    options = options or ClassifyOptions()
    product = open_product(source, level=level, units=units)
    check_compatible(product, card)
    product.verify(set(card.bands))
    plan = plan_tiles(product, card, options)
    t, columns = plan.layout.tile, tile_columns(plan)
    for stack, _, valid_work, _ in strips(card, plan, options.resampling):
        for x0 in columns:
            valid = valid_work[:, x0 : x0 + t]
            if valid.any():
                yield stack[:, :, x0 : x0 + t].copy(), valid.copy()


def run(
    source,
    model="auto",
    *,
    level: str | None = None,
    units: str = "dn",
    weights=None,
    options: ClassifyOptions | None = None,
    runner: Runner | None = None,
    scores_sink=None,
) -> Classification:
    """Classify one product; see :func:`kappamask_core.classify` for the arguments.

    With ``options.scores``, the per-class scores go to ``scores_sink`` (an
    object with ``write(first_row, block)``, e.g. a
    :class:`~kappamask_core.io.writers.ScoresWriter`) strip by strip, or, without
    one, into ``Classification.scores`` in memory.
    """
    options = options or ClassifyOptions()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    product = open_product(source, level=level, units=units)
    card = runner.card if runner is not None else resolve_card(model, product.level or level, product.bands)
    check_compatible(product, card)
    product.verify(set(card.bands) | set(RGB_BANDS))  # against manifest.safe, before any pixel is used
    scores = (scores_sink or ScoresArray(product.grid)) if options.scores else None
    if card.scheme is not None:
        return _run_lookup(product, card, started, scores, options.buffers)
    if runner is None:
        runner = make_runner(resolve_model(card, weights=weights), options)
    card = runner.card
    runner.model.announce()  # a variant running in the network's place says so, once
    log.info("%s: model %s (%s, %s)", product.id, card.id, card.name, card.precision)

    grid = product.grid
    plan = plan_tiles(product, card, options)
    factor, layout = plan.factor, plan.layout
    lut = card.class_lut()
    classes = np.zeros(grid.shape, dtype=np.uint8)
    stitcher = RowStitcher(layout, len(card.outputs), options.stitch)
    t, col_starts = layout.tile, tile_columns(plan)

    progress = None
    if options.progress:
        from tqdm import tqdm

        progress = tqdm(total=len(layout), unit="tile", desc=product.id[:40], leave=False)
    infer_s = 0.0
    skipped = 0
    times = StripTimes()
    for stack, valid, valid_work, r0 in strips(card, plan, options.resampling, times):
        keep = [i for i, x0 in enumerate(col_starts) if valid_work[:, x0 : x0 + t].any()]
        skipped += len(col_starts) - len(keep)
        for i in set(range(len(col_starts))) - set(keep):
            stitcher.add(i, None)  # no valid input pixel: not sent to the model
        # one batch at a time: a whole strip of tiles and their scores would double the memory for nothing
        for b in range(0, len(keep), runner.batch_size):
            batch = keep[b : b + runner.batch_size]
            t1 = time.perf_counter()
            probs = runner.run(np.stack([stack[:, :, col_starts[i] : col_starts[i] + t] for i in batch]))
            infer_s += time.perf_counter() - t1
            for i, tile_scores in zip(batch, probs):
                stitcher.add(i, tile_scores)
        start, block = stitcher.finish_row()
        _emit(start, block, factor, grid, valid, r0, lut, classes, scores)
        if progress is not None:
            progress.update(len(col_starts))
    if progress is not None:
        progress.close()
    empty = [name for name in card.bands if name not in times.bands_with_data]
    if empty and len(empty) < len(card.bands):
        log.warning("%s: band(s) %s hold no data at all, so every pixel is missing (a pixel is classified only where "
                    "every band the model needs has data)", product.id, ", ".join(empty))
    classes, buffer_s = _buffered(classes, options.buffers, grid)
    window = data_window(classes)
    preview = true_colour(product, window)
    timings.update(prepare_s=times.prepare_s, wait_s=times.wait_s, infer_s=infer_s, buffer_s=buffer_s,
                   total_s=time.perf_counter() - started)
    runtime = {
        "providers": list(runner.providers),
        "device": runner.device,
        "tiles": len(layout),
        "tiles_skipped": skipped,
        "overlap": plan.overlap,
        "margin": plan.margin,
        "stitch": options.stitch,
        "resampling": options.resampling,
        "working_resolution": card.resolution,
        "decoded_resolution": {name: plan.reading.bands[name].factor * 10 for name in card.bands},
        **({"buffers_m": dict(options.buffers)} if options.buffers else {}),
    }
    return Classification(
        classes=classes,
        grid=grid,
        product=product,
        card=card,
        scores=scores.array if isinstance(scores, ScoresArray) else None,
        preview=preview,
        preview_window=window,
        timings=timings,
        runtime=runtime,
    )


def _buffered(classes: np.ndarray, buffers, grid: Grid) -> tuple[np.ndarray, float]:
    if not buffers:
        return classes, 0.0
    started = time.perf_counter()
    return buffer_classes(classes, buffers, grid.resolution), time.perf_counter() - started


def _reading_product(product: Product, names, factor: int, decode: str) -> Product:
    """The product as the run reads it: with ``decode="reduced"``, bands finer than the working grid come from
    their reduced resolution level closest to it (10 m bands at 20 m for a 30 m grid); the area average onto
    the working grid then weights them as any native 20 m band."""
    if decode != "reduced" or factor == 1:
        return product
    bands = dict(product.bands)
    for name in names:
        if hasattr(bands[name], "reduced"):
            bands[name] = bands[name].reduced(factor)
    return replace(product, bands=bands)


def _run_lookup(product: Product, card: ModelCard, started: float, scores, buffers=()) -> Classification:
    """A mask the product already carries (e.g. Sen2Cor SCL): nearest to 10 m, then the class scheme, in row blocks."""
    t0 = time.perf_counter()
    band = card.bands[0]
    grid = product.grid
    native = read_bands(product, card.bands)[band]
    lut = lookup_table(card.scheme)
    lut[lut == UNDEFINED] = MISSING  # the five-class map has no 'undefined'
    codes = _class_codes(native, f"{product.source}: band {band}")
    classes = np.empty(grid.shape, np.uint8)
    for a in range(0, grid.height, LOOKUP_ROWS):
        b = min(a + LOOKUP_ROWS, grid.height)
        rows = lut[resample.nearest_rows(codes, product.bands[band].factor, a, b, grid.width)]
        classes[a:b] = rows
        if scores is not None:
            scores.write(a, np.stack([(rows == c.value).astype(np.float32) for c in CLASSES]))
    classes, buffer_s = _buffered(classes, buffers, grid)
    elapsed = time.perf_counter() - t0
    return Classification(
        classes=classes, grid=grid, product=product, card=card,
        scores=scores.array if isinstance(scores, ScoresArray) else None,
        preview=true_colour(product, data_window(classes)), preview_window=data_window(classes),
        timings={"read_s": elapsed, "infer_s": 0.0, "total_s": time.perf_counter() - started},
        runtime={"device": "cpu", "method": f"lookup ({card.scheme})", "resampling": "nearest",
                 "working_resolution": 10, "stitch": None, "overlap": None,
                 **({"buffers_m": dict(buffers)} if buffers else {})},
    )


def _class_codes(values: np.ndarray, what: str) -> np.ndarray:
    """A band of class codes as uint16; NaN (openEO nodata) becomes 0, which every scheme reads as no data."""
    if np.issubdtype(values.dtype, np.floating):
        finite = np.isfinite(values)
        if not np.array_equal(values[finite], np.round(values[finite])):
            raise InputError(f"{what} holds fractional values, not class codes")
        values = np.where(finite, values, 0)
    elif not np.issubdtype(values.dtype, np.integer):
        raise InputError(f"{what} holds {values.dtype} values, not class codes")
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise InputError(f"{what} holds values from {values.min()} to {values.max()}, not class codes")
    return values.astype(np.uint16, copy=False)


class ScoresArray:
    """Per-class scores kept in memory (the Python API's ``scores=True``)."""

    def __init__(self, grid: Grid):
        self.array = np.zeros((len(CLASSES), *grid.shape), dtype=np.float32)

    def write(self, row: int, block: np.ndarray) -> None:
        self.array[:, row : row + block.shape[1]] = block


def _emit(start, block, factor, grid, valid, r0, lut, classes, scores):
    """Write finished working-grid rows into the 10 m outputs."""
    a, b = start * factor, min((start + block.shape[1]) * factor, grid.height)
    if a >= b:
        return
    mask = valid[a - r0 : b - r0]
    # argmax commutes with replication: take it on the working grid, replicate the uint8 classes
    out = resample.replicate(lut[np.argmax(block, axis=0)], factor, b - a, grid.width)
    out[~mask] = MISSING
    classes[a:b] = out
    if scores is not None:
        fine = resample.replicate(block, factor, b - a, grid.width)
        five = np.zeros((len(CLASSES), b - a, grid.width), np.float32)
        for channel, value in enumerate(lut):
            five[value] += fine[channel]
        five[:, ~mask] = 0
        scores.write(a, five)


def true_colour(product: Product, window: tuple[int, int, int, int]) -> np.ndarray | None:
    """A small true-colour image of ``window`` (reflectance 0..0.3 stretched to 0..255), from a decimated read."""
    if not all(b in product.bands for b in RGB_BANDS):
        return None
    height, width = window[1] - window[0], window[3] - window[2]
    step = max(1, math.ceil(max(height, width) / PREVIEW_SIZE))
    shape = (max(1, height // step), max(1, width // step))
    channels = []
    for name in RGB_BANDS:
        values = product.bands[name].read_decimated(shape, window)
        refl = scale.to_units(values, name, product, "reflectance")
        channels.append(np.clip(np.nan_to_num(refl, nan=0.0, posinf=0.0, neginf=0.0) / 0.3 * 255, 0, 255)
                        .astype(np.uint8))
    return np.dstack(channels)


def classify(source, model="auto", *, level=None, units="dn", weights=None, options=None, **overrides):
    """Classify a Sentinel-2 product into the five KappaMask classes.

    source: SAFE folder or .zip, folder of band files, STAC item (path or
        pystac.Item) or xarray.DataArray with a 'bands' dimension.
    model: 'auto' (KappaMask v2 where its weights are installed or can be
        downloaded, else the bundled offline model, with a warning),
        'default' (the bundled offline model), a built-in id (``kappamask
        models list``), an alias such as 'kappamask-v2', or a card .json path.
    level: 'L1C' or 'L2A' where the input does not say.
    units: 'dn' or 'reflectance' (xarray input).
    weights: ONNX file (path or URL) for cards that do not bundle one.
    options / overrides: a :class:`ClassifyOptions`, or its fields as keywords.

    Returns an xarray.DataArray (uint8, y/x, CRS in attrs) of classes 0 missing,
    1 clear, 2 cloud shadow, 3 semi-transparent cloud, 4 cloud; with
    ``scores=True`` an xarray.Dataset holding ``classes`` and ``scores``.
    """
    try:
        options = replace(options or ClassifyOptions(), **overrides)
    except TypeError as exc:
        raise InputError(f"unknown option: {exc}") from None
    return run(source, model, level=level, units=units, weights=weights, options=options).to_xarray()
