"""A STAC API search as the input of ``kappamask classify`` (the ``kappamask.sources`` plugin).

``kappamask classify --stac-api URL --collection ID [--bbox W S E N] [--datetime ...] [--query JSON]
[--filter CQL2-JSON] [--max-items N] [--sign planetary-computer] -o DIR`` searches the API with pystac-client
and hands the items to the run one at a time, as pages arrive: a search of thousands of items is never
listed whole before the first product starts. Items are read as any STAC item (Earth Search, Copernicus Data
Space and Planetary Computer asset keys; :mod:`kappamask_stac.reader`).
"""

from __future__ import annotations

import json
import logging
import os

from kappamask_core.foundation.errors import InputError

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # items per search page: what the API sends per request
SIGNERS = ("planetary-computer",)


def _json_option(text: str | None, flag: str):
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{flag} must be JSON ({exc}): {text[:80]!r}") from None
    if not isinstance(value, dict):
        raise InputError(f"{flag} must be a JSON object, not {text[:80]!r}")
    return value


def _signer(name: str | None):
    """A function that signs an item's hrefs (Planetary Computer's blob storage needs a token), or None."""
    if name is None:
        return None
    if name not in SIGNERS:
        raise InputError(f"--sign must be one of {', '.join(SIGNERS)}, not {name!r}")
    try:
        import planetary_computer
    except ImportError:
        raise InputError("--sign planetary-computer needs the planetary-computer package: pip install "
                         "planetary-computer") from None
    return planetary_computer.sign_inplace


def search_items(api: str, collections, *, bbox=None, datetime=None, query=None, filter=None,
                 max_items: int | None = None, sign: str | None = None, page_size: int = PAGE_SIZE,
                 headers: dict | None = None):
    """The items of a STAC API search, one at a time as the pages arrive (pystac.Item)."""
    try:
        from pystac_client import Client
        from pystac_client.exceptions import APIError
    except ImportError:
        raise InputError("searching a STAC API needs pystac-client: pip install 'kappamask[stac]'") from None
    if max_items is not None and max_items < 1:
        raise InputError(f"--max-items must be at least 1, not {max_items}")
    if bbox is not None and (len(bbox) != 4 or not (bbox[0] < bbox[2] and bbox[1] < bbox[3])):
        raise InputError(f"--bbox takes west south east north with west < east and south < north, not {bbox}")
    try:
        client = Client.open(api, modifier=_signer(sign), headers=headers or {}, timeout=30)
        search = client.search(collections=collections, bbox=bbox, datetime=datetime, query=query, filter=filter,
                               max_items=max_items, limit=page_size)
        yield from search.items()
    except APIError as exc:
        text = " ".join(str(exc).split())[:300]
        if getattr(exc, "status_code", None) is None:  # no answer at all
            raise InputError(f"cannot search the STAC API at {api}: {text}") from None
        raise InputError(f"the STAC API at {api} refused the search ({exc.status_code}): {text}") from None
    except (OSError, ValueError) as exc:  # unreachable, not a STAC API, a bad datetime
        raise InputError(f"cannot search the STAC API at {api}: {' '.join(str(exc).split())[:300]}") from None


class StacSearchSource:
    """The ``kappamask.sources`` plugin: ``--stac-api`` and its search options on ``kappamask classify``."""

    name = "stac-search"

    @staticmethod
    def add_arguments(parser) -> None:
        group = parser.add_argument_group("inputs from a STAC API search (pystac-client)")
        group.add_argument("--stac-api", metavar="URL", help="search this STAC API for the inputs")
        group.add_argument("--collection", action="append", metavar="ID",
                           help="collection to search (repeatable), e.g. sentinel-2-l1c")
        group.add_argument("--bbox", type=float, nargs=4, metavar=("W", "S", "E", "N"),
                           help="bounding box in degrees")
        group.add_argument("--datetime", metavar="INTERVAL", help="e.g. 2024-06-01/2024-06-30")
        group.add_argument("--query", metavar="JSON", help='query extension, e.g. {"eo:cloud_cover": {"lt": 60}}')
        group.add_argument("--filter", metavar="CQL2-JSON", help="filter extension (CQL2 JSON)")
        group.add_argument("--max-items", type=int, metavar="N", help="stop after N items")
        group.add_argument("--sign", choices=SIGNERS, help="sign asset hrefs (Planetary Computer)")

    @staticmethod
    def wanted(args) -> bool:
        return bool(getattr(args, "stac_api", None))

    @staticmethod
    def inputs(args):
        if not args.collection:
            raise InputError("--stac-api needs --collection (the collection to search)")
        return search_items(args.stac_api, args.collection, bbox=args.bbox, datetime=args.datetime,
                            query=_json_option(args.query, "--query"), filter=_json_option(args.filter, "--filter"),
                            max_items=args.max_items, sign=args.sign, headers=auth_headers())


def auth_headers() -> dict:
    """HTTP headers for a STAC API from the environment: ``KAPPAMASK_STAC_HEADERS`` (a JSON object of header
    name -> value) and ``KAPPAMASK_STAC_TOKEN`` (sent as ``Authorization: Bearer ...``)."""
    headers = {}
    text = os.environ.get("KAPPAMASK_STAC_HEADERS", "").strip()
    if text:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise InputError("KAPPAMASK_STAC_HEADERS must be a JSON object of header name -> text, e.g. "
                             '{"X-API-Key": "..."}')
        headers.update(value)
    token = os.environ.get("KAPPAMASK_STAC_TOKEN", "").strip()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


STAC_SEARCH = StacSearchSource()
