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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ..foundation.errors import BandsError, InputError, ModelError
from ..foundation.stages import Stages
from ..foundation.types import PathLike, ProductSource
from ..io.product import Product
from ..io.readers import open_product
from ..models.cards import ModelCard
from ..models.resolve import Model, ModelSpec, check_made_for, resolve_card, resolve_model
from ..models.runners import Runner, RunnerCache, choose_providers, open_runner
from ..models.variants import with_precision
from .options import ClassifyOptions
from .plan import TilePlan, memory_needed, plan_tiles
from .preview import RGB_BANDS

OFFSET_RANGE = (-2000.0, 0.0)
# A run whose own data (memory_needed: strips, stitcher, map) stay under this makes the network's session while
# its first strip is read. A larger run makes it first: the session's memory while it is made and the first strips
# would add up (KappaMask v2 on a full product: 190 MiB more at the peak of the first strips in one measurement,
# where repeated runs vary by about 75 MiB), and the second or so it would save is nothing in a run that long.
SESSION_BESIDE_READING_BYTES = 512 * 2**20  # Sentinel-2's DN offsets: -1000 from processing baseline 04.00 on, 0 before


@dataclass
class Job:
    """One product, the model that runs on it and how: what :func:`prepare` made."""

    product: Product
    model: Model  # the model that runs: a reduced-precision variant in its network's place, or a lookup
    session: "Runner | Future[Runner] | None"  # the runner, or its making under way; None for lookup models
    options: ClassifyOptions
    plan: TilePlan | None  # None for lookup models
    asked: Model  # the model as resolved, before the precision was chosen (its note: auto's fallback)
    started: float = field(default_factory=time.perf_counter)
    verified: bool = False
    stages: Stages = field(default_factory=Stages)  # where the job's time goes (see benchmarks/run.py --profile)

    def announce(self) -> None:
        """Say, once each, why the model that runs is not the one asked for (auto's fallback, a variant)."""
        for model in (self.asked, self.model):
            model.announce()

    @property
    def card(self) -> ModelCard:
        return self.model.card

    @property
    def runner(self) -> Runner | None:
        """The model's runner (None for lookup models), waiting for its session where it is still being made."""
        if isinstance(self.session, Future):
            self.session = self.session.result()
        return self.session

    def network_runner(self) -> Runner:
        """The runner of a network's job (what :func:`kappamask_core.chain.pipeline.execute` runs tiles through)."""
        runner = self.runner
        if runner is None:
            raise ModelError(f"model {self.card.id} is not a network: it has no session to run tiles through")
        return runner

    def verify(self) -> None:
        """Check the band files the job reads against the product's manifest (MD5), once, before any pixel is used;
        a batch that finds a product's outputs complete skips this reading."""
        if not self.verified:
            self.product.verify(set(self.card.bands) | set(RGB_BANDS))
            self.verified = True


def check_compatible(product: Product, card: ModelCard) -> None:
    """The product can be classified by ``card``: its sensor, its level, its bands, and offsets a product of its
    sensor can have."""
    sensor = product.sensor_info
    check_made_for(card, sensor.id, f"{product.source or product.id}: ")
    low, high = OFFSET_RANGE if sensor.id == "sentinel-2" else sensor.offset_range
    for name in card.bands:
        offset = product.offsets.get(name, 0.0)
        if not (isinstance(offset, (int, float)) and low <= offset <= high):
            if sensor.id != "sentinel-2":
                raise InputError(f"{product.source or product.id}: band {sensor.label(name)} has the DN offset "
                                 f"{offset!r}, outside the {low:g} to {high:g} that {sensor.title} products declare: "
                                 "it would shift every value")
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


def running_model(model: Model, options: ClassifyOptions) -> Model:
    """The model that runs at the options' precision on their device (a faithful variant in the network's place)."""
    return with_precision(model, options.precision, choose_providers(options.device) == ["CPUExecutionProvider"])


def open_session(model: Model, options: ClassifyOptions, runners: RunnerCache | None = None,
                 stages: Stages | None = None) -> Runner:
    """The runner of ``model`` on the options' device (from ``runners`` when given: a batch or a process shares
    one session per model and settings)."""
    settings = (options.device, options.threads, options.batch_size, options.precision == "fp16")
    with (stages or Stages())("session"):
        return runners.get(model, *settings) if runners is not None else open_runner(model, *settings)


def _in_background(make, *args) -> Future:
    """``make(*args)`` started in a thread of its own, which ends with it."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kappamask-session")
    future = pool.submit(make, *args)
    pool.shutdown(wait=False)  # the thread ends when the task does; nothing else is queued
    return future


def prepare(source: ProductSource, model: ModelSpec = "auto", *, level: str | None = None, units: str = "dn",
            weights: PathLike | None = None,
            options: ClassifyOptions | None = None, runners: RunnerCache | None = None,
            session: bool = True, sensor: str | None = None) -> Job:
    """The :class:`Job` for ``source`` (anything :func:`kappamask_core.io.open_product` opens, or a
    :class:`~kappamask_core.io.product.Product`) and ``model`` (a name, card, path or a resolved
    :class:`~kappamask_core.models.resolve.Model`). ``runners`` shares sessions (a batch, a process);
    ``session=False`` plans the network's tiles without making one (for reading the tiles alone)."""
    options = options or ClassifyOptions()
    started, started_cpu, stages = time.perf_counter(), time.thread_time(), Stages()
    product = open_product(source, level=level, units=units, sensor=sensor)
    # the product and the model's card first: a user who gave the wrong bands hears that before anything of weights
    card = (model.card if isinstance(model, Model) else
            resolve_card(model, product.level or level, product.bands, sensor=product.sensor))
    check_compatible(product, card)
    resolved = resolve_model(model, product.level or level, product.bands, weights, announce=False,
                             sensor=product.sensor)
    if resolved.lookup:
        job = Job(product, resolved, None, options, None, resolved, started, stages=stages)
    elif not session:
        job = Job(product, resolved, None, options, plan_tiles(product, resolved.card, options), resolved, started,
                  stages=stages)
    else:
        running = running_model(resolved, options)
        plan = plan_tiles(product, running.card, options)
        if memory_needed(plan, running.card, product.grid, options) <= SESSION_BESIDE_READING_BYTES:
            # made (ONNX Runtime's optimisation, OpenVINO's compilation) while the first strip is read: off the run's
            # critical path; an error in it is raised when the runner is first used
            making: Runner | Future[Runner] = _in_background(open_session, running, options, runners, stages)
        else:
            making = open_session(running, options, runners, stages)
        job = Job(product, running, making, options, plan, resolved, started, stages=stages)
    stages.add("open product and model", time.perf_counter() - started, time.thread_time() - started_cpu)
    return job
