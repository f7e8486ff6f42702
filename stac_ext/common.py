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
}


def class_table(encoding: str = "kappamask") -> list[dict]:
    """classification:classes entries for the five classes, written in ``encoding``."""
    codes = ENCODINGS[encoding]
    return [
        {"value": codes[c.value], "name": c.name, "title": c.title, "description": c.description,
         "color_hint": c.color, **({"nodata": True} if c.value == MISSING else {})}
        for c in CLASSES
    ]
