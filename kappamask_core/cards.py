"""Model cards: what a model needs as input and what its outputs mean.

A model is an ONNX file plus a card (JSON). The card names the input bands and
their order, the product levels, the input units and per-band value scaling
(MLM ``value_scaling`` vocabulary), the tile size, overlap, padding and working
resolution, and the output channels with the output class each one maps onto.
Cards are validated on load against ``card.schema.json`` and then for
consistency; weights are found, checksummed and checked against the card
(see :mod:`kappamask_core.infer`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema

from .bands import BAND_BY_NAME
from .classes import CLASS_BY_NAME
from .errors import ModelError

CARD_DIR = Path(__file__).parent / "cards"
SCHEMA_PATH = CARD_DIR / "card.schema.json"
WEIGHTS_DIR_ENV = "KAPPAMASK_WEIGHTS_DIR"

# Aliases that resolve to a built-in card by product level.
ALIASES: dict[str, dict[str, str]] = {
    "default": {"L1C": "ukis-csmask-6b-l1c", "L2A": "ukis-csmask-6b-l2a"},
    "ukis-csmask": {"L1C": "ukis-csmask-6b-l1c", "L2A": "ukis-csmask-6b-l2a"},
    "kappamask-v2": {"L1C": "kappamask-v2-l1c", "L2A": "kappamask-v2-l2a"},
    "kappamask-v1": {"L1C": "kappamask-v1-l1c", "L2A": "kappamask-v1-l2a"},
}


@dataclass(frozen=True)
class OutputChannel:
    index: int
    name: str
    maps_to: str  # name of one of the five output classes

    @property
    def value(self) -> int:
        return CLASS_BY_NAME[self.maps_to].value


@dataclass(frozen=True)
class ModelCard:
    id: str
    name: str
    version: str
    description: str
    architecture: str
    license: str
    trained: bool
    levels: tuple[str, ...]
    bands: tuple[str, ...]
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
    raw: dict = field(repr=False, compare=False, default_factory=dict)

    @property
    def factor(self) -> int:
        """Working pixel size in units of the 10 m grid."""
        return self.resolution // 10

    @property
    def sha256(self) -> str:
        """Checksum of the card's canonical JSON (provenance in STAC items)."""
        text = json.dumps(self.raw, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def class_lut(self):
        """Array mapping output channel index -> five-class value."""
        import numpy as np

        return np.array([c.value for c in sorted(self.outputs, key=lambda c: c.index)], dtype=np.uint8)

    @property
    def predicts(self) -> tuple[str, ...]:
        if self.scheme:
            from .schemes import SCHEMES

            values = {v for v in SCHEMES[self.scheme].values() if v < len(CLASS_BY_NAME)}
            return tuple(c for c in CLASS_BY_NAME if CLASS_BY_NAME[c].value in values)
        return tuple(sorted({c.maps_to for c in self.outputs}, key=lambda n: CLASS_BY_NAME[n].value))


@functools.lru_cache(maxsize=1)
def _schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def card_from_dict(data: dict, source: str = "<dict>") -> ModelCard:
    """Validate a card dictionary (schema, then consistency) and build the card."""
    try:
        jsonschema.validate(data, _schema())
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise ModelError(f"model card {source} is invalid at {where}: {exc.message}") from None
    inp, out = data["input"], data["output"]
    lookup = data.get("framework") == "lookup"
    tiling = data.get("tiling", {"tile_size": 512, "overlap": 0, "pad_mode": "constant", "resolution": 10})
    bands = tuple(inp["bands"])
    unknown = [b for b in bands if b not in BAND_BY_NAME]
    if unknown:
        raise ModelError(f"model card {source} names unknown bands {unknown}")
    if len(inp["value_scaling"]) != len(bands):
        raise ModelError(
            f"model card {source}: value_scaling has {len(inp['value_scaling'])} entries "
            f"but there are {len(bands)} bands"
        )
    for level in data["levels"]:
        missing = [b for b in bands if level not in BAND_BY_NAME[b].levels]
        if missing:
            raise ModelError(f"model card {source}: level {level} products have no band(s) {missing}")
    if lookup:
        from .schemes import SCHEMES

        if out["scheme"] not in SCHEMES or len(bands) != 1:
            raise ModelError(f"model card {source}: a lookup card needs one band and a scheme of {sorted(SCHEMES)}")
    channels = tuple(OutputChannel(c["index"], c["name"], c["maps_to"]) for c in out.get("classes", []))
    indices = sorted(c.index for c in channels)
    if indices != list(range(len(channels))):
        raise ModelError(f"model card {source}: output class indices must be 0..{len(channels) - 1}, got {indices}")
    for key in ("overlap", "margin"):
        if tiling.get(key, 0) >= tiling["tile_size"]:
            raise ModelError(f"model card {source}: {key} {tiling[key]} must be smaller than the tile size")
    if tiling["resolution"] % 10:
        raise ModelError(f"model card {source}: working resolution must be a multiple of 10 m")
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
    )


def load_card(path: str | os.PathLike) -> ModelCard:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"model card {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"model card {path} is not valid JSON: {exc}") from None
    return card_from_dict(data, source=str(path))


def builtin_ids() -> list[str]:
    return sorted(p.stem for p in CARD_DIR.glob("*.json") if p.name != SCHEMA_PATH.name)


@functools.lru_cache(maxsize=32)
def builtin_card(card_id: str) -> ModelCard:
    """A built-in card, loaded and validated once per process (the UDF resolves cards on every call)."""
    return _builtin_card(card_id)


def _builtin_card(card_id: str) -> ModelCard:
    path = CARD_DIR / f"{card_id}.json"
    if not path.is_file() or path == SCHEMA_PATH:
        choices = ", ".join(sorted(ALIASES) + builtin_ids())
        raise ModelError(f"unknown model {card_id!r}; choose one of: {choices}, or give a card .json path")
    return load_card(path)


def resolve_card(model: str | os.PathLike | ModelCard = "default", level: str | None = None) -> ModelCard:
    """Find the card for a model id, alias (resolved by level) or card path."""
    if isinstance(model, ModelCard):
        return model
    text = str(model)
    if text.endswith(".json") or os.sep in text:
        return load_card(text)
    if text in ALIASES:
        if level is None:
            raise ModelError(f"model {text!r} depends on the product level; give the level (L1C or L2A)")
        return builtin_card(ALIASES[text][level])
    return builtin_card(text)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    root = os.environ.get("KAPPAMASK_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "kappamask")
    return Path(root)


def download(url: str, sha256: str | None = None) -> Path:
    """Fetch a model file into the cache (atomically) and check its sha256."""
    import tempfile
    import urllib.request

    target = cache_dir() / Path(url.split("?")[0]).name
    if target.is_file() and (sha256 is None or sha256_file(target) == sha256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".download-")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while block := response.read(1 << 20):
                out.write(block)
        if sha256 and sha256_file(tmp) != sha256:
            raise ModelError(f"model downloaded from {url} does not match the sha256 {sha256}")
        os.replace(tmp, target)
    except OSError as exc:
        raise ModelError(f"cannot download model from {url}: {exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _weights_help(card: ModelCard) -> str:
    hint = card.weights.get("help", "")
    return (
        f"model {card.id!r} needs its ONNX weights file ({card.weights.get('file')}), which is not installed. "
        f"{hint} Pass it with --weights FILE (Python: weights=...), or put it in the folder named by "
        f"${WEIGHTS_DIR_ENV}."
    ).strip()


def locate_weights(card: ModelCard, weights: str | os.PathLike | None = None, verify: bool = True) -> Path:
    """Return the path of the card's ONNX file, checked against its sha256.

    Where to look, in order: the explicit ``weights`` argument (a path or an
    http(s) URL), the installed Python package that ships the file, the card's
    ``path`` relative to the card, ``$KAPPAMASK_WEIGHTS_DIR/<file>``, and the
    card's ``url`` (downloaded once into the cache).
    """
    spec = card.weights
    if weights is not None:
        path = download(str(weights), spec.get("sha256")) if str(weights).startswith(("http://", "https://")) \
            else Path(weights)
        if not path.is_file():
            raise ModelError(f"weights file {weights} does not exist")
        return _verified(path, card, verify)
    candidates: list[Path] = []
    if spec.get("package"):
        found = importlib.util.find_spec(spec["package"])
        if found is not None and found.submodule_search_locations:
            candidates.append(Path(list(found.submodule_search_locations)[0]) / spec["file"])
    if spec.get("path"):
        base = Path(card.source).parent if not card.source.startswith("<") else Path.cwd()
        candidates.append(base / spec["path"])
    if os.environ.get(WEIGHTS_DIR_ENV) and spec.get("file"):
        candidates.append(Path(os.environ[WEIGHTS_DIR_ENV]) / spec["file"])
    for path in candidates:
        if path.is_file():
            return _verified(path, card, verify)
    if spec.get("url"):
        return _verified(download(spec["url"], spec.get("sha256")), card, verify)
    if spec.get("package"):
        raise ModelError(
            f"model {card.id!r} is shipped by the Python package {spec['package']!r}, which is not installed; "
            f"run: pip install {spec['package'].replace('_', '-')} (or set ${WEIGHTS_DIR_ENV} to a folder "
            f"holding {spec['file']})"
        )
    raise ModelError(_weights_help(card))


def _verified(path: Path, card: ModelCard, verify: bool) -> Path:
    expected = card.weights.get("sha256")
    if verify and expected:
        actual = sha256_file(path)
        if actual != expected:
            raise ModelError(
                f"weights file {path} does not match the sha256 in model card {card.id!r} "
                f"(expected {expected}, got {actual})"
            )
    return path
