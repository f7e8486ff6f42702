"""Making a reduced-precision variant of a model from real products: ``kappamask models quantize`` and
:func:`make_variant`.

The products are opened and planned as a run plans them (:func:`kappamask_core.chain.job.prepare`), their
tiles sampled (:func:`sample_tiles`), and the variant made, checked and written by
:func:`kappamask_core.models.quantize.build_variant`.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterable
from pathlib import Path

from ..chain.job import prepare
from ..chain.options import ClassifyOptions
from ..chain.strips import model_tiles
from ..foundation.errors import InputError
from ..foundation.types import PathLike, ProductSource
from ..io.files import writable_folder
from ..io.readers import DEMO_DATA
from ..models.folders import weights_dir
from ..models.quantize import VariantResult, build_variant
from ..models.resolve import ModelSpec, resolve_model
from ..models.variants import VARIANT_PRECISIONS, bf16_cpu

log = logging.getLogger(__name__)

MAX_TILES = 32  # tiles kept for calibration, and for the check (a random sample of larger products)


def sample_tiles(sources, model, limit: int, seed: int = 0, level: str | None = None) -> list[tuple[str, int, tuple]]:
    """Up to ``limit`` tiles of ``sources`` as ``model``'s network sees them (a uniform random sample, in reading
    order): (product, index, (tile, valid))."""
    rng = random.Random(seed)
    kept: list = []
    seen = 0
    options = ClassifyOptions()
    for source in sources:
        job = prepare(source, model, level=level, options=options, session=False)  # the tiles; no session
        if job.plan is None:
            raise InputError(f"model {job.card.id} looks up the product's own mask; it has no network tiles")
        job.verify()
        for tile in model_tiles(job.card, job.plan, options.resampling):
            if len(kept) < limit:
                kept.append((seen, job.product.id, tile))
            else:  # reservoir sampling: every tile equally likely to stay, without holding them all
                j = rng.randrange(seen + 1)
                if j < limit:
                    kept[j] = (seen, job.product.id, tile)
            seen += 1
    kept.sort(key=lambda item: item[0])
    return [(name, index, tile) for index, name, tile in kept]


def default_calibration(card) -> list:
    if "L1C" in card.levels:
        return [DEMO_DATA]
    raise InputError(f"model {card.id} takes {'/'.join(card.levels)} products and the bundled demo scene is L1C: "
                     "name real products of that level to calibrate on (--calibrate PRODUCT)")


def _named(source):
    return str(Path(source).resolve()) if isinstance(source, (str, os.PathLike)) else id(source)


def make_variant(model: ModelSpec, precision: str = "int8", *, level: str | None = None,
                 calibrate: Iterable[ProductSource] | None = None, check: Iterable[ProductSource] | None = None,
                 output: PathLike | None = None, keep_failed: bool = False, max_tiles: int = MAX_TILES, seed: int = 0,
                 progress: bool = False) -> VariantResult:
    """Make, check and (when faithful, or ``keep_failed``) write the ``precision`` variant of ``model``.

    ``calibrate`` and ``check`` are lists of products (anything :func:`kappamask_core.classify` reads);
    ``output`` is the folder for the variant (default: the weights folder, where ``auto`` finds it). Every
    argument is checked before a tile is read. ``progress``: bars on stderr while it calibrates and checks.
    """
    if precision not in VARIANT_PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(VARIANT_PRECISIONS)}, not {precision!r}")
    parent = resolve_model(model, level)
    card = parent.card
    if parent.lookup:
        raise InputError(f"model {card.id} looks up the product's own mask; it has no network to quantise")
    if card.variant:
        raise InputError(f"model {card.id} is already a {card.precision} variant of {card.variant['parent']['id']}; "
                         "quantise its parent")
    if precision == "bf16":
        why = bf16_cpu()
        if why:
            raise InputError(f"cannot make a bf16 variant here: {why}; its check would prove nothing")
    calibrate = list(calibrate or default_calibration(card))
    folder = writable_folder(output) if output else weights_dir()  # a file in the way: one line, before any work
    if {_named(c) for c in calibrate} & {_named(c) for c in (check or [])} and precision == "int8":
        raise InputError("a product is named both to calibrate and to check the variant; the check would grade the "
                         "variant on its own calibration tiles: name other products for --check (or leave it out, "
                         "and the tiles alternate)")
    if precision == "bf16":  # nothing to calibrate: every tile checks
        calibration, checking = [], sample_tiles(list(check or calibrate), parent, max_tiles, seed + 1, level)
        how = "named check products" if check else "tiles of the products named (nothing is calibrated for bf16)"
    elif check:
        calibration = sample_tiles(calibrate, parent, max_tiles, seed, level)
        checking = sample_tiles(list(check), parent, max_tiles, seed + 1, level)
        how = "named check products"
    else:
        tiles = sample_tiles(calibrate, parent, 2 * max_tiles, seed, level)
        calibration, checking = tiles[0::2], tiles[1::2]
        how = "alternate tiles of the calibration products (even: calibration, odd: check)"
    if (precision == "int8" and not calibration) or not checking:
        raise InputError(f"{len(calibration) + len(checking)} tile(s) with data: calibration and check need at least "
                         "one each; name more or larger products")
    log.info("%s: calibrating on %d tiles, checking on %d", card.id, len(calibration), len(checking))
    return build_variant(parent, precision, calibration, checking, how, folder, keep_failed, progress)
