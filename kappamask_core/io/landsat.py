"""Landsat Collection 2 and HLS v2.0 products as USGS and NASA deliver them: folders of band files.

Landsat (``LC08_L2SP_044034_20210508_20210517_02_T1_SR_B4.TIF``, ``..._L1TP_..._B4.TIF``) comes with its MTL
metadata (``_MTL.txt``, ``.json`` or ``.xml``), which decides everything that changes the map: the satellite, the
processing level, each band's REFLECTANCE_MULT and REFLECTANCE_ADD and, for Level-1, the sun elevation that turns
them into top-of-atmosphere reflectance. A value the map needs that the MTL lacks, or that contradicts the file
names or the files' own tags, is refused. QA_PIXEL's fill bit and each band's saturation bit in QA_RADSAT make a
pixel missing.

HLS (``HLS.L30.T10SEG.2021001T183651.v2.0.B04.tif``) is surface reflectance x 10000 (int16, no-data -9999, 0 a
value: units ``harmonised``) with its Fmask layer (255: no data); L30 numbers Landsat's bands, S30 Sentinel-2's.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..foundation.bands import DEFAULT_QUANTIFICATION, SENSORS, sensor_named
from ..foundation.errors import InputError
from .bandfiles import FileBand, open_band_files, tag_scaling
from .gdal import open_raster
from .layers import MaskedBand, check_layer
from .product import Product, check_level, declared_scaling, merge_scaling, metadata_number, say_once

LANDSAT_NAME = re.compile(r"^(L([CTEOM])0(\d)_(L[12][A-Z]{2})_\d{6}_(\d{8})_\d{8}_\d{2}_[A-Z0-9]{2})_"
                          r"(?:SR_)?(B\d{1,2}|QA_PIXEL|QA_RADSAT)\.TIF{1,2}$", re.IGNORECASE)
MTL_NAME = re.compile(r"_MTL\.(txt|json|xml)$", re.IGNORECASE)
HLS_NAME = re.compile(r"^(HLS\.([LS]30)\.T\d{2}[A-Z]{3}\.(\d{7}T\d{6})\.v2\.0)\.(B\d{2}|B8A|Fmask)\.tif{1,2}$",
                      re.IGNORECASE)
HLS_SCALE = 1e-4  # HLS v2.0's surface reflectance: value x 0.0001, no offset (its user guide)
HLS_FILL = 255  # Fmask's no-data value
QA_FILL_BIT = 1 << 0  # QA_PIXEL bit 0: fill


def is_landsat_folder(path: Path) -> bool:
    return any(LANDSAT_NAME.match(p.name) or MTL_NAME.search(p.name) for p in path.iterdir() if p.is_file())


def is_hls_folder(path: Path) -> bool:
    return any(HLS_NAME.match(p.name) for p in path.iterdir() if p.is_file())


# ----------------------------------------------------------------------------- the MTL file

def parse_mtl(data: bytes, name: str, source: str) -> dict[str, dict[str, str]]:
    """{group: {key: value}} from a Collection 2 MTL file in any of its three forms (ODL text, JSON, XML); values
    as text, groups by their innermost name (LEVEL2_SURFACE_REFLECTANCE_PARAMETERS, IMAGE_ATTRIBUTES, ...)."""
    groups: dict[str, dict[str, str]] = {}
    try:
        text = data.decode("utf-8")
        if name.lower().endswith(".json"):
            def walk(node: dict, group: str) -> None:
                for key, value in node.items():
                    if isinstance(value, dict):
                        walk(value, key)
                    else:
                        groups.setdefault(group, {})[key] = str(value)
            walk(json.loads(text), "")
        elif name.lower().endswith(".xml"):
            for element in ET.fromstring(text).iter():
                for child in element:
                    if len(child) == 0:
                        groups.setdefault(element.tag, {})[child.tag] = (child.text or "").strip()
        else:
            stack = [""]
            for line in text.splitlines():
                key, sep, value = (part.strip() for part in line.partition("="))
                if not sep:
                    continue
                if key == "GROUP":
                    stack.append(value)
                elif key == "END_GROUP":
                    stack.pop() if len(stack) > 1 else None
                else:
                    groups.setdefault(stack[-1], {})[key] = value.strip('"')
    except (UnicodeDecodeError, json.JSONDecodeError, ET.ParseError, AttributeError) as exc:
        raise InputError(f"{source}: {name} is not a readable MTL file ({exc}); the product is damaged") from None
    if not groups:
        raise InputError(f"{source}: {name} holds no metadata; the product is damaged")
    return groups


def _mtl_value(mtl: dict, group: str, key: str, name: str, source: str) -> str:
    value = mtl.get(group, {}).get(key)
    if value in (None, ""):
        raise InputError(f"{source}: {name} has no {key} (group {group}); it decides the band's reflectance, so the "
                         "product is not classified without it")
    return value


def _mtl_number(mtl: dict, group: str, key: str, name: str, source: str) -> float:
    return metadata_number(_mtl_value(mtl, group, key, name, source), f"{source}: {name}'s {key}")


def _mtl_level(text: str) -> str | None:
    text = text.upper()
    return "L2A" if text.startswith("L2") else "L1C" if text.startswith("L1") else None


def landsat_scaling(mtl: dict, level: str, own_numbers: dict[str, int], name: str,
                    source: str) -> dict[str, tuple[float, float]]:
    """{role: (scale, offset)} with reflectance = DN x scale + offset, from the MTL: Level-2's surface reflectance
    parameters, or Level-1's reflectance rescaling divided by the sine of the sun elevation (top of atmosphere)."""
    if level == "L2A":
        group, sun = "LEVEL2_SURFACE_REFLECTANCE_PARAMETERS", 1.0
    else:
        group = "LEVEL1_RADIOMETRIC_RESCALING"
        elevation = _mtl_number(mtl, "IMAGE_ATTRIBUTES", "SUN_ELEVATION", name, source)
        if not 0.0 < elevation <= 90.0:
            raise InputError(f"{source}: {name}'s SUN_ELEVATION is {elevation:g} degrees: the sun is below the "
                             "horizon, so the scene has no reflectance to classify")
        sun = math.sin(math.radians(elevation))
    declared = {}
    for role, number in own_numbers.items():
        mult = _mtl_number(mtl, group, f"REFLECTANCE_MULT_BAND_{number}", name, source)
        add = _mtl_number(mtl, group, f"REFLECTANCE_ADD_BAND_{number}", name, source)
        declared[role] = (mult / sun, add / sun)
    return declared


# ----------------------------------------------------------------------------- Landsat Collection 2

def open_landsat_folder(folder: str | os.PathLike, level: str | None = None) -> Product:
    """A Landsat Collection 2 Level-1 or Level-2 product unpacked into a folder (see the module text)."""
    folder = Path(folder)
    source = str(folder)
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    matches = [m for m in map(LANDSAT_NAME.match, names) if m]
    ids = sorted({m.group(1) for m in matches})
    if len(ids) > 1:
        raise InputError(f"{source}: holds the files of {len(ids)} Landsat products ({', '.join(ids[:3])}); give each "
                         "product as a folder of its own")
    mtls = [n for n in names if MTL_NAME.search(n) and (not ids or n.upper().startswith(ids[0].upper()))]
    if not ids:
        raise InputError(f"{source}: no Landsat band files found (expected names such as "
                         "LC08_L2SP_044034_20210508_20210517_02_T1_SR_B4.TIF)")
    if not mtls:
        raise InputError(f"{source}: {ids[0]} has no MTL file (_MTL.txt, _MTL.json or _MTL.xml); its scaling and sun "
                         "elevation decide the reflectance, so the product is not classified without it")
    product_id = ids[0]
    mtl_name = sorted(mtls, key=lambda n: (not n.lower().endswith(".txt"), n))[0]
    mtl = parse_mtl((folder / mtl_name).read_bytes(), mtl_name, source)
    spacecraft = _mtl_value(mtl, "IMAGE_ATTRIBUTES", "SPACECRAFT_ID", mtl_name, source)
    try:
        sensor = sensor_named(spacecraft)
    except InputError:
        raise InputError(f"{source}: {mtl_name} names the spacecraft {spacecraft!r}; Landsat 5, 7, 8 and 9 are "
                         "read") from None
    first = matches[0]
    if sensor.id != f"landsat-{int(first.group(3))}" or not sensor.id.startswith("landsat"):
        raise InputError(f"{source}: {mtl_name} says {spacecraft}, but the file names say Landsat {first.group(3)} "
                         f"({product_id}); the files come from different products")
    processing = _mtl_value(mtl, "PRODUCT_CONTENTS", "PROCESSING_LEVEL", mtl_name, source)
    product_level = _mtl_level(processing)
    if product_level is None or product_level != _mtl_level(first.group(4)):
        raise InputError(f"{source}: {mtl_name} says processing level {processing}, but the file names say "
                         f"{first.group(4)}; the files come from different products")
    level = check_level(level, (), product_id, source, sensor.id)
    files, layers = {}, {}
    for m in matches:
        own = m.group(6).upper()
        if own.startswith("QA_"):
            layers[own] = str(folder / m.group(0))
            continue
        role = sensor.role(own)
        if role is not None and (product_level == "L1C" or "SR_" in m.group(0).upper()):
            files[role] = str(folder / m.group(0))
    if not files:
        raise InputError(f"{source}: {product_id} has none of {sensor.title}'s reflective band files")
    numbers = own_numbers(sensor.id, files)
    declared = landsat_scaling(mtl, product_level, numbers, mtl_name, source)
    return landsat_product(files, layers, sensor.id, level or product_level, declared, mtl_name, product_id,
                           _landsat_time(mtl, first.group(5)), source)


def own_numbers(sensor: str, roles) -> dict[str, int]:
    """{role: the number of the sensor's band that fills it} (Landsat 8's B08 is its band 5)."""
    own = {role: name for name, role in SENSORS[sensor].bands.items()}
    return {role: int(own[role][1:]) for role in roles}


def landsat_product(files: dict[str, str], layers: dict[str, str], sensor: str, level: str,
                    declared: dict[str, tuple[float, float]], scaling_source: str, product_id: str,
                    when: datetime | None, source: str) -> Product:
    """A Landsat product of band files ({role: path}) and quality layers ({'QA_PIXEL': path, 'QA_RADSAT': path}),
    with the (scale, offset) of each band that its metadata (MTL, STAC raster:bands) declares; the files' own
    scale and offset tags must agree."""
    grid, bands = open_band_files(files, source, sensor)
    offsets, quantification = declared_scaling(declared, source, scaling_source)
    product = Product(
        id=product_id, level=level, grid=grid, bands=_landsat_masks(bands, layers, own_numbers(sensor, bands), source),
        offsets=offsets, quantification={**DEFAULT_QUANTIFICATION, **quantification}, datetime=when,
        platform=SENSORS[sensor].platforms[0], source=source, scaling_source=scaling_source, sensor=sensor,
    )
    merge_scaling(product, *tag_scaling(bands, source), "the bands' scale and offset tags")
    return product


def _any_bit(values: np.ndarray, bits: int) -> np.ndarray:
    return (values & bits) != 0


def _landsat_masks(bands: dict, layers: dict, numbers: dict, source: str) -> dict:
    """The bands with QA_PIXEL's fill bit and each band's own saturation bit in QA_RADSAT as missing."""
    for layer, unknown in (("QA_PIXEL", "pixels are missing only where their DN is 0 (the fill value)"),
                           ("QA_RADSAT", "saturated pixels cannot be told, and are classified as they are")):
        if layer not in layers:
            say_once(f"{source}: no {layer} file: {unknown}")
    masked: dict[str, FileBand | MaskedBand] = {}
    for role, band in bands.items():
        saturated = 1 << (numbers[role] - 1)  # QA_RADSAT: bit n - 1 for band n
        tests = {"QA_PIXEL": functools.partial(_any_bit, bits=QA_FILL_BIT),
                 "QA_RADSAT": functools.partial(_any_bit, bits=saturated)}
        used = []
        for layer, test in tests.items():
            if layer in layers:
                check_layer(layers[layer], band, layer, source)
                used.append((layers[layer], test, layer))
        masked[role] = MaskedBand(band, used) if used else band
    return masked


def _landsat_time(mtl: dict, acquired: str) -> datetime | None:
    date = mtl.get("IMAGE_ATTRIBUTES", {}).get("DATE_ACQUIRED")
    clock = mtl.get("IMAGE_ATTRIBUTES", {}).get("SCENE_CENTER_TIME", "00:00:00").rstrip("Z")[:15]
    try:
        if date:
            return datetime.fromisoformat(f"{date}T{clock}").replace(tzinfo=timezone.utc)
        return datetime.strptime(acquired, "%Y%m%d").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


# ----------------------------------------------------------------------------- HLS v2.0

def open_hls_folder(folder: str | os.PathLike, level: str | None = None) -> Product:
    """An HLS v2.0 granule (HLSL30 or HLSS30) as a folder of its band files (see the module text)."""
    folder = Path(folder)
    source = str(folder)
    matches = [m for m in (HLS_NAME.match(p.name) for p in sorted(folder.iterdir()) if p.is_file()) if m]
    ids = sorted({m.group(1) for m in matches})
    if len(ids) != 1:
        raise InputError(f"{source}: holds the files of {len(ids)} HLS granules ({', '.join(ids[:3])}); give each "
                         "granule as a folder of its own")
    first = matches[0]
    sensor = SENSORS[f"hls-{first.group(2).lower()}"]
    level = check_level(level, (), "", source, sensor.id)
    files, layers = {}, {}
    for m in matches:
        own = m.group(4).upper()
        if own == "FMASK":
            layers[own] = str(folder / m.group(0))
        elif own in sensor.bands:
            files[sensor.bands[own]] = str(folder / m.group(0))
    if not files:
        raise InputError(f"{source}: {ids[0]} has none of {sensor.title}'s reflective band files")
    return hls_product(files, layers.get("FMASK"), sensor.id, level or "L2A", ids[0], _hls_time(first.group(3)),
                       source)


def hls_product(files: dict[str, str], fmask: str | None, sensor: str, level: str, granule: str,
                when: datetime | None, source: str, declared: dict[str, tuple[float, float]] | None = None,
                what: str = "the files' scale_factor and add_offset") -> Product:
    """An HLS granule of band files ({role: path}) and its Fmask layer: harmonised values (-9999 and Fmask's
    fill missing, 0 a value), scaled as ``declared`` (a STAC item's raster:bands) or the files' own
    scale_factor tags say, else as HLS v2.0's format fixes (x 0.0001); every declaration must agree."""
    grid, bands = open_band_files(files, source, sensor)
    for band in bands.values():
        band.nan_missing = True  # -9999 is no data; 0 is reflectance 0
    tagged, platform = _hls_tags(bands, source)
    masked: dict[str, FileBand | MaskedBand] = dict(bands)
    if fmask is not None:
        for role, band in bands.items():
            check_layer(fmask, band, "Fmask", source)
            masked[role] = MaskedBand(band, [(fmask, _is_hls_fill, "Fmask")])
    else:
        say_once(f"{source}: no Fmask layer: pixels are missing only where the bands hold -9999")
    product = Product(id=granule, level=level, grid=grid, bands=masked, units="harmonised", datetime=when,
                      platform=platform, source=source, sensor=sensor)
    for declaration, by in ((declared, what), (tagged, "the files' scale_factor and add_offset")):
        if declaration:
            merge_scaling(product, *declared_scaling(declaration, source, by), by)
    if product.scaling_source is None:
        merge_scaling(product, {}, {"band": 1 / HLS_SCALE}, "HLS v2.0's format (value x 0.0001)")
    merge_scaling(product, *tag_scaling(bands, source), "the bands' GDAL scale and offset")
    return product


def _is_hls_fill(fmask: np.ndarray) -> np.ndarray:
    return fmask == HLS_FILL


def _hls_tags(bands: dict, source: str) -> tuple[dict[str, tuple[float, float]], str | None]:
    """{role: (scale, offset)} that the files' scale_factor and add_offset metadata declare (HLS writes them on
    every band), and the platform their SPACECRAFT_NAME names."""
    declared, platforms = {}, set()
    for role, band in bands.items():
        with open_raster(band.path) as ds:
            tags = {**ds.tags(), **ds.tags(1)}
        if "scale_factor" in tags or "add_offset" in tags:
            try:
                declared[role] = (float(tags.get("scale_factor", 1.0)), float(tags.get("add_offset", 0.0)))
            except ValueError:
                raise InputError(f"{source}: band {role} declares scale_factor {tags.get('scale_factor')!r} and "
                                 f"add_offset {tags.get('add_offset')!r}, which are not numbers") from None
        if tags.get("SPACECRAFT_NAME"):
            platforms.add(re.sub(r"[\s_]+", "-", tags["SPACECRAFT_NAME"].strip().lower()))
    if len(platforms) > 1:
        raise InputError(f"{source}: the band files name different spacecraft ({', '.join(sorted(platforms))}); "
                         "they come from different granules")
    return declared, platforms.pop() if platforms else None


def _hls_time(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y%jT%H%M%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
