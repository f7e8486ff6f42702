"""Model weights: where they are, and how KappaMask's official weights get there.

* **Finding** (:func:`locate_model`): an explicit file or URL, the Python
  package that ships the file, a path relative to the card, the user's weights
  folder (:func:`kappamask_core.models.folders.weights_dir`), the card's URL; every file
  is checked against the card's sha256.
* **Importing** (:func:`import_keras`): an official Keras HDF5 file becomes an
  ONNX model plus its card, with numpy, h5py and onnx only
  (:mod:`~kappamask_core.models.keras_weights`, :mod:`~kappamask_core.models.onnx_graphs`).
* **Downloading** (:func:`fetch_official`): a KappaMask card names the official
  file; without local weights it is downloaded (to a temporary name, with a
  progress bar), converted, and cached in the weights folder. The downloaded
  file's sha256 is recorded on first use and every later download of the same
  file must match it (or the card's pinned sha256). ``KAPPAMASK_OFFLINE=1``
  forbids any network access; ``KAPPAMASK_WEIGHTS_MIRROR`` names a mirror.

Which model runs (``auto``) and the one entry point from a model name to a runnable model are in
:mod:`kappamask_core.models.resolve`.
"""

from __future__ import annotations

import copy
import hashlib
import http.client
import json
import logging
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from ..foundation.errors import KappaMaskError, ModelError
from ..foundation.redaction import redact
from ..foundation.types import PathLike
from ..foundation.urls import checked_url, join_path
from ..foundation.version import __version__
from ..io.files import atomic_files, atomic_path, sha256_file
from ..io.http import NetworkError, Session, split_userinfo
from .cards import ModelCard, builtin_card, builtin_ids, card_from_dict, load_card
from .folders import cache_dir, weights_dir
from .keras_weights import detect_architecture, input_bands, read_keras_weights, to_roles
from .onnx_graphs import OPSET, build

log = logging.getLogger(__name__)

OFFLINE_ENV = "KAPPAMASK_OFFLINE"
MIRROR_ENV = "KAPPAMASK_WEIGHTS_MIRROR"
TRUST_FILE = "downloads.json"  # sha256 of each official file on first use
TIMEOUT_S = 10  # per network operation: an unreachable source fails within seconds
# a source that answers but trickles: the whole download must keep at least this rate, checked after a grace time
MIN_RATE_BPS, RATE_GRACE_S = 20_000, 30
DOWNLOAD_DEADLINE_S = 3600  # for any one file, whatever its rate


def offline() -> bool:
    """True when network access is off ($KAPPAMASK_OFFLINE or --offline)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


# ----------------------------------------------------------------------------- finding

def locate_model(card: ModelCard, weights=None, fetch: bool = True) -> tuple[ModelCard, Path]:
    """The card and its ONNX file, checked against the card's sha256.

    Where to look, in order: ``weights`` (a path or an http(s) URL), the
    installed Python package that ships the file, the card's ``path``
    relative to the card, the user's weights folder, the card's ``url``
    (downloaded once into the cache), and, for KappaMask cards, the official
    Keras file (downloaded and converted when ``fetch``; the card returned is
    then the converted model's).
    """
    spec = card.weights
    if weights is not None:
        text = str(weights)
        path = download(text, spec.get("sha256")) if text.startswith(("http://", "https://")) else Path(weights)
        if not path.is_file():
            raise ModelError(f"weights file {weights} does not exist")
        return card, _verified(path, card)
    for path in _candidates(card):
        if path.is_file():
            return card, _verified(path, card)
    if spec.get("url"):
        return card, _verified(download(spec["url"], spec.get("sha256")), card)
    if spec.get("source") and fetch:
        imported = fetch_official(card)
        return imported, _verified(next(p for p in _candidates(imported) if p.is_file()), imported)
    if spec.get("package"):
        raise ModelError(
            f"model {card.id!r} is shipped by the Python package {spec['package']!r}, which is not installed; "
            f"run: pip install {spec['package'].replace('_', '-')} (or put {spec['file']} into {weights_dir()})"
        )
    raise ModelError(
        f"model {card.id!r} needs its ONNX weights file ({spec.get('file')}), which is not installed. "
        f"{spec.get('help', '')} Pass it with --weights FILE (Python: weights=...), or put it into {weights_dir()} "
        f"(set by $KAPPAMASK_WEIGHTS_DIR)."
    )


def _candidates(card: ModelCard) -> list[Path]:
    import importlib.util

    spec, found = card.weights, []
    if spec.get("package"):
        package = importlib.util.find_spec(spec["package"])
        if package is not None and package.submodule_search_locations:
            found.append(Path(list(package.submodule_search_locations)[0]) / spec["file"])
    if spec.get("path"):
        base = Path(card.source).parent if not card.source.startswith("<") else Path.cwd()
        found.append(base / spec["path"])
    if spec.get("file"):
        found.append(weights_dir() / spec["file"])
    return found


def _verified(path: Path, card: ModelCard) -> Path:
    """``path`` if the card pins its sha256 and the file has it; a built-in card that pins none (KappaMask's, whose
    converted file only the card the conversion writes pins) runs no file. A user's own card may pin none."""
    expected = card.weights.get("sha256")
    if not expected:
        if card.id in builtin_ids():
            raise ModelError(f"{path} was not made or verified by this project (the {card.name} card pins no sha256: "
                             f"its ONNX file is made when the official weights are converted), so it does not run as "
                             f"{card.id}. {card.weights.get('help', '')}")
        return path
    actual = sha256_file(path)
    if actual != expected:
        raise ModelError(
            f"weights file {path} does not match the sha256 in model card {card.id!r} "
            f"(expected {expected}, got {actual})"
        )
    return path


PROBE_TIMEOUT_S = 5


def weights_status(card: ModelCard, probe: bool = True) -> str:
    """'ready', 'downloadable' (its source answers; fetched on first use), 'unreachable' (it does not) or
    'missing' (no source, or network access is off). ``probe`` asks the source with one HEAD request."""
    if card.scheme is not None:
        return "ready"  # lookup models read a band the product carries
    if any(p.is_file() for p in _candidates(card)):
        return "ready"
    url = official_url(card) if card.weights.get("source") else card.weights.get("url")
    if not url or offline():
        return "missing"
    if not probe:
        return "downloadable"
    clean, userinfo = split_userinfo(url)
    try:
        session = Session(clean, userinfo, timeout_s=PROBE_TIMEOUT_S, deadline_s=2 * PROBE_TIMEOUT_S, what=url)
        return "downloadable" if session.request("HEAD", clean, accept="*/*").status == 200 else "unreachable"
    except KappaMaskError:
        return "unreachable"


# ----------------------------------------------------------------------------- downloading

def download(url: str, sha256: str | None = None) -> Path:
    """Fetch a model file into the cache (atomically) and check its sha256.

    A file already in the cache is used only when it has the expected sha256: the card's, or, for a URL whose
    card pins none, the one recorded when this URL was first downloaded (a file put there by anyone else is
    downloaded again, never trusted)."""
    target = cache_dir() / Path(url.split("?")[0]).name
    expected = sha256 or (_trusted().get(f"url:{url}") or {}).get("sha256")
    if target.is_file() and expected and sha256_file(target) == expected:
        return target
    tmp, digest = _fetch(url, target.parent, f"model file {target.name}",
                         "Download that file elsewhere and pass it with --weights.")
    try:
        if expected and digest != expected:
            raise ModelError(f"model downloaded from {url} does not match the sha256 {expected} (got {digest})"
                             + ("" if sha256 else f"; it had that sha256 when first downloaded (see {_trust_path()})"))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    if not sha256:
        _record_trust(f"url:{url}", url, digest)
    return target


def _fetch(url: str, folder: Path, what: str, offline_hint: str) -> tuple[Path, str]:
    """Download ``url`` into a temporary file in ``folder``; return it and its sha256. Nothing is left on failure."""
    if offline():
        raise ModelError(f"{what} is not installed and network access is off; it comes from {url} (--offline or "
                         f"{OFFLINE_ENV}=1 keep this run offline). "
                         f"{offline_hint}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=".download-", suffix=".part")
    except OSError as exc:
        raise ModelError(f"cannot write to the weights folder {folder}: {exc}") from None
    tmp, digest, done = Path(name), hashlib.sha256(), 0
    started = time.monotonic()
    clean, userinfo = split_userinfo(url)  # a password in a mirror's URL goes to that host only, as Basic auth
    try:
        with os.fdopen(fd, "wb") as out, Session(clean, userinfo, timeout_s=TIMEOUT_S, what=what).stream(clean) \
                as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            log.info("downloading %s from %s%s", what, url, f" ({total / 1e6:.1f} MB)" if total else "")
            bar = _progress(total, what)
            # read1: whatever has arrived, so that a source trickling bytes is noticed between reads
            while block := response.read1(1 << 20):
                out.write(block)
                digest.update(block)
                done += len(block)
                if bar is not None:
                    bar.update(len(block))
                elapsed = time.monotonic() - started
                if elapsed > DOWNLOAD_DEADLINE_S or (elapsed > RATE_GRACE_S and done / elapsed < MIN_RATE_BPS):
                    raise ModelError(f"the download of {what} from {url} was stopped after {elapsed:.0f} s at "
                                     f"{done / elapsed / 1000:.1f} kB/s ({done} bytes; the least accepted is "
                                     f"{MIN_RATE_BPS / 1000:.0f} kB/s, {DOWNLOAD_DEADLINE_S} s in all); nothing was "
                                     f"kept. {offline_hint}")
            if bar is not None:
                bar.close()
        if total is not None and done != total:
            raise ModelError(f"the download of {what} from {url} stopped after {done} of {total} bytes; nothing "
                             f"was kept, try again. {offline_hint}")
    except NetworkError as exc:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"{exc}. {offline_hint}") from None  # the network error names what and where
    except KappaMaskError:  # said above, in full
        tmp.unlink(missing_ok=True)
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise ModelError(f"cannot download {what} from {redact(url)} ({' '.join(str(reason).split())}). "
                         f"{offline_hint}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, digest.hexdigest()


def _progress(total, what):
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=what[:40], leave=False)


def official_url(card: ModelCard) -> str:
    """The card's official source URL, or the same file name under ``$KAPPAMASK_WEIGHTS_MIRROR``."""
    url = card.weights["source"]["url"]
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    # a password in the mirror's URL goes to that host only (as Basic auth); the file name is joined under it
    return join_path(checked_url(mirror, f"--weights-mirror (${MIRROR_ENV})", credentials=True),
                     url.rsplit("/", 1)[-1]) if mirror else url


def fetch_official(card: ModelCard) -> ModelCard:
    """Download the card's official Keras file, convert it, cache the ONNX model and card; return that card."""
    source = card.weights["source"]
    url = official_url(card)
    file = url.rsplit("/", 1)[-1]
    folder = weights_dir()
    hint = (f"On a machine with network access, download that file, then run 'kappamask models import {file}' here "
            f"(or set ${MIRROR_ENV} to a mirror that serves it).")
    tmp, digest = _fetch(url, folder, f"the {card.name} weights file {file}", hint)
    try:
        _check_trust(file, url, digest, source.get("sha256"))
        _, card_path = import_keras(tmp, arch=source["network"], level=card.levels[0], outdir=folder,
                                    source={"file": file, "url": url, "sha256": digest})
    finally:
        tmp.unlink(missing_ok=True)
    _record_trust(file, url, digest)
    log.info("%s: converted from %s (sha256 %s) and cached in %s", card.id, file, digest, folder)
    return load_card(card_path)


def _trust_path() -> Path:
    return weights_dir() / TRUST_FILE


def _trusted() -> dict:
    """{file: {sha256, url, first_used}} of the official files used so far."""
    path = _trust_path()
    reset = (f"delete {path} to start over (each official file's sha256 is then recorded again at its next "
             "download)")
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelError(f"the download record {path} cannot be read ({exc}); {reset}") from None
    entries_ok = isinstance(record, dict) and all(
        isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and isinstance(entry.get("url", ""), str)
        for entry in record.values())
    if not entries_ok:
        raise ModelError(f"the download record {path} is damaged (expected an object of file name -> "
                         f"{{sha256, url, first_used}}); {reset}")
    return record


def _check_trust(file: str, url: str, digest: str, pinned: str | None) -> None:
    if pinned and digest != pinned:
        raise ModelError(f"{file} downloaded from {url} has sha256 {digest}, but the model card pins {pinned}; "
                         "the file was not used")
    seen = _trusted().get(file)
    if seen and seen["sha256"] != digest:
        raise ModelError(
            f"{file} downloaded from {url} has sha256 {digest}, but when it was first used ({seen.get('first_used')}, "
            f"from {seen.get('url')}) it had {seen['sha256']}: the file changed at the source or on the way, and was not "
            f"used. If the change is expected, remove its entry from {_trust_path()}."
        )


def _record_trust(file: str, url: str, digest: str) -> None:
    record = _trusted()
    if file in record:
        return
    record[file] = {"sha256": digest, "url": url, "first_used": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with atomic_path(_trust_path()) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=2) + "\n")


# ----------------------------------------------------------------------------- importing

def _detect_level(arch: str, channels: int, level: str | None, path) -> str:
    fits = [lvl for lvl in ("L1C", "L2A") if len(builtin_card(f"{arch}-{lvl.lower()}").bands) == channels]
    if not fits:
        sizes = {lvl: len(builtin_card(f"{arch}-{lvl.lower()}").bands) for lvl in ("L1C", "L2A")}
        raise ModelError(f"{path}: the network takes {channels} input features, but {arch} takes "
                         + " or ".join(f"{n} ({lvl})" for lvl, n in sizes.items()))
    if level:
        level = level.upper()
        if level not in fits:
            raise ModelError(f"{path}: the network takes {channels} input features, which is {'/'.join(fits)}, "
                             f"not {level}")
        return level
    if len(fits) == 1:
        return fits[0]
    named = [lvl for lvl in fits if lvl.lower() in Path(path).name.lower()]
    if len(named) == 1:
        return named[0]
    raise ModelError(f"{path}: cannot tell whether this is the L1C or the L2A network ({arch} takes {channels} "
                     "input features for both, and the file name does not say); pass --level L1C or --level L2A")


def import_keras(path: PathLike, arch: str | None = None, level: str | None = None, outdir: PathLike | None = None,
                 trained: bool = True,
                 source: dict | None = None) -> tuple[Path, Path]:
    """Convert an official-format Keras HDF5 file into an ONNX model and its card; return both paths.

    ``arch`` (kappamask-v2 or kappamask-v1) and ``level`` are detected from the
    file where not given. Without ``outdir`` both go into the user's weights
    folder, where ``--model kappamask-v2`` (or v1) finds them. ``trained=False``
    marks test files with untrained weights in the card. ``source`` describes
    the original file (name, url, sha256) when ``path`` is a temporary copy.
    """
    keras = read_keras_weights(path)
    arch = detect_architecture(keras, arch)
    level = _detect_level(arch, input_bands(keras), level, path)
    base = builtin_card(f"{arch}-{level.lower()}")
    source = dict(source or {"file": Path(path).name, "sha256": sha256_file(path)})
    outdir = Path(outdir) if outdir else weights_dir()
    provenance = {"weights_source": {"format": "keras-hdf5", **source}}
    if trained:
        name = f"{base.name} (weights from {source['file']})"
        note = ""
    else:
        name = f"{base.name} - UNTRAINED WEIGHTS from {source['file']}, NOT A KAPPAMASK MODEL"
        note = ("UNTRAINED WEIGHTS: the network has KappaMask's architecture but its weights were never trained, so "
                "its classes mean nothing; use it for timing and tests only. ")
    return write_network(arch, base, to_roles(keras, arch), outdir / base.weights["file"],
                         outdir / f"{base.id}.json", card_id=base.id, name=name, note=note, trained=trained, provenance=provenance)


def write_network(arch: str, base: ModelCard, roles: dict, onnx_path, card_path, *, card_id: str, name: str,
                  note: str, trained: bool, provenance: dict) -> tuple[Path, Path]:
    """Build the ONNX graph of ``arch`` from ``roles`` and write it with a card derived from ``base``, both or neither."""
    import numpy as np
    import onnx  # heavy, and only needed to write a model

    onnx_path, card_path = Path(onnx_path), Path(card_path)
    damaged = sorted(role for role, arrays in roles.items() if not all(np.isfinite(a).all() for a in arrays))
    if damaged:  # such a network classifies every pixel as NaN: refuse it here, not as an all-missing map later
        raise ModelError(f"the weights hold NaN or infinite values ({len(damaged)} arrays, e.g. {damaged[0]}): the "
                         "file is damaged or came from a diverged training; nothing was written")
    model = build(arch, roles, len(base.bands), base.tile_size, doc=name)
    card = copy.deepcopy(base.raw)
    card.update(id=card_id, name=name, trained=trained, framework="ONNX",
                description=note + card["description"].split(" The weights are ")[0] + ".")
    card["input"]["layout"] = "NCHW"
    card["provenance"] = {**provenance, "converted_by": f"kappamask {__version__} (ONNX opset {OPSET})",
                          "converted": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with atomic_files(onnx_path, card_path) as (tmp_onnx, tmp_card):
        onnx.save(model, tmp_onnx)
        card["weights"] = {"file": onnx_path.name, "path": onnx_path.name, "sha256": sha256_file(tmp_onnx)}
        card_from_dict(card, source=str(card_path))  # the card must validate like any other
        Path(tmp_card).write_text(json.dumps(card, indent=2) + "\n")
    return onnx_path, card_path
