"""Publish a run's STAC items into a STAC API (Transactions extension): ``kappamask stac publish``.

The collection is created, or updated when it exists; the items are upserted, in bulk where the API offers
it (stac-fastapi's ``/bulk_items``), else one by one (POST, and PUT where the item exists). Asset hrefs, which
the run writes relative to its folder, are rewritten onto ``href_base`` (where the COGs will be served, e.g.
object storage); local file paths are published only when asked, since nobody else can read them. Publishing
twice gives the same catalogue.

What is reported is what the API stored: a bulk answer that lists refused items fails with their ids, and at
the end every item is read back by id (a search), so an API that answers "200" and keeps nothing is caught.
Credentials (:func:`kappamask_stac.search.auth_headers`, or ``user:password@`` in the API's URL) go to the
API's own origin only, through :class:`kappamask_core.io.http.Session`; a write answered with a redirect is
an error, never followed. The run folder is checked whole before the first request. Every failure is one
line; a batch that fails midway names what was published, and a rerun completes it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from kappamask_core.foundation import InputError, KappaMaskError, checked_url, join_path, redact
from kappamask_core.io import REDIRECTS, Session

from .common import EXTENSIONS, RENDER, TILE_FORMAT, TILE_MATRIX_SET, render_query
from .search import auth_headers

log = logging.getLogger(__name__)

HREF_SCHEMES = ("http", "https", "s3", "gs", "az")  # where served files are read from

BULK_SIZE = 500  # items per bulk request
READ_BACK = 500  # ids per search when the items are read back
MAX_READ_PAGES = 100  # pages of one read-back search
TIMEOUT_S = 60


class PublishError(KappaMaskError):
    """The API refused, could not be reached, or did not store what it was sent."""


@dataclass
class Published:
    collection: str
    items: int
    requests: int = 0
    seconds: float = 0.0
    created_collection: bool = False
    bulk: bool = False
    ids: list = field(default_factory=list)

    def summary(self) -> str:
        verb = "created" if self.created_collection else "updated"
        return (f"collection {self.collection} {verb}; {self.items} items upserted "
                f"({'in bulk' if self.bulk else 'one by one'}) and read back, with {self.requests} requests in "
                f"{self.seconds:.1f} s")


def _why(method: str, path: str, status: int, body) -> str:
    detail = (body.get("detail") or body.get("description") or body.get("code")) if isinstance(body, dict) else body
    text = redact(" ".join(str(detail).split())[:300]) if detail else ""
    said = f"{method} {path} answered {status}"
    if status in (401, 403):
        return (f"{said} ({'unauthorised' if status == 401 else 'forbidden'}): the API wants credentials (set "
                "KAPPAMASK_STAC_TOKEN or KAPPAMASK_STAC_HEADERS)" + (f"; it says: {text}" if text else ""))
    if status in REDIRECTS:
        return f"{said} (a redirect); a write is never sent on: give the API's own URL (--api)"
    return said + (f": {text}" if text else "")


# ----------------------------------------------------------------------------- the run folder, checked whole

def _check_item(path: Path, data: dict) -> None:
    """An item this command can publish, or one line that names the file and the field."""
    def bad(what):
        raise InputError(f"{path}: {what}; the run folder is damaged (classify again, or remove the file)")

    if not isinstance(data.get("id"), str) or not data["id"].strip():
        bad("the item has no id")
    props = data.get("properties")
    if not isinstance(props, dict):
        bad("its 'properties' is not an object")
    stamps = [props.get(k) for k in ("datetime", "start_datetime", "end_datetime") if props.get(k) is not None]
    if not stamps:
        bad("its properties hold no datetime")
    for stamp in stamps:
        try:
            datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            bad(f"its datetime {str(stamp)[:40]!r} is not a time")
    assets = data.get("assets")
    if not isinstance(assets, dict) or not assets:
        bad("its 'assets' is not an object of assets")
    for key, asset in assets.items():
        if not isinstance(asset, dict) or not isinstance(asset.get("href"), str) or not asset["href"].strip():
            bad(f"asset {key!r} has no href text")
    if not isinstance(data.get("links", []), list):
        bad("its 'links' is not a list")


def read_run(folder: Path):
    """The run's collection (built from its items where the run wrote none) and its items, as dictionaries;
    anything that cannot be published is refused here, before any request."""
    import pystac

    from .collection import build_collection

    items, ids = [], {}
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read it ({exc})") from None
        if isinstance(data, dict) and data.get("type") == "Feature":
            _check_item(path, data)
            if data["id"] in ids:
                raise InputError(f"{ids[data['id']].name} and {path.name} are both item {data['id']}: an API keeps "
                                 "one item per id; remove one of them")
            ids[data["id"]] = path
            items.append((path, data))
    if not items:
        raise InputError(f"{folder}: no STAC items to publish (run kappamask classify with STAC output first)")
    collection_file = folder / "collection.json"
    if collection_file.is_file():
        try:
            collection = json.loads(collection_file.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{collection_file}: cannot read it ({exc})") from None
        if not isinstance(collection, dict) or collection.get("type") != "Collection" or \
                not isinstance(collection.get("id"), str) or not collection["id"].strip():
            raise InputError(f"{collection_file}: not a STAC collection (an object with type Collection and an id); "
                             "the run folder is damaged (remove the file to publish a collection built from the "
                             "items)")
    else:
        collection = build_collection([pystac.Item.from_dict(d) for _, d in items]).to_dict(
            include_self_link=False, transform_hrefs=False)
    return collection, items


def _link_tiles(item: dict, tiler_url: str, cid: str) -> None:
    """The item's tiles on a titiler-pgstac, as web-map-links: an XYZ template and its TileJSON, each drawn by the
    item's render entry (the same query titiler's own /renders endpoint builds)."""
    render = item.get("properties", {}).get("renders", {}).get(RENDER)
    if render is None:
        raise InputError(f"item {item.get('id')} has no {RENDER!r} render entry to draw its tiles with; classify "
                         "the run again with this version")
    base = join_path(tiler_url, "collections", cid, "items", item["id"])
    query = render_query(render)
    item["links"] = [link for link in item["links"] if link.get("rel") not in ("xyz", "tilejson")] + [
        {"rel": "xyz", "type": f"image/{TILE_FORMAT}", "title": render.get("title"),
         "href": f"{base}/tiles/{TILE_MATRIX_SET}/{{z}}/{{x}}/{{y}}.{TILE_FORMAT}?{query}"},
        {"rel": "tilejson", "type": "application/json", "title": render.get("title"),
         "href": f"{base}/{TILE_MATRIX_SET}/tilejson.json?{query}&tile_format={TILE_FORMAT}"}]
    extensions = item.setdefault("stac_extensions", [])
    if EXTENSIONS["web-map-links"] not in extensions:
        extensions.append(EXTENSIONS["web-map-links"])


def _rehref(data: dict, folder: Path, href_base: str | None, allow_local: bool) -> dict:
    """The object with its relative asset hrefs on ``href_base``, and no links to local files."""
    data = json.loads(json.dumps(data))
    for key, asset in data.get("assets", {}).items():
        href = asset.get("href", "")
        if "://" in href:
            continue
        if href_base:
            asset["href"] = join_path(href_base, *href.removeprefix("./").split("/"))
        elif allow_local:
            asset["href"] = (folder / href).resolve().as_uri()
        else:
            raise InputError(f"asset {key!r} of {data.get('id')} is the local file {href}: nobody else can read it. "
                             "Give --href-base URL (where the files will be served), or --allow-local-hrefs")
    data["links"] = [link for link in data.get("links", [])
                     if isinstance(link, dict) and "://" in str(link.get("href", ""))
                     and not str(link["href"]).startswith("file:")
                     and link.get("rel") not in ("self", "root", "parent", "collection", "item", "child")]
    return data


# ----------------------------------------------------------------------------- the API

class _Api:
    """The requests of one publication, through one credential-carrying session."""

    def __init__(self, url: str, headers: dict):
        self.session = Session(url, headers, timeout_s=TIMEOUT_S, what="the STAC API")
        self.url = self.session.base

    @property
    def requests(self) -> int:
        return self.session.requests

    def call(self, method: str, path: str, body=None) -> tuple[int, object]:
        response = self.session.request(method, path, body)
        try:
            answer = json.loads(response.body) if response.body else None
        except ValueError:
            answer = {"detail": response.body[:200].decode(errors="replace")}
        return response.status, answer

    def write(self, method: str, path: str, body, ok=(200, 201, 204), what: str = "") -> tuple[int, object]:
        status, answer = self.call(method, path, body)
        if status not in ok:
            raise PublishError(f"the STAC API at {self.url} refused {what or path}: {_why(method, path, status, answer)}")
        return status, answer


def _bulk_refusals(answer, chunk) -> list[str]:
    """What a bulk answer says was not stored: stac-fastapi-pgstac answers 200 with
    ``{"received", "success", "skipped", "errors": [{"id", "msg"}]}``."""
    if not isinstance(answer, dict):
        return []
    errors = answer.get("errors") or []
    named = [f"{e.get('id', '?')}: {' '.join(str(e.get('msg', e)).split())[:120]}" if isinstance(e, dict) else str(e)
             for e in (errors if isinstance(errors, list) else [errors])]
    success = answer.get("success")
    if isinstance(success, int) and not isinstance(success, bool) and success < len(chunk) and not named:
        named = [f"{len(chunk) - success} of {len(chunk)} items (the API names none)"]
    return named


def _stored_ids(api: _Api, cid: str, ids: list[str]) -> set[str]:
    """The ids among ``ids`` that the API holds in collection ``cid``: read back with searches by id (one item at
    a time where the API has no search)."""
    found: set[str] = set()
    for start in range(0, len(ids), READ_BACK):
        chunk = ids[start : start + READ_BACK]
        body = {"collections": [cid], "ids": chunk, "limit": len(chunk), "fields": {"include": ["id"]}}
        status, page = api.call("POST", "search", body)
        if status in (404, 405):
            for item_id in chunk:
                status, _ = api.call("GET", f"collections/{quote(cid, safe='')}/items/{quote(item_id, safe='')}")
                if status == 200:
                    found.add(item_id)
            continue
        for _ in range(MAX_READ_PAGES):
            if status != 200 or not isinstance(page, dict) or not isinstance(page.get("features"), list):
                raise PublishError(f"the STAC API at {api.url} cannot be read back (POST search answered {status}); "
                                   "what it stored is unknown")
            found |= {f.get("id") for f in page["features"] if isinstance(f, dict)}
            following = next((link for link in page.get("links", []) if isinstance(link, dict)
                              and link.get("rel") == "next" and isinstance(link.get("href"), str)), None)
            if following is None or set(chunk) <= found:
                break
            status, page = api.call(following.get("method", "GET"), following["href"],
                                    following.get("body") if following.get("method") == "POST" else None)
    return found


def publish(folder, api: str, *, collection: str | None = None, href_base: str | None = None,
            allow_local: bool = False, headers: dict | None = None, tiler_url: str | None = None) -> Published:
    """Create or update the collection and upsert every item of the run in ``folder`` into the STAC API. With
    ``tiler_url`` (a titiler-pgstac on the API's database) each item links its tiles as the web-map-links
    extension describes: an XYZ template and a TileJSON, drawn by the item's render entry."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    # the hrefs and links written from these are published for everyone who reads the catalogue
    if href_base is not None:
        href_base = checked_url(href_base, "--href-base", schemes=HREF_SCHEMES)
    if tiler_url is not None:
        tiler_url = checked_url(tiler_url, "--tiler-url")
    checked_url(api, "--api", credentials=True)  # credentials in it go to the API only, as Basic auth
    started = time.perf_counter()
    raw_collection, items = read_run(folder)
    cid = collection or raw_collection["id"]
    body = _rehref({**raw_collection, "id": cid}, folder, href_base, allow_local)
    prepared = []
    for _, data in items:
        item = _rehref(data, folder, href_base, allow_local)
        item["collection"] = cid
        if tiler_url:
            _link_tiles(item, tiler_url, cid)
        prepared.append(item)
    client = _Api(api, headers if headers is not None else auth_headers())
    result = Published(cid, len(prepared))

    status, answer = client.call("GET", f"collections/{quote(cid, safe='')}")
    if status == 200:
        client.write("PUT", f"collections/{quote(cid, safe='')}", body, what=f"the collection {cid}")
    elif status == 404:
        client.write("POST", "collections", body, what=f"the collection {cid}")
        result.created_collection = True
    else:
        raise PublishError(f"the STAC API at {client.url} cannot be asked for the collection {cid}: "
                           f"{_why('GET', f'collections/{cid}', status, answer)}")

    done: list[str] = []
    try:
        for start in range(0, len(prepared), BULK_SIZE):
            chunk = prepared[start : start + BULK_SIZE]
            path = f"collections/{quote(cid, safe='')}/bulk_items"
            status, answer = client.call("POST", path, {"items": {item["id"]: item for item in chunk},
                                                        "method": "upsert"})
            if status in (404, 405) and not done:  # no bulk here: one at a time
                break
            if status not in (200, 201, 204):
                raise PublishError(f"the STAC API refused items {chunk[0]['id']} to {chunk[-1]['id']}: "
                                   f"{_why('POST', path, status, answer)}")
            refused = _bulk_refusals(answer, chunk)
            if refused:
                raise PublishError(f"the STAC API refused {len(refused)} of {len(chunk)} items in bulk ("
                                   + "; ".join(refused[:3]) + ("; ..." if len(refused) > 3 else "") + ")")
            result.bulk = True
            done += [item["id"] for item in chunk]
        if not result.bulk:
            for item in prepared:
                path = f"collections/{quote(cid, safe='')}/items"
                status, answer = client.call("POST", path, item)
                if status == 409:  # it exists: replace it
                    client.write("PUT", f"{path}/{quote(item['id'], safe='')}", item, what=f"item {item['id']}")
                elif status not in (200, 201, 204):
                    raise PublishError(f"the STAC API refused item {item['id']}: {_why('POST', path, status, answer)}")
                done.append(item["id"])
    except PublishError as exc:
        if done:
            raise PublishError(f"{exc}; {len(done)} of {len(prepared)} items were published (up to {done[-1]}), "
                               "and publishing again completes the rest") from None
        raise
    stored = _stored_ids(client, cid, done)
    missing = [item_id for item_id in done if item_id not in stored]
    if missing:
        raise PublishError(f"the STAC API accepted {len(done)} items but holds {len(done) - len(missing)} of them in "
                           f"{cid} (missing: {', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); it did "
                           "not store what it said it did")
    result.ids, result.requests, result.seconds = done, client.requests, time.perf_counter() - started
    return result
