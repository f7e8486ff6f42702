"""Sentinel-2 STAC items as input: asset keys -> bands, hrefs -> readable paths, metadata -> scaling.

Band assets are found by key for the common catalogues: Earth Search
(``blue``, ``nir08``, ``swir16``, ..., ``aot``, ``wvp``, ``scl``), band-name keys
(``B02``, ``B8A``), and Copernicus Data Space keys with a resolution suffix
(``B02_10m``); the finest resolution wins. Remote hrefs are read through GDAL's
HTTP range requests (``/vsicurl/``). Offsets come from the assets'
``raster:bands`` offset/scale, else from a product-metadata asset, else from
the processing baseline.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from urllib.parse import urljoin

from kappamask_core.foundation import BAND_BY_NAME, InputError, asset_band, redact
from kappamask_core.io import (
    OFFSET_BASELINE,
    Product,
    check_level,
    declared_scaling,
    fetch,
    merge_scaling,
    open_band_files,
    parse_baseline,
    parse_product_metadata,
    tag_scaling,
)

FETCH_DEADLINE_S = 120.0  # an item or metadata asset over HTTP, however slowly it trickles
MAX_JSON_BYTES = 32 << 20
METADATA_KEYS = ("product_metadata", "product-metadata", "metadata", "MTD_MSIL1C", "MTD_MSIL2A", "mtd")


def gdal_path(href: str, base: str | None) -> str:
    if base and not re.match(r"^[a-z]+://", href) and not href.startswith("/"):
        href = urljoin(base, href) if re.match(r"^[a-z]+://", base) else str(Path(base).parent / href)
    if href.startswith(("http://", "https://")):
        return "/vsicurl/" + href
    if href.startswith("s3://"):
        return "/vsis3/" + href[5:]
    return href.removeprefix("file://")


def _level(props: dict, collection: str | None) -> str | None:
    for value in (props.get("processing:level"), props.get("s2:product_type"), collection or ""):
        text = str(value or "").upper()
        if "2A" in text:
            return "L2A"
        if "1C" in text:
            return "L1C"
    return None


def _load(source):
    import pystac

    if isinstance(source, pystac.Item):
        return source.to_dict(include_self_link=True, transform_hrefs=False), source.get_self_href()
    path = str(source)
    try:
        if path.startswith(("http://", "https://")):
            return json.loads(fetch(path, what="the STAC item", deadline_s=FETCH_DEADLINE_S,
                                    max_bytes=MAX_JSON_BYTES)), path
        return json.loads(Path(path).read_text()), str(Path(path).resolve())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read STAC item {redact(path)}: {redact(str(exc))}") from None


def open_item(source, level: str | None = None) -> Product:
    data, self_href = _load(source)
    if not isinstance(data, dict):
        raise InputError(f"{self_href or source}: not a STAC item (the JSON is a {type(data).__name__}, not an object)")
    if data.get("type") != "Feature":
        raise InputError(f"{self_href or source}: not a STAC item (type {data.get('type')!r})")
    props, assets = data.get("properties"), data.get("assets")
    if not isinstance(props, dict) or not isinstance(assets, dict):
        raise InputError(f"{self_href or source}: a STAC item needs 'properties' and 'assets' objects")
    item_id = data.get("id", "item")
    chosen: dict[str, tuple[int, str, dict]] = {}
    for key, asset in assets.items():
        if key.lower().endswith("-jp2") and key[:-4] in assets:
            continue  # Earth Search lists each band twice: prefer the COG
        found = asset_band(key)
        if found is None or not isinstance(asset, dict) or not isinstance(asset.get("href"), str):
            continue
        name, res = found
        if name not in chosen or res < chosen[name][0]:
            chosen[name] = (res, gdal_path(asset["href"], self_href), asset)
    if not chosen:
        raise InputError(f"STAC item {item_id}: no Sentinel-2 band assets (keys such as B02, blue, B02_10m)")
    grid, bands = open_band_files({n: p for n, (_, p, _) in chosen.items()}, f"STAC item {item_id}")
    item_level = _level(props, data.get("collection"))
    if level and item_level and level != item_level:
        raise InputError(f"STAC item {item_id} is {item_level}, but level {level} was requested")
    product = Product(
        id=str(item_id),
        level=check_level(item_level or level, bands, "", f"STAC item {item_id}"),
        grid=grid,
        bands=bands,
        baseline=props.get("s2:processing_baseline"),
        datetime=_datetime(props.get("datetime"), item_id),
        platform=props.get("platform"),
        source=f"STAC item {item_id}",
        extra={"stac_href": self_href},
    )
    _scaling(product, props, assets, {n: a for n, (_, _, a) in chosen.items()}, self_href)
    return product


def _datetime(value, item_id) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"STAC item {item_id}: datetime {value!r} is not a time") from None


def _scaling(product: Product, props: dict, assets: dict, band_assets: dict, base) -> None:
    """Fill offsets and quantification from what the item declares: the assets' ``raster:bands`` scale and offset,
    else its product-metadata asset, else the processing-baseline rule; the band files' own scale and offset
    tags must agree with what the item says. A metadata asset the item lists must be readable: its offsets
    decide the scaling, so one that is missing or damaged is an error, not a guess."""
    declared = {}
    for name, asset in band_assets.items():
        rb = asset.get("raster:bands") or [{}]
        rb = rb[0] if isinstance(rb, list) and rb and isinstance(rb[0], dict) else {}
        if "scale" in rb:
            declared[name] = (rb["scale"], rb.get("offset", 0.0))
    tags = tag_scaling(product.bands, product.source)
    if declared:
        merge_scaling(product, *declared_scaling(declared, product.source, "the raster:bands"), "the item's raster:bands")
        merge_scaling(product, *tags, "the band files' scale and offset tags")
        return
    key = next((k for k in METADATA_KEYS if isinstance(assets.get(k), dict) and "href" in assets[k]), None)
    if key is not None:
        href = assets[key]["href"]
        try:
            meta = parse_product_metadata(_read_bytes(href, base), product.source)
        except (InputError, OSError) as exc:
            raise InputError(f"{product.source}: its metadata asset {key!r} ({redact(str(href))}) cannot be used "
                             f"({redact(' '.join(str(exc).split()))[:200]}); it holds the offsets that decide the "
                             "scaling, so the item is not classified") from None
        product.offsets, product.quantification = meta["offsets"], meta["quantification"]
        product.baseline = product.baseline or meta.get("baseline")
        product.scaling_source = f"the metadata asset {key!r}"
        merge_scaling(product, *tags, "the band files' scale and offset tags")
        return
    if tags[0] or tags[1]:
        merge_scaling(product, *tags, "the band files' scale and offset tags")
        return
    if product.baseline is None:
        return  # no baseline, no offset: the item says nothing else
    try:
        baseline = parse_baseline(product.baseline)
    except InputError as exc:
        raise InputError(f"{product.source}: s2:processing_baseline: {exc}") from None
    applied = props.get("earthsearch:boa_offset_applied", False)
    if not isinstance(applied, bool):
        raise InputError(f"{product.source}: earthsearch:boa_offset_applied is {applied!r}, not true or false")
    if baseline >= OFFSET_BASELINE and not applied:
        product.offsets = {b: -1000.0 for b in product.bands if BAND_BY_NAME[b].quantification_key == "band"}


def _read_bytes(href: str, base) -> bytes:
    path = gdal_path(href, base)
    if path.startswith("/vsicurl/"):
        return fetch(path.removeprefix("/vsicurl/"), what="the metadata asset", deadline_s=FETCH_DEADLINE_S,
                     max_bytes=MAX_JSON_BYTES)
    if path.startswith("/vsi"):
        raise OSError(f"cannot fetch {href} without credentials")
    return Path(path).read_bytes()


class StacItemReader:
    """The ``kappamask.readers`` plugin: STAC items (a pystac.Item, a .json path or an http(s) URL to one)."""

    name = "stac-item"

    @staticmethod
    def accepts(source) -> bool:
        if type(source).__name__ == "Item" and type(source).__module__.startswith("pystac"):
            return True
        return isinstance(source, (str, Path)) and str(source).lower().endswith(".json")

    @staticmethod
    def open(source, level=None) -> Product:
        return open_item(source, level)


STAC_READER = StacItemReader()
