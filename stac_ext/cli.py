"""``kappamask stac ...`` sub-commands."""

from __future__ import annotations

from pathlib import Path

from kappamask_core.foundation import InputError, redact


def cmd_validate(args) -> int:
    from .validate import validate_path  # jsonschema and the schemas: only for this command

    if not Path(args.path).exists():
        raise InputError(f"{args.path}: no such file or folder")
    report = validate_path(args.path)
    if not report:
        raise InputError(f"{args.path}: no STAC JSON found")
    bad = 0
    for path, errors in report.items():
        print(f"{'OK     ' if not errors else 'INVALID'} {path}")
        for err in errors:
            print(f"    {err}")
        bad += bool(errors)
    return 1 if bad else 0


def cmd_publish(args) -> int:
    from .publish import publish

    result = publish(args.folder, args.api, collection=args.collection, href_base=args.href_base,
                     allow_local=args.allow_local_hrefs, tiler_url=args.tiler_url)
    print(redact(result.summary()))
    return 0


def register(sub) -> None:
    stac = sub.add_parser("stac", help="STAC utilities").add_subparsers(dest="stac", required=True)
    p = stac.add_parser("validate", help="validate STAC items/collections offline against all their schemas")
    p.add_argument("path", help="a STAC JSON file or a folder of them")
    p.set_defaults(func=cmd_validate)
    p = stac.add_parser("publish", help="create or update the collection and upsert a run's items in a STAC API "
                                        "(Transactions extension)")
    p.add_argument("folder", help="the output folder of kappamask classify")
    p.add_argument("--api", required=True, metavar="URL", help="the STAC API's root URL")
    p.add_argument("--collection", metavar="ID", help="collection id (default: the run's collection.json id)")
    p.add_argument("--href-base", metavar="URL",
                   help="where the run's files will be served (e.g. https://bucket.example.org/masks/); asset hrefs "
                        "are rewritten onto it")
    p.add_argument("--allow-local-hrefs", action="store_true",
                   help="publish hrefs to the local files (only this machine can read them)")
    p.add_argument("--tiler-url", metavar="URL",
                   help="a titiler-pgstac on the API's database: each item then links its map tiles (web-map-links: "
                        "XYZ and TileJSON, drawn by the classes' render entry)")
    p.set_defaults(func=cmd_publish)
