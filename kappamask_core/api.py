"""Batch use: classify inputs and write COG + quicklook (+ STAC) per product."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from .cards import resolve_card
from .errors import InputError
from .infer import OnnxRunner
from .pipeline import ClassifyOptions, make_runner, run
from .readers import open_product
from .writers import write_cog, write_quicklook

log = logging.getLogger(__name__)

DEMO_DATA = Path(__file__).parent / "demo_data"


def safe_name(product_id: str) -> str:
    return re.sub(r"[^0-9A-Za-z._-]+", "_", product_id).strip("_") or "product"


def classify_to_files(inputs, outdir, *, model="auto", weights=None, level=None, options=None,
                      encoding="kappamask", stac=True) -> list[dict]:
    """Classify each input and write ``<id>_kappamask.tif`` / ``.png`` (and STAC) into ``outdir``.

    One ONNX session is shared by all inputs that resolve to the same card.
    Returns, per input, the paths written.
    """
    options = options or ClassifyOptions()
    outdir = Path(outdir)
    runners: dict[str, OnnxRunner] = {}
    results, written = [], []
    for source in inputs:
        product = open_product(source, level=level)
        card = resolve_card(model, product.level or level, product.bands)
        if card.scheme is None and card.source not in runners:  # lookup cards (SCL) need no session
            runners[card.source] = make_runner(card, weights, options)
        runner = runners.get(card.source)
        card = runner.card if runner is not None else card
        result = run(product, card, options=options, runner=runner)
        name = safe_name(product.id)
        model_tags = {"model": card.id, "model_name": card.name, "model_trained": str(card.trained).lower()}
        paths = {
            "cog": write_cog(outdir / f"{name}_kappamask.tif", result.classes, result.grid, encoding, model_tags),
            "quicklook": write_quicklook(outdir / f"{name}_kappamask.png", result.classes, result.preview,
                                         f"{product.id}  model: {card.name}", card.predicts),
        }
        if options.scores:
            from .writers import write_scores

            paths["scores"] = write_scores(outdir / f"{name}_scores.tif", result.scores, result.grid)
        pct = result.class_percentages()
        log.info("%s: %s (%.1f s)", product.id, ", ".join(f"{k} {v:.1f}%" for k, v in pct.items() if k != "missing"),
                 result.timings["total_s"])
        results.append((result, paths, source))
        written.append(paths)
    if stac:
        try:
            from stac_ext.writer import write_stac
        except ImportError as exc:  # pragma: no cover - stac_ext ships with the package
            raise InputError(f"STAC output needs the stac_ext package: {exc}") from None
        for paths, item_path in zip(written, write_stac(results, outdir, encoding=encoding)):
            paths["stac_item"] = item_path
    return written
