"""The ``kappamask`` command line: a thin adapter over the Python API.

Errors the user can fix (KappaMaskError) are printed as one line on stderr
with exit code 2; anything else is a bug: one line too, with exit code 1 (``-vv``
logs its traceback first). Every line, log lines included, passes through
:func:`kappamask_core.foundation.redact.redact`, so no credential is printed.

Each command imports the modules it needs when it runs, so that the command
line starts in a fraction of a second (``--version``, ``models list``) and
PyTorch is imported by ``train`` alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from ..foundation import plugins, redact
from ..foundation.errors import InputError, KappaMaskError, ModelError
from ..foundation.schemes import SCHEMES
from ..foundation.version import __version__
from ..models.variants import PRECISIONS, VARIANT_PRECISIONS
from ..io.files import write_problem

log = logging.getLogger("kappamask")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="auto",
                   help="auto (KappaMask v2 where its weights can be had, else the bundled offline model), default "
                        "(the bundled offline model), a model id or alias, or a card .json (default: %(default)s)")
    p.add_argument("--weights", help="ONNX file for models whose weights are not bundled")
    _add_network_options(p)
    p.add_argument("--level", choices=["L1C", "L2A"], help="product level where the input does not say")
    p.add_argument("--overlap", type=int, help="tile overlap in working pixels (default: the model card's)")
    p.add_argument("--margin", type=int, help="pixels the first tile starts before the edge (default: the card's)")
    p.add_argument("--stitch", choices=["crop", "blend"], default="crop", help="mosaic of overlapping tiles")
    p.add_argument("--batch-size", type=int, help="tiles per inference call (default: 1 on CPU, 8 on CUDA)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all cores)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "tensorrt"], default="auto")
    p.add_argument("--resampling", choices=["bilinear", "nearest"], default="bilinear",
                   help="upsampling of 20/60 m bands on a 10 m working grid (coarser grids use area averages)")
    p.add_argument("--decode", choices=["reduced", "full"], default="reduced",
                   help="for models with a working grid coarser than 10 m: decode bands at the JPEG 2000 / COG "
                        "reduced resolution closest to it (reduced, faster) or at full resolution")
    p.add_argument("--fp16", action="store_true", help="run the model in float16 (GPUs; needs the gpu extra)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: on CPUs, the model's faithful int8 or bf16 variant where one was made (kappamask "
                        "models quantize), else the network as published; fp32: always the network as published; "
                        "int8, bf16: that variant (default: %(default)s)")
    p.add_argument("--encoding", choices=["kappamask", "km_predict"], default="kappamask",
                   help="class values in the GeoTIFF: kappamask (0 missing .. 4 cloud) or km_predict (1..4, 5 missing)")
    p.add_argument("--scores", action="store_true", help="also write per-class scores (STAC asset)")
    p.add_argument("--buffer", metavar="CLASS=METRES,...",
                   help="grow classes after stitching, e.g. cloud=300,shadow=100 (cloud, semi_transparent_cloud, "
                        "shadow); a buffer never covers missing pixels or a stronger class")
    p.add_argument("--usable", action="store_true",
                   help="also write the usable-pixel mask <id>_usable.tif: 1 clear after buffering, 0 not, 255 missing")
    p.add_argument("--no-stac", action="store_true", help="do not write STAC items")
    p.add_argument("--no-progress", action="store_true")


def _add_network_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--offline", action="store_true",
                   help="never use the network (same as KAPPAMASK_OFFLINE=1): no weights download")
    p.add_argument("--weights-mirror", metavar="URL",
                   help="fetch official weights from this mirror instead (same as KAPPAMASK_WEIGHTS_MIRROR)")


def _apply_network_options(args) -> None:
    """The network flags are read where weights are found, from the environment (as for API users)."""
    from ..models.weights import MIRROR_ENV, OFFLINE_ENV

    if getattr(args, "offline", False):
        os.environ[OFFLINE_ENV] = "1"
    if getattr(args, "weights_mirror", None):
        os.environ[MIRROR_ENV] = args.weights_mirror


def _options(args):
    from ..chain.pipeline import ClassifyOptions

    return ClassifyOptions(
        overlap=args.overlap, margin=args.margin, stitch=args.stitch, batch_size=args.batch_size,
        device=args.device, threads=args.threads, resampling=args.resampling, decode=args.decode,
        scores=args.scores, fp16=args.fp16, buffers=args.buffer, precision=args.precision,
        progress=not args.no_progress and sys.stderr.isatty(),
    )


def _inputs(args):
    """The paths given, then what each input source that was asked for yields (one at a time)."""
    wanted = [source for source in plugins.sources() if source.wanted(args)]
    if not args.inputs and not wanted:
        raise InputError("no inputs given: name products, or search a catalogue (kappamask classify --help)")
    if not wanted:
        return list(args.inputs)
    import itertools

    return itertools.chain(args.inputs, *(source.inputs(args) for source in wanted))


def cmd_classify(args) -> int:
    from .api import classify_to_files

    args.inputs = _inputs(args)
    scheduler = getattr(args, "scheduler", None)
    if hasattr(args, "workers"):
        from .batch import check_parallel

        check_parallel(args.workers, scheduler or "processes")
    many = not isinstance(args.inputs, list) or len(args.inputs) > 1
    if scheduler or (getattr(args, "workers", 1) > 1 and many):
        from .batch import classify_many

        if args.no_stac:
            log.warning("--workers and --scheduler always write STAC items")
        outputs = classify_many(args.inputs, args.output, model=args.model, weights=args.weights, level=args.level,
                                options=_options(args), encoding=args.encoding, workers=args.workers,
                                progress=not args.no_progress, usable=args.usable, force=args.force,
                                scheduler=scheduler or "processes")
    else:
        outputs = classify_to_files(
            args.inputs, args.output, model=args.model, weights=args.weights, level=args.level,
            options=_options(args), encoding=args.encoding, stac=not args.no_stac, usable=args.usable,
            force=getattr(args, "force", False), progress=not args.no_progress and sys.stderr.isatty(),
        )
    for out in outputs:
        print(json.dumps({k: str(v) for k, v in out.items()}))
    return 0


def cmd_demo(args) -> int:
    from ..io.readers import DEMO_DATA

    args.inputs = [str(DEMO_DATA)]
    args.output = args.outdir
    start = time.perf_counter()
    code = cmd_classify(args)
    log.info("demo finished in %.1f s; outputs in %s", time.perf_counter() - start, args.outdir)
    return code


def cmd_models_list(args) -> int:
    from ..models.cards import ALIASES, AUTO, builtin_ids, installed_card, weights_dir
    from ..models.variants import variants_of
    from ..models.weights import weights_status

    print(f"weights folder: {weights_dir()}")
    for card_id in builtin_ids():
        card = installed_card(card_id)
        status = weights_status(card)
        if status == "ready" and card.scheme is None and not card.trained:
            status = "ready, UNTRAINED"
        bands = f"{len(card.bands):2d} band{'s' if len(card.bands) != 1 else ' '}"
        print(f"{card_id:22s} {'/'.join(card.levels):4s} {bands}  {card.resolution:2d} m  {status:17s} {card.name}")
        for path, variant, why in variants_of(card):
            if variant is None:
                print(f"  {path.stem:20s} UNUSABLE: {why}")
                continue
            check = variant.variant["check"]
            verdict = "faithful" if variant.faithful else "FAILED its check"
            print(f"  {variant.id:20s} {variant.precision} variant, {verdict}: agreement "
                  f"{100 * check['agreement']:.2f} % on {check['tiles']} tiles; {variant.source}")
    print(f"{AUTO:22s} default: kappamask-v2 where its weights are ready or downloadable, else default")
    for alias, targets in ALIASES.items():
        print(f"{alias:22s} alias: " + ", ".join(f"{k} -> {v}" for k, v in targets.items()))
    return 0


def cmd_models_show(args) -> int:
    from ..models.resolve import resolve_card

    print(json.dumps(resolve_card(args.model, args.level).raw, indent=2))
    return 0


def cmd_evaluate(args) -> int:
    from ..learning.evaluate import evaluate_paths

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
        from ..learning.evaluate import write_evaluation

        log.info("wrote %s", ", ".join(map(str, write_evaluation(result, args.output))))
    return 0


def cmd_models_verify(args) -> int:
    from ..models.resolve import resolve_model
    from ..chain.infer import open_runner
    from ..learning.kappaset import verify_golden

    if not 0 <= args.min_equal <= 100:  # also false for NaN
        raise InputError(f"--min-equal must be a percentage from 0 to 100, not {args.min_equal}")
    paths = sorted(Path(args.subtiles).glob("*.nc")) if Path(args.subtiles).is_dir() else [Path(args.subtiles)]
    runner = open_runner(resolve_model(args.model, args.level, weights=args.weights), batch_size=1)  # one by one
    results = verify_golden(runner, paths, args.label)
    for name, share in results:
        verdict = "EQUAL  " if share == 1 else "PASS   " if 100 * share >= args.min_equal else "DIFFERS"
        print(f"{verdict} {name}: {100 * share:.4f} % of pixels equal")
    failed = [name for name, share in results if 100 * share < args.min_equal]
    if failed:
        raise ModelError(f"{len(failed)} of {len(results)} sub-tiles have less than {args.min_equal} % of pixels "
                         f"equal to their stored labels ({', '.join(failed)})")
    return 0


def cmd_models_import(args) -> int:
    from ..models.weights import import_keras

    trained = not args.untrained
    if args.quantize:
        onnx_path, card_path = _import_with_variant(args)
    else:
        onnx_path, card_path = import_keras(args.weights, args.arch, args.level, args.output, trained=trained)
    print(f"{onnx_path}\n{card_path}")
    if args.untrained:
        log.warning("marked UNTRAINED in its card: timing and tests only")
    else:
        # nothing in a weights file says whether it was trained: the card records what the user asserts
        suspicious = [w for w in ("random", "untrained", "test") if w in Path(args.weights).name.lower()]
        log.warning("marked TRAINED in its card, as this command asserts (a weights file cannot show it); 'auto' "
                    "will run it. %sImport again with --untrained if these weights were never trained.",
                    f"The file name says {suspicious[0]!r}. " if suspicious else "")
    return 0


def _import_with_variant(args):
    """Import and make the variant in a scratch folder; move the four files into place together only when the
    variant is faithful (a failed variant leaves nothing behind, the imported network included)."""
    import shutil
    import tempfile

    from ..io.files import atomic_files
    from ..learning.quantize import make_variant
    from ..models.cards import weights_dir
    from ..models.weights import import_keras

    outdir = Path(args.output) if args.output else weights_dir()
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"{outdir} is a file; name a folder for the imported model (-o)")
    with tempfile.TemporaryDirectory(prefix="kappamask-import-") as work:
        onnx_tmp, card_tmp = import_keras(args.weights, args.arch, args.level, work, trained=not args.untrained)
        result = make_variant(str(card_tmp), args.quantize, calibrate=args.calibrate, output=work)
        _report_variant(result)  # raises when the variant is not faithful: nothing was moved
        made = [onnx_tmp, card_tmp, result.onnx, result.card_path]
        with atomic_files(*(outdir / Path(p).name for p in made)) as temps:
            for source, temp in zip(made, temps):
                shutil.copyfile(source, temp)
    return outdir / Path(onnx_tmp).name, outdir / Path(card_tmp).name


def cmd_models_quantize(args) -> int:
    from ..learning.quantize import make_variant

    result = make_variant(args.model, args.precision, level=args.level, calibrate=args.calibrate, check=args.check,
                          output=args.output, keep_failed=args.keep_failed)
    return _report_variant(result)


def _report_variant(result) -> int:
    """The variant's check on stdout (one JSON line), its files, and a clear verdict."""
    variant, check = result.card["variant"], result.check
    print(json.dumps({"id": result.card["id"], "parent": variant["parent"]["id"], "precision": variant["precision"],
                      "faithful": check.faithful, "agreement": round(check.agreement, 5),
                      "dice": {k: (None if v is None else round(v, 4)) for k, v in check.dice.items()},
                      "check_tiles": check.tiles, "calibration_tiles": variant["calibration"]["tiles"],
                      "seconds_per_tile": variant["check"]["seconds_per_tile"],
                      "onnx": str(result.onnx) if result.onnx else None,
                      "card": str(result.card_path) if result.card_path else None}))
    if check.faithful:
        return 0
    failures = "; ".join(check.failures())
    if result.onnx:
        log.warning("the %s variant is NOT faithful (%s); kept as asked, 'auto' will never run it",
                    variant["precision"], failures)
        return 0
    raise ModelError(f"the {variant['precision']} variant of {variant['parent']['id']} is not faithful to it "
                     f"({failures}); nothing was written (--keep-failed keeps it for study)")


def cmd_models_export(args) -> int:
    from ..models.export import export

    onnx_path, card_path = export(args.arch, args.level, args.output, args.weights)
    print(f"{onnx_path}\n{card_path}")
    if not args.weights:
        log.warning("no weights given: the network is RANDOM-INITIALISED (timing and tests only); the card says so")
    return 0


def cmd_train(args) -> int:
    from ..learning.training import train, training_json

    result = train(args.data, args.output, arch=args.arch, level=args.level, base=args.base, epochs=args.epochs,
                   batch_size=args.batch_size, lr=args.lr, val_fraction=args.val_fraction, seed=args.seed,
                   gamma=args.gamma, scheme=args.scheme, resume=args.resume,
                   progress=not args.no_progress and sys.stderr.isatty(), threads=args.threads,
                   patience=args.patience, lr_patience=args.lr_patience)
    print(training_json(result))
    return 0


def cmd_select(args) -> int:
    from ..learning.selection import select

    rows = select(args.product, args.output, model=args.model, n=args.n, weights=args.weights, level=args.level,
                  options=_options(args))
    for row in rows:
        print(json.dumps(row))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kappamask", description="Cloud and cloud-shadow masks for Sentinel-2.")
    parser.add_argument("--version", action="version", version=f"kappamask {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="say what is happening (-v: each product's model and result; -vv: debugging detail); "
                             "without it only warnings and errors are printed")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("classify", help="classify products into a five-class 10 m map")
    p.add_argument("inputs", nargs="*", help="SAFE folder or .zip, band folder, or STAC item .json")
    p.add_argument("-o", "--output", required=True, help="output folder")
    for source in plugins.sources():  # inputs from elsewhere, e.g. a STAC API search (kappamask_stac)
        source.add_arguments(p)
    p.add_argument("--workers", type=int, default=1, help="products classified in parallel (Dask processes)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the products on an existing Dask distributed cluster, e.g. tcp://10.0.0.5:8786 (its "
                        "workers must see the inputs and the output folder)")
    p.add_argument("--force", action="store_true",
                   help="classify again products whose outputs exist (by default they are skipped when complete and "
                        "made with the same model and settings)")
    _add_run_options(p)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("demo", help="classify the bundled sample scene")
    p.add_argument("outdir")
    _add_run_options(p)
    p.set_defaults(func=cmd_demo)

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
    _add_run_options(p)
    p.set_defaults(func=cmd_select)

    p = sub.add_parser("evaluate", help="Dice, precision, recall and confusion matrix of a mask against labels")
    p.add_argument("--reference", required=True, help="label map, or folder of them (GeoTIFF, .npy, .npz)")
    p.add_argument("--prediction", required=True, help="mask to score, or folder of them (matched by file name)")
    p.add_argument("--reference-scheme", choices=sorted(SCHEMES), default="kappamask")
    p.add_argument("--prediction-scheme", choices=sorted(SCHEMES), default="kappamask")
    p.add_argument("--merge", action="append", metavar="CLASS=INTO",
                   help="count CLASS as INTO, e.g. semi_transparent_cloud=cloud (repeatable)")
    p.add_argument("-o", "--output", help="folder for metrics.md, metrics.csv and confusion_matrix.png")
    p.set_defaults(func=cmd_evaluate)

    models = sub.add_parser("models", help="list, show, import, export or verify models")
    models = models.add_subparsers(dest="models", required=True)
    p = models.add_parser("list", help="the built-in models and whether their weights are ready, downloadable or "
                                       "missing")
    _add_network_options(p)
    p.set_defaults(func=cmd_models_list)
    p = models.add_parser("import", help="convert KappaZeta's official Keras weights (.hdf5) into an ONNX model "
                                         "and card (no TensorFlow or PyTorch needed)")
    p.add_argument("weights", help="official-format Keras HDF5 file, e.g. l1c_deeplabv3plus.hdf5")
    p.add_argument("--arch", choices=["kappamask-v2", "kappamask-v1"], help="network (default: detected)")
    p.add_argument("--level", choices=["L1C", "L2A"], help="product level (default: detected)")
    p.add_argument("-o", "--output", help="folder to write into (default: the weights folder, where "
                                          "--model kappamask-v2 / kappamask-v1 find it)")
    p.add_argument("--untrained", action="store_true",
                   help="the file holds untrained weights (test fixtures): say so in the card")
    p.add_argument("--quantize", nargs="?", const="int8", choices=VARIANT_PRECISIONS, metavar="PRECISION",
                   help="also make its int8 (the default) or bf16 variant, as kappamask models quantize does; kept "
                        "only when faithful")
    p.add_argument("--calibrate", action="append", metavar="PRODUCT",
                   help="with --quantize: a product to calibrate and check on (repeatable; default: the demo scene)")
    p.set_defaults(func=cmd_models_import)
    p = models.add_parser("quantize", help="make a model's int8 or bf16 variant for CPUs and check it against the "
                                           "network on real tiles; kept only when faithful")
    p.add_argument("model", help="a model id, alias (with --level), card .json or .onnx")
    p.add_argument("--precision", choices=VARIANT_PRECISIONS, default="int8",
                   help="int8: ONNX Runtime static quantisation, calibrated on real tiles; bf16: the float32 network "
                        "run by OpenVINO in bfloat16 (needs OpenVINO and a CPU with bfloat16 arithmetic)")
    p.add_argument("--level", choices=["L1C", "L2A"], help="product level, for aliases such as kappamask-v2")
    p.add_argument("--calibrate", action="append", metavar="PRODUCT",
                   help="a product to calibrate on (repeatable; default: the bundled demo scene, for L1C models); "
                        "without --check, its tiles alternate between calibration and the check")
    p.add_argument("--check", action="append", metavar="PRODUCT",
                   help="a product to check the variant on (repeatable; never used for calibration)")
    p.add_argument("-o", "--output", help="folder for the variant (default: the weights folder, where --precision "
                                          "auto finds it; it also looks beside the model's card)")
    p.add_argument("--keep-failed", action="store_true",
                   help="write the variant even when it fails its check (never run by auto)")
    _add_network_options(p)
    p.set_defaults(func=cmd_models_quantize)
    p = models.add_parser("export", help="export a KappaMask network to ONNX with its card (needs PyTorch)")
    p.add_argument("arch", choices=["kappamask-v2", "kappamask-v1", "v2", "v1", "deeplabv3plus", "unet"])
    p.add_argument("--level", choices=["L1C", "L2A"], required=True)
    p.add_argument("--weights", help="PyTorch state dict (.pt); without it the weights are random")
    p.add_argument("-o", "--output", required=True, help="ONNX file to write; the card goes beside it (.json)")
    p.set_defaults(func=cmd_models_export)
    p = models.add_parser("verify", help="compare a model's argmax with the labels stored in KappaSet sub-tiles "
                                         "(the official golden test)")
    p.add_argument("model")
    p.add_argument("--subtiles", required=True, help="a .nc sub-tile or a folder of them")
    p.add_argument("--level", choices=["L1C", "L2A"])
    p.add_argument("--weights")
    p.add_argument("--label", help="label variable (default: the first of Label, KML1C, KML2A present)")
    p.add_argument("--min-equal", type=float, default=99.9, metavar="PERCENT",
                   help="share of equal pixels each sub-tile needs (default: %(default)s; converted networks differ "
                        "from the original framework in the last float bits, which flips near-ties)")
    _add_network_options(p)
    p.set_defaults(func=cmd_models_verify)
    p = models.add_parser("show")
    p.add_argument("model")
    p.add_argument("--level", choices=["L1C", "L2A"])
    p.set_defaults(func=cmd_models_show)

    for register in plugins.commands():  # sub-commands of the adapters (STAC, openEO)
        register(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: every temporary file is removed on the way out."""


def _raise_terminated(signum, frame):
    raise Terminated()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(message)s", stream=sys.stderr)
    redact.install()  # no credential reaches a log line, whichever library writes it (-vv shows request headers)
    # Libraries speak through logging and Python warnings (GDAL's messages about a damaged file, rasterio's about
    # a file without georeferencing): the error they lead to reaches the user as one line that quotes GDAL, so
    # they are shown only with -v (and everything with -vv)
    logging.captureWarnings(True)
    quiet = {0: logging.CRITICAL, 1: logging.WARNING}.get(args.verbose, logging.DEBUG)
    libraries = {name: logging.getLogger(name).level for name in ("rasterio", "py.warnings")}
    for name in libraries:
        logging.getLogger(name).setLevel(quiet)
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        _apply_network_options(args)
        code = args.func(args)
        sys.stdout.flush()  # here, where a reader that went away is caught (not at the interpreter's exit)
        return code
    except BrokenPipeError:  # the reader went away (kappamask models list | head -1): stop quietly, as tools do
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        except (OSError, ValueError, AttributeError):
            pass
        return 141  # 128 + SIGPIPE
    except KappaMaskError as exc:
        # one line, whatever a library put into the message (ONNX tools, GDAL and PyTorch write several)
        print(f"kappamask: error: {redact.redact(' '.join(str(exc).split()))}", file=sys.stderr)
        return 2
    except Exception as exc:
        problem = write_problem(exc)  # a full disk or a read-only folder outside the atomic writes: not a bug
        if problem is None:
            # a bug: still one line (exit 1); -vv logs the traceback first, redacted like every log line
            log.debug("the traceback of the unexpected error:", exc_info=True)
            text = redact.redact(" ".join(f"{type(exc).__name__}: {exc}".split()))[:400]
            print(f"kappamask: error: unexpected {text} (this is a bug; please report it with the output of the "
                  "same command run with -vv)", file=sys.stderr)
            return 1
        where = getattr(exc, "filename", None)
        print(f"kappamask: error: {problem}" + (f": {where}" if where else f" ({redact.redact(' '.join(str(exc).split()))})"),
              file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"kappamask: {what}; products that were finished keep all their files, nothing partial was left",
              file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        # main() is also called from Python (tests, notebooks): leave the process's logging as it was
        logging.captureWarnings(False)
        for name, old_level in libraries.items():
            logging.getLogger(name).setLevel(old_level)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
