"""Active learning: which sub-tiles of a product to label next.

The product is cut into non-overlapping 512 px sub-tiles at 10 m (22 x 22 = 484 on a full
product; edge sub-tiles are zero-padded, as KappaSet's are). The model classifies the product
(KappaMask cards with exactly this sub-tiling, so that each sub-tile is one model tile), and each
sub-tile is scored by its **mean per-pixel entropy** of the five-class probabilities, in bits,
over its valid pixels: 0 where the model is certain, more the less it can tell the classes apart. The n most uncertain sub-tiles are written in KappaSet format (the model's bands as
DN / 65535 and the prediction as a pre-label in ``Label``, network output order), each with a PNG
of the prediction half-transparent over true colour, and an index (CSV, and GeoJSON footprints
with their scores).
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..chain.job import prepare
from ..chain.options import ClassifyOptions
from ..chain.pipeline import execute
from ..chain.preview import true_colour
from ..chain.scale import apply_value_scaling
from ..chain.strips import open_rows, working_rows
from ..foundation.classes import CLASS_BY_NAME, ENCODINGS, MISSING, encode
from ..foundation.errors import InputError
from ..foundation.types import PathLike, ProductSource
from ..io.files import atomic_files, safe_name, writable_folder
from ..io.readers import open_product
from ..io.writers import class_image
from ..models.resolve import ModelSpec, resolve_card

log = logging.getLogger(__name__)

SUBTILE = 512
MIN_VALID_SHARE = 0.05  # sub-tiles with less data than this are not proposed
# KappaSet's Label codes for the five classes are the official predictor's file values (1 clear .. 4 cloud,
# 5 missing); KappaSet adds 0 for undefined, which no five-class map holds
KAPPASET_ENCODING = "km_predict"


@dataclass
class Candidate:
    row: int
    col: int
    entropy: float
    valid_share: float

    @property
    def name(self) -> str:
        return f"r{self.row:02d}_c{self.col:02d}"


class EntropySink:
    """Receives the run's per-class scores strip by strip and keeps per-sub-tile entropy sums (little memory)."""

    def __init__(self, height: int, width: int):
        self.rows, self.cols = -(-height // SUBTILE), -(-width // SUBTILE)
        self.sums = np.zeros((self.rows, self.cols))
        self.counts = np.zeros((self.rows, self.cols))
        self.width = width

    def write(self, row: int, block: np.ndarray) -> None:
        total = block.sum(axis=0)
        valid = total > 0  # missing pixels carry zero scores
        p = np.divide(block, total, out=np.zeros_like(block), where=valid)
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = -np.nansum(np.where(p > 0, p * np.log2(p), 0.0), axis=0)
        rows = np.arange(row, row + block.shape[1]) // SUBTILE
        cols = np.arange(self.width) // SUBTILE
        for r in np.unique(rows):
            sel = rows == r
            e, v = entropy[sel], valid[sel]
            np.add.at(self.sums[r], cols, np.where(v, e, 0.0).sum(axis=0))
            np.add.at(self.counts[r], cols, v.sum(axis=0))

    def candidates(self) -> list[Candidate]:
        found = []
        for r in range(self.rows):
            for c in range(self.cols):
                n = self.counts[r, c]
                if n >= MIN_VALID_SHARE * SUBTILE * SUBTILE:
                    found.append(Candidate(r, c, float(self.sums[r, c] / n), float(n / SUBTILE**2)))
        return sorted(found, key=lambda k: (-k.entropy, k.row, k.col))


def select(source: ProductSource, outdir: PathLike, *, model: ModelSpec = "auto", n: int = 10,
           weights: PathLike | None = None, level: str | None = None,
           options: ClassifyOptions | None = None) -> list[dict]:
    """Rank the product's sub-tiles by uncertainty and write the ``n`` most uncertain; return the index rows."""

    if n < 1:
        raise InputError("--n must be at least 1")
    outdir = writable_folder(outdir)  # before the product is classified, not after
    product = open_product(source, level=level)
    card = resolve_card(model, product.level or level, product.bands)
    if card.scheme is not None:
        raise InputError(f"model {card.id} is a lookup of the product's own mask; select needs a network")
    options = replace(options or ClassifyOptions(), scores=True)
    one_tile = card.tile_size == SUBTILE and card.resolution == 10  # KappaMask: one model tile per sub-tile
    if one_tile:
        options = replace(options, overlap=0, margin=0)
    job = prepare(product, model, level=level, weights=weights, options=options)
    runner = job.runner
    if runner is None:  # refused above already (a lookup card); here for the type checker
        raise InputError(f"model {job.card.id} has no network to rank sub-tiles with")
    sink = EntropySink(*product.grid.shape)
    result = execute(job, scores_sink=sink)
    ranked = sink.candidates()
    if not ranked:
        raise InputError(f"{product.id}: no sub-tile holds enough data to be labelled")
    chosen = ranked[:n]
    index, features = [], []
    stems = [f"{safe_name(product.id)}_{cand.name}" for cand in chosen]
    finals = [outdir / f"{stem}{suffix}" for stem in stems for suffix in (".nc", ".png")]
    finals += [outdir / "selection.csv", outdir / "selection.geojson"]
    # the selection appears whole or not at all: an interrupted run leaves no sub-tile without its index
    with atomic_files(*finals) as temps, open_rows(product, runner.card.bands) as rows:
        for rank, (cand, stem) in enumerate(zip(chosen, stems), start=1):
            r0, c0 = cand.row * SUBTILE, cand.col * SUBTILE
            r1, c1 = min(r0 + SUBTILE, product.grid.height), min(c0 + SUBTILE, product.grid.width)
            values, _ = working_rows(product, rows, runner.card.bands, "dn_fraction", 1, r0, r1, "bilinear")
            bands = np.zeros((len(runner.card.bands), SUBTILE, SUBTILE), np.float32)
            bands[:, : r1 - r0, : c1 - c0] = values[:, :, c0:c1]
            if one_tile:  # the network's own argmax, which keeps 'undefined' apart from 'missing'
                scaled = apply_value_scaling(bands.copy(), runner.card.value_scaling, runner.card.clip_min)
                label = _channel_codes(runner.card)[runner.run(scaled[None])[0].argmax(axis=0)]
            else:
                label = np.full((SUBTILE, SUBTILE), ENCODINGS[KAPPASET_ENCODING][MISSING], np.uint8)
                label[: r1 - r0, : c1 - c0] = encode(result.classes[r0:r1, c0:c1], KAPPASET_ENCODING)
            nc, png = temps[2 * (rank - 1)], temps[2 * (rank - 1) + 1]
            _write_subtile(nc, runner.card.bands, bands, label, product, (r0, c0), rank, cand)
            _write_overlay(png, product, result.classes, (r0, r1, c0, c1))
            row = {"rank": rank, "subtile": stem, "row": cand.row, "col": cand.col, "entropy_bits":
                   round(cand.entropy, 6), "valid_share": round(cand.valid_share, 4), "file": f"{stem}.nc",
                   "overlay": f"{stem}.png"}
            index.append(row)
            features.append({"type": "Feature", "properties": row,
                             "geometry": _footprint(product.grid, r0, r0 + SUBTILE, c0, c0 + SUBTILE)})
        with open(temps[-2], "w", newline="") as fh:
            writer = csv.DictWriter(fh, list(index[0]))
            writer.writeheader()
            writer.writerows(index)
        Path(temps[-1]).write_text(json.dumps({"type": "FeatureCollection", "features": features}, indent=1))
    log.info("%s: %d sub-tiles ranked by mean entropy; the %d most uncertain written to %s", product.id,
             len(ranked), len(chosen), outdir)
    return index


def _channel_codes(card) -> np.ndarray:
    """Output channel -> KappaSet label: its class's code, 0 for an undefined channel, 5 for a missing one."""
    codes = ENCODINGS[KAPPASET_ENCODING]
    return np.array([0 if c.name.upper() == "UNDEFINED" else codes[CLASS_BY_NAME[c.maps_to].value]
                     for c in sorted(card.outputs, key=lambda c: c.index)], np.uint8)


def _write_subtile(path, band_names, bands, label, product, origin, rank, cand) -> None:
    import xarray as xr

    ds = xr.Dataset({name: (("y", "x"), bands[i]) for i, name in enumerate(band_names)})
    ds["Label"] = (("y", "x"), label)
    ds.attrs.update(product=product.id, row_offset=int(origin[0]), col_offset=int(origin[1]), rank=int(rank),
                    entropy_bits=float(cand.entropy), bands_units="DN / 65535",
                    label="pre-label from the model (0 undefined, 1 clear, 2 cloud shadow, 3 semi-transparent "
                          "cloud, 4 cloud, 5 missing); correct it and keep the variable name Label")
    try:
        ds.to_netcdf(path, engine="h5netcdf")
    except ImportError:
        raise InputError("writing KappaSet netCDF sub-tiles needs h5netcdf: pip install 'kappamask[kappaset]'") from None


def _write_overlay(path, product, classes, window) -> None:
    """The prediction half-transparent over true colour, as the papers' labellers saw it."""
    from PIL import Image

    r0, r1, c0, c1 = window
    rgb = true_colour(product, window)
    labels = class_image(classes[r0:r1, c0:c1])
    base = np.zeros_like(labels) if rgb is None else np.asarray(
        Image.fromarray(rgb).resize((labels.shape[1], labels.shape[0]), Image.Resampling.BILINEAR))
    blended = (0.5 * base + 0.5 * labels).astype(np.uint8)
    Image.fromarray(blended).save(path, format="PNG")


def _footprint(grid, r0, r1, c0, c1) -> dict:
    ring = [grid.transform @ (c, r) for c, r in ((c0, r0), (c1, r0), (c1, r1), (c0, r1), (c0, r0))]
    geometry = {"type": "Polygon", "coordinates": [ring]}
    if grid.crs is not None:
        from rasterio.warp import transform_geom

        geometry = transform_geom(grid.crs, "EPSG:4326", geometry)
    return geometry
