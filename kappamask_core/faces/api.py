"""The Python API: :func:`classify` (a map, in memory), :func:`run` (with what made it) and
:func:`classify_to_files` (each product's files: COG, quicklook, scores, STAC item, written together).

A product's files appear together or not at all: they are written under
temporary names and renamed into place only when every one of them is
complete (:func:`kappamask_core.io.writers.atomic_files`). Every input is opened
and the output folder checked before any classification starts, so a bad
input or an unwritable folder costs seconds, not a product's run time.
Files other than the COG and the quicklook (STAC items) come from output
plugins (:mod:`kappamask_core.foundation.plugins`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..chain.buffers import usable_mask
from ..chain.job import prepare
from ..chain.options import ClassifyOptions
from ..chain.pipeline import execute
from ..chain.results import Classification, ScoresSink
from .datacube import classify_cube
from ..foundation import plugins
from ..foundation.classes import ENCODINGS
from ..foundation.errors import InputError, KappaMaskError
from ..foundation.types import PathLike, ProductSource
from ..io.files import atomic_files, new_folder_removed_on_failure, remove_stale_parts, safe_name
from ..io.readers import open_product
from ..io.writers import ScoresWriter, write_cog, write_quicklook, write_thumbnail, write_usable
from ..models.resolve import ModelSpec
from ..models.runners import RunnerCache

if TYPE_CHECKING:
    import xarray

log = logging.getLogger(__name__)


def input_identity(product) -> dict:
    """What tells one input from another with the same id (a second crop of a scene, another copy of a band):
    its id, level, grid and each band's file size, shape and data type. A completion record names it, so that a
    rerun keeps only outputs made from this very input."""
    bands = {}
    for name, band in sorted(product.bands.items()):
        path = getattr(band, "path", None)
        try:
            size = os.path.getsize(path) if path and not str(path).startswith("/vsi") else None
        except OSError:
            size = None
        bands[name] = [list(band.shape), str(band.dtype), size]
    grid = product.grid
    return {"id": product.id, "level": product.level, "shape": list(grid.shape),
            "transform": [round(v, 6) for v in tuple(grid.transform)[:6]],
            "crs": grid.crs.to_wkt() if grid.crs is not None else None, "bands": bands}


def product_files(stem: str, scores: bool, outputs, usable: bool = False) -> dict[str, str]:
    """Role -> file name of one product's outputs."""
    names = {"cog": f"{stem}.tif", "quicklook": f"{stem}.png", "thumbnail": f"{stem}_thumbnail.png"}
    if scores:
        names["scores"] = f"{stem.removesuffix('_kappamask')}_scores.tif"
    if usable:
        names["usable"] = f"{stem.removesuffix('_kappamask')}_usable.tif"
    for output in outputs:
        names.update(output.file_names(stem))
    return names


def settings_digest(card, options: ClassifyOptions, encoding: str, usable: bool, product=None) -> str:
    """What decides a product's outputs: the input (:func:`input_identity`), the card and every setting that
    changes a file."""
    settings = {"card": card.sha256, "weights": card.weights.get("sha256"), "encoding": encoding, "usable": usable,
                "input": None if product is None else input_identity(product),
                **{k: getattr(options, k) for k in ("overlap", "margin", "stitch", "tiles", "resampling", "decode", "buffers",
                                                   "scores", "precision")}}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def finished(finals: dict, digest: str, outputs) -> bool:
    """True when all of a product's files exist and an output plugin vouches that they are whole and were made
    with ``digest`` (the STAC item records both); without such a plugin nothing counts as finished."""
    if not all(Path(p).is_file() for p in finals.values()):
        return False
    verdicts = [output.complete(finals, digest) for output in outputs if hasattr(output, "complete")]
    return bool(verdicts) and all(verdicts)


def classify_to_files(inputs: Iterable[ProductSource], outdir: PathLike, *, model: ModelSpec = "auto",
                      weights: PathLike | None = None, level: str | None = None,
                      options: ClassifyOptions | None = None, encoding: str = "kappamask", stac: bool = True,
                      usable: bool = False, force: bool = False, finish: bool = True,
                      progress: bool = False) -> list[dict]:
    """Classify each input and write ``<id>_kappamask.tif`` / ``.png`` (and STAC) into ``outdir``.

    One ONNX session is shared by all inputs that resolve to the same card. Returns, per input, the paths
    written. ``usable`` also writes the usable-pixel mask (1 clear, 0 not, 255 missing). A product whose files
    exist, match their STAC item's checksums and were made with the same model and settings is not classified
    again, unless ``force``; so an interrupted batch resumes when it is run again.

    A list or tuple of inputs is opened whole first (a bad input costs seconds, not a product's run) and the
    run stops at the first input that fails; the products finished before it keep all their files. Any other
    iterable (a catalogue search: :mod:`kappamask_stac.search`) is taken one input at a time, never listed
    whole: an input that fails is reported and skipped, and at the end one line says which failed (the
    others keep their files).
    """
    options = options or ClassifyOptions()
    if encoding not in ENCODINGS:
        raise InputError(f"unknown encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}")
    with new_folder_removed_on_failure(outdir) as folder:
        return _classify_into(inputs, folder, model, weights, level, options, encoding, stac, usable, force, finish,
                              progress)


def _classify_into(inputs, outdir, model, weights, level, options, encoding, stac, usable, force, finish,
                   progress) -> list[dict]:
    batch = _Batch(outdir, model, weights, level, options, encoding, plugins.outputs(None if stac else ()), usable,
                   force)
    if isinstance(inputs, (list, tuple)):
        if not inputs:
            raise InputError("no inputs given")
        products = [open_product(source, level=level) for source in inputs]
        stems = [f"{safe_name(p.id)}_kappamask" for p in products]
        seen: dict[str, int] = {}
        for i, stem in enumerate(stems):
            if stem in seen:
                raise InputError(f"inputs {inputs[seen[stem]]} and {inputs[i]} are the same product "
                                 f"({products[i].id}); give each product once")
            seen[stem] = i
        written = [batch.classify(source, product) for source, product in zip(inputs, products)]
    else:
        written = _stream(batch, inputs, level, progress)
    if finish:
        for output in batch.outputs:
            output.finish(written, outdir, encoding)
    return written


def _stream(batch: "_Batch", inputs, level, progress: bool) -> list[dict]:
    """Inputs one at a time; failures are reported and skipped, and summed up in one line at the end."""
    from tqdm import tqdm

    written, failed, seen, count = [], [], set(), 0
    with tqdm(unit="product", desc="products", leave=False, disable=not progress) as bar:
        for source in inputs:
            count += 1
            try:
                product = open_product(source, level=level)
                if product.id in seen:
                    raise InputError(f"{product.id} came twice")
                seen.add(product.id)
                written.append(batch.classify(source, product))
            except KappaMaskError as exc:
                failed.append((getattr(source, "id", None) or str(source), exc))
                log.warning("%s: %s", failed[-1][0], exc)
            bar.update(1)
    if not count:
        raise InputError("no inputs: the search found nothing")
    log.info("%d of %d products written or already complete; %d failed", len(written), count, len(failed))
    if failed:
        raise InputError(failures_line(failed, count))
    return written


def failures_line(failed: list, count: int) -> str:
    """One line for the inputs of a batch that failed, ``(name, error)`` pairs; the others have their files."""
    listed = "; ".join(f"{name}: {' '.join(str(exc).split())[:120]}" for name, exc in failed[:3])
    return (f"{len(failed)} of {count} inputs failed ({listed}{'; ...' if len(failed) > 3 else ''}); the other "
            f"{count - len(failed)} have their files, and a rerun classifies only what is missing")


class _Batch:
    """What all products of one run share: the output folder, the settings and one session per model."""

    def __init__(self, outdir, model, weights, level, options, encoding, outputs, usable, force):
        self.outdir, self.model, self.weights, self.level, self.options = outdir, model, weights, level, options
        self.encoding, self.outputs, self.usable, self.force = encoding, outputs, usable, force
        self.runners = RunnerCache()

    def classify(self, source, product) -> dict:
        """One product's files, written together (or found complete and kept)."""
        options, encoding, outputs, usable = self.options, self.encoding, self.outputs, self.usable
        job = prepare(product, self.model, level=self.level, weights=self.weights, options=options,
                      runners=self.runners)
        stem = f"{safe_name(product.id)}_kappamask"
        finals = {role: self.outdir / name
                  for role, name in product_files(stem, options.scores, outputs, usable).items()}
        digest = settings_digest(job.card, options, encoding, usable, product)
        if not self.force and finished(finals, digest, outputs):
            log.info("%s: outputs exist and are complete, made with the same settings: skipped", product.id)
            return finals
        stale = [p for final in finals.values() for p in remove_stale_parts(Path(final))]
        if stale:
            log.warning("%s: removed %d partial file(s) an interrupted run left: %s", product.id, len(stale),
                        ", ".join(p.name for p in stale[:3]))
        with atomic_files(*finals.values()) as temp_list:
            temps = dict(zip(finals, map(Path, temp_list)))
            with ScoresWriter(temps.get("scores"), product.grid) as scores:
                result = execute(job, scores_sink=scores if options.scores else None)
            result.runtime["settings_sha256"] = digest
            write_product_files(result, temps, encoding, usable)
            for output in outputs:
                with result.stages(type(output).__name__):  # e.g. the STAC item
                    output.write(result, finals, temps, source, encoding)
        pct = result.class_percentages()
        log.info("%s: %s (%.1f s)", product.id, ", ".join(f"{k} {v:.1f}%" for k, v in pct.items() if k != "missing"),
                 result.timings["total_s"])
        # benchmarks/run.py --profile reads the table from the record
        log.debug("%s: stages: %s", product.id, result.stages.line(), extra={"stages": result.stages.table()})
        return finals


def write_product_files(result, temps: dict, encoding: str, usable: bool) -> None:
    """The COG (with the model in its tags), the quicklook and the usable mask of one classification."""
    card, product = result.card, result.product
    tags = {"model": card.id, "model_name": card.name, "model_trained": str(card.trained).lower(),
            "model_precision": card.precision, "sensor": product.sensor}
    if card.variant:
        tags["model_variant_of"] = card.variant["parent"]["id"]
    stages = result.stages
    with stages("COG"):
        write_cog(temps["cog"], result.classes, result.grid, encoding, tags)
    with stages("quicklook and thumbnail"):
        write_quicklook(temps["quicklook"], result.classes, result.preview,
                        f"{product.id}  model: {card.name}, {card.precision}", card.predicts, result.preview_window)
        write_thumbnail(temps["thumbnail"], result.classes, result.preview_window)
    if usable:
        with stages("usable mask"):
            write_usable(temps["usable"], usable_mask(result.classes), result.grid)


def run(source: ProductSource, model: ModelSpec = "auto", *, level: str | None = None, units: str = "dn",
        weights: PathLike | None = None, options: ClassifyOptions | None = None, runners: RunnerCache | None = None,
        scores_sink: ScoresSink | None = None, sensor: str | None = None) -> Classification:
    """Classify one product and return the :class:`~kappamask_core.chain.results.Classification` (the class map,
    the grid, the model that ran, timings); see :func:`classify` for the arguments. ``scores_sink`` takes the
    per-class scores strip by strip (``options.scores``; e.g. a
    :class:`~kappamask_core.io.writers.ScoresWriter`), instead of memory."""
    job = prepare(source, model, level=level, units=units, weights=weights, options=options, runners=runners,
                  sensor=sensor)
    return execute(job, scores_sink)


def is_cube(source: object) -> bool:
    """A cube for :func:`classify_cube`: an xarray Dataset, or a DataArray with a time dimension of more than one
    date, stackstac's 'band' dimension, or dask-backed data; one in-memory image is a product like any other."""
    import sys

    xr = sys.modules.get("xarray")
    if xr is None:
        return False
    if isinstance(source, xr.Dataset):
        return True
    if not isinstance(source, xr.DataArray):
        return False
    many = any(source.sizes.get(d, 1) != 1 for d in ("time", "t"))
    return many or "band" in source.dims or type(source.data).__module__.startswith("dask")


def classify(source: ProductSource, model: ModelSpec = "auto", *, level: str | None = None, units: str = "dn",
             weights: PathLike | None = None, options: ClassifyOptions | None = None, sensor: str | None = None,
             **overrides: Any) -> "xarray.DataArray | xarray.Dataset":
    """Classify a Sentinel-2, Landsat 5 to 9 or HLS product into the five KappaMask classes.

    source: SAFE folder or .zip, folder of band files (Sentinel-2's, a Landsat Collection 2 product's with its MTL
        file, an HLS v2.0 granule's), STAC item (path or pystac.Item), or a cube: an
        xarray.DataArray with a 'bands' (or stackstac's 'band') dimension, or an odc-stac xarray.Dataset of band
        variables. A cube with a time dimension, a Dataset or a dask-backed cube is classified by
        :func:`~kappamask_core.faces.datacube.classify_cube`: one map per date, lazy on dask.
    model: 'auto' (KappaMask v2 where its weights are installed or can be downloaded, else the bundled offline
        model, with a warning), 'default' (the bundled offline model), a built-in id (``kappamask models list``),
        an alias such as 'kappamask-v2', or a card .json path.
    level: 'L1C' or 'L2A' where the input does not say.
    units: 'dn', 'harmonised' or 'reflectance' (xarray input).
    sensor: whose bands an xarray input holds ('sentinel-2', 'landsat-5', 'landsat-7', 'landsat-8', 'landsat-9',
        'hls-l30', 'hls-s30'), where its ``platform`` does not say; files and STAC items say it themselves.
    weights: ONNX file (path or URL) for cards that do not bundle one.
    options / overrides: a :class:`~kappamask_core.chain.options.ClassifyOptions`, or its fields as keywords.

    Returns an xarray.DataArray (uint8, y/x, CRS in attrs) of classes 0 missing, 1 clear, 2 cloud shadow,
    3 semi-transparent cloud, 4 cloud; with ``scores=True`` an xarray.Dataset holding ``classes`` and ``scores``.
    A cube gives (time, y, x) classes (``output="usable"``: the usable mask; ``output="scores"``: scores with a
    ``class`` dimension).
    """
    output = overrides.pop("output", None)
    try:
        options = replace(options or ClassifyOptions(), **overrides)
    except TypeError as exc:
        raise InputError(f"unknown option: {exc}") from None
    if is_cube(source) or output is not None:
        return classify_cube(source, model=model, level=level, units=units, weights=None if weights is None
                             else str(weights), options=options, output=output or "classes", sensor=sensor)
    result = run(source, model, level=level, units=units, weights=weights, options=options,
                 sensor=sensor).to_xarray()
    return like_input(result, source)


def like_input(result: "xarray.DataArray | xarray.Dataset", source: object) -> "xarray.DataArray | xarray.Dataset":
    """The map of an xarray input on exactly the input's grid: turned back to its orientation (a south-up or
    mirrored array is classified north-up) and given its own x and y coordinates, never ones made up from a
    transform; other inputs' maps as they are."""
    import sys

    xr = sys.modules.get("xarray")
    if xr is None or not isinstance(source, xr.DataArray):
        return result
    from ..io.array_grid import flips_to_north_up

    flip_y, flip_x = flips_to_north_up(source)
    result = result.isel(y=slice(None, None, -1) if flip_y else slice(None),
                         x=slice(None, None, -1) if flip_x else slice(None))
    result = result.drop_vars([name for name in ("y", "x") if name in result.coords])
    kept = {name: coord for name, coord in source.coords.items()
            if set(coord.dims) <= {"y", "x"} and name not in ("bands", "band")}
    return result.assign_coords(kept)
