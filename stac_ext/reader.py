"""STAC items as input (Sentinel-2, Landsat Collection 2, HLS v2.0): asset keys -> bands, hrefs -> readable paths,
metadata -> scaling.

Band assets are found by key for the common catalogues: Earth Search
(``blue``, ``nir08``, ``swir16``, ..., ``aot``, ``wvp``, ``scl``), band-name keys
(``B02``, ``B8A``), and Copernicus Data Space keys with a resolution suffix
(``B02_10m``); the finest resolution wins. Remote hrefs are read through GDAL's
HTTP range requests (``/vsicurl/``). Offsets come from the assets'
``raster:bands`` offset/scale, else from a product-metadata asset, else from
the processing baseline. Landsat items (Earth Search's and Planetary Computer's ``landsat-c2-l2``: ``blue``,
``nir08``, ``swir16``, ``qa_pixel``, ``qa_radsat``) are scaled by their ``raster:bands`` or, where those say
nothing, by their MTL asset; HLS items (``HLSL30_2.0``, ``HLSS30_2.0``: ``B04``, ``Fmask``) by their
``raster:bands``, the files' tags or HLS's format. The item's ``platform`` (and, for HLS, its collection or id)
says the sensor.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from urllib.parse import urljoin

from kappamask_core.foundation import BAND_BY_NAME, SENSORS, InputError, Sensor, asset_band, redact, sensor_named
from kappamask_core.io import (
    OFFSET_BASELINE,
    Product,
    check_level,
    declared_scaling,
    fetch,
    hls_product,
    landsat_product,
    landsat_scaling,
    merge_scaling,
    open_band_files,
    own_numbers,
    parse_baseline,
    parse_mtl,
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
    sensor = _item_sensor(data, props, item_id)
    if sensor.id != "sentinel-2":
        return _open_other(sensor, data, props, assets, level, self_href)
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


def _item_sensor(data: dict, props: dict, item_id) -> Sensor:
    """The sensor of an item: HLS by its collection or id (its platform names the satellite, not the product),
    else the sensor its ``platform`` names; Sentinel-2 where it names none."""
    collection = re.sub(r"[._-]", "", str(data.get("collection") or "")).upper()  # HLSL30_2.0, hls2-l30
    hls = re.search(r"HLS2?([LS]30)", collection) or re.match(r"HLS\.([LS]30)\.", str(item_id).upper())
    if hls:
        return SENSORS[f"hls-{hls.group(1).lower()}"]
    platform = props.get("platform")
    if not platform:
        return SENSORS["sentinel-2"]
    try:
        return sensor_named(str(platform))
    except InputError:
        raise InputError(f"STAC item {item_id}: its platform {platform!r} is not a sensor the models know "
                         f"({', '.join(SENSORS)})") from None


LAYER_KEYS = {"qa_pixel": "QA_PIXEL", "qa_radsat": "QA_RADSAT", "fmask": "FMASK"}
MTL_KEYS = ("mtl.txt", "mtl.json", "mtl.xml", "MTL")


def _open_other(sensor: Sensor, data: dict, props: dict, assets: dict, level: str | None, base) -> Product:
    """A Landsat or HLS item: its band assets by the sensor's names, its quality layers, its scaling."""
    item_id, source = str(data.get("id", "item")), f"STAC item {data.get('id', 'item')}"
    files, layers, band_assets = {}, {}, {}
    for key, asset in assets.items():
        if not isinstance(asset, dict) or not isinstance(asset.get("href"), str):
            continue
        if key.lower() in LAYER_KEYS:
            layers[LAYER_KEYS[key.lower()]] = gdal_path(asset["href"], base)
        elif (found := asset_band(key, sensor)) is not None:
            files[found[0]] = gdal_path(asset["href"], base)
            band_assets[found[0]] = asset
    if not files:
        raise InputError(f"{source}: no {sensor.title} band assets (keys such as blue, nir08, B04)")
    declared = _raster_scaling(band_assets)
    when = _datetime(props.get("datetime"), item_id)
    if sensor.id.startswith("hls"):
        return hls_product(files, layers.get("FMASK"), sensor.id, check_level(level, (), "", source, sensor.id) or
                           "L2A", item_id, when, source, declared, "the item's raster:bands")
    text = " ".join(str(v) for v in (item_id, data.get("collection"), props.get("landsat:correction"),
                                     props.get("landsat:processing_level")) if v)
    item_level = _landsat_level(text)
    if item_level is None:
        raise InputError(f"{source}: neither its id nor its collection says Level-1 or Level-2; give a Landsat "
                         "Collection 2 item")
    if level and level != item_level:
        raise InputError(f"{source} is {item_level}, but level {level} was requested")
    numbers = own_numbers(sensor.id, files)
    what = "the item's raster:bands"
    if not declared or item_level == "L1C":  # Level-1 reflectance needs the MTL's sun elevation
        key = next((k for k in MTL_KEYS if isinstance(assets.get(k), dict) and "href" in assets[k]), None)
        if key is None and declared:
            raise InputError(f"{source}: a Level-1 item's reflectance needs the sun elevation of its MTL asset "
                             f"({' or '.join(MTL_KEYS[:3])}), which the item does not list")
        if key is None:
            raise InputError(f"{source}: neither raster:bands nor an MTL asset declares its bands' scale and offset; "
                             "the item is not classified without them")
        try:
            mtl = parse_mtl(_read_bytes(assets[key]["href"], base), key, source)
        except (InputError, OSError) as exc:
            why = redact(" ".join(str(exc).split()))[:200]
            raise InputError(f"{source}: its MTL asset {key!r} cannot be used ({why}); it decides the reflectance, "
                             "so the item is not classified") from None
        declared, what = landsat_scaling(mtl, item_level, numbers, key, source), f"its MTL asset {key!r}"
    return landsat_product(files, layers, sensor.id, item_level, declared, what, item_id, when, source)


def _landsat_level(text: str) -> str | None:
    upper = text.upper()
    if re.search(r"_L2S[PR]_|C2-L2|L2SP|L2SR", upper):
        return "L2A"
    if re.search(r"_L1(TP|GT|GS)_|C2-L1|C2L1|L1TP|L1GT|L1GS", upper):
        return "L1C"
    return None


def _raster_scaling(band_assets: dict) -> dict[str, tuple[float, float]]:
    """{band: (scale, offset)} that the assets' ``raster:bands`` declare (bands without a scale left out)."""
    declared = {}
    for name, asset in band_assets.items():
        rb = asset.get("raster:bands") or [{}]
        rb = rb[0] if isinstance(rb, list) and rb and isinstance(rb[0], dict) else {}
        if "scale" in rb:
            declared[name] = (rb["scale"], rb.get("offset", 0.0))
    return declared


def _scaling(product: Product, props: dict, assets: dict, band_assets: dict, base) -> None:
    """Fill offsets and quantification from what the item declares: the assets' ``raster:bands`` scale and offset,
    else its product-metadata asset, else the processing-baseline rule; the band files' own scale and offset
    tags must agree with what the item says. A metadata asset the item lists must be readable: its offsets
    decide the scaling, so one that is missing or damaged is an error, not a guess."""
    declared = _raster_scaling(band_assets)
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
