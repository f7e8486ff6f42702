"""Sentinel-2 products as ESA delivers them: SAFE folders and zips (``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml`` for the
level, baseline, offsets and quantification; ``manifest.safe`` for each file's MD5, checked before any pixel is
used), and folders of band files named like a product's (``*_B02.jp2``, ``*_B02_10m.jp2``, ``*_B8A.tif``). A zip
whose members are ambiguous (a name twice) or unreadable (encrypted, an unknown compression) is refused."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import xml.etree.ElementTree as ET
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..foundation.bands import BAND_ID, DEFAULT_QUANTIFICATION
from ..foundation.errors import InputError
from .bandfiles import BAND_FILE_RE, ZIP_ERRORS, open_band_files, pick_band_files, tag_scaling
from .product import Product, check_level, merge_scaling, metadata_number, say_once

ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}  # what GDAL's /vsizip/ reads too
DATETIME_RE = re.compile(r"(\d{8}T\d{6})")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_product_metadata(xml_bytes: bytes, source: str) -> dict:
    """Level, baseline, time, platform, quantification and offsets from MTD_MSIL1C/2A.xml.

    Values that cannot be right (a quantification that is not a positive number,
    an offset that is not a number, a band id outside 0..12, a start time that
    is not a time) stop the run: scaling with them would give a wrong map.
    """
    try:
        root = ET.fromstring(xml_bytes)
    except ET.ParseError as exc:
        raise InputError(f"{source}: product metadata is not valid XML ({exc})") from None
    meta: dict[str, Any] = {"offsets": {}, "quantification": dict(DEFAULT_QUANTIFICATION)}

    def number(tag: str, text: str) -> float:
        return metadata_number(text, f"{source}: product metadata {tag}")

    def positive(tag: str, text: str) -> float:
        value = number(tag, text)
        if value <= 0:
            raise InputError(f"{source}: product metadata {tag} is {text!r}; a quantification value must be positive")
        return value

    for el in root.iter():
        tag, text = _local(el.tag), (el.text or "").strip()
        if tag == "PRODUCT_TYPE":
            meta["level"] = "L2A" if "2A" in text else "L1C" if "1C" in text else None
        elif tag == "PROCESSING_BASELINE":
            meta["baseline"] = text
        elif tag == "PRODUCT_START_TIME":
            try:
                meta["datetime"] = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise InputError(f"{source}: product metadata PRODUCT_START_TIME is {text!r}, not a time") from None
        elif tag == "SPACECRAFT_NAME":
            meta["platform"] = text.lower()
        elif tag == "PRODUCT_URI":
            meta["id"] = text.removesuffix(".SAFE")
        elif tag in ("QUANTIFICATION_VALUE", "BOA_QUANTIFICATION_VALUE"):
            meta["quantification"]["band"] = positive(tag, text)
        elif tag == "AOT_QUANTIFICATION_VALUE":
            meta["quantification"]["AOT"] = positive(tag, text)
        elif tag == "WVP_QUANTIFICATION_VALUE":
            meta["quantification"]["WVP"] = positive(tag, text)
        elif tag in ("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET"):
            band_id = el.attrib.get("band_id", "")
            names = [n for n, i in BAND_ID.items() if str(i) == band_id.strip()]
            if not names:
                raise InputError(f"{source}: product metadata {tag} has band_id {band_id!r}; band ids are 0 to "
                                 f"{len(BAND_ID) - 1}")
            meta["offsets"][names[0]] = number(tag, text)
    return meta


def _datetime_from_name(name: str) -> datetime | None:
    m = DATETIME_RE.search(name)
    return datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc) if m else None


def open_band_folder(folder: str | os.PathLike, level: str | None = None) -> Product:
    folder = Path(folder)
    paths = sorted(p for p in folder.iterdir() if p.is_file())
    files = pick_band_files(paths, str(folder))
    if not files:
        raise InputError(
            f"{folder}: no Sentinel-2 band files found (expected names like *_B02.jp2, *_B02_10m.jp2 or *_B8A.tif)"
        )
    grid, bands = open_band_files(files, str(folder))
    stems = [Path(p).name for p in files.values()]
    prefixes = {BAND_FILE_RE.split(stem)[0] for stem in stems}
    prefix = prefixes.pop() if len(prefixes) == 1 else folder.name
    product = Product(
        id=prefix,
        level=check_level(level, bands, " ".join(stems), str(folder)),
        grid=grid,
        bands=bands,
        datetime=_datetime_from_name(prefix),
        source=str(folder),
    )
    merge_scaling(product, *tag_scaling(bands, product.source), "the bands' scale and offset tags")
    return product


def parse_manifest(xml_bytes: bytes, source: str) -> dict[str, tuple[int, str]]:
    """{path relative to the product: (size, MD5)} from a SAFE's manifest.safe."""
    try:
        root = ET.fromstring(xml_bytes)
    except ET.ParseError as exc:
        raise InputError(f"{source}: manifest.safe is not valid XML ({exc}); the product is damaged") from None
    entries = {}
    for stream in root.iter():
        if _local(stream.tag) != "byteStream":
            continue
        href = md5 = None
        for child in stream:
            if _local(child.tag) == "fileLocation":
                href = child.attrib.get("href", "")
            elif _local(child.tag) == "checksum" and child.attrib.get("checksumName", "").upper() == "MD5":
                md5 = (child.text or "").strip().lower()
        size = stream.attrib.get("size", "")
        if href and md5 and size.isdigit():
            entries[href.removeprefix("./")] = (int(size), md5)
    return entries


def _safe_from_listing(names: list[str], read_member, gdal_path, source: str, level: str | None,
                       open_member=None) -> Product:
    mtd = [n for n in names if re.search(r"(^|/)MTD_MSIL(1C|2A)\.xml$", n)]
    if not mtd:
        raise InputError(f"{source}: no MTD_MSIL1C.xml or MTD_MSIL2A.xml found; a SAFE product needs its metadata "
                         "file (is this a Sentinel-2 SAFE product, and is it complete?)")
    roots = sorted({n.rpartition("/")[0] for n in mtd})
    if len(roots) > 1:
        raise InputError(f"{source}: holds {len(roots)} Sentinel-2 products ({', '.join(r or '.' for r in roots)}); "
                         "give one product at a time")
    meta = parse_product_metadata(read_member(mtd[0]), source)
    prefix = f"{roots[0]}/" if roots[0] else ""
    images = [n for n in names if n.startswith(prefix) and "/IMG_DATA/" in n.replace("\\", "/")]
    member_of = {gdal_path(n): n for n in images}
    files = pick_band_files(member_of, source)
    if not files:
        raise InputError(f"{source}: the SAFE product has no band files under GRANULE/*/IMG_DATA")
    grid, bands = open_band_files(files, source)
    manifest = f"{prefix}manifest.safe"
    if open_member is not None and manifest in names:
        checksums = parse_manifest(read_member(manifest), source)
        for band in bands.values():
            member = member_of[band.path]
            entry = checksums.get(member.removeprefix(prefix))
            if entry is not None:
                band.checksum = (*entry, functools.partial(open_member, member))
    elif open_member is not None:
        say_once(f"{source}: no manifest.safe, so the band files cannot be checked against its checksums (a damaged "
                  "JPEG 2000 can decode into wrong pixels without an error)")
    product_level = meta.get("level")
    if level and product_level and level != product_level:
        raise InputError(f"{source}: the product is {product_level}, but level {level} was requested")
    product = Product(
        id=meta.get("id") or Path(source).name.removesuffix(".zip").removesuffix(".SAFE"),
        level=product_level or level,
        grid=grid,
        bands=bands,
        offsets=meta["offsets"],
        quantification=meta["quantification"],
        baseline=meta.get("baseline"),
        datetime=meta.get("datetime"),
        platform=meta.get("platform"),
        source=source,
        scaling_source=Path(mtd[0]).name,
    )
    merge_scaling(product, *tag_scaling(bands, source), "the bands' scale and offset tags")
    return product


def open_safe(path: str | os.PathLike, level: str | None = None) -> Product:
    path = Path(path)
    names = [str(p.relative_to(path)).replace(os.sep, "/") for p in path.rglob("*") if p.is_file()]
    return _safe_from_listing(
        names, lambda n: (path / n).read_bytes(), lambda n: str(path / n), str(path), level,
        lambda n: open(path / n, "rb"),
    )


def open_safe_zip(path: str | os.PathLike, level: str | None = None) -> Product:
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{path}: not a readable zip file ({exc})") from None
    with archive:
        names = _checked_members(archive, str(path))

        def read_member(name):
            try:
                return archive.read(name)
            except ZIP_ERRORS as exc:
                raise InputError(f"{path}: cannot read {name} from the zip ({exc}); the archive is damaged") from None

        return _safe_from_listing(
            names, read_member, lambda n: f"/vsizip/{path.resolve()}/{n}", str(path), level,
            functools.partial(_zip_member, path),
        )


def _checked_members(archive: zipfile.ZipFile, source: str) -> list[str]:
    """The file members of a zip, refusing what makes its content ambiguous or unreadable: a name given twice
    (readers disagree on which copy counts: the checksum would check one, GDAL decode the other), an encrypted
    member, or a compression method other than stored and deflate."""
    seen: set[str] = set()
    names = []
    for info in archive.infolist():
        if info.filename in seen:
            raise InputError(f"{source}: the zip holds {info.filename} twice; which copy is the product cannot be "
                             "told, so the archive is refused")
        seen.add(info.filename)
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            raise InputError(f"{source}: {info.filename} is encrypted in the zip; give the product unencrypted")
        if info.compress_type not in ZIP_METHODS:
            raise InputError(f"{source}: {info.filename} uses zip compression method {info.compress_type}, which "
                             f"cannot be read here (only {' and '.join(ZIP_METHODS.values())}); zip the product again")
        names.append(info.filename)
    return names


@contextlib.contextmanager
def _zip_member(archive: Path, name: str):
    """A member of a zip archive as a binary file (zipfile also checks each member's CRC on reading)."""
    with zipfile.ZipFile(archive) as zf, zf.open(name) as fh:
        yield fh
