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

Which arithmetic then runs (the network, or a reduced-precision variant of it) is decided in
:mod:`kappamask_core.models.variants`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from ..foundation.bands import SENSORS
from ..foundation.errors import BandsError, ModelError
from ..foundation.types import Bands, PathLike
from .cards import ALIASES, AUTO, ModelCard, builtin_card, builtin_ids, installed_card, load_card
from .folders import weights_dir
from .weights import MIRROR_ENV, locate_model, offline

log = logging.getLogger(__name__)

AUTO_FIRST_CHOICE = "kappamask-v2"
FALLBACK = "default"


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

    @property
    def network(self) -> Path:
        """The verified ONNX file; a lookup model has none (one clear error for the caller that needs one)."""
        if self.path is None:
            raise ModelError(f"model {self.card.id!r} looks up the product's own mask; it has no network")
        return self.path

    def announce(self) -> None:
        """Log the note, once for this model: a batch that skips finished products says nothing it need not."""
        if self.note and not self._said:
            self._said.append(True)
            log.warning(self.note)



# what the functions that take a model accept: a built-in id, an alias, "auto", a card or ONNX path, a card, or a
# resolved Model
ModelSpec = Union[str, "os.PathLike[str]", ModelCard, Model]

def _check_level(text: str, level: str | None) -> str:
    if level is None:
        raise ModelError(f"model {text!r} depends on the product level; give the level (L1C or L2A)")
    level = level.upper()
    if level not in ("L1C", "L2A"):
        raise ModelError(f"level must be L1C or L2A, not {level!r}")
    return level


def resolve_card(model: ModelSpec = AUTO, level: str | None = None, bands: Bands | None = None,
                 sensor: str = "sentinel-2") -> ModelCard:
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
        return resolve_model(AUTO, level, bands, announce=False, sensor=sensor).card  # said when it runs (Model.announce)
    if text in ALIASES:
        return installed_card(ALIASES[text][_check_level(text, level)])
    return installed_card(text)


def resolve_model(model: ModelSpec = AUTO, level: str | None = None, bands: Bands | None = None,
                  weights: PathLike | None = None, fetch: bool = True, announce: bool = True,
                  sensor: str = "sentinel-2") -> Model:
    """``model`` as a :class:`Model` whose ONNX file has been found and verified (see the module text).

    ``weights`` (a path or an http(s) URL) overrides where the card's file is looked for. Without ``fetch`` no
    official file is downloaded. With ``announce`` false, ``auto``'s note is left for :meth:`Model.announce`
    (when the model really runs).
    """
    if isinstance(model, Model):
        return model
    if str(model) == AUTO and weights is None:
        chosen = choose_auto(_check_level(AUTO, level), bands, sensor)
        if announce:
            chosen.announce()
        return chosen
    card = resolve_card(model, level, bands, sensor)
    if card.scheme is not None:
        return Model(card, None)
    if weights is None and str(model).endswith(".onnx"):
        weights = str(model)
    card, path = locate_model(card, weights, fetch)
    return Model(card, path)


def models_for(sensor: str) -> str:
    """The built-in models made for ``sensor`` as one phrase (aliases first), for the line that refuses a model
    made for other sensors."""
    ids = [i for i in builtin_ids() if sensor in builtin_card(i).sensors]
    aliases = [a for a, by_level in ALIASES.items() if any(i in ids for i in by_level.values())]
    return ", ".join(aliases + ids) if ids else "none of the built-in models (give a card that names the sensor)"


def check_made_for(card: ModelCard, sensor: str, where: str = "") -> None:
    """A model runs only on the sensors its card names: a product of another is one line that names the models
    made for it."""
    if sensor not in card.sensors:
        title, made_for = SENSORS[sensor].title, ", ".join(SENSORS[s].title for s in card.sensors)
        raise BandsError(f"{where}model {card.id!r} was made for {made_for} only, not {title}; models made for "
                         f"{title}: {models_for(sensor)}")


def _card_beside(path: Path) -> ModelCard:
    card = path.with_suffix(".json")
    if not card.is_file():
        raise ModelError(f"{path}: an ONNX model needs its card beside it ({card.name}); write one (see the cards "
                         "in kappamask_core/models/cards/) or pass the card instead")
    return load_card(card)


_AUTO_CHOICES: dict = {}


def choose_auto(level: str, bands=None, sensor: str = "sentinel-2") -> Model:
    """KappaMask v2 for ``level`` if its weights are installed or can be fetched, ``bands`` has its inputs and
    the product's sensor is one it was made for (Sentinel-2); otherwise the bundled offline model, whose note
    says why (and how to get KappaMask; announced once).

    The choice is made once per process for each level, band set, sensor and setting.
    """
    key = (level, None if bands is None else tuple(sorted(bands)), sensor, offline(), str(weights_dir()),
           os.environ.get(MIRROR_ENV))
    if key not in _AUTO_CHOICES:
        _AUTO_CHOICES[key] = _choose_auto(level, bands, sensor)
    return _AUTO_CHOICES[key]


def _choose_auto(level: str, bands, sensor: str = "sentinel-2") -> Model:
    kappamask = installed_card(ALIASES[AUTO_FIRST_CHOICE][level])
    if sensor not in kappamask.sensors:
        fallback = installed_card(ALIASES[FALLBACK][level])
        title = SENSORS[sensor].title
        note = (f"KappaMask was made for Sentinel-2 only, not {title}; running the bundled model {fallback.id}, "
                f"made for {title} too: no semi-transparent cloud, class 3 will not appear.")
        return Model(*locate_model(fallback), note=note)
    missing = [b for b in kappamask.bands if bands is not None and b not in bands]
    if missing:
        reason = f"the input lacks its band(s) {', '.join(missing)}"
    else:
        try:
            card, path = locate_model(kappamask)
        except ModelError as exc:
            reason = _first_clause(str(exc))
        else:
            log.info("model auto: %s (%s)", card.id, card.name)
            if not card.trained:
                log.warning("model auto: the installed %s weights are marked untrained; its classes mean nothing",
                            card.id)
            return Model(card, path)
    fallback = installed_card(ALIASES[FALLBACK][level])
    source = kappamask.weights.get("source") or {}
    file = str(source.get("url", "")).rsplit("/", 1)[-1] or kappamask.weights.get("file")
    note = (f"KappaMask v2 is not available ({reason}); running the bundled offline model {fallback.id}: no "
            f"semi-transparent cloud, class 3 will not appear. To get KappaMask v2, run once online or 'kappamask "
            f"models import {file}'.")
    return Model(*locate_model(fallback), note=note)


def _first_clause(text: str) -> str:
    """What went wrong, without the advice and the URLs that follow it (the fallback's note gives its own)."""
    for end in ("; ", ". "):
        text = text.split(end, 1)[0]
    return text.rstrip(".")
