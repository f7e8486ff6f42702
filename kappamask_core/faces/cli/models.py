"""``kappamask models``: list, show, import, quantize, export and verify models."""

from __future__ import annotations

import json
from pathlib import Path

from ...foundation.errors import InputError, ModelError
from ...models.variants import VARIANT_PRECISIONS
from .common import add_network_options, add_progress_option, log, progress_wanted


def _sensors(sensors) -> str:
    """'Sentinel-2, Landsat 5/7/8/9, HLS L30/S30': the sensors a card names, shortly."""
    groups: dict[str, list[str]] = {}
    for sensor in sensors:
        family, _, member = sensor.rpartition("-")
        groups.setdefault(family, []).append(member.upper() if family == "hls" else member)
    names = {"sentinel": "Sentinel", "landsat": "Landsat", "hls": "HLS"}
    return ", ".join("Sentinel-2" if family == "sentinel" else f"{names[family]} {'/'.join(members)}"
                     for family, members in groups.items())


def cmd_models_list(args) -> int:
    from ...models.cards import ALIASES, AUTO, builtin_ids, installed_card
    from ...models.folders import weights_dir
    from ...models.variants import variants_of
    from ...models.weights import weights_status

    print(f"weights folder: {weights_dir()}")
    for card_id in builtin_ids():
        card = installed_card(card_id)
        status = weights_status(card)
        if status == "ready" and card.scheme is None and not card.trained:
            status = "ready, UNTRAINED"
        bands = f"{len(card.bands):2d} band{'s' if len(card.bands) != 1 else ' '}"
        print(f"{card_id:22s} {'/'.join(card.levels):4s} {bands}  {card.resolution:2d} m  {status:17s} {card.name}"
              f" (for {_sensors(card.sensors)})")
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
    from ...models.resolve import resolve_card

    print(json.dumps(resolve_card(args.model, args.level).raw, indent=2))
    return 0


def cmd_models_verify(args) -> int:
    from ...learning.kappaset import verify_golden
    from ...models.resolve import resolve_model
    from ...models.runners import open_runner

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
    from ...models.weights import import_keras

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

    from ...io.files import atomic_files
    from ...models.folders import weights_dir
    from ...models.weights import import_keras
    from ..quantize import make_variant

    outdir = Path(args.output) if args.output else weights_dir()
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"{outdir} is a file; name a folder for the imported model (-o)")
    with tempfile.TemporaryDirectory(prefix="kappamask-import-") as work:
        onnx_tmp, card_tmp = import_keras(args.weights, args.arch, args.level, work, trained=not args.untrained)
        result = make_variant(str(card_tmp), args.quantize, calibrate=args.calibrate, output=work,
                              progress=progress_wanted(args))
        _report_variant(result)  # raises when the variant is not faithful: nothing was moved
        made = [onnx_tmp, card_tmp, result.onnx, result.card_path]
        with atomic_files(*(outdir / Path(p).name for p in made)) as temps:
            for source, temp in zip(made, temps):
                shutil.copyfile(source, temp)
    return outdir / Path(onnx_tmp).name, outdir / Path(card_tmp).name


def cmd_models_quantize(args) -> int:
    from ..quantize import make_variant

    result = make_variant(args.model, args.precision, level=args.level, calibrate=args.calibrate, check=args.check,
                          output=args.output, keep_failed=args.keep_failed,
                          progress=progress_wanted(args))
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
    from ...models.export import export

    onnx_path, card_path = export(args.arch, args.level, args.output, args.weights)
    print(f"{onnx_path}\n{card_path}")
    if not args.weights:
        log.warning("no weights given: the network is RANDOM-INITIALISED (timing and tests only); the card says so")
    return 0


def register(sub) -> None:
    models = sub.add_parser("models", help="list, show, import, export or verify models")
    models = models.add_subparsers(dest="models", required=True)
    p = models.add_parser("list", help="the built-in models and whether their weights are ready, downloadable or "
                                       "missing")
    add_network_options(p)
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
    add_progress_option(p)
    p.set_defaults(func=cmd_models_import)
    p = models.add_parser("quantize", help="make a model's int8 or bf16 variant for CPUs and check it against the "
                                           "network on real tiles; kept only when faithful")
    p.add_argument("model", help="a model id, alias (with --level), card .json or .onnx")
    p.add_argument("--precision", choices=VARIANT_PRECISIONS, default="int8",
                   help="int8 (the default): ONNX Runtime static quantisation, calibrated on real tiles; bf16: the "
                        "float32 network run by OpenVINO in bfloat16 (needs OpenVINO and a CPU with bfloat16 "
                        "arithmetic)")
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
    add_network_options(p)
    add_progress_option(p)
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
    add_network_options(p)
    p.set_defaults(func=cmd_models_verify)
    p = models.add_parser("show")
    p.add_argument("model")
    p.add_argument("--level", choices=["L1C", "L2A"])
    p.set_defaults(func=cmd_models_show)
