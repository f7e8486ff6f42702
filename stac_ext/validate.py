"""Offline validation of STAC JSON against the core and every extension schema it declares.

Core STAC 1.1.0 and GeoJSON schemas come from the installed pystac; the
extension schemas this package writes are vendored in ``stac_ext/schemas``.
An extension whose schema is not available locally is reported as an error,
never skipped silently.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

SCHEMA_DIR = Path(__file__).parent / "schemas"
EXTENSION_PREFIX = "https://stac-extensions.github.io/"
CORE = {
    "Feature": "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json",
    "Collection": "https://schemas.stacspec.org/v1.1.0/collection-spec/json-schema/collection.json",
    "Catalog": "https://schemas.stacspec.org/v1.1.0/catalog-spec/json-schema/catalog.json",
}


def _key(uri: str) -> str:
    return uri.rstrip("#")


@lru_cache(maxsize=1)
def _registry():
    from pystac.validation.local_validator import get_local_schema_cache
    from referencing import Registry, Resource

    # pystac maps the core and GeoJSON schema URLs to its bundled files (some carry a wrong $id)
    resources = [(_key(uri), Resource.from_contents(schema)) for uri, schema in get_local_schema_cache().items()]
    for path in SCHEMA_DIR.rglob("schema.json"):
        schema = json.loads(path.read_text())
        resources.append((_key(schema["$id"]), Resource.from_contents(schema)))
    return Registry().with_resources(resources)


def _schema(uri: str):
    try:
        return _registry().contents(_key(uri))
    except Exception:
        return None


def validate_dict(data: dict) -> list[str]:
    """Error messages for one STAC object (empty when valid), each distinct message once."""
    import jsonschema

    errors: list[str] = []
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in CORE:
        return [f"not a STAC Item, Collection or Catalog (type {str(kind)[:80]!r})"]
    if data.get("stac_version") != "1.1.0":
        errors.append(f"stac_version is {str(data.get('stac_version'))[:40]!r}; this validator holds the 1.1.0 schemas")
    extensions = data.get("stac_extensions", [])
    if not isinstance(extensions, list) or not all(isinstance(uri, str) for uri in extensions):
        errors.append(f"stac_extensions must be a list of schema URIs, not {str(extensions)[:80]}")
        extensions = [uri for uri in extensions if isinstance(uri, str)] if isinstance(extensions, list) else []
    uris = [CORE[kind]] + extensions
    for uri in uris:
        schema = _schema(uri)
        if schema is None:
            errors.append(f"{uri}: schema not available offline")
            continue
        cls = jsonschema.validators.validator_for(schema)
        validator = cls(schema, registry=_registry())
        for err in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
            while err.context:  # oneOf/anyOf: report the most specific failure, not the whole object
                err = max(err.context, key=lambda e: len(e.absolute_path))
            where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
            errors.append(f"{uri.removeprefix(EXTENSION_PREFIX)} at {where}: {err.message[:300]}")
    return list(dict.fromkeys(errors))  # the core schema's branches report one failure several times


def validate_path(path) -> dict[str, list[str]]:
    """Validate a STAC JSON file, or every STAC JSON file in a folder: {file: errors}."""
    path = Path(path)
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    report = {}
    for f in files:
        try:
            data = json.loads(f.read_bytes().decode("utf-8"))
        except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON, numbers beyond any limit
            report[str(f)] = [f"cannot read JSON: {' '.join(str(exc).split())[:200]}"]
            continue
        except RecursionError:
            report[str(f)] = ["cannot read JSON: nested too deeply"]
            continue
        if isinstance(data, dict) and isinstance(data.get("type"), str) and data.get("type") in CORE:
            try:
                report[str(f)] = validate_dict(data)
            except RecursionError:
                report[str(f)] = ["nested too deeply to validate"]
        elif path.is_file():
            report[str(f)] = ["not a STAC object"]
    return report
