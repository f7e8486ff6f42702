"""``kappamask classify`` and ``kappamask demo``: products (or a catalogue search) to maps, files and items."""

from __future__ import annotations

import json
import sys
import time

from ...foundation import plugins
from ...foundation.errors import InputError
from .common import add_run_options, log, progress_wanted, run_options


def inputs_of(args):
    """The paths given, then what each input source that was asked for yields (one at a time)."""
    wanted = [source for source in plugins.sources() if source.wanted(args)]
    if not args.inputs and not wanted:
        raise InputError("no inputs given: name products, or search a catalogue (kappamask classify --help)")
    if not wanted:
        return list(args.inputs)
    import itertools

    return itertools.chain(args.inputs, *(source.inputs(args) for source in wanted))


def cmd_classify(args) -> int:
    from ..api import classify_to_files

    args.inputs = inputs_of(args)
    before = _stamps(args.output) if getattr(args, "output", None) else {}
    scheduler = getattr(args, "scheduler", None)
    if hasattr(args, "workers"):
        from ..batch import check_parallel

        check_parallel(args.workers, scheduler or "processes")
    many = not isinstance(args.inputs, list) or len(args.inputs) > 1
    if scheduler or (getattr(args, "workers", 1) > 1 and many):
        from ..batch import classify_many

        if args.no_stac:
            log.warning("--workers and --scheduler always write STAC items")
        outputs = classify_many(args.inputs, args.output, model=args.model, weights=args.weights, level=args.level,
                                options=run_options(args), encoding=args.encoding, workers=args.workers,
                                progress=progress_wanted(args), usable=args.usable, force=args.force,
                                scheduler=scheduler or "processes")
    else:
        outputs = classify_to_files(
            args.inputs, args.output, model=args.model, weights=args.weights, level=args.level,
            options=run_options(args), encoding=args.encoding, stac=not args.no_stac, usable=args.usable,
            force=getattr(args, "force", False), progress=progress_wanted(args),
        )
    for out in outputs:
        print(json.dumps({k: str(v) for k, v in out.items()}))
    kept = [out for out in outputs if _unchanged(out, before)]
    if kept:  # a rerun that wrote nothing says so, as the demo does
        command = "demo" if args.command == "demo" else "classify"
        what = "its outputs are" if len(outputs) == 1 else f"the outputs of {len(kept)} of {len(outputs)} products are"
        print(f"kappamask {command}: already done in {args.output} ({what} complete and were made with the same "
              "model and settings); --force to redo", file=sys.stderr)
    return 0


def cmd_demo(args) -> int:
    from ...io.readers import DEMO_DATA

    args.inputs = [str(DEMO_DATA)]
    args.output = args.outdir
    start = time.perf_counter()
    code = cmd_classify(args)
    log.info("demo finished in %.1f s; outputs in %s", time.perf_counter() - start, args.outdir)
    return code


def _stamps(folder) -> dict:
    from pathlib import Path

    folder = Path(folder)
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*_kappamask*")} if folder.is_dir() else {}


def _unchanged(out: dict, before: dict) -> bool:
    """Whether every file of one product's outputs was there before the run, untouched (the run kept them)."""
    from pathlib import Path

    paths = [Path(p) for p in out.values() if Path(p).is_file()]
    return bool(paths) and all(before.get(p.name) == p.stat().st_mtime_ns for p in paths)


def register(sub) -> None:
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
    add_run_options(p)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("demo", help="classify the bundled sample scene")
    p.add_argument("outdir")
    p.add_argument("--force", action="store_true", help="classify it again when its outputs are complete")
    add_run_options(p)
    p.set_defaults(func=cmd_demo)
