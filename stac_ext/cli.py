"""``kappamask stac ...`` sub-commands."""

from __future__ import annotations

from pathlib import Path

from kappamask_core.foundation.errors import InputError


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


def register(sub) -> None:
    stac = sub.add_parser("stac", help="STAC utilities").add_subparsers(dest="stac", required=True)
    p = stac.add_parser("validate", help="validate STAC items/collections offline against all their schemas")
    p.add_argument("path", help="a STAC JSON file or a folder of them")
    p.set_defaults(func=cmd_validate)
