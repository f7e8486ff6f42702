"""Publish a run's STAC items into a STAC API (Transactions extension): ``kappamask stac publish``.

The collection is created, or updated when it exists; the items are upserted, in bulk where the API offers
it (stac-fastapi's ``/bulk_items``), else one by one (POST, and PUT where the item exists). Asset hrefs, which
the run writes relative to its folder, are rewritten onto ``href_base`` (where the COGs will be served, e.g.
object storage); local file paths are published only when asked, since nobody else can read them. Publishing
twice gives the same catalogue. Headers for authentication come from the environment
(:func:`kappamask_stac.search.auth_headers`). Every failure is one line; a batch that fails midway names
what was published, and a rerun completes it.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urljoin

from kappamask_core.foundation.errors import InputError, KappaMaskError

from .search import auth_headers

log = logging.getLogger(__name__)

BULK_SIZE = 500  # items per bulk request
TIMEOUT_S = 60


class PublishError(KappaMaskError):
    """The API refused or could not be reached."""


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
                f"({'in bulk' if self.bulk else 'one by one'}) with {self.requests} requests in {self.seconds:.1f} s")


class _Api:
    """A few JSON requests to one STAC API, counted."""

    def __init__(self, url: str, headers: dict):
        self.url = url.rstrip("/") + "/"
        self.headers = {"Content-Type": "application/json", "Accept": "application/json", **headers}
        self.requests = 0

    def call(self, method: str, path: str, body=None) -> tuple[int, dict | None]:
        request = urllib.request.Request(urljoin(self.url, path), method=method, headers=self.headers,
                                         data=None if body is None else json.dumps(body).encode())
        self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read())
        except (OSError, ValueError) as exc:
            raise PublishError(f"cannot reach the STAC API at {self.url}: "
                               f"{getattr(exc, 'reason', None) or exc}") from None


def _json(data: bytes):
    try:
        return json.loads(data) if data else None
    except ValueError:
        return {"detail": data[:200].decode(errors="replace")}


def _why(status: int, body) -> str:
    detail = body.get("detail") or body.get("description") or body.get("code") if isinstance(body, dict) else body
    text = " ".join(str(detail).split())[:300] if detail else ""
    if status in (401, 403):
        return (f"{status} {'unauthorised' if status == 401 else 'forbidden'}: the API wants credentials (set "
                "KAPPAMASK_STAC_TOKEN or KAPPAMASK_STAC_HEADERS)" + (f"; it says: {text}" if text else ""))
    if status in (404, 405) and not text:
        return f"{status}: the API has no Transactions extension here"
    return f"{status}" + (f": {text}" if text else "")


def read_run(folder: Path):
    """The run's collection (built from its items where the run wrote none) and its items, as dictionaries."""
    import pystac

    from .collection import build_collection

    items = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read it ({exc})") from None
        if isinstance(data, dict) and data.get("type") == "Feature":
            items.append((path, data))
    if not items:
        raise InputError(f"{folder}: no STAC items to publish (run kappamask classify with STAC output first)")
    collection_file = folder / "collection.json"
    if collection_file.is_file():
        collection = json.loads(collection_file.read_text())
    else:
        collection = build_collection([pystac.Item.from_dict(d) for _, d in items]).to_dict(
            include_self_link=False, transform_hrefs=False)
    return collection, items


def _rehref(data: dict, folder: Path, href_base: str | None, allow_local: bool) -> dict:
    """The object with its relative asset hrefs on ``href_base``, and no links to local files."""
    data = json.loads(json.dumps(data))
    for key, asset in data.get("assets", {}).items():
        href = asset.get("href", "")
        if "://" in href:
            continue
        if href_base:
            asset["href"] = href_base.rstrip("/") + "/" + quote(href.removeprefix("./"))
        elif allow_local:
            asset["href"] = (folder / href).resolve().as_uri()
        else:
            raise InputError(f"asset {key!r} of {data.get('id')} is the local file {href}: nobody else can read it. "
                             "Give --href-base URL (where the files will be served), or --allow-local-hrefs")
    data["links"] = [link for link in data.get("links", [])
                     if "://" in str(link.get("href", "")) and not str(link["href"]).startswith("file:")
                     and link.get("rel") not in ("self", "root", "parent", "collection", "item", "child")]
    return data


def publish(folder, api: str, *, collection: str | None = None, href_base: str | None = None,
            allow_local: bool = False, headers: dict | None = None) -> Published:
    """Create or update the collection and upsert every item of the run in ``folder`` into the STAC API."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    if href_base is not None and not href_base.startswith(("http://", "https://", "s3://", "gs://", "az://")):
        raise InputError(f"--href-base must be a URL (https://, s3://, ...), not {href_base!r}")
    started = time.perf_counter()
    raw_collection, items = read_run(folder)
    cid = collection or raw_collection["id"]
    body = _rehref({**raw_collection, "id": cid}, folder, href_base, allow_local)
    prepared = []
    for _, data in items:
        item = _rehref(data, folder, href_base, allow_local)
        item["collection"] = cid
        prepared.append(item)
    client = _Api(api, headers if headers is not None else auth_headers())
    result = Published(cid, len(prepared))

    status, answer = client.call("GET", f"collections/{quote(cid)}")
    if status == 200:
        status, answer = client.call("PUT", f"collections/{quote(cid)}", body)
    elif status == 404:
        status, answer = client.call("POST", "collections", body)
        result.created_collection = status in (200, 201)
    if status not in (200, 201, 204):
        raise PublishError(f"the STAC API at {api} refused the collection {cid}: {_why(status, answer)}")

    done: list[str] = []
    try:
        for start in range(0, len(prepared), BULK_SIZE):
            chunk = prepared[start : start + BULK_SIZE]
            status, answer = client.call("POST", f"collections/{quote(cid)}/bulk_items",
                                         {"items": {item["id"]: item for item in chunk}, "method": "upsert"})
            if status in (404, 405) and not done:  # no bulk here: one at a time
                break
            if status not in (200, 201, 204):
                raise PublishError(f"the STAC API refused items {chunk[0]['id']} to {chunk[-1]['id']}: "
                                   f"{_why(status, answer)}")
            result.bulk = True
            done += [item["id"] for item in chunk]
        if not result.bulk:
            for item in prepared:
                path = f"collections/{quote(cid)}/items"
                status, answer = client.call("POST", path, item)
                if status == 409:  # it exists: replace it
                    status, answer = client.call("PUT", f"{path}/{quote(item['id'])}", item)
                if status not in (200, 201, 204):
                    raise PublishError(f"the STAC API refused item {item['id']}: {_why(status, answer)}")
                done.append(item["id"])
    except PublishError as exc:
        if done:
            raise PublishError(f"{exc}; {len(done)} of {len(prepared)} items were published (up to {done[-1]}), "
                               "and publishing again completes the rest") from None
        raise
    result.ids, result.requests, result.seconds = done, client.requests, time.perf_counter() - started
    return result
