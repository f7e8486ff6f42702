"""The classification chain: read -> scale -> resample -> tile -> infer -> stitch, for one prepared job.

:func:`execute` streams a :class:`~kappamask_core.chain.job.Job` through the chain one tile row at a time: the
strips (:mod:`~kappamask_core.chain.strips`) are read and prepared in a worker thread while the model runs on the
current one; tiles without a single valid input pixel are not sent to the model; the stitcher hands back finished
rows, which become classes (and scores) on the 10 m grid; buffers grow the classes at the end. Lookup models take
:func:`~kappamask_core.chain.lookup.run_lookup` instead.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ..foundation.classes import CLASSES, MISSING, data_window
from . import resample
from .buffers import buffered
from .job import Job
from .lookup import run_lookup
from .plan import TilePlan
from .preview import RGB_BANDS, StripPreview, true_colour
from .results import Classification, ScoresArray, ScoresSink
from .stitch import RowStitcher
from .strips import strips, tile_columns

log = logging.getLogger(__name__)


def execute(job: Job, scores_sink: ScoresSink | None = None) -> Classification:
    """Classify the job's product. With ``options.scores``, the per-class scores go to ``scores_sink`` (an object
    with ``write(first_row, block)``, e.g. a :class:`~kappamask_core.io.writers.ScoresWriter`) strip by strip, or,
    without one, into ``Classification.scores`` in memory."""
    product, options = job.product, job.options
    job.verify()  # against manifest.safe, before any pixel is used
    scores = (scores_sink or ScoresArray(product.grid)) if options.scores else None
    card, plan = job.card, job.plan
    if job.session is None or plan is None:
        job.announce()
        return run_lookup(job, scores)
    log.info("%s: model %s (%s, %s)", product.id, card.id, card.name, card.precision)
    grid, factor, layout = product.grid, plan.factor, plan.layout
    lut = card.class_lut()
    classes = np.zeros(grid.shape, dtype=np.uint8)
    stitcher = RowStitcher(layout, len(card.outputs), options.stitch)
    t, col_starts = layout.tile, tile_columns(plan)
    progress = _progress(options, len(layout), product.id)
    skipped, stages = 0, job.stages
    seen: set[str] = set()  # the bands that held data somewhere
    # the quicklook's colours from the bands the strips decode anyway, where the model reads them
    sampled = StripPreview(product) if set(RGB_BANDS) <= set(card.bands) else None
    for stack, valid, valid_work, r0 in strips(card, plan, options.resampling, seen, stages, sampled,
                                               options.read_threads):
        # auto's fallback, or a variant running in the network's place, says so once, when the model first gets
        # data: input refused in the first strip is one error line, not a warning and an error
        job.announce()
        runner = job.network_runner()  # made while the first strip was read
        keep = [i for i, x0 in enumerate(col_starts) if valid_work[:, x0 : x0 + t].any()]
        skipped += len(col_starts) - len(keep)
        for i in set(range(len(col_starts))) - set(keep):
            stitcher.add(i, None)  # no valid input pixel: not sent to the model
        # one batch at a time: a whole strip of tiles and their scores would double the memory for nothing
        for b in range(0, len(keep), runner.batch_size):
            batch = keep[b : b + runner.batch_size]
            with stages("infer"):
                probs = runner.run(np.stack([stack[:, :, col_starts[i] : col_starts[i] + t] for i in batch]))
            with stages("stitch"):
                for i, tile_scores in zip(batch, probs):
                    stitcher.add(i, tile_scores)
        with stages("stitch"):
            start, block = stitcher.finish_row()
            _emit(start, block, factor, grid, valid, r0, lut, classes, scores, plan.shift)
        if progress is not None:
            progress.update(len(col_starts))
    if progress is not None:
        progress.close()
    _say_bands_without_data(job, seen)
    if options.buffers:
        with stages("buffer"):
            classes, buffer_s = buffered(classes, options.buffers, grid)
    else:
        buffer_s = 0.0
    with stages("preview"):
        window = data_window(classes)
        preview = sampled.picture(product, window) if sampled is not None else None
        if preview is None:
            preview = true_colour(product, window)
    # the stages hold the details (Classification.stages)
    timings = {"infer_s": stages.table().get("infer", {}).get("wall_s", 0.0), "buffer_s": buffer_s,
               "total_s": time.perf_counter() - job.started}
    return Classification(classes=classes, grid=grid, product=product, card=card,
                          scores=scores.array if isinstance(scores, ScoresArray) else None,
                          preview=preview, preview_window=window, timings=timings,
                          runtime=_runtime(job, plan, skipped), stages=stages)


def _progress(options, total: int, name: str):
    if not options.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="tile", desc=name[:40], leave=False)


def _say_bands_without_data(job: Job, seen: set) -> None:
    empty = [name for name in job.card.bands if name not in seen]
    if empty and len(empty) < len(job.card.bands):
        log.warning("%s: band(s) %s hold no data at all, so every pixel is missing (a pixel is classified only where "
                    "every band the model needs has data)", job.product.id, ", ".join(empty))


def _runtime(job: Job, plan: TilePlan, skipped: int) -> dict:
    """What ran, for the log and the outputs' records."""
    options, card, runner = job.options, job.card, job.network_runner()
    return {
        "providers": list(runner.providers),
        "device": runner.device,
        "tiles": len(plan.layout),
        "tiles_skipped": skipped,
        "overlap": plan.overlap,
        "margin": plan.margin,
        "stitch": options.stitch,
        "resampling": options.resampling,
        "working_resolution": card.resolution,
        "decoded_resolution": {name: plan.reading.bands[name].factor * 10 for name in card.bands},
        **({"buffers_m": dict(options.buffers)} if options.buffers else {}),
    }


def _emit(start, block, factor, grid, valid, r0, lut, classes, scores, shift=(0, 0)):
    """Write finished working-grid rows into the 10 m outputs (``shift``: the 10 m pixels of the first working
    pixel that lie before the raster, see :class:`~kappamask_core.chain.plan.TilePlan`)."""
    first = start * factor - shift[0]  # the 10 m row of the block's first row, before the raster where negative
    a, b = max(first, 0), min((start + block.shape[1]) * factor - shift[0], grid.height)
    if a >= b:
        return
    lead = (a - first, shift[1])
    mask = valid[a - r0 : b - r0]
    # argmax commutes with replication: take it on the working grid, replicate the uint8 classes
    out = resample.replicate(lut[np.argmax(block, axis=0)], factor, b - a, grid.width, lead)
    out[~mask] = MISSING
    classes[a:b] = out
    if scores is not None:
        fine = resample.replicate(block, factor, b - a, grid.width, lead)
        five = np.zeros((len(CLASSES), b - a, grid.width), np.float32)
        for channel, value in enumerate(lut):
            five[value] += fine[channel]
        five[:, ~mask] = 0
        scores.write(a, five)
