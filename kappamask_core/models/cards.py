"""Model cards: what a model needs as input and what its outputs mean.

A model is an ONNX file plus a card (JSON). The card names the input bands and
their order, the product levels, the input units and per-band value scaling
(MLM ``value_scaling`` vocabulary), the tile size, overlap, padding and working
resolution, and the output channels with the output class each one maps onto.
Cards are validated on load against ``card.schema.json`` and then for
consistency. Weights are found, downloaded, converted and checksummed by
:mod:`kappamask_core.models.weights`; a model name becomes a card and a runnable
model in :mod:`kappamask_core.models.resolve`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..foundation.bands import BAND_BY_NAME, SENSORS
from ..foundation.classes import CLASS_BY_NAME
from ..foundation.errors import ModelError
from ..foundation.schemes import SCHEMES
from .folders import weights_dir

if TYPE_CHECKING:
    import numpy as np

CARD_DIR = Path(__file__).parent / "cards"
SCHEMA_PATH = CARD_DIR / "card.schema.json"

# The default model: KappaMask v2 where its weights can be had, else the bundled offline model.
AUTO = "auto"
# Aliases that resolve to a built-in card by product level.
ALIASES: dict[str, dict[str, str]] = {
    "default": {"L1C": "ukis-csmask-6b-l1c", "L2A": "ukis-csmask-6b-l2a"},
    "ukis-csmask": {"L1C": "ukis-csmask-6b-l1c", "L2A": "ukis-csmask-6b-l2a"},
    "kappamask-v2": {"L1C": "kappamask-v2-l1c", "L2A": "kappamask-v2-l2a"},
    "kappamask-v1": {"L1C": "kappamask-v1-l1c", "L2A": "kappamask-v1-l2a"},
}


# What makes a reduced-precision variant faithful to its network, judged on the check tiles against the network's
# own maps (kappamask_core.models.variants makes and checks variants): the share of valid pixels on which the two
# maps agree, and each class's Dice, for the classes that are not too rare to judge.
MIN_AGREEMENT = 0.995
MIN_DICE = 0.98
MIN_SHARE = 0.001  # a class rarer than this in both maps is reported, not judged


def check_passes(check) -> bool:
    """Whether a variant's recorded check passes: agreement and Dice recomputed against the thresholds above,
    and every class at least :data:`MIN_SHARE` of the network's map among the judged ones."""
    try:
        agreement, dice, judged = float(check["agreement"]), check["dice"], set(check["judged"])
        required = {name for name, share in check["share"].items() if float(share) >= MIN_SHARE}
        return (agreement >= MIN_AGREEMENT and required <= judged
                and all(dice[name] is not None and float(dice[name]) >= MIN_DICE for name in judged))
    except (KeyError, TypeError, ValueError, AttributeError):
        return False


@dataclass(frozen=True)
class OutputChannel:
    """One output channel of a network and the class it maps onto."""

    index: int
    name: str
    maps_to: str  # name of one of the five output classes

    @property
    def value(self) -> int:
        return CLASS_BY_NAME[self.maps_to].value


@dataclass(frozen=True)
class ModelCard:
    """A model card, validated: bands, levels, scaling, tiling, working resolution, outputs and their classes."""

    id: str
    name: str
    version: str
    description: str
    architecture: str
    license: str
    trained: bool
    levels: tuple[str, ...]
    bands: tuple[str, ...]  # roles: Sentinel-2's names of the bands (another sensor's bands fill them, see SENSORS)
    units: str  # "reflectance" or "dn_fraction"
    value_scaling: tuple[dict, ...]
    clip_min: float | None
    layout: str  # "NCHW", "NHWC" or "auto"
    activation: str  # "logits" or "softmax"
    outputs: tuple[OutputChannel, ...]
    tile_size: int
    overlap: int
    margin: int
    pad_mode: str
    resolution: int
    weights: dict
    source: str  # where the card was read from
    scheme: str | None = None  # lookup cards: the class scheme of their single input band
    provenance: dict = field(default_factory=dict)  # imported or trained weights: where they came from
    variant: dict = field(default_factory=dict)  # a reduced-precision variant: its parent, making and check
    sensors: tuple[str, ...] = ("sentinel-2",)  # the sensors whose products the model was made for
    raw: dict = field(repr=False, compare=False, default_factory=dict)

    @property
    def factor(self) -> int:
        """Working pixel size in units of the 10 m grid."""
        return self.resolution // 10

    @property
    def precision(self) -> str:
        """The arithmetic of the weights: 'fp32', 'fp16' (published so), 'int8' (a quantised variant) or 'bf16'
        (a variant run by OpenVINO in bfloat16)."""
        return self.variant.get("precision") or self.weights.get("precision") or "fp32"

    @property
    def engine(self) -> str:
        """What runs the ONNX file: 'onnxruntime', or 'openvino' (bf16 variants: ONNX Runtime has no bf16 CPU
        kernels for these networks)."""
        return self.variant.get("engine") or "onnxruntime"

    @property
    def faithful(self) -> bool:
        """A variant whose recorded check passes the thresholds of this code (:func:`check_passes`; the card's own
        'faithful' flag is not trusted); every exact network is faithful to itself."""
        return not self.variant or check_passes(self.variant.get("check"))

    @property
    def sha256(self) -> str:
        """Checksum of the card's canonical JSON (provenance in STAC items)."""
        text = json.dumps(self.raw, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def class_lut(self) -> "np.ndarray":
        """Array mapping output channel index -> five-class value."""
        import numpy as np

        return np.array([c.value for c in sorted(self.outputs, key=lambda c: c.index)], dtype=np.uint8)

    @property
    def predicts(self) -> tuple[str, ...]:
        if self.scheme:
            values = {v for v in SCHEMES[self.scheme].values() if v < len(CLASS_BY_NAME)}
            return tuple(c for c in CLASS_BY_NAME if CLASS_BY_NAME[c].value in values)
        return tuple(sorted({c.maps_to for c in self.outputs}, key=lambda n: CLASS_BY_NAME[n].value))


# Sentinel-2's coarsest bands are 60 m; a coarser working grid than 10 x that discards the image
MIN_RESOLUTION_M, MAX_RESOLUTION_M = 10, 600
MIN_TILE, MAX_TILE = 4, 4096


def _scaling_problem(rule) -> str | None:
    """Why a per-band scaling rule cannot work (division by zero, non-finite numbers), or None."""
    import math

    if rule is None:
        return None
    needed = {"z-score": ("mean", "stddev"), "min-max": ("minimum", "maximum")}.get(rule.get("type"))
    if needed is None or any(k not in rule for k in needed):
        return f"must be a z-score (mean, stddev), a min-max (minimum, maximum) or null, not {rule}"
    numbers = {k: v for k, v in rule.items() if k != "type"}
    if any(not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) for v in numbers.values()):
        return f"holds a value that is not a finite number ({numbers})"
    if rule.get("type") == "min-max" and rule["maximum"] <= rule["minimum"]:
        return (f"has maximum {rule['maximum']} not above its minimum {rule['minimum']}: the band would be divided by "
                "zero or turned upside down")
    if rule.get("type") == "z-score" and not rule["stddev"] > 0:
        return f"has a standard deviation of {rule['stddev']}; it must be positive"
    return None


@functools.lru_cache(maxsize=1)
def _schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def _not_finite(value, where: str = "") -> str | None:
    """The path of the first number in ``value`` that is not finite (JSON allows NaN and Infinity here), or None."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return where or "(top level)"
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _not_finite(item, f"{where}/{key}" if where else str(key))
        if found:
            return found
    return None


def card_from_dict(data: dict, source: str = "<dict>") -> ModelCard:
    """Validate a card dictionary (schema, then consistency) and build the card."""
    _check_schema(data, source)
    inp, out = data["input"], data["output"]
    tiling = data.get("tiling", {"tile_size": 512, "overlap": 0, "pad_mode": "constant", "resolution": 10})
    bands = tuple(inp["bands"])
    _check_bands(data, bands, source)
    channels = tuple(OutputChannel(c["index"], c["name"], c["maps_to"]) for c in out.get("classes", []))
    indices = sorted(c.index for c in channels)
    if indices != list(range(len(channels))):
        raise ModelError(f"model card {source}: output class indices must be 0..{len(channels) - 1}, got {indices}")
    _check_tiling(tiling, source)
    return ModelCard(
        id=data["id"],
        name=data["name"],
        version=data["version"],
        description=data["description"],
        architecture=data["architecture"],
        license=data["license"],
        trained=data["trained"],
        levels=tuple(data["levels"]),
        bands=bands,
        units=inp["units"],
        value_scaling=tuple(inp["value_scaling"]),
        clip_min=inp.get("clip_min"),
        layout=inp.get("layout", "auto"),
        activation=out.get("activation", "softmax"),
        outputs=channels,
        tile_size=tiling["tile_size"],
        overlap=tiling["overlap"],
        margin=tiling.get("margin", 0),
        pad_mode=tiling["pad_mode"],
        resolution=tiling["resolution"],
        weights=data["weights"],
        source=source,
        raw=data,
        scheme=out.get("scheme"),
        provenance=data.get("provenance", {}),
        variant=data.get("variant", {}),
        sensors=_sensors(data, bands, source),
    )


def _check_schema(data, source: str) -> None:
    """Finite numbers, then the card schema (where jsonschema is installed)."""
    if isinstance(data, dict):
        where = _not_finite(data)
        if where:
            raise ModelError(f"model card {source} holds a number that is not finite at {where}; every number of a "
                             "card must be a finite number")
    try:
        import jsonschema
    except ImportError:  # openEO UDF runtimes lack it: the consistency checks that follow still run
        return
    try:
        jsonschema.validate(data, _schema())
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise ModelError(f"model card {source} is invalid at {where}: {exc.message}") from None


def _check_bands(data: dict, bands: tuple, source: str) -> None:
    """Known bands, each once, with one sound scaling rule each, present in every level the card names."""
    inp, out = data["input"], data["output"]
    unknown = [b for b in bands if b not in BAND_BY_NAME]
    if unknown:
        raise ModelError(f"model card {source} names unknown bands {unknown}")
    twice = sorted({b for b in bands if bands.count(b) > 1})
    if twice:
        raise ModelError(f"model card {source} lists band(s) {', '.join(twice)} more than once")
    for band, rule in zip(bands, inp["value_scaling"]):
        problem = _scaling_problem(rule)
        if problem:
            raise ModelError(f"model card {source}: the value_scaling of {band} {problem}")
    if len(inp["value_scaling"]) != len(bands):
        raise ModelError(
            f"model card {source}: value_scaling has {len(inp['value_scaling'])} entries "
            f"but there are {len(bands)} bands"
        )
    for level in data["levels"]:
        missing = [b for b in bands if level not in BAND_BY_NAME[b].levels]
        if missing:
            raise ModelError(f"model card {source}: level {level} products have no band(s) {missing}")
    if data.get("framework") == "lookup" and (out["scheme"] not in SCHEMES or len(bands) != 1):
        raise ModelError(f"model card {source}: a lookup card needs one band and a scheme of {sorted(SCHEMES)}")


def _sensors(data: dict, bands: tuple, source: str) -> tuple[str, ...]:
    """The sensors a card names (Sentinel-2 where it names none), each known and with a band for every role the
    card needs."""
    sensors = tuple(data.get("sensors") or ("sentinel-2",))
    for sensor in sensors:
        if sensor not in SENSORS:
            raise ModelError(f"model card {source} names the unknown sensor {sensor!r} (known: {', '.join(SENSORS)})")
        lacking = [b for b in bands if b not in SENSORS[sensor].bands.values()]
        if lacking:
            raise ModelError(f"model card {source} names sensor {sensor}, which has no band for {', '.join(lacking)}")
    return sensors


def _check_tiling(tiling: dict, source: str) -> None:
    for key in ("overlap", "margin"):
        if tiling.get(key, 0) >= tiling["tile_size"]:
            raise ModelError(f"model card {source}: {key} {tiling[key]} must be smaller than the tile size")
    stride = tiling["tile_size"] - tiling.get("overlap", 0)
    if stride < tiling["tile_size"] / 4:
        raise ModelError(f"model card {source}: overlap {tiling['overlap']} leaves a stride of {stride} px, less than "
                         f"a quarter of its {tiling['tile_size']} px tiles (each pixel would be inferred more than 16 "
                         f"times); use an overlap of at most {tiling['tile_size'] * 3 // 4}")
    if tiling["resolution"] % 10 or not MIN_RESOLUTION_M <= tiling["resolution"] <= MAX_RESOLUTION_M:
        raise ModelError(f"model card {source}: working resolution {tiling['resolution']} m must be a multiple of "
                         f"10 m from {MIN_RESOLUTION_M} to {MAX_RESOLUTION_M} m")
    if not MIN_TILE <= tiling["tile_size"] <= MAX_TILE:
        raise ModelError(f"model card {source}: tile size {tiling['tile_size']} px must be from {MIN_TILE} to "
                         f"{MAX_TILE} px")


def load_card(path: str | os.PathLike) -> ModelCard:
    """The card in the JSON file ``path``, validated (cached while the file is unchanged)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ModelError(f"model card {path} does not exist") from None
    except OSError as exc:
        raise ModelError(f"cannot read model card {path}: {exc}") from None
    return _load_card(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _load_card(path: str, size: int, mtime_ns: int) -> ModelCard:
    """A card file, parsed and validated once per version of the file (the UDF resolves cards on every call)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read model card {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"model card {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(f"model card {path} is not a JSON object")
    return card_from_dict(data, source=path)


def builtin_ids() -> list[str]:
    """The ids of the cards that ship with the package."""
    return sorted(p.stem for p in CARD_DIR.glob("*.json") if p.name != SCHEMA_PATH.name)


def builtin_card(card_id: str) -> ModelCard:
    """The card shipped with the package (never the user's imported one)."""
    path = CARD_DIR / f"{card_id}.json"
    if not path.is_file() or path == SCHEMA_PATH:
        choices = ", ".join(sorted(ALIASES) + [AUTO] + builtin_ids())
        raise ModelError(f"unknown model {card_id!r}; choose one of: {choices}, or give a card .json path")
    return load_card(path)


# What decides what a network computes from a product: its bands and their scaling, its levels, its tiling and the
# meaning of its outputs. A card derived from another (imported weights, a reduced-precision variant) keeps them.
DECISIVE = ("levels", "input", "output", "tiling")


def decisive_differences(card: ModelCard, reference: ModelCard, ignore=("input.layout",)) -> list[str]:
    """The decisive fields in which ``card`` differs from ``reference`` (``ignore``: sub-fields a derived card may
    set, such as the input layout an imported ONNX graph fixes)."""
    def part(raw, key):
        value = json.loads(json.dumps(raw.get(key)))
        for skipped in ignore:
            top, _, sub = skipped.partition(".")
            if top == key and isinstance(value, dict):
                value.pop(sub, None)
        return value

    return [key for key in DECISIVE if part(card.raw, key) != part(reference.raw, key)]


def installed_card(card_id: str) -> ModelCard:
    """The card for a built-in id: the user's imported card in the weights folder if there is one, else the built-in.

    An imported card keeps the built-in's decisive fields (:data:`DECISIVE`): one edited by hand (other scaling,
    other bands) is refused with one line, never run."""
    builtin = builtin_card(card_id)  # unknown ids fail here, whatever the weights folder holds
    imported = weights_dir() / f"{card_id}.json"
    if not imported.is_file():
        return builtin
    card = load_card(imported)
    differ = decisive_differences(card, builtin)
    if differ or card.id != card_id:
        what = f"its {', '.join(differ)} differ from" if differ else f"its id {card.id!r} is not that of"
        raise ModelError(f"{imported}: {what} the built-in {card_id}: the card was edited after it was imported; "
                         "import the weights again (kappamask models import) or remove the card")
    return card
