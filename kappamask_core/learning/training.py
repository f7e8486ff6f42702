"""Fine-tuning KappaMask (extra ``train``, PyTorch): the papers' recipe on labelled sub-tiles.

* **Data.** KappaSet netCDF sub-tiles (one variable per band, values DN / 65535, labels in
  ``Label``), or a folder with ``images/`` and ``labels/`` GeoTIFFs of the same names (images hold
  the card's bands, in its order, as DN). Labels are read through a declared class scheme
  (:mod:`kappamask_core.foundation.schemes`: ``kappaset`` for netCDF, e.g. ``cloudsen12`` for CloudSEN12);
  missing and undefined pixels are left out of the loss. Inputs are scaled by the card's own
  scaling, the same code as inference.
* **Split by product**, never by sub-tile: a sub-tile's product is its file name without the
  trailing sub-tile number, so neighbouring sub-tiles never sit on both sides.
* **Recipe.** Adam; the learning rate halved when the validation loss has not improved for two
  epochs; early stopping after five; Dice loss for v1 and DSC++ for v2 (Yeung et al. 2022: the
  false positive and false negative terms raised to ``gamma`` per pixel; gamma 1 is the Dice loss);
  random flips and 90 degree rotations. After each epoch the batch-norm statistics are averaged
  over the training set, because Keras' slow running averages do not follow the weights within the
  few thousand steps of a small fine-tuning set.
* **Reproducible and resumable.** Shuffling, augmentation and dropout draw from generators seeded
  by (seed, epoch), and a checkpoint with the model, optimiser, scheduler and history is written
  after every epoch: a run resumed from it ends equal to one that was never interrupted. A loss
  that becomes NaN stops the run with a clear message and keeps the last good checkpoint.
* **Result.** The best epoch's network as ONNX with its card, whose provenance names the base
  weights' sha256, a hash of the training set, the epochs and the per-class validation Dice; the
  paper-style evaluation table of the validation split; a CSV log and a PNG of loss and Dice.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import random
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..foundation.classes import CLASS_BY_NAME, CLASSES, MISSING
from ..foundation.errors import InputError, TrainingError
from ..foundation.schemes import SCHEMES, UNDEFINED, to_classes
from ..chain.scale import apply_value_scaling
from ..io.files import atomic_path, sha256_file
from ..models.cards import builtin_card
from ..models.export import torch_networks
from ..models.keras_weights import canonical_arch, detect_architecture, read_keras_weights, to_roles
from ..models.onnx_graphs import roles_from_onnx
from ..models.resolve import resolve_model
from ..models.weights import write_network
from .evaluate import evaluate_arrays, write_confusion_png
from .kappaset import read_label, read_subtile

log = logging.getLogger(__name__)

TRAINED_CLASSES = tuple(c.name for c in CLASSES if c.value != MISSING)  # clear, shadow, semi-transparent, cloud
IGNORE = -1  # target value of pixels left out of the loss
DEFAULT_GAMMA = 2.0  # DSC++ exponent used for v2 (gamma = 1 is the plain Dice loss)
PLATEAU_PATIENCE, STOP_PATIENCE = 2, 5
V2_MIN_SIDE = 304  # stride 16 and the ASPP's 18-pixel dilation need 19 feature pixels


@dataclass(frozen=True)
class SubTile:
    image: Path  # .nc sub-tile or image .tif
    label: Path | None  # the label .tif of an image; None for .nc (the label is inside)
    product: str

    @property
    def name(self) -> str:
        return self.image.stem


def product_of(name: str) -> str:
    """The product a sub-tile belongs to: its file name without the trailing sub-tile number."""
    stem = Path(name).stem
    return re.sub(r"([_-](tile|subtile|patch))?[_-]?\d+$", "", stem) or stem


def find_subtiles(folder) -> list[SubTile]:
    """KappaSet .nc sub-tiles in ``folder``, or image / label GeoTIFF pairs in ``folder/images`` and ``labels``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder of training sub-tiles")
    found = [SubTile(p, None, product_of(p.name)) for p in sorted(folder.glob("*.nc"))]
    images, labels = folder / "images", folder / "labels"
    if images.is_dir():
        for image in sorted(images.glob("*.tif")):
            label = labels / image.name
            if not label.is_file():
                raise InputError(f"{image}: no label {label}")
            found.append(SubTile(image, label, product_of(image.name)))
    if not found:
        raise InputError(f"{folder}: no training sub-tiles (KappaSet *.nc, or images/*.tif with labels/*.tif)")
    return found


def split_by_product(subtiles, fraction: float = 0.2, seed: int = 0) -> tuple[list[SubTile], list[SubTile]]:
    """(training, validation): whole products on each side, about ``fraction`` of the products for validation."""
    products = sorted({s.product for s in subtiles})
    if len(products) < 2:
        raise TrainingError(f"the sub-tiles come from one product ({products[0]}); validation needs sub-tiles of "
                            "another product, so that neighbouring sub-tiles are never on both sides")
    random.Random(seed).shuffle(products)
    n_val = min(len(products) - 1, max(1, round(len(products) * fraction)))
    validation = set(products[:n_val])
    return ([s for s in subtiles if s.product not in validation], [s for s in subtiles if s.product in validation])


def targets_of(card) -> np.ndarray:
    """A 256-entry table: five-class value -> the network output channel to learn, or IGNORE."""
    table = np.full(256, IGNORE, np.int64)
    for channel in sorted(card.outputs, key=lambda c: c.index, reverse=True):
        if channel.maps_to in TRAINED_CLASSES:
            table[CLASS_BY_NAME[channel.maps_to].value] = channel.index
    return table


def load_sample(sub: SubTile, card, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    """(scaled input (bands, H, W) float32, target (H, W) int64 with IGNORE for missing and undefined)."""

    if sub.label is None:
        image, label = read_subtile(sub.image, card), read_label(sub.image)
    else:
        import rasterio

        try:
            with rasterio.open(sub.image) as ds:
                dn = ds.read().astype(np.float32)
            with rasterio.open(sub.label) as ds:
                label = ds.read(1)
        except Exception as exc:
            raise InputError(f"cannot read training pair {sub.image}: {exc}") from None
        if dn.shape[0] != len(card.bands):
            raise InputError(f"{sub.image} has {dn.shape[0]} bands; model {card.id} takes {len(card.bands)} "
                             f"({', '.join(card.bands)})")
        divisor = 65535.0 if card.units == "dn_fraction" else 10000.0
        image = apply_value_scaling(dn / np.float32(divisor), card.value_scaling, card.clip_min)
    if image.shape[1:] != label.shape:
        raise InputError(f"{sub.image}: the image is {image.shape[1]} x {image.shape[2]} px but its label "
                         f"{label.shape[0]} x {label.shape[1]}")
    outside = sorted(set(np.unique(label).tolist()) - set(SCHEMES[scheme]))
    if outside:
        raise InputError(f"{sub.label or sub.image}: label values {outside[:8]} are outside the class scheme "
                         f"{scheme!r} ({sorted(SCHEMES[scheme])})")
    classes = to_classes(label, scheme)
    classes[classes == UNDEFINED] = MISSING
    return np.ascontiguousarray(image, np.float32), targets_of(card)[classes]


def training_set_digest(subtiles) -> str:
    """A hash of the training data: every file's name and sha256."""

    digest = hashlib.sha256()
    for sub in sorted(subtiles, key=lambda s: s.image.name):
        for path in filter(None, (sub.image, sub.label)):
            digest.update(f"{path.name}:{sha256_file(path)}\n".encode())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- losses

def dice_loss(probs, target, channels, gamma: float = 1.0, eps: float = 1e-6):
    """1 - mean DSC++ over ``channels`` (gamma 1: the Dice loss); pixels with target IGNORE are left out.

    DSC++ = 2 TP / (2 TP + sum(((1 - g) p)^gamma) + sum((g (1 - p))^gamma)), per channel, over the batch.
    Outputs no label asks for (the networks' undefined and missing channels) add their mean probability on
    labelled pixels, so they learn to stay off there: the class map is their argmax over all outputs.
    """
    import torch

    valid = (target != IGNORE).unsqueeze(1).to(probs.dtype)
    onehot = torch.zeros_like(probs).scatter_(1, target.clamp(min=0).unsqueeze(1), 1.0) * valid
    p = probs * valid
    dims = (0, 2, 3)
    tp = (p * onehot).sum(dims)
    fp = ((p * (1 - onehot)) ** gamma).sum(dims)
    fn = ((onehot * (1 - p) * valid) ** gamma).sum(dims)
    dsc = (2 * tp + eps) / (2 * tp + fp + fn + eps)
    others = [c for c in range(probs.shape[1]) if c not in set(channels)]
    off = (probs[:, others] * valid).sum() / (valid.sum() * len(others)).clamp(min=1) if others else 0.0
    return 1 - dsc[list(channels)].mean() + off


# ----------------------------------------------------------------------------- training

@dataclass
class TrainingResult:
    onnx: Path
    card: Path
    best_epoch: int
    validation_dice: dict
    history: list = field(default_factory=list)


def batches(count: int, size: int) -> list[range]:
    """Index ranges of ``size`` items; a last batch of one item joins the one before it.

    Batch normalisation in training mode needs two values per channel: KappaMask v2's image-pooling branch
    normalises one value per sub-tile, so a batch of one sub-tile cannot train.
    """
    starts = list(range(0, count, size))
    bounds = [(a, min(a + size, count)) for a in starts]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], count)]
    return [range(a, b) for a, b in bounds]


def _augment(x, y, generator):
    """Random flips and 90 degree rotations, the same for the image and its target."""
    import torch

    k = int(torch.randint(0, 4, (1,), generator=generator))
    flip = bool(torch.randint(0, 2, (1,), generator=generator))
    x, y = torch.rot90(x, k, dims=(-2, -1)), torch.rot90(y, k, dims=(-2, -1))
    if flip:
        x, y = torch.flip(x, dims=(-1,)), torch.flip(y, dims=(-1,))
    return x, y


def _initial_roles(base, arch: str):
    """Weights by role from an official Keras file, an ONNX model of this package, a card, or None (scratch)."""
    if base is None:
        return None, None

    text = str(base)
    if text.endswith((".hdf5", ".h5")):
        keras = read_keras_weights(text)
        return to_roles(keras, detect_architecture(keras, arch)), sha256_file(text)
    path = text if text.endswith(".onnx") else resolve_model(text).path
    try:
        return roles_from_onnx(path), sha256_file(path)
    except OSError as exc:
        raise InputError(f"--from {base}: cannot read it ({exc.strerror or exc})") from None
    except Exception as exc:  # onnx's parser fails in its own ways on a file that is not a model
        raise InputError(f"--from {base}: not an ONNX model this package can continue training from "
                         f"({type(exc).__name__})") from None


class _Samples:
    """Samples loaded once and kept in memory while small enough, else read for every batch."""

    def __init__(self, subtiles, card, scheme, keep_mib: int = 2048):
        self.subtiles, self.card, self.scheme = subtiles, card, scheme
        self.cache: dict[int, tuple] = {}
        self.keep = keep_mib * 2**20

    def __len__(self):
        return len(self.subtiles)

    def __getitem__(self, i):
        if i in self.cache:
            return self.cache[i]
        sample = load_sample(self.subtiles[i], self.card, self.scheme)
        if sum(a.nbytes + b.nbytes for a, b in self.cache.values()) < self.keep:
            self.cache[i] = sample
        return sample


def train(data, outdir, *, arch: str = "kappamask-v2", level: str = "L1C", base=None, epochs: int = 50,
          batch_size: int = 4, lr: float = 1e-4, val_fraction: float = 0.2, seed: int = 0,
          gamma: float | None = None, scheme: str | None = None, resume: bool = False, progress: bool = False,
          threads: int | None = None, patience: int = STOP_PATIENCE,
          lr_patience: int = PLATEAU_PATIENCE) -> TrainingResult:
    """Train (fine-tune) a KappaMask network on the sub-tiles in ``data``; write everything into ``outdir``.

    ``patience``: stop after this many epochs without a better validation loss (it decides only when to stop,
    so a resumed run may change it); ``lr_patience``: halve the learning rate after this many."""
    torch, networks = torch_networks("training", InputError)
    arch = canonical_arch(arch, InputError)
    card = builtin_card(f"{arch}-{level.lower()}")
    gamma = (DEFAULT_GAMMA if arch == "kappamask-v2" else 1.0) if gamma is None else float(gamma)
    if epochs < 1 or batch_size < 1 or patience < 1 or lr_patience < 1:
        raise InputError("epochs, batch size, patience and learning-rate patience must be at least 1")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InputError(f"--threads must be a whole number of at least 1, not {threads!r}")
    for name, value, low, high in (("learning rate (--lr)", lr, 0, 1), ("--gamma", gamma, 0, 10),
                                   ("--val-fraction", val_fraction, 0, 1)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and low < value < high):
            raise InputError(f"{name} must be a number above {low} and below {high}, not {value}")
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"{outdir} is a file; name a folder for the checkpoint, log and model (-o)")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder {outdir}: {exc.strerror or exc}") from None
    checkpoint_path = outdir / "checkpoint.pt"
    subtiles = find_subtiles(data)
    kinds = {s.label is None for s in subtiles}
    if len(kinds) > 1:
        raise InputError(f"{data} holds KappaSet .nc sub-tiles and images/ with labels/ GeoTIFF pairs, whose labels "
                         "use different class schemes; keep one kind of sub-tile per folder")
    scheme = scheme or ("kappaset" if subtiles[0].label is None else None)
    if scheme not in SCHEMES:
        raise InputError(f"declare the labels' class scheme (--scheme), one of {', '.join(SCHEMES)}")
    train_set, val_set = split_by_product(subtiles, val_fraction, seed)
    if arch == "kappamask-v2" and (batch_size < 2 or len(train_set) < 2):
        raise InputError(f"KappaMask v2 trains on at least 2 sub-tiles per batch (its image-pooling branch normalises "
                         f"over the batch): use --batch-size 2 or more and at least 2 training sub-tiles (there are "
                         f"{len(train_set)} after the validation split)")
    train_samples, val_samples = _Samples(train_set, card, scheme), _Samples(val_set, card, scheme)
    shapes = {}
    for samples in (train_samples, val_samples):
        for i, sub in enumerate(samples.subtiles):
            shapes.setdefault(samples[i][1].shape, sub.name)
    if len(shapes) > 1:
        listed = ", ".join(f"{name} ({h} x {w})" for (h, w), name in list(shapes.items())[:3])
        raise InputError(f"the sub-tiles have different sizes (e.g. {listed}); a batch needs one size: cut them alike")
    side = min(train_samples[0][1].shape)
    if side % 16 or (arch == "kappamask-v2" and side < V2_MIN_SIDE):
        raise InputError(f"sub-tiles of {side} px: the networks need sides divisible by 16"
                         + (f", and KappaMask v2's dilated ASPP at least {V2_MIN_SIDE} px" if arch == "kappamask-v2"
                            else ""))
    channels = sorted({int(c) for c in targets_of(card) if c != IGNORE})
    if threads:
        torch.set_num_threads(threads)

    torch.manual_seed(seed)
    model = networks.build(arch, len(card.bands))
    roles, base_sha = _initial_roles(base, arch)
    if roles is not None:
        try:
            networks.load_roles(model, roles)
        except (KeyError, ValueError) as exc:  # a role the network lacks, or weights of another shape
            raise InputError(f"--from {base}: its weights are not those of {arch} with {len(card.bands)} input "
                             f"bands ({' '.join(str(exc).split())[:160]}); start from a {arch} {level} network") \
                from None
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, mode="min", factor=0.5,
                                                           patience=lr_patience)
    state = {"epoch": 0, "history": [], "best_loss": math.inf, "best_epoch": 0, "best_state": None, "stale": 0}
    config = {"arch": arch, "level": level, "seed": seed, "lr": lr, "lr_patience": lr_patience,
              "batch_size": batch_size, "gamma": gamma,
              "scheme": scheme, "base_sha256": base_sha, "validation_products": sorted({s.product for s in val_set}),
              "training_set_sha256": training_set_digest(subtiles)}
    if resume:
        if not checkpoint_path.is_file():
            raise InputError(f"nothing to resume: {checkpoint_path} does not exist")
        try:
            saved = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
            saved_config = saved["config"]
            if not isinstance(saved_config, dict) or not {"model", "optimiser", "scheduler", "state"} <= set(saved):
                raise KeyError("config")
        except Exception as exc:  # torch.load fails in many ways on truncated or foreign files
            raise InputError(f"{checkpoint_path} is not a checkpoint of this training ({type(exc).__name__}: "
                             f"{str(exc)[:120]}); start a new run in another folder") from None
        if saved_config != config:
            changed = sorted(k for k in config if saved["config"].get(k) != config[k])
            raise InputError(f"{checkpoint_path} was made with other settings or data ({', '.join(changed)}); "
                             "resume with the same ones, or start a new run in another folder")
        model.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimiser"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["state"]
        log.info("resuming after epoch %d", state["epoch"])

    def run_epoch(samples, training: bool, epoch: int):
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        torch.manual_seed(seed * 100_003 + epoch)  # dropout
        order = torch.randperm(len(samples), generator=generator).tolist() if training else list(range(len(samples)))
        model.train(training)
        total, count, stats = 0.0, 0, np.zeros((len(channels), 3))
        bar = None
        if progress and training:
            from tqdm import tqdm

            bar = tqdm(total=len(order), unit="sub-tile", desc=f"epoch {epoch}", leave=False, file=sys.stderr)
        # evaluation (batch-norm statistics fixed) takes any batch; training never a batch of one (see batches)
        plan = batches(len(order), batch_size) if training else [
            range(a, min(a + batch_size, len(order))) for a in range(0, len(order), batch_size)]
        for batch in plan:
            pairs = [samples[order[i]] for i in batch]
            x = torch.from_numpy(np.stack([p[0] for p in pairs]))
            y = torch.from_numpy(np.stack([p[1] for p in pairs]))
            if training:
                pairs = [_augment(xi, yi, generator) for xi, yi in zip(x, y)]
                x, y = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
            with torch.set_grad_enabled(training):
                probs = model(x)
                loss = dice_loss(probs, y, channels, gamma)
            if not torch.isfinite(loss):
                kept = (f"The last good checkpoint (epoch {state['epoch']}) is kept in {checkpoint_path}; lower the "
                        "learning rate (--lr) and resume, or check the data" if state["epoch"] else
                        "No epoch finished, so no checkpoint was written; lower the learning rate (--lr) or check "
                        "the data")
                raise TrainingError(f"the loss became {float(loss.detach())} in epoch {epoch}; the run stops "
                                    f"here. {kept}")
            if training:
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            total += float(loss.detach()) * len(pairs)
            count += len(pairs)
            predicted = probs.argmax(1)
            for k, c in enumerate(channels):
                truth, guess = (y == c), (predicted == c) & (y != IGNORE)
                stats[k] += [int((truth & guess).sum()), int((guess & ~truth).sum()), int((truth & ~guess).sum())]
            if bar is not None:
                bar.update(len(pairs))
        if bar is not None:
            bar.close()
        dice = {}
        for k, c in enumerate(channels):
            tp, fp, fn = stats[k]
            name = next(o.maps_to for o in card.outputs if o.index == c)
            dice[name] = float(2 * tp / (2 * tp + fp + fn)) if (2 * tp + fp + fn) else float("nan")
        return total / max(count, 1), dice

    def recalibrate():
        """Batch-norm statistics as the average over the training set under the epoch's weights.

        Keras' running averages (momentum 0.99) need thousands of steps to follow the weights; a fine-tuning
        set can be far smaller. Only the statistics change; the weights are the ones the optimiser made.
        """
        norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        if not norms:
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        model.train()
        with torch.no_grad():
            for batch in batches(len(train_samples), batch_size):
                model(torch.from_numpy(np.stack([train_samples[i][0] for i in batch])))
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum

    for epoch in range(state["epoch"] + 1, epochs + 1):
        train_loss, _ = run_epoch(train_samples, True, epoch)
        recalibrate()
        val_loss, val_dice = run_epoch(val_samples, False, epoch)
        scheduler.step(val_loss)
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
               "lr": optimiser.param_groups[0]["lr"], **{f"dice_{k}": v for k, v in val_dice.items()}}
        state["history"].append(row)
        if val_loss < state["best_loss"]:
            state.update(best_loss=val_loss, best_epoch=epoch, stale=0,
                         best_state={k: v.clone() for k, v in model.state_dict().items()})
        else:
            state["stale"] += 1
        state["epoch"] = epoch
        log.info("epoch %d: training loss %.4f, validation loss %.4f, Dice %s", epoch, train_loss, val_loss,
                 ", ".join(f"{k} {v:.3f}" for k, v in val_dice.items()))
        with atomic_path(checkpoint_path) as tmp:
            torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                        "scheduler": scheduler.state_dict(), "state": state, "config": config}, tmp)
        _write_log(state["history"], outdir)
        if state["stale"] >= patience:
            log.info("early stop: no better validation loss for %d epochs", patience)
            break
    return _finish(model, state, config, card, arch, val_samples, channels, outdir, base)


def _finish(model, state, config, card, arch, val_samples, channels, outdir, base) -> TrainingResult:
    import torch  # heavy: the train extra

    from ..models import networks  # imports torch
    model.load_state_dict(state["best_state"])
    model.eval()
    best = state["history"][state["best_epoch"] - 1]
    dice = {k.removeprefix("dice_"): v for k, v in best.items() if k.startswith("dice_")}
    lut = card.class_lut()
    pairs = []
    with torch.no_grad():
        for i, sub in enumerate(val_samples.subtiles):
            x, y = val_samples[i]
            predicted = model(torch.from_numpy(x)[None])[0].argmax(0).numpy()
            reference = np.where(y == IGNORE, MISSING, lut[np.clip(y, 0, None)])
            pairs.append((sub.name, reference, lut[predicted]))
    evaluation = evaluate_arrays(pairs)
    for name, fmt in (("validation_metrics.md", "markdown"), ("validation_metrics.csv", "csv")):
        with atomic_path(outdir / name) as tmp:
            Path(tmp).write_text(evaluation.table(fmt) + "\n")
    write_confusion_png(evaluation, outdir / "validation_confusion_matrix.png", "Validation split, best epoch")
    provenance = {"training": {
        "base_weights": {"source": str(base) if base else None, "sha256": config["base_sha256"]},
        "training_set_sha256": config["training_set_sha256"], "scheme": config["scheme"],
        "epochs": state["epoch"], "best_epoch": state["best_epoch"], "validation_products":
        config["validation_products"], "validation_dice": dice, "loss": "DSC++" if config["gamma"] != 1 else "Dice",
        "gamma": config["gamma"], "seed": config["seed"]}}
    stem = f"{card.id}-finetuned"
    name = f"{card.name} fine-tuned ({state['best_epoch']} of {state['epoch']} epochs)"
    onnx_path, card_path = write_network(arch, card, networks.to_roles(model), outdir / f"{stem}.onnx",
                                         outdir / f"{stem}.json", card_id=stem, name=name, note="",
                                         trained=True, provenance=provenance)
    return TrainingResult(onnx_path, card_path, state["best_epoch"], dice, state["history"])


def _write_log(history: list[dict], outdir: Path) -> None:
    """training_log.csv and training.png (loss and per-class validation Dice by epoch)."""
    from PIL import Image, ImageDraw

    keys = list(history[0])
    with atomic_path(outdir / "training_log.csv") as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, keys)
            writer.writeheader()
            writer.writerows(history)
    width, height, pad = 640, 360, 40
    image = Image.new("RGB", (width, height * 2), "white")
    draw = ImageDraw.Draw(image)
    series = [("train_loss", (200, 60, 60), 0), ("val_loss", (60, 60, 200), 0)]
    series += [(k, CLASS_BY_NAME[k.removeprefix("dice_")].rgb if k.removeprefix("dice_") in CLASS_BY_NAME else
                (0, 0, 0), 1) for k in keys if k.startswith("dice_")]
    for panel, title in ((0, "loss"), (1, "validation Dice")):
        top = panel * height
        draw.rectangle([pad, top + pad, width - pad, top + height - pad], outline="black")
        draw.text((pad, top + 10), f"{title} by epoch", fill="black")
        values = [r[k] for k, _, p in series if p == panel for r in history if np.isfinite(r[k])]
        high = max(values + [1e-9]) if panel == 0 else 1.0
        for i, (key, colour, p) in enumerate(s for s in series if s[2] == panel):
            points = [(pad + (width - 2 * pad) * (r["epoch"] - 1) / max(len(history) - 1, 1),
                       top + height - pad - (height - 2 * pad) * (r[key] / high))
                      for r in history if np.isfinite(r[key])]
            if len(points) > 1:
                draw.line(points, fill=colour if sum(colour) < 700 else (150, 150, 150), width=2)
            draw.text((width - pad - 150, top + pad + 5 + 12 * i), key, fill=colour if sum(colour) < 700 else
                      (150, 150, 150))
    with atomic_path(outdir / "training.png") as tmp:
        image.save(tmp, format="PNG")


def training_json(result: TrainingResult) -> str:
    return json.dumps({"onnx": str(result.onnx), "card": str(result.card), "best_epoch": result.best_epoch,
                       "validation_dice": result.validation_dice})
