"""``kappamask train``, ``select`` and ``evaluate``: fine-tuning, active learning and scoring masks."""

from __future__ import annotations

import json
import sys

from ...foundation.errors import InputError
from ...foundation.schemes import SCHEMES
from .common import add_run_options, log, run_options


def cmd_train(args) -> int:
    from ...learning.training import train, training_json

    result = train(args.data, args.output, arch=args.arch, level=args.level, base=args.base, epochs=args.epochs,
                   batch_size=args.batch_size, lr=args.lr, val_fraction=args.val_fraction, seed=args.seed,
                   gamma=args.gamma, scheme=args.scheme, resume=args.resume,
                   progress=not args.no_progress and sys.stderr.isatty(), threads=args.threads,
                   patience=args.patience, lr_patience=args.lr_patience)
    print(training_json(result))
    return 0


def cmd_select(args) -> int:
    from ...learning.selection import select

    rows = select(args.product, args.output, model=args.model, n=args.n, weights=args.weights, level=args.level,
                  options=run_options(args))
    for row in rows:
        print(json.dumps(row))
    return 0


def cmd_evaluate(args) -> int:
    from ...learning.evaluate import evaluate_paths

    merges = {}
    for item in args.merge or []:
        src, sep, dst = item.partition("=")
        if not sep:
            raise InputError(f"--merge takes CLASS=INTO, e.g. semi_transparent_cloud=cloud, not {item!r}")
        merges[src] = dst
    result = evaluate_paths(args.reference, args.prediction, reference_scheme=args.reference_scheme,
                            prediction_scheme=args.prediction_scheme, merges=merges)
    print(result.table("markdown"))
    if args.output:
        from ...learning.evaluate import write_evaluation

        log.info("wrote %s", ", ".join(map(str, write_evaluation(result, args.output))))
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="fine-tune KappaMask v2 or v1 on labelled 512 px sub-tiles (needs PyTorch)")
    p.add_argument("data", help="folder of KappaSet .nc sub-tiles, or with images/ and labels/ GeoTIFF pairs")
    p.add_argument("-o", "--output", required=True, help="folder for the checkpoint, log, metrics and the model")
    p.add_argument("--arch", choices=["kappamask-v2", "kappamask-v1"], default="kappamask-v2")
    p.add_argument("--level", choices=["L1C", "L2A"], default="L1C")
    p.add_argument("--from", dest="base", metavar="WEIGHTS",
                   help="start from these weights: an official .hdf5, an imported model (.onnx, card .json or id "
                        "such as kappamask-v2-l1c); default: from scratch")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (halved on a validation plateau)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of the products kept for validation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gamma", type=float, help="DSC++ exponent (default: 2 for v2; v1 uses the Dice loss, 1)")
    p.add_argument("--scheme", choices=sorted(SCHEMES), help="class scheme of the labels (default: kappaset for .nc)")
    p.add_argument("--patience", type=int, default=5,
                   help="stop after this many epochs without a better validation loss (default: %(default)s)")
    p.add_argument("--lr-patience", type=int, default=2,
                   help="halve the learning rate after this many epochs without a better validation loss "
                        "(default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in the output folder")
    p.add_argument("--threads", type=int, help="PyTorch threads (default: all cores)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("select", help="active learning: write the product's most uncertain 512 px sub-tiles in "
                                      "KappaSet format, with overlays and an index")
    p.add_argument("product", help="SAFE folder or .zip, band folder, or STAC item")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--n", type=int, default=10, help="sub-tiles to write (default: %(default)s)")
    add_run_options(p)
    p.set_defaults(func=cmd_select)

    p = sub.add_parser("evaluate", help="Dice, precision, recall and confusion matrix of a mask against labels, or "
                                        "its agreement with a product's own mask (Landsat QA_PIXEL, HLS Fmask, SCL)")
    p.add_argument("--reference", required=True, help="label map, or folder of them (GeoTIFF, .npy, .npz)")
    p.add_argument("--prediction", required=True, help="mask to score, or folder of them (matched by file name)")
    p.add_argument("--reference-scheme", choices=sorted(SCHEMES), default="kappamask")
    p.add_argument("--prediction-scheme", choices=sorted(SCHEMES), default="kappamask")
    p.add_argument("--merge", action="append", metavar="CLASS=INTO",
                   help="count CLASS as INTO, e.g. semi_transparent_cloud=cloud (repeatable)")
    p.add_argument("-o", "--output", help="folder for metrics.md, metrics.csv and confusion_matrix.png")
    p.set_defaults(func=cmd_evaluate)
