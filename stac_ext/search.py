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
import re
import time

from kappamask_core.foundation import InputError, KappaMaskError, add_secret, checked_url, redact
from kappamask_core.io import CREDENTIAL_HEADERS, check_header_values, origin, split_userinfo

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


MAX_PAGES = 1000  # requests of one search (pages of PAGE_SIZE items): a next link that never ends is given up on
REQUEST_DEADLINE_S = 300.0  # for each request, its redirects and its answer, however slowly it trickles
REQUEST_TIMEOUT_S = 30.0  # per network operation
MAX_PAGE_BYTES = 64 << 20
DATETIME_PART = re.compile(r"^(\.\.|\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?)?)?$")


def check_datetime(text: str | None) -> None:
    """A STAC datetime: a date, a date-time, or an interval of them with '/' ('..' or nothing for an open end)."""
    if text is None:
        return
    parts = str(text).split("/")
    if len(parts) > 2 or not all(DATETIME_PART.match(p.strip()) for p in parts) or not any(p.strip(" .")
                                                                                            for p in parts):
        raise InputError(f"--datetime takes a date, a date-time or an interval such as 2024-06-01/2024-06-30 (\"..\" "
                         f"for an open end), not {str(text)[:60]!r}")


def _bounded_session(api: str, credentials: dict):
    """A requests session for pystac-client that keeps credentials at the API's origin, bounds every request
    in time and size, refuses to ask for the same page twice (a next link to itself) and stops after
    :data:`MAX_PAGES` requests."""
    import requests

    api_origin = origin(api)
    names = {n.lower() for n in credentials} | set(CREDENTIAL_HEADERS)

    class BoundedSession(requests.Session):
        def __init__(self):
            super().__init__()
            self.headers.update(credentials)
            self.pages: set = set()  # what each page of items held: its item ids and where it sent on
            self.counted = 0  # pages of items received

        def send(self, request, **kwargs):
            if origin(request.url) != api_origin:  # another host, port or scheme: no credentials
                for name in [n for n in request.headers if n.lower() in names]:
                    del request.headers[name]
            deadline = time.monotonic() + REQUEST_DEADLINE_S
            kwargs.update(stream=True, timeout=REQUEST_TIMEOUT_S)
            response = super().send(request, **kwargs)
            if not response._content_consumed:
                chunks, size = [], 0
                # read1: what has arrived, so that a server trickling its answer meets the deadline
                while chunk := response.raw.read1(1 << 16, decode_content=True):
                    size += len(chunk)
                    if time.monotonic() > deadline or size > MAX_PAGE_BYTES:
                        response.close()
                        raise SearchLoop(f"the STAC API at {redact(api)} did not finish its answer to "
                                         f"{redact(request.url)} within {REQUEST_DEADLINE_S:.0f} s and "
                                         f"{MAX_PAGE_BYTES >> 20} MiB; stopped")
                    chunks.append(chunk)
                response._content, response._content_consumed = b"".join(chunks), True
            self._count_page(response, request)
            return response

        def _count_page(self, response, request) -> None:
            """A page of items that repeats an earlier one (a next link back to itself or to an earlier page)
            would be asked for forever, and so would a search without end: both stop here."""
            try:
                page = json.loads(response.content) if response.content[:1] == b"{" else None
            except ValueError:
                return
            if not isinstance(page, dict) or not isinstance(page.get("features"), list):
                return
            ids = tuple(str(f.get("id")) if isinstance(f, dict) else "" for f in page["features"])
            following = [json.dumps(link, sort_keys=True, default=str) for link in page.get("links") or []
                         if isinstance(link, dict) and link.get("rel") == "next"]
            signature = (ids, tuple(following))
            if signature in self.pages:
                raise SearchLoop(f"the STAC API at {redact(api)} sent a page of the search again "
                                 f"({request.method} {redact(request.url)}): its next links lead back; stopped")
            self.pages.add(signature)
            self.counted += 1
            if self.counted > MAX_PAGES:
                raise SearchLoop(f"the search at {redact(api)} went past {MAX_PAGES} pages; stopped (narrow it with "
                                 "--bbox, --datetime or --max-items)")

    return BoundedSession()


class SearchLoop(InputError):
    """A search that would never end: a page asked for twice, too many pages, or an answer that never ends."""


def search_items(api: str, collections, *, bbox=None, datetime=None, query=None, filter=None,
                 max_items: int | None = None, sign: str | None = None, page_size: int = PAGE_SIZE,
                 headers: dict | None = None):
    """The items of a STAC API search, one at a time as the pages arrive (pystac.Item).

    Credentials (``headers``, or ``user:password@`` in ``api``) go to the API's own origin only, never to a
    next link or a redirect elsewhere; every page is bounded in time and size, and a search that loops or runs
    past :data:`MAX_PAGES` pages stops with one line."""
    try:
        from pystac.errors import STACError, STACTypeError
        from pystac_client import Client
        from pystac_client.exceptions import APIError
        from pystac_client.stac_api_io import StacApiIO
    except ImportError:
        raise InputError("searching a STAC API needs pystac-client: pip install 'kappamask[stac]'") from None
    if max_items is not None and max_items < 1:
        raise InputError(f"--max-items must be at least 1, not {max_items}")
    if bbox is not None and (len(bbox) != 4 or not (bbox[0] < bbox[2] and bbox[1] < bbox[3])):
        raise InputError(f"--bbox takes west south east north with west < east and south < north, not {bbox}")
    check_datetime(datetime)
    api, userinfo = split_userinfo(checked_url(api, "--stac-api", credentials=True))
    credentials = check_header_values({**userinfo, **(headers or {})}, "the STAC API credentials")
    stac_io = StacApiIO(timeout=REQUEST_TIMEOUT_S)
    stac_io.session = _bounded_session(api, credentials)
    try:
        client = Client.open(api, modifier=_signer(sign), stac_io=stac_io)
        search = client.search(collections=collections, bbox=bbox, datetime=datetime, query=query, filter=filter,
                               max_items=max_items, limit=page_size)
        yield from search.items()
    except APIError as exc:
        loop = exc.__context__ if isinstance(exc.__context__, SearchLoop) else None
        if loop is not None:
            raise SearchLoop(str(loop)) from None
        text = redact(" ".join(str(exc).split())[:300])
        if getattr(exc, "status_code", None) is None:  # no answer at all
            raise InputError(f"cannot search the STAC API at {api}: {text}") from None
        raise InputError(f"the STAC API at {api} refused the search ({exc.status_code}): {text}") from None
    except KappaMaskError:  # a loop or a refused answer, said by the session
        raise
    except (OSError, ValueError) as exc:  # unreachable, not a STAC API
        raise InputError(f"cannot search the STAC API at {api}: {redact(' '.join(str(exc).split())[:300])}") \
            from None
    except (KeyError, TypeError, AttributeError, IndexError, STACError, STACTypeError) as exc:  # not STAC pages
        raise InputError(f"the STAC API at {api} answered a page that is not a STAC API page ("
                         f"{type(exc).__name__}: {redact(' '.join(str(exc).split())[:200])})") from None


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
        add_secret(token)
        headers["Authorization"] = f"Bearer {token}"
    return check_header_values(headers, "KAPPAMASK_STAC_TOKEN / KAPPAMASK_STAC_HEADERS")


STAC_SEARCH = StacSearchSource()
