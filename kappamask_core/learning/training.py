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
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..foundation.classes import CLASS_BY_NAME, MISSING
from ..foundation.errors import InputError, TrainingError
from ..foundation.types import PathLike
from ..io.files import atomic_path
from ..models.cards import builtin_card
from ..models.export import torch_networks
from ..models.keras_weights import canonical_arch
from ..models.weights import write_network
from .evaluate import evaluate_arrays, write_confusion_png
from .training_checks import (
    Settings,
    check_settings,
    label_scheme,
    load_base,
    output_folder,
    read_checkpoint,
    split_and_check,
)
from .training_data import IGNORE, Samples, augment, batches, find_subtiles, targets_of, training_set_digest

__all__ = ["TrainingResult", "dice_loss", "train", "training_json"]

log = logging.getLogger(__name__)

PLATEAU_PATIENCE, STOP_PATIENCE = 2, 5


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


@dataclass
class TrainingResult:
    """What a training run wrote: the best epoch's network and card, and its validation Dice and history."""

    onnx: Path
    card: Path
    best_epoch: int
    validation_dice: dict
    history: list = field(default_factory=list)


def train(data: PathLike, outdir: PathLike, *, arch: str = "kappamask-v2", level: str = "L1C",
          base: PathLike | None = None, epochs: int = 50,
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
    settings = check_settings(arch, level, epochs=epochs, batch_size=batch_size, lr=lr, val_fraction=val_fraction,
                              seed=seed, gamma=gamma, patience=patience, lr_patience=lr_patience, threads=threads)
    outdir = output_folder(outdir)
    subtiles = find_subtiles(data)
    scheme = label_scheme(data, subtiles, scheme)
    train_samples, val_samples = split_and_check(subtiles, settings, card, scheme)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = networks.build(arch, len(card.bands))
    config = {"arch": arch, "level": level, "seed": seed, "lr": lr, "lr_patience": lr_patience,
              "batch_size": batch_size, "gamma": settings.gamma, "scheme": scheme,
              "base_sha256": load_base(networks, model, base, settings, len(card.bands)),
              "validation_products": sorted({s.product for s in val_samples.subtiles}),
              "training_set_sha256": training_set_digest(subtiles)}
    trainer = _Trainer(torch, model, card, settings, config, outdir / "checkpoint.pt")
    if resume:
        trainer.resume()
    for epoch in range(trainer.state["epoch"] + 1, epochs + 1):
        trainer.epoch(epoch, train_samples, val_samples, progress)
        _write_log(trainer.state["history"], outdir)
        if trainer.state["stale"] >= patience:
            log.info("early stop: no better validation loss for %d epochs", patience)
            break
    return _finish(model, trainer.state, config, card, arch, val_samples, outdir, base)


class _Trainer:
    """One network's optimiser, scheduler and history; an epoch trains, recalibrates, validates and checkpoints."""

    def __init__(self, torch, model, card, settings: Settings, config: dict, checkpoint: Path):
        self.torch, self.model, self.card, self.settings, self.config = torch, model, card, settings, config
        self.checkpoint = checkpoint
        self.channels = sorted({int(c) for c in targets_of(card) if c != IGNORE})
        self.optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimiser, mode="min", factor=0.5,
                                                                    patience=settings.lr_patience)
        self.state: dict[str, Any] = {"epoch": 0, "history": [], "best_loss": float("inf"), "best_epoch": 0,
                                      "best_state": None, "stale": 0}

    def resume(self) -> None:
        saved = read_checkpoint(self.torch, self.checkpoint, self.config)
        self.model.load_state_dict(saved["model"])
        self.optimiser.load_state_dict(saved["optimiser"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.state = saved["state"]
        log.info("resuming after epoch %d", self.state["epoch"])

    def epoch(self, epoch: int, train_samples: Samples, val_samples: Samples, progress: bool) -> None:
        train_loss, _ = self.run(train_samples, True, epoch, progress)
        self.recalibrate(train_samples)
        val_loss, val_dice = self.run(val_samples, False, epoch, False)
        self.scheduler.step(val_loss)
        state = self.state
        state["history"].append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                                 "lr": self.optimiser.param_groups[0]["lr"],
                                 **{f"dice_{k}": v for k, v in val_dice.items()}})
        if val_loss < state["best_loss"]:
            state.update(best_loss=val_loss, best_epoch=epoch, stale=0,
                         best_state={k: v.clone() for k, v in self.model.state_dict().items()})
        else:
            state["stale"] += 1
        state["epoch"] = epoch
        log.info("epoch %d: training loss %.4f, validation loss %.4f, Dice %s", epoch, train_loss, val_loss,
                 ", ".join(f"{k} {v:.3f}" for k, v in val_dice.items()))
        with atomic_path(self.checkpoint) as tmp:
            self.torch.save({"model": self.model.state_dict(), "optimiser": self.optimiser.state_dict(),
                             "scheduler": self.scheduler.state_dict(), "state": state, "config": self.config}, tmp)

    def run(self, samples: Samples, training: bool, epoch: int, progress: bool) -> tuple[float, dict]:
        """(mean loss, Dice by class) over ``samples``; with ``training`` the weights learn from them."""
        torch, seed, size = self.torch, self.settings.seed, self.settings.batch_size
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        torch.manual_seed(seed * 100_003 + epoch)  # dropout
        order = torch.randperm(len(samples), generator=generator).tolist() if training else list(range(len(samples)))
        self.model.train(training)
        total, count, stats = 0.0, 0, np.zeros((len(self.channels), 3))
        bar = _progress_bar(len(order), epoch) if progress else None
        # evaluation (batch-norm statistics fixed) takes any batch; training never a batch of one (see batches)
        plan = batches(len(order), size) if training else [
            range(a, min(a + size, len(order))) for a in range(0, len(order), size)]
        for batch in plan:
            pairs = [samples[order[i]] for i in batch]
            if training:
                pairs = [augment(torch.from_numpy(x), torch.from_numpy(y), generator) for x, y in pairs]
            x = torch.stack([torch.as_tensor(p[0]) for p in pairs])
            y = torch.stack([torch.as_tensor(p[1]) for p in pairs])
            probs, loss = self.step(x, y, training, epoch)
            total += float(loss.detach()) * len(pairs)
            count += len(pairs)
            predicted = probs.argmax(1)
            for k, c in enumerate(self.channels):
                truth, guess = (y == c), (predicted == c) & (y != IGNORE)
                stats[k] += [int((truth & guess).sum()), int((guess & ~truth).sum()), int((truth & ~guess).sum())]
            if bar is not None:
                bar.update(len(pairs))
        if bar is not None:
            bar.close()
        return total / max(count, 1), self.dice(stats)

    def step(self, x, y, training: bool, epoch: int):
        torch = self.torch
        with torch.set_grad_enabled(training):
            probs = self.model(x)
            loss = dice_loss(probs, y, self.channels, self.settings.gamma)
        if not torch.isfinite(loss):
            done = self.state["epoch"]
            kept = (f"The last good checkpoint (epoch {done}) is kept in {self.checkpoint}; lower the learning rate "
                    "(--lr) and resume, or check the data" if done else
                    "No epoch finished, so no checkpoint was written; lower the learning rate (--lr) or check the data")
            raise TrainingError(f"the loss became {float(loss.detach())} in epoch {epoch}; the run stops here. {kept}")
        if training:
            self.optimiser.zero_grad()
            loss.backward()
            self.optimiser.step()
        return probs, loss

    def dice(self, stats) -> dict:
        result = {}
        for k, c in enumerate(self.channels):
            tp, fp, fn = stats[k]
            name = next(o.maps_to for o in self.card.outputs if o.index == c)
            result[name] = float(2 * tp / (2 * tp + fp + fn)) if (2 * tp + fp + fn) else float("nan")
        return result

    def recalibrate(self, train_samples: Samples) -> None:
        """Batch-norm statistics as the average over the training set under the epoch's weights.

        Keras' running averages (momentum 0.99) need thousands of steps to follow the weights; a fine-tuning
        set can be far smaller. Only the statistics change; the weights are the ones the optimiser made.
        """
        torch = self.torch
        norms = [m for m in self.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        if not norms:
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        self.model.train()
        with torch.no_grad():
            for batch in batches(len(train_samples), self.settings.batch_size):
                self.model(torch.from_numpy(np.stack([train_samples[i][0] for i in batch])))
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum


def _progress_bar(total: int, epoch: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="sub-tile", desc=f"epoch {epoch}", leave=False, file=sys.stderr)


def _finish(model, state, config, card, arch, val_samples, outdir, base) -> TrainingResult:
    import torch  # heavy: the train extra

    from ..models import networks  # imports torch
    model.load_state_dict(state["best_state"])
    model.eval()
    best = state["history"][state["best_epoch"] - 1]
    # a class absent from the validation split has no Dice: null in the card (whose numbers must be finite), not NaN
    dice = {k.removeprefix("dice_"): (None if isinstance(v, float) and not np.isfinite(v) else v)
            for k, v in best.items() if k.startswith("dice_")}
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
