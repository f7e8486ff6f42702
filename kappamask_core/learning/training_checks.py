"""What a training run checks before it trains: its settings, its output folder, its sub-tiles (one kind, one size,
sides the networks take, enough for KappaMask v2's batch normalisation), its base weights and, when it resumes,
its checkpoint. Every problem is one line, before any epoch runs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..foundation.errors import InputError
from ..foundation.schemes import SCHEMES
from ..io.files import sha256_file
from ..models.keras_weights import detect_architecture, read_keras_weights, to_roles
from ..models.onnx_graphs import roles_from_onnx
from ..models.resolve import resolve_model
from .training_data import Samples, SubTile, split_by_product

DEFAULT_GAMMA = 2.0  # DSC++ exponent used for v2 (gamma = 1 is the plain Dice loss)
V2_MIN_SIDE = 304  # stride 16 and the ASPP's 18-pixel dilation need 19 feature pixels


@dataclass(frozen=True)
class Settings:
    """A training run's settings, checked (:func:`check_settings`)."""

    arch: str
    level: str
    epochs: int
    batch_size: int
    lr: float
    val_fraction: float
    seed: int
    gamma: float
    patience: int
    lr_patience: int
    threads: int | None


def check_settings(arch: str, level: str, *, epochs: int, batch_size: int, lr: float, val_fraction: float, seed: int,
                   gamma: float | None, patience: int, lr_patience: int, threads: int | None) -> Settings:
    gamma = (DEFAULT_GAMMA if arch == "kappamask-v2" else 1.0) if gamma is None else float(gamma)
    if epochs < 1 or batch_size < 1 or patience < 1 or lr_patience < 1:
        raise InputError("epochs, batch size, patience and learning-rate patience must be at least 1")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InputError(f"--threads must be a whole number of at least 1, not {threads!r}")
    for name, value, low, high in (("learning rate (--lr)", lr, 0, 1), ("--gamma", gamma, 0, 10),
                                   ("--val-fraction", val_fraction, 0, 1)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and low < value < high):
            raise InputError(f"{name} must be a number above {low} and below {high}, not {value}")
    return Settings(arch, level, epochs, batch_size, lr, val_fraction, seed, gamma, patience, lr_patience, threads)


def output_folder(outdir) -> Path:
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"{outdir} is a file; name a folder for the checkpoint, log and model (-o)")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder {outdir}: {exc.strerror or exc}") from None
    return outdir


def label_scheme(data, subtiles: list[SubTile], scheme: str | None) -> str:
    """The labels' class scheme: declared, or KappaSet's for .nc sub-tiles; one kind of sub-tile per folder."""
    if len({s.label is None for s in subtiles}) > 1:
        raise InputError(f"{data} holds KappaSet .nc sub-tiles and images/ with labels/ GeoTIFF pairs, whose labels "
                         "use different class schemes; keep one kind of sub-tile per folder")
    scheme = scheme or ("kappaset" if subtiles[0].label is None else None)
    if scheme not in SCHEMES:
        raise InputError(f"declare the labels' class scheme (--scheme), one of {', '.join(SCHEMES)}")
    return scheme


def split_and_check(subtiles: list[SubTile], settings: Settings, card, scheme: str) -> tuple[Samples, Samples]:
    """(training, validation) samples, split by product and checked: KappaMask v2 trains on at least 2 sub-tiles
    per batch; every sub-tile has one size, with sides the networks take."""
    train_set, val_set = split_by_product(subtiles, settings.val_fraction, settings.seed)
    if settings.arch == "kappamask-v2" and (settings.batch_size < 2 or len(train_set) < 2):
        raise InputError(f"KappaMask v2 trains on at least 2 sub-tiles per batch (its image-pooling branch normalises "
                         f"over the batch): use --batch-size 2 or more and at least 2 training sub-tiles (there are "
                         f"{len(train_set)} after the validation split)")
    train_samples, val_samples = Samples(train_set, card, scheme), Samples(val_set, card, scheme)
    shapes: dict[tuple[int, ...], str] = {}
    for samples in (train_samples, val_samples):
        for i, sub in enumerate(samples.subtiles):
            shapes.setdefault(samples[i][1].shape, sub.name)
    if len(shapes) > 1:
        listed = ", ".join(f"{name} ({h} x {w})" for (h, w), name in list(shapes.items())[:3])
        raise InputError(f"the sub-tiles have different sizes (e.g. {listed}); a batch needs one size: cut them alike")
    side = min(train_samples[0][1].shape)
    if side % 16 or (settings.arch == "kappamask-v2" and side < V2_MIN_SIDE):
        raise InputError(f"sub-tiles of {side} px: the networks need sides divisible by 16"
                         + (f", and KappaMask v2's dilated ASPP at least {V2_MIN_SIDE} px"
                            if settings.arch == "kappamask-v2" else ""))
    return train_samples, val_samples


def base_weights(base, arch: str):
    """(weights by role, sha256) from an official Keras file, an ONNX model of this package, a card or id, or
    (None, None) to start from scratch."""
    if base is None:
        return None, None
    text = str(base)
    if text.endswith((".hdf5", ".h5")):
        keras = read_keras_weights(text)
        return to_roles(keras, detect_architecture(keras, arch)), sha256_file(text)
    path = text if text.endswith(".onnx") else resolve_model(text).network
    try:
        return roles_from_onnx(path), sha256_file(path)
    except OSError as exc:
        raise InputError(f"--from {base}: cannot read it ({exc.strerror or exc})") from None
    except Exception as exc:  # onnx's parser fails in its own ways on a file that is not a model
        raise InputError(f"--from {base}: not an ONNX model this package can continue training from "
                         f"({type(exc).__name__})") from None


def load_base(networks, model, base, settings: Settings, bands: int):
    """Fill ``model`` with the base weights; returns their sha256 (None from scratch)."""
    roles, sha = base_weights(base, settings.arch)
    if roles is not None:
        try:
            networks.load_roles(model, roles)
        except (KeyError, ValueError) as exc:  # a role the network lacks, or weights of another shape
            raise InputError(f"--from {base}: its weights are not those of {settings.arch} with {bands} input "
                             f"bands ({' '.join(str(exc).split())[:160]}); start from a {settings.arch} "
                             f"{settings.level} network") from None
    return sha


def read_checkpoint(torch, path: Path, config: dict) -> dict:
    """The checkpoint to resume from, made with exactly these settings and data."""
    if not path.is_file():
        raise InputError(f"nothing to resume: {path} does not exist")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(saved["config"], dict) or not {"model", "optimiser", "scheduler", "state"} <= set(saved):
            raise KeyError("config")
    except Exception as exc:  # torch.load fails in many ways on truncated or foreign files
        raise InputError(f"{path} is not a checkpoint of this training ({type(exc).__name__}: {str(exc)[:120]}); "
                         "start a new run in another folder") from None
    if saved["config"] != config:
        changed = sorted(k for k in config if saved["config"].get(k) != config[k])
        raise InputError(f"{path} was made with other settings or data ({', '.join(changed)}); resume with the same "
                         "ones, or start a new run in another folder")
    return saved
