"""A STAC collection and catalogue root over the items of one multi-input run."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from kappamask_core.io import atomic_files

from .common import COG_MEDIA_TYPE, EXTENSIONS, RENDER, class_render, class_table


SENTINEL_LEGAL_NOTICE = "https://sentinels.copernicus.eu/documents/247904/690755/Sentinel_Data_Legal_Notice"


def build_collection(items, encoding: str = "kappamask"):
    import pystac

    bboxes = [item.bbox for item in items]
    bbox = [min(b[0] for b in bboxes), min(b[1] for b in bboxes), max(b[2] for b in bboxes), max(b[3] for b in bboxes)]
    times = [item.datetime for item in items if item.datetime is not None]
    classes = class_table(encoding)
    covers = [i.properties["eo:cloud_cover"] for i in items if "eo:cloud_cover" in i.properties]
    summaries = {"classification:classes": classes,
                 **({"eo:cloud_cover": {"minimum": min(covers), "maximum": max(covers)}} if covers else {}),
                 "kappamask:model": sorted({i.properties["kappamask:model"]["id"] for i in items})}
    collection = pystac.Collection(
        id="kappamask-run",
        description="Cloud and cloud-shadow classification (KappaMask classes) of Sentinel-2 products. Contains "
                    "modified Copernicus Sentinel data.",
        title="KappaMask classification",
        license="other",
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[min(times), max(times)]])),
        # item_assets is core in STAC 1.1
        stac_extensions=[EXTENSIONS["classification"], EXTENSIONS["eo"], EXTENSIONS["render"]],
        summaries=pystac.Summaries(summaries),
    )
    collection.extra_fields["item_assets"] = {
        "classification": {"type": COG_MEDIA_TYPE, "roles": ["data", "visual"],
                           "title": "Cloud and cloud-shadow classes", "classification:classes": classes},
        "quicklook": {"type": "image/png", "roles": ["overview"], "title": "True colour and classes"},
        "thumbnail": {"type": "image/png", "roles": ["thumbnail"], "title": "Classes (thumbnail)"},
    }
    # how tile servers and browsers draw the classes: the COG's own palette, class by class
    collection.extra_fields["renders"] = {RENDER: class_render(encoding)}
    # the masks are derived from Sentinel-2 products: their use follows the Copernicus Sentinel data terms
    collection.add_link(pystac.Link("license", SENTINEL_LEGAL_NOTICE, "text/html",
                                    "Legal notice on the use of Copernicus Sentinel data"))
    return collection


def write_collection(items, outdir, encoding: str = "kappamask") -> Path:
    """Write ``collection.json`` (linking the item files) and a ``catalog.json`` root."""
    import pystac

    outdir = Path(outdir)
    collection = build_collection(items, encoding)
    collection.set_self_href(str((outdir / "collection.json").resolve()))
    for item in items:
        collection.add_link(pystac.Link("item", f"./{item.id}.json", media_type=pystac.MediaType.GEOJSON))
    collection.add_link(pystac.Link("root", "./catalog.json", media_type=pystac.MediaType.JSON))
    data = collection.to_dict(include_self_link=False, transform_hrefs=False)
    data["links"] = [l for l in data["links"] if l["rel"] != "root"] + [
        {"rel": "root", "href": "./catalog.json", "type": "application/json"}]
    catalog = {
        "type": "Catalog", "stac_version": pystac.get_stac_version(), "id": "kappamask-outputs",
        "description": f"KappaMask outputs written {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
        "links": [{"rel": "root", "href": "./catalog.json", "type": "application/json"},
                  {"rel": "child", "href": "./collection.json", "type": "application/json"}],
    }
    with atomic_files(outdir / "collection.json", outdir / "catalog.json") as (collection_tmp, catalog_tmp):
        Path(collection_tmp).write_text(json.dumps(data, indent=2) + "\n")
        Path(catalog_tmp).write_text(json.dumps(catalog, indent=2) + "\n")  # the two appear together
    return outdir / "collection.json"
