"""A prepared job: everything a run needs, done once, in one place, before any pixel is classified.

:func:`prepare` opens the product, resolves the model for the product's level and bands (``auto`` may look for,
download and convert KappaMask's weights), checks that the two fit (level, bands, offsets), chooses the
arithmetic (:func:`kappamask_core.models.variants.with_precision`), makes or reuses the runner and plans the tiles
and the memory; the band files are checked against the product's manifest when the job starts reading
(:meth:`Job.verify`). Every face (the Python API, the command line, a
batch, data cubes and the openEO UDF, active learning, variant making) builds a :class:`Job` this way and hands it
to :func:`kappamask_core.chain.pipeline.execute`; none repeats these steps, and nothing is checked twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..foundation.errors import BandsError, InputError
from ..foundation.types import PathLike, ProductSource
from ..io.product import Product
from ..io.readers import open_product
from ..models.cards import ModelCard
from ..models.resolve import Model, ModelSpec, resolve_card, resolve_model
from ..models.runners import Runner, RunnerCache, choose_providers, open_runner
from ..models.variants import with_precision
from .options import ClassifyOptions
from .plan import TilePlan, plan_tiles
from .preview import RGB_BANDS

OFFSET_RANGE = (-2000.0, 0.0)  # Sentinel-2's DN offsets: -1000 from processing baseline 04.00 on, 0 before


@dataclass
class Job:
    """One product, the model that runs on it and how: what :func:`prepare` made."""

    product: Product
    model: Model  # the model that runs: a reduced-precision variant in its network's place, or a lookup
    runner: Runner | None  # None for lookup models (the product's own mask)
    options: ClassifyOptions
    plan: TilePlan | None  # None for lookup models
    asked: Model  # the model as resolved, before the precision was chosen (its note: auto's fallback)
    started: float = field(default_factory=time.perf_counter)
    verified: bool = False

    def announce(self) -> None:
        """Say, once each, why the model that runs is not the one asked for (auto's fallback, a variant)."""
        for model in (self.asked, self.model):
            model.announce()

    @property
    def card(self) -> ModelCard:
        return self.model.card

    def verify(self) -> None:
        """Check the band files the job reads against the product's manifest (MD5), once, before any pixel is used;
        a batch that finds a product's outputs complete skips this reading."""
        if not self.verified:
            self.product.verify(set(self.card.bands) | set(RGB_BANDS))
            self.verified = True


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


def runner_for(model: Model, options: ClassifyOptions, runners: RunnerCache | None = None) -> tuple[Model, Runner]:
    """The model that runs at the options' precision on their device, and its runner (from ``runners`` when
    given: a batch or a process shares one session per model and settings)."""
    cpu = choose_providers(options.device) == ["CPUExecutionProvider"]
    model = with_precision(model, options.precision, cpu)
    settings = (options.device, options.threads, options.batch_size, options.precision == "fp16")
    runner = runners.get(model, *settings) if runners is not None else open_runner(model, *settings)
    return model, runner


def prepare(source: ProductSource, model: ModelSpec = "auto", *, level: str | None = None, units: str = "dn",
            weights: PathLike | None = None,
            options: ClassifyOptions | None = None, runners: RunnerCache | None = None,
            session: bool = True) -> Job:
    """The :class:`Job` for ``source`` (anything :func:`kappamask_core.io.open_product` opens, or a
    :class:`~kappamask_core.io.product.Product`) and ``model`` (a name, card, path or a resolved
    :class:`~kappamask_core.models.resolve.Model`). ``runners`` shares sessions (a batch, a process);
    ``session=False`` plans the network's tiles without making one (for reading the tiles alone)."""
    options = options or ClassifyOptions()
    started = time.perf_counter()
    product = open_product(source, level=level, units=units)
    # the product and the model's card first: a user who gave the wrong bands hears that before anything of weights
    card = model.card if isinstance(model, Model) else resolve_card(model, product.level or level, product.bands)
    check_compatible(product, card)
    resolved = resolve_model(model, product.level or level, product.bands, weights, announce=False)
    if resolved.lookup:
        return Job(product, resolved, None, options, None, resolved, started)
    if not session:
        return Job(product, resolved, None, options, plan_tiles(product, resolved.card, options), resolved, started)
    running, runner = runner_for(resolved, options, runners)
    return Job(product, running, runner, options, plan_tiles(product, running.card, options), resolved, started)
