"""What STAC items and collections share: the extensions they declare, the COG media type and the class table in
an encoding."""

from __future__ import annotations

from kappamask_core.foundation import CLASSES, ENCODINGS, MISSING

COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
EXTENSIONS = {
    "classification": "https://stac-extensions.github.io/classification/v2.0.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "projection": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.1.0/schema.json",
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "render": "https://stac-extensions.github.io/render/v2.0.0/schema.json",
    "web-map-links": "https://stac-extensions.github.io/web-map-links/v1.2.0/schema.json",
}
RENDER = "classes"  # the key of the classes' render entry
TILE_MATRIX_SET = "WebMercatorQuad"
TILE_FORMAT = "png"


def class_table(encoding: str = "kappamask") -> list[dict]:
    """classification:classes entries for the five classes, written in ``encoding``."""
    codes = ENCODINGS[encoding]
    return [
        {"value": codes[c.value], "name": c.name, "title": c.title, "description": c.description,
         "color_hint": c.color, **({"nodata": True} if c.value == MISSING else {})}
        for c in CLASSES
    ]


def class_render(encoding: str = "kappamask") -> dict:
    """The render extension's entry that draws the classes: the COG's own palette, class by class, nearest
    resampling, missing transparent. Collections carry it, and so does every item (tilers read either)."""
    classes = class_table(encoding)
    missing = next(c["value"] for c in classes if c.get("nodata"))
    return {"title": "Cloud and cloud-shadow classes", "assets": ["classification"], "resampling": "nearest",
            "nodata": missing,
            "colormap": {str(c["value"]): f"#{c['color_hint']}" for c in classes if not c.get("nodata")}}


def render_query(render: dict) -> str:
    """A render entry as a tiler's query string, key by key (titiler's parameters have the render extension's
    names): lists repeat the key, objects are JSON; the title is not a tile parameter."""
    import json
    from urllib.parse import urlencode

    params = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in render.items() if k != "title"}
    return urlencode(params, doseq=True)
