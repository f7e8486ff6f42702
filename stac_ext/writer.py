"""Write a STAC item per classified product (and a collection for several).

Everything class-related is read from ``kappamask_core.foundation.classes`` and the
model card; nothing is restated here.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from kappamask_core import __version__
from kappamask_core.foundation import CLASSES, MISSING, USABLE_CLASSES, USABLE_MISSING, data_bounds
from kappamask_core.io import sha256_file

from .collection import write_collection
from .common import COG_MEDIA_TYPE, EXTENSIONS, RENDER, class_render, class_table


def footprint(classes: np.ndarray, grid) -> tuple[dict, list[float]]:
    """WGS84 polygon and bbox of the valid-data extent (bounding box of non-missing pixels)."""
    from rasterio.warp import transform_geom

    bounds = data_bounds(classes)
    r0, r1, c0, c1 = bounds if bounds is not None else (0, classes.shape[0], 0, classes.shape[1])
    # densify the edges so the reprojected polygon follows the curved UTM edges
    n = 16
    ring = [(c0 + (c1 - c0) * i / n, r0) for i in range(n)] + [(c1, r0 + (r1 - r0) * i / n) for i in range(n)]
    ring += [(c1 - (c1 - c0) * i / n, r1) for i in range(n)] + [(c0, r1 - (r1 - r0) * i / n) for i in range(n)]
    ring.append(ring[0])
    coords = [grid.transform @ (c, r) for c, r in ring]
    geom = {"type": "Polygon", "coordinates": [coords]}
    if grid.crs is not None:
        geom = transform_geom(grid.crs, "EPSG:4326", geom)
    xs = [p[0] for p in geom["coordinates"][0]]
    ys = [p[1] for p in geom["coordinates"][0]]
    return geom, [min(xs), min(ys), max(xs), max(ys)]


def class_objects(classification, encoding: str = "kappamask") -> list[dict]:
    """The class table with each class's count and percentage over valid pixels."""
    counts = classification.class_counts()
    valid = int(counts[1:].sum())
    entries = class_table(encoding)
    for c, entry in zip(CLASSES, entries):
        entry["count"] = int(counts[c.value])
        if c.value != MISSING:
            entry["percentage"] = round(100.0 * counts[c.value] / valid, 4) if valid else 0.0
    return entries


def _file_info(path: Path) -> dict:
    # file:checksum is a multihash: 0x12 (sha2-256), 0x20 (32 bytes), then the digest
    return {"file:size": path.stat().st_size, "file:checksum": "1220" + sha256_file(path)}


def variant_summary(card) -> dict:
    """What an item records of a reduced-precision variant: its parent and how closely it follows it."""
    check = card.variant["check"]
    return {"parent": card.variant["parent"]["id"], "parent_weights_sha256": card.variant["parent"]["weights_sha256"],
            "agreement": check["agreement"], "faithful": card.faithful, "check_tiles": check["tiles"]}


def build_item(classification, paths: dict, source, encoding: str = "kappamask", files: dict | None = None):
    """The STAC item of one product. ``paths``: each output's final path (hrefs);
    ``files``: where each output's bytes are now (for sizes and checksums), default ``paths``."""
    import pystac

    files = files or paths
    geom, bbox = footprint(classification.classes, classification.grid)
    when = classification.product.datetime
    props: dict = {}
    if when is None:
        when = datetime.now(timezone.utc)
        props["kappamask:datetime_source"] = "processing time (the input carries no acquisition time)"
    props.update(_properties(classification, encoding))
    item = pystac.Item(id=Path(paths["cog"]).name.removesuffix(".tif"), geometry=geom, bbox=bbox, datetime=when,
                       properties=props, stac_extensions=[EXTENSIONS[k] for k in
                                                          ("classification", "raster", "projection", "file",
                                                           "processing", "eo", "render")])
    item.properties["renders"] = {RENDER: class_render(encoding)}  # what item-level tilers (titiler) read
    item.properties.update(_projection(classification.grid))
    for key, asset in _assets(classification, paths, files, encoding):
        item.add_asset(key, asset)
    _provenance(item, classification.product, source)
    return item


def _properties(classification, encoding: str) -> dict:
    """Cover percentages, the model in the MLM extension's field names, runtime, processing and platform."""
    product, card = classification.product, classification.card
    props: dict = {}
    pct = {c["name"]: c.get("percentage", 0.0) for c in class_objects(classification, encoding)}
    if classification.class_counts()[1:].sum():
        props.update({"eo:cloud_cover": round(pct["cloud"] + pct["semi_transparent_cloud"], 4),
                      "kappamask:clear_percentage": pct["clear"],
                      "kappamask:cloud_shadow_percentage": pct["cloud_shadow"]})
    else:  # nothing was seen: a cloud cover of 0 would claim a clear product
        props["kappamask:valid_pixels"] = 0
    runtime = classification.runtime
    props.update({
        # the model, in the MLM extension's field names (the item itself is not a model item)
        "kappamask:model": {
            "id": card.id, "mlm:name": card.name, "version": card.version, "mlm:architecture": card.architecture,
            "mlm:framework": "ONNX Runtime", "mlm:framework_version": _version("onnxruntime"),
            "mlm:accelerator": "cuda" if runtime.get("device") == "cuda" else "amd64",
            "mlm:pretrained": card.trained, "card_sha256": card.sha256, "predicts": list(card.predicts),
            **({"weights_sha256": card.weights["sha256"]} if card.weights.get("sha256") else {}),
            **({"provenance": card.provenance} if card.provenance else {}),
            "precision": card.precision,
            **({"variant": variant_summary(card)} if card.variant else {}),
        },
        "kappamask:runtime": {k: v for k, v in runtime.items() if k != "settings_sha256"},
        **({"kappamask:settings": runtime["settings_sha256"]} if "settings_sha256" in runtime else {}),
        "processing:software": {"kappamask": __version__, "onnxruntime": _version("onnxruntime")},
        "processing:lineage": _lineage(classification),
        "processing:level": "L3",
    })
    props.update(sensor_properties(product.sensor_info, product.platform))
    return props


def sensor_properties(sensor, platform=None) -> dict:
    """What the input was taken by: the sensor's constellation and instrument, the platform where the product
    names it, and the sensor as the model cards name it (``kappamask:sensor``)."""
    props = {"constellation": sensor.constellation, "instruments": [sensor.instrument], "kappamask:sensor": sensor.id}
    if isinstance(platform, str) and platform:
        props["platform"] = platform
    return props


def _lineage(classification) -> str:
    card, runtime = classification.card, classification.runtime
    buffers = runtime.get("buffers_m") or {}
    return (f"Classified with model {card.id} ({card.name}) at {card.resolution} m working resolution"
            + (f", the {card.precision} variant of {card.variant['parent']['id']}" if card.variant else "") + "; "
            f"stitch {runtime.get('stitch')}, overlap {runtime.get('overlap')} px"
            + (f"; classes buffered by {', '.join(f'{k} {v:g} m' for k, v in buffers.items())}" if buffers else "")
            + ".")


def _projection(grid) -> dict:
    """The projection extension's fields; none for an unlocated grid."""
    if grid.crs is None:
        return {}
    epsg = grid.crs.to_epsg()
    return {"proj:code": f"EPSG:{epsg}" if epsg else None, **({} if epsg else {"proj:wkt2": grid.crs.to_wkt()}),
            "proj:shape": [grid.height, grid.width], "proj:transform": list(grid.transform)[:6]}


def _assets(classification, paths: dict, files: dict, encoding: str):
    """(key, asset) of each output written: classes, quicklook, and scores and usable mask when asked for."""
    import pystac

    resolution = classification.grid.resolution
    yield "classification", pystac.Asset(
        # "visual": the COG carries its class palette, so viewers (STAC Browser) draw it as it is
        href=Path(paths["cog"]).name, media_type=COG_MEDIA_TYPE, roles=["data", "visual"],
        title="Cloud and cloud-shadow classes",
        extra_fields={
            "classification:classes": class_objects(classification, encoding),
            # km_predict files have no nodata value: the key is left out (null is not valid raster:bands)
            "raster:bands": [{"data_type": "uint8", **({"nodata": 0} if encoding == "kappamask" else {}),
                              "sampling": "area", "spatial_resolution": resolution}],
            "kappamask:encoding": encoding,
            **_file_info(Path(files["cog"])),
        })
    yield "quicklook", pystac.Asset(href=Path(paths["quicklook"]).name, media_type="image/png", roles=["overview"],
                                    title="True colour and classes", extra_fields=_file_info(Path(files["quicklook"])))
    if paths.get("thumbnail"):
        yield "thumbnail", pystac.Asset(href=Path(paths["thumbnail"]).name, media_type="image/png",
                                        roles=["thumbnail"], title="Classes (thumbnail)",
                                        extra_fields=_file_info(Path(files["thumbnail"])))
    if paths.get("scores"):
        yield "scores", pystac.Asset(
            href=Path(paths["scores"]).name, media_type=COG_MEDIA_TYPE, roles=["data"],
            title="Class scores (0..1), one band per class",
            extra_fields={"raster:bands": [{"data_type": "float32", "name": c.name, "sampling": "area",
                                            "spatial_resolution": resolution} for c in CLASSES],
                          **_file_info(Path(files["scores"]))})
    if paths.get("usable"):
        yield "usable", pystac.Asset(
            href=Path(paths["usable"]).name, media_type=COG_MEDIA_TYPE, roles=["data"],
            title="Usable pixels (clear after buffering)",
            extra_fields={
                "classification:classes": [
                    {"value": value, "name": name, "description": description,
                     **({"nodata": True} if value == USABLE_MISSING else {})}
                    for value, name, description, _ in USABLE_CLASSES],
                "raster:bands": [{"data_type": "uint8", "nodata": USABLE_MISSING, "sampling": "area",
                                  "spatial_resolution": resolution}],
                **_file_info(Path(files["usable"]))})


def _provenance(item, product, source) -> None:
    import pystac

    stac_href = product.extra.get("stac_href")
    if stac_href:
        item.add_link(pystac.Link("derived_from", stac_href, media_type="application/geo+json"))
    item.properties["kappamask:source_product"] = product.id


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return "unknown"


def item_dict(item) -> dict:
    item.set_self_href(None)
    return item.to_dict(include_self_link=False, transform_hrefs=False)


def build_composite_item(info, paths: dict, files: dict):
    """The STAC item of a composite (:class:`kappamask_core.faces.composite.CompositeFiles`): its bands with
    ``eo:bands`` and ``raster:bands``, the clear-observation count and the dates as assets, and the dates,
    products and models that made it."""
    import pystac

    from kappamask_core.foundation import SENSORS

    sensor = SENSORS[info.sensor]
    grid = info.grid
    west, north = grid.transform * (0, 0)
    east, south = grid.transform * (grid.width, grid.height)
    geom, bbox = _lonlat_box(grid.crs, west, south, east, north)
    start, end = (datetime.fromisoformat(d).replace(tzinfo=timezone.utc) for d in (info.dates[0], info.dates[-1]))
    props = {
        "start_datetime": start.isoformat().replace("+00:00", "Z"),
        "end_datetime": end.isoformat().replace("+00:00", "Z"),
        "kappamask:composite": {"method": info.method, "dates": info.dates, "products": info.products,
                                "models": info.models, "buffers_m": info.buffers,
                                "clear_share": round(info.clear_share, 6)},
        "processing:software": {"kappamask": __version__},
        **sensor_properties(sensor),
        "processing:lineage": (f"{info.method} composite of {len(info.products)} products ({info.dates[0]} to "
                               f"{info.dates[-1]}) over the pixels their KappaMask classes call clear"
                               + (" after buffering" if info.buffers else "") + f" (models: {', '.join(info.models)})"),
        **_projection(grid),
    }
    item = pystac.Item(id=Path(paths["bands"]).stem, geometry=geom, bbox=bbox, datetime=None, properties=props,
                       stac_extensions=[EXTENSIONS[k] for k in ("eo", "raster", "projection", "file", "processing")])
    bands = [{"name": sensor.own(role), **({"common_name": sensor.common_name(role)}
                                           if sensor.common_name(role) else {})} for role in info.bands]
    item.add_asset("composite", pystac.Asset(
        href=Path(paths["bands"]).name, media_type=COG_MEDIA_TYPE, roles=["data"],
        title=f"{info.method} composite (reflectance x 10000)",
        extra_fields={"eo:bands": bands,
                      "raster:bands": [{"data_type": "uint16", "nodata": 0, "scale": 0.0001, "offset": 0,
                                        "spatial_resolution": grid.resolution} for _ in info.bands],
                      **_file_info(Path(files["bands"]))}))
    item.add_asset("clear_count", pystac.Asset(
        href=Path(paths["clear_count"]).name, media_type=COG_MEDIA_TYPE, roles=["data"],
        title="Clear observations per pixel",
        extra_fields={"raster:bands": [{"data_type": "uint16", "spatial_resolution": grid.resolution}],
                      **_file_info(Path(files["clear_count"]))}))
    if "date" in paths:
        item.add_asset("date", pystac.Asset(
            href=Path(paths["date"]).name, media_type=COG_MEDIA_TYPE, roles=["data"],
            title="Date each pixel was taken from (days since 1970-01-01)",
            extra_fields={"raster:bands": [{"data_type": "int32", "nodata": -1,
                                            "spatial_resolution": grid.resolution}],
                          **_file_info(Path(files["date"]))}))
    return item


def _lonlat_box(crs, west, south, east, north) -> tuple[dict, list[float]]:
    if crs is not None:
        from rasterio.warp import transform_bounds

        west, south, east, north = transform_bounds(crs, "EPSG:4326", west, south, east, north)
    return ({"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north], [west, north],
                                                  [west, south]]]}, [west, south, east, north])


class StacItemOutput:
    """The ``kappamask.outputs`` plugin: a STAC item beside each product's COG, a collection over a run."""

    name = "stac"

    @staticmethod
    def file_names(stem: str) -> dict[str, str]:
        return {"stac_item": f"{stem}.json"}

    @staticmethod
    def write(result, finals: dict, temps: dict, source, encoding: str) -> None:
        item = build_item(result, finals, source, encoding, files=temps)
        Path(temps["stac_item"]).write_text(json.dumps(item_dict(item), indent=2) + "\n")

    @staticmethod
    def complete(finals: dict, digest: str) -> bool:
        """Whether the item at ``finals["stac_item"]`` was made with settings ``digest`` and every asset it lists
        still has the size and checksum recorded there (a rerun then skips the product)."""
        item_path = Path(finals["stac_item"])
        try:
            item = json.loads(item_path.read_text())
            if item["properties"].get("kappamask:settings") != digest:
                return False
            for asset in item["assets"].values():
                info = _file_info(item_path.parent / asset["href"])
                if any(asset.get(key) != value for key, value in info.items()):
                    return False
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return True

    @staticmethod
    def composite_file_names(stem: str) -> dict[str, str]:
        return {"stac_item": f"{stem}.json"}

    @staticmethod
    def write_composite(info, finals: dict, temps: dict) -> None:
        item = build_composite_item(info, finals, temps)
        Path(temps["stac_item"]).write_text(json.dumps(item_dict(item), indent=2) + "\n")

    @staticmethod
    def finish(written: list[dict], outdir, encoding: str) -> None:
        """A collection and catalogue root when the run made several items."""
        import pystac

        if len(written) > 1:
            items = [pystac.Item.from_file(str(paths["stac_item"])) for paths in written]
            write_collection(items, Path(outdir), encoding)


STAC_OUTPUT = StacItemOutput()

