"""Reduced-precision variants of a network: what they are called, where they are found, when one may run in the
network's place, and how an edited one is told from the one that was made.

A variant (made by ``kappamask models quantize``, :mod:`kappamask_core.models.quantize`) is an ONNX file and a
card named ``<network id>-<precision>``. Its card records its parent (id and weights sha256), how it was made and
its check against the parent, and is **sealed** when it is written: :func:`seal` is the sha256 of the card's
canonical JSON, which names the ONNX file's sha256, so it covers the file's bytes too. A variant is used only when
(:func:`load_variant`) its seal matches, its name, precision and engine agree with one another, and everything
that decides what the network computes (bands, units, value scaling, tiling, outputs, levels) equals its
parent's: a hand edit, a file copied under another name or a card edited to look faithful makes it unusable,
with one line saying why. Whether it is faithful is recomputed from its check figures
(:func:`kappamask_core.models.cards.check_passes`), never read from its card.

:func:`with_precision` decides which model runs: ``auto`` takes a faithful variant on CPUs (int8 first, then
bf16 where the CPU has bfloat16 arithmetic), never one that failed its check; ``fp32`` always runs the network as
published; ``int8`` / ``bf16`` run that variant even when it failed its check, with a warning.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
from pathlib import Path

from ..foundation.errors import ModelError
from ..io.files import sha256_file
from .cards import ModelCard, decisive_differences, load_card
from .folders import weights_dir
from .resolve import Model
from .weights import locate_model

log = logging.getLogger(__name__)

# auto: a faithful variant on CPUs, else the network as published; fp32: always as published; fp16: the network
# computed in float16 (for GPUs); int8 / bf16: that variant (an explicit request runs it even when it failed its check)
PRECISIONS = ("auto", "fp32", "fp16", "int8", "bf16")
VARIANT_PRECISIONS = ("int8", "bf16")  # the order in which auto tries the faithful ones
ENGINES = {"int8": "onnxruntime", "bf16": "openvino"}
FILE_PRECISION = {"int8": "int8", "bf16": "fp32"}  # what the ONNX file holds (a bf16 variant's file is float32)


def variant_card_name(card_id: str, precision: str) -> str:
    """The file name of a variant's card (its ONNX file is named alike)."""
    return f"{card_id}-{precision}.json"


def seal(raw: dict) -> str:
    """The sha256 of a variant card's canonical JSON without its seal (the card names its ONNX file's sha256)."""
    body = copy.deepcopy(raw)
    body.get("variant", {}).pop("seal", None)
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def sealed(raw: dict) -> dict:
    """The card with its seal recorded."""
    raw = copy.deepcopy(raw)
    raw["variant"]["seal"] = seal(raw)
    return raw


def problem(card: ModelCard, parent: ModelCard | None = None, precision: str | None = None) -> str | None:
    """Why the variant card cannot be used, or None: a seal that does not match (edited by hand), a name,
    precision or engine that disagree, or decisive fields that differ from its parent's."""
    variant = card.variant
    if not variant:
        return "it is not a variant card"
    if variant.get("seal") != seal(card.raw):
        return ("its card was changed after it was made (the seal does not match; a hand edit, or a variant made "
                "by a version without seals): make it again with kappamask models quantize")
    kind = variant.get("precision")
    if kind not in VARIANT_PRECISIONS or (precision is not None and kind != precision):
        return f"its card says precision {kind!r}, not {precision!r} as its name says"
    if variant.get("engine") != ENGINES[kind] or card.weights.get("precision") != FILE_PRECISION[kind]:
        return f"its engine {variant.get('engine')!r} or file precision {card.weights.get('precision')!r} is not a {kind} variant's"
    parent_id = variant.get("parent", {}).get("id")
    if card.id != Path(variant_card_name(str(parent_id), kind)).stem:
        return f"its id {card.id!r} is not the {kind} variant name of its parent {parent_id!r}"
    if parent is not None:
        if parent_id != parent.id:
            return f"it was made from {parent_id!r}, not {parent.id!r}"
        differ = decisive_differences(card, parent, ignore=())
        if differ:
            return (f"its {', '.join(differ)} differ from its network's: a variant computes what its network "
                    "computes, with the same bands, scaling, tiling and classes")
    return None


def load_variant(path: Path, parent: ModelCard | None = None, precision: str | None = None) -> ModelCard:
    """The variant card at ``path``, verified (:func:`problem`); a :class:`ModelError` that says why otherwise."""
    card = load_card(path)
    why = problem(card, parent, precision)
    if why:
        raise ModelError(f"{path}: the {precision or 'reduced-precision'} variant cannot be used: {why}")
    return card


def variant_folders(card: ModelCard) -> list[Path]:
    """Where the variants of ``card``'s network are looked for: beside its card, then in the weights folder."""
    folders = [] if card.source.startswith("<") else [Path(card.source).parent]
    return folders + [weights_dir()]


def variants_of(card: ModelCard) -> list[tuple[Path, ModelCard | None, str | None]]:
    """The variant cards made for ``card`` (any weights), beside it or in the weights folder, for listing:
    (path, card or None, why it cannot be used or None)."""
    found: list = []
    for folder in variant_folders(card):
        for precision in VARIANT_PRECISIONS:
            path = folder / variant_card_name(card.id, precision)
            if not path.is_file() or any(p == path for p, _, _ in found):
                continue
            try:
                variant = load_card(path)
            except ModelError as exc:
                found.append((path, None, str(exc)))
                continue
            why = problem(variant, card, precision)
            found.append((path, None if why else variant, why))
    return found


_VARIANTS: dict = {}
_REFUSED: set = set()


def find_variant(model: Model, precision: str, strict: bool = False) -> Model | None:
    """The ``precision`` variant of ``model``'s network, made from exactly its weights file; None if there is none.

    A variant whose parent weights differ (the network was re-imported or retrained since) is passed over; one
    that cannot be used (:func:`problem`) is passed over with a warning, or with ``strict`` is an error."""
    if model.path is None:
        return None
    parent_sha = sha256_file(model.path)
    for folder in variant_folders(model.card):
        path = folder / variant_card_name(model.card.id, precision)
        if not path.is_file():
            continue
        try:
            card = load_variant(path, model.card, precision)
        except ModelError as exc:
            if strict:
                raise
            if str(path) not in _REFUSED:
                _REFUSED.add(str(path))
                log.warning("%s", exc)
            continue
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
    failed its check; a variant named directly as the model runs as it is, once verified."""
    if precision not in PRECISIONS:
        raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if model.card.variant:
        why = problem(model.card)
        if why:
            raise ModelError(f"model {model.card.id} cannot be used: {why}")
    if model.lookup or model.card.variant or precision in ("fp32", "fp16"):
        if model.card.variant and precision in ("fp32", "fp16"):
            raise ModelError(f"model {model.card.id} is a {model.card.precision} variant; for the network "
                             f"{'as published' if precision == 'fp32' else 'in float16'} run its parent "
                             f"{model.card.variant['parent']['id']}")
        return model
    if precision == "auto":
        if not cpu:
            return model
        for candidate in VARIANT_PRECISIONS:
            variant = find_variant(model, candidate)
            if variant is not None and variant.card.faithful and runnable_here(variant.card):
                return variant
        return model
    variant = find_variant(model, precision, strict=True)
    if variant is None:
        raise ModelError(f"model {model.card.id} has no {precision} variant beside its card or in {weights_dir()}; "
                         f"make one: kappamask models quantize {model.card.id} --precision {precision}")
    why = bf16_cpu() if variant.card.engine == "openvino" else None
    if why and why.startswith("OpenVINO"):  # a CPU without bf16 still runs it (in float32, exactly)
        raise ModelError(f"the {precision} variant of {model.card.id} runs on OpenVINO: {why}")
    return variant
