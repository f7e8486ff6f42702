"""The one place where a model name becomes a model that can run.

:func:`resolve_model` takes a built-in id (``kappamask models list``), an alias resolved by the product level
(``default``, ``kappamask-v2``, ...), ``auto``, a card ``.json`` path, an ``.onnx`` path with its card beside it,
or a :class:`~kappamask_core.models.cards.ModelCard`, and returns a :class:`Model`: the card and its ONNX file,
verified against the card's sha256, wherever it came from (an explicit file or URL, the package that ships
it, the user's weights folder, a download, or KappaZeta's official Keras file converted on first use; see
:mod:`kappamask_core.models.weights`). Lookup models (the product's own mask, e.g. Sen2Cor's SCL) have no file.

``auto`` is KappaMask v2 for the product's level where its weights are installed or can be fetched and the
input has its bands, otherwise the bundled offline model, said in one warning line (why, and how to get
KappaMask).

:func:`with_precision` then decides the arithmetic: a reduced-precision variant of the network (made by
``kappamask models quantize``, :mod:`kappamask_core.learning.quantize`) runs in its place on CPUs when it
was made from exactly these weights and passed its check against them; ``fp32`` always runs the network
as published.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..foundation.errors import ModelError
from ..io.files import sha256_file
from .cards import ALIASES, AUTO, ModelCard, installed_card, load_card, weights_dir
from .weights import MIRROR_ENV, locate_model, offline

log = logging.getLogger(__name__)

AUTO_FIRST_CHOICE = "kappamask-v2"
FALLBACK = "default"
# auto: a faithful reduced-precision variant on CPUs, else the network as published; fp32: always as published;
# int8 / bf16: that variant (an explicit request runs it even when it failed its check, with a warning)
PRECISIONS = ("auto", "fp32", "int8", "bf16")
VARIANT_PRECISIONS = ("int8", "bf16")  # the order in which auto tries the faithful ones


@dataclass(frozen=True, eq=False)
class Model:
    """A model ready to run: its card and its verified ONNX file (None for a lookup model)."""

    card: ModelCard
    path: Path | None
    note: str | None = None  # what a user must hear when it runs (why 'auto' fell back to the offline model)
    _said: list = field(default_factory=list, repr=False)

    @property
    def lookup(self) -> bool:
        """True for a model that looks up a mask the product carries (no network to run)."""
        return self.card.scheme is not None

    def announce(self) -> None:
        """Log the note, once for this model: a batch that skips finished products says nothing it need not."""
        if self.note and not self._said:
            self._said.append(True)
            log.warning(self.note)


def _check_level(text: str, level: str | None) -> str:
    if level is None:
        raise ModelError(f"model {text!r} depends on the product level; give the level (L1C or L2A)")
    level = level.upper()
    if level not in ("L1C", "L2A"):
        raise ModelError(f"level must be L1C or L2A, not {level!r}")
    return level


def resolve_card(model: str | os.PathLike | ModelCard = AUTO, level: str | None = None, bands=None) -> ModelCard:
    """The card of ``model`` (see the module text). For ``auto`` this decides which model runs, which may look
    for, download and convert KappaMask's weights; every other name gives its card without touching weights."""
    if isinstance(model, ModelCard):
        return model
    if isinstance(model, Model):
        return model.card
    text = str(model)
    if text.endswith(".onnx"):
        return _card_beside(Path(text))
    if text.endswith(".json") or os.sep in text:
        return load_card(text)
    if text == AUTO:
        return resolve_model(AUTO, level, bands).card
    if text in ALIASES:
        return installed_card(ALIASES[text][_check_level(text, level)])
    return installed_card(text)


def resolve_model(model: str | os.PathLike | ModelCard | Model = AUTO, level: str | None = None, bands=None,
                  weights=None, fetch: bool = True, announce: bool = True) -> Model:
    """``model`` as a :class:`Model` whose ONNX file has been found and verified (see the module text).

    ``weights`` (a path or an http(s) URL) overrides where the card's file is looked for. Without ``fetch`` no
    official file is downloaded. With ``announce`` false, ``auto``'s note is left for :meth:`Model.announce`
    (when the model really runs).
    """
    if isinstance(model, Model):
        return model
    if str(model) == AUTO and weights is None:
        chosen = choose_auto(_check_level(AUTO, level), bands)
        if announce:
            chosen.announce()
        return chosen
    card = resolve_card(model, level, bands)
    if card.scheme is not None:
        return Model(card, None)
    if weights is None and str(model).endswith(".onnx"):
        weights = model
    card, path = locate_model(card, weights, fetch)
    return Model(card, path)


def _card_beside(path: Path) -> ModelCard:
    card = path.with_suffix(".json")
    if not card.is_file():
        raise ModelError(f"{path}: an ONNX model needs its card beside it ({card.name}); write one (see the cards "
                         "in kappamask_core/models/cards/) or pass the card instead")
    return load_card(card)


_AUTO_CHOICES: dict = {}


def choose_auto(level: str, bands=None) -> Model:
    """KappaMask v2 for ``level`` if its weights are installed or can be fetched and ``bands`` has its inputs;
    otherwise the bundled offline model, whose note says why and how to get KappaMask (announced once).

    The choice is made once per process for each level, band set and setting.
    """
    key = (level, None if bands is None else tuple(sorted(bands)), offline(), str(weights_dir()),
           os.environ.get(MIRROR_ENV))
    if key not in _AUTO_CHOICES:
        _AUTO_CHOICES[key] = _choose_auto(level, bands)
    return _AUTO_CHOICES[key]


def _choose_auto(level: str, bands) -> Model:
    kappamask = installed_card(ALIASES[AUTO_FIRST_CHOICE][level])
    missing = [b for b in kappamask.bands if bands is not None and b not in bands]
    if missing:
        reason = f"the input lacks its band(s) {', '.join(missing)}"
    else:
        try:
            card, path = locate_model(kappamask)
        except ModelError as exc:
            reason = str(exc).rstrip(".")
        else:
            log.info("model auto: %s (%s)", card.id, card.name)
            if not card.trained:
                log.warning("model auto: the installed %s weights are marked untrained; its classes mean nothing",
                            card.id)
            return Model(card, path)
    fallback = installed_card(ALIASES[FALLBACK][level])
    note = (f"KappaMask v2 is not available: {reason}. Running the bundled offline model {fallback.id} instead; it "
            "has no semi-transparent cloud class, so class 3 will not appear.")
    return Model(*locate_model(fallback), note=note)


def variant_card_name(card_id: str, precision: str) -> str:
    """The file name of a variant's card (its ONNX file is named alike)."""
    return f"{card_id}-{precision}.json"


def variant_folders(card: ModelCard) -> list[Path]:
    """Where the variants of ``card``'s network are looked for: beside its card, then in the weights folder."""
    folders = [] if card.source.startswith("<") else [Path(card.source).parent]
    return folders + [weights_dir()]


def variants_of(card: ModelCard) -> list[ModelCard]:
    """The variant cards made for ``card`` (any weights), beside it or in the weights folder, for listing."""
    found = []
    for folder in variant_folders(card):
        for precision in VARIANT_PRECISIONS:
            path = folder / variant_card_name(card.id, precision)
            if path.is_file() and all(Path(v.source) != path for v in found):
                try:
                    found.append(load_card(path))
                except ModelError as exc:
                    log.warning("%s", exc)
    return found


_VARIANTS: dict = {}


def find_variant(model: Model, precision: str) -> Model | None:
    """The ``precision`` variant of ``model``'s network, made from exactly its weights file; None if there is none.

    A variant whose parent weights differ (the network was re-imported or retrained since) is passed over."""
    if model.path is None:
        return None
    parent_sha = sha256_file(model.path)
    for folder in variant_folders(model.card):
        path = folder / variant_card_name(model.card.id, precision)
        if not path.is_file():
            continue
        card = load_card(path)
        if card.variant.get("parent", {}).get("weights_sha256") != parent_sha:
            log.info("%s: made from other weights than %s; not used", path, model.path)
            continue
        key = (card.source, card.sha256)
        if key not in _VARIANTS:
            check = card.variant["check"]
            note = (f"model {model.card.id}: running its {precision} variant {card.id} (agrees with the network on "
                    f"{100 * check['agreement']:.2f} % of the valid pixels of its check; --precision fp32 runs the "
                    "network as published)")
            if not card.faithful:
                note = (f"model {model.card.id}: running its {precision} variant {card.id}, which FAILED its check "
                        f"(agreement {100 * check['agreement']:.2f} %), because it was asked for")
            _, onnx = locate_model(card)
            _VARIANTS[key] = Model(card, onnx, note=note)
        return _VARIANTS[key]
    return None


@functools.cache  # the answer does not change while the process runs; asking OpenVINO's plugin costs 0.1 s
def bf16_cpu() -> str | None:
    """Why this machine cannot run bf16 variants as they were checked, or None: OpenVINO must be installed and
    the CPU must have bfloat16 arithmetic (AVX-512 BF16 or AMX; elsewhere OpenVINO silently computes in float32,
    which is exact but no faster)."""
    try:
        import openvino
    except ImportError:
        return "OpenVINO is not installed (pip install 'kappamask[openvino]')"
    try:
        capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception as exc:  # no CPU plugin: a broken installation
        return f"OpenVINO has no CPU plugin here ({exc})"
    return None if "BF16" in capabilities else "this CPU has no bfloat16 arithmetic"


_PASSED_OVER: set = set()


def runnable_here(card: ModelCard) -> bool:
    """Whether ``auto`` may run this variant here; says once why not."""
    if card.engine != "openvino":
        return True
    why = bf16_cpu()
    if why and card.id not in _PASSED_OVER:
        _PASSED_OVER.add(card.id)
        log.info("%s: not used: %s", card.id, why)
    return why is None


def with_precision(model: Model, precision: str = "auto", cpu: bool = True) -> Model:
    """The model that runs for ``model`` at ``precision`` (:data:`PRECISIONS`) on a CPU (``cpu``) or a GPU.

    ``auto`` takes a faithful variant on CPUs (int8 arithmetic is what CPUs speed up) and never one that
    failed its check; a variant named directly as the model runs as it is."""
    if precision not in PRECISIONS:
        raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if model.lookup or model.card.variant or precision == "fp32":
        if model.card.variant and precision == "fp32":
            raise ModelError(f"model {model.card.id} is a {model.card.precision} variant; for the network as "
                             f"published run its parent {model.card.variant['parent']['id']}")
        return model
    if precision == "auto":
        if not cpu:
            return model
        for candidate in VARIANT_PRECISIONS:
            variant = find_variant(model, candidate)
            if variant is not None and variant.card.faithful and runnable_here(variant.card):
                return variant
        return model
    variant = find_variant(model, precision)
    if variant is None:
        raise ModelError(f"model {model.card.id} has no {precision} variant beside its card or in {weights_dir()}; "
                         f"make one: kappamask models quantize {model.card.id} --precision {precision}")
    why = bf16_cpu() if variant.card.engine == "openvino" else None
    if why and why.startswith("OpenVINO"):  # a CPU without bf16 still runs it (in float32, exactly)
        raise ModelError(f"the {precision} variant of {model.card.id} runs on OpenVINO: {why}")
    return variant
