"""Readers: turn a SAFE folder or zip, a folder of band files, or an xarray
DataArray into a :class:`Product` whose bands are read lazily at native
resolution, with the metadata the scaling step needs.

Only the bands a model asks for are read, at native resolution (a rescaled
read of a JP2 can be very slow in GDAL): the pipeline opens each band once and
reads it in row windows, strip by strip (:meth:`FileBand.open`), and
:mod:`kappamask_core.chain.resample` brings the rows onto the working grid.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import math
import os
import re
import xml.etree.ElementTree as ET
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from ..foundation import plugins
from ..foundation.bands import BAND_BY_NAME, BAND_ID, DEFAULT_QUANTIFICATION, normalise_band_name
from ..foundation.errors import BandsError, InputError
from .gdal import decoding_env, open_raster
from ..foundation.grid import Grid

log = logging.getLogger(__name__)

# what reading a zip member can raise: damaged data (zlib, CRC), encryption, compression zipfile cannot read
ZIP_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}  # what GDAL's /vsizip/ reads too

# the bundled demo scene (package data): a real L1C crop near Berlin, 13 band files (see its README)
DEMO_DATA = Path(__file__).resolve().parents[1] / "demo_data"
ORIGIN_TOLERANCE_M = 1.0  # the bands of one product share their upper-left corner to well under a metre
BAND_FILE_RE = re.compile(r"_(B\d{2}|B8A|AOT|WVP|SCL)(?:_(\d{2})m)?\.(jp2|tif|tiff)$", re.IGNORECASE)
DATETIME_RE = re.compile(r"(\d{8}T\d{6})")


@dataclass(frozen=True)
class Layout:
    """How a band file's pixels lie: flipped rows (a south-up file), flipped columns, an internal mask (GDAL
    mask band or alpha) that marks pixels without data, and the value scale and offset its tags declare."""

    flip_y: bool = False
    flip_x: bool = False
    masked: bool = False
    scale: float | None = None  # physical value = stored value * scale + offset (GeoTIFF tags)
    offset: float | None = None


class FileBand:
    """One band stored in a raster file (local path or GDAL path such as /vsizip/), read north-up whatever the
    file's own orientation, with its mask applied (pixels without data read as 0, Sentinel-2's no-data).

    ``checksum`` is what the product's manifest says of the file: (size, MD5,
    a function that opens the file's bytes), or None where there is no manifest.
    """

    def __init__(self, name: str, path: str, factor: int, shape: tuple[int, int], dtype: str,
                 overview_level: int | None = None, layout: Layout = Layout()):
        self.name, self.path, self.factor, self.shape, self.dtype = name, path, factor, shape, dtype
        self.overview_level = overview_level  # read a reduced resolution level (JPEG 2000 / COG overviews)
        self.layout = layout
        self.checksum: tuple[int, str, Any] | None = None

    def reduced(self, coarsest_factor: int) -> "FileBand":
        """The band read from its reduced resolution level closest to, but not coarser than, ``coarsest_factor``.

        A JPEG 2000 codestream holds each halving of the resolution as a wavelet level that decodes without the
        finer levels, several times faster than a full decode; COGs hold overviews. Returns ``self`` where no
        such level fits or the file has none.
        """
        halvings = 0
        while self.factor * 2 ** (halvings + 1) <= coarsest_factor:
            halvings += 1
        if halvings == 0 or self.overview_level is not None:
            return self
        try:
            with open_raster(self.path) as ds:
                overviews = ds.overviews(1)
        except Exception as exc:
            raise InputError(f"cannot open band {self.name} ({self.path}): {exc}") from None
        level = next((i for i, o in reversed(list(enumerate(overviews))) if o <= 2 ** halvings), None)
        if level is None:
            return self
        scale = overviews[level]
        band = FileBand(self.name, self.path, self.factor * scale,
                        (-(-self.shape[0] // scale), -(-self.shape[1] // scale)), self.dtype, level, self.layout)
        band.checksum = self.checksum
        return band

    def verify(self, source: str) -> None:
        """Compare the file with its manifest entry: a damaged JPEG 2000 can decode into wrong pixels silently."""
        if self.checksum is None:
            return
        size, md5, open_bytes = self.checksum
        digest, length = hashlib.md5(usedforsecurity=False), 0
        try:
            with open_bytes() as fh:
                while block := fh.read(1 << 20):
                    digest.update(block)
                    length += len(block)
        except ZIP_ERRORS as exc:
            raise InputError(f"{source}: cannot read band {self.name} ({self.path}): {exc}") from None
        if length != size or digest.hexdigest() != md5:
            raise InputError(f"{source}: band {self.name} ({Path(self.path).name}) does not match the product's "
                             f"manifest.safe ({length} bytes, MD5 {digest.hexdigest()}; the manifest says {size} bytes, "
                             f"MD5 {md5}): the file is damaged or was changed")

    def read(self) -> np.ndarray:
        with self.open() as rows:
            return rows.read_rows(0, self.shape[0])

    def open(self) -> "FileRows":
        return FileRows(self)

    def file_window(self, row0: int, row1: int, col0: int, col1: int):
        """The file's window (rasterio) that holds north-up rows [row0, row1) and columns [col0, col1)."""
        from rasterio.windows import Window

        h, w = self.shape
        if self.layout.flip_y:
            row0, row1 = h - row1, h - row0
        if self.layout.flip_x:
            col0, col1 = w - col1, w - col0
        return Window(col0, row0, col1 - col0, row1 - row0)

    def as_read(self, values: np.ndarray, dataset, window) -> np.ndarray:
        """Values read from the file turned north-up, with pixels its mask or nodata value marks set to 0."""
        values = as_missing(values, dataset.nodata)
        if self.layout.masked:
            mask = dataset.read_masks(1, window=window, out_shape=values.shape)
            values[mask == 0] = 0
        if self.layout.flip_y:
            values = values[::-1]
        if self.layout.flip_x:
            values = values[:, ::-1]
        return np.ascontiguousarray(values)

    def read_decimated(self, shape: tuple[int, int], window=None) -> np.ndarray:
        """The band, or ``window`` of it (row0, row1, col0, col1 on the 10 m grid), shrunk to ``shape``.

        JP2 and COG decode a lower resolution level for this.
        """
        from rasterio.enums import Resampling

        f = self.factor
        if window is None:
            window = (0, self.shape[0] * f, 0, self.shape[1] * f)
        r0, c0 = window[0] // f, window[2] // f
        region = self.file_window(r0, max(r0 + 1, -(-window[1] // f)), c0, max(c0 + 1, -(-window[3] // f)))
        try:
            with decoding_env(), open_raster(self.path) as ds:
                values = ds.read(1, window=region, out_shape=shape, resampling=Resampling.nearest)
                return self.as_read(values, ds, region)
        except Exception as exc:
            raise InputError(f"cannot read band {self.name} from {self.path}: {_gdal_message(exc)}") from None


def as_missing(values: np.ndarray, nodata) -> np.ndarray:
    """Sentinel-2's missing value is DN 0; a file that declares another nodata value (a GeoTIFF tag such as
    65535) has its nodata pixels set to 0, so they are missing like any other, never classified."""
    if nodata is None or nodata == 0 or not np.isfinite(nodata):
        return values
    if np.issubdtype(values.dtype, np.integer) and not np.iinfo(values.dtype).min <= nodata <= np.iinfo(values.dtype).max:
        return values  # a value the band cannot hold marks nothing
    values[values == nodata] = 0
    return values


class FileRows:
    """An open band file from which rows are read window by window (GDAL caches decoded blocks)."""

    def __init__(self, band: FileBand):
        self.band = band
        try:
            self.dataset = open_raster(band.path, band.overview_level)
            if self.dataset.shape != tuple(band.shape):
                raise ValueError(f"expected {band.shape} pixels at this resolution level, found {self.dataset.shape}")
        except Exception as exc:
            raise InputError(f"cannot read band {band.name} from {band.path}: {exc}") from None

    def read_rows(self, row0: int, row1: int) -> np.ndarray:
        window = self.band.file_window(row0, row1, 0, self.band.shape[1])
        try:
            with decoding_env():
                values = self.dataset.read(1, window=window)
                return self.band.as_read(values, self.dataset, window)
        except Exception as exc:  # GDAL errors for truncated or corrupt files come in many types
            raise InputError(f"cannot read band {self.band.name} from {self.band.path} (rows {row0} to {row1}): "
                             f"{_gdal_message(exc)}; the file is damaged") from None

    def close(self):
        self.dataset.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _gdal_message(exc: BaseException) -> str:
    """GDAL's own words: rasterio puts them in the exception's cause ('Read failed. See previous exception')."""
    cause = exc.__cause__ or exc.__context__
    text = str(cause).strip() if cause is not None and str(cause).strip() else str(exc)
    return " ".join(text.split()).rstrip(".")


class ArrayBand:
    """One band held in memory (xarray input), already on the product grid."""

    factor = 1

    def __init__(self, name: str, array: np.ndarray):
        self.name, self.array = name, array
        self.shape, self.dtype = array.shape, str(array.dtype)

    def read(self) -> np.ndarray:
        return self.array

    def open(self) -> "ArrayBand":
        return self

    def read_rows(self, row0: int, row1: int) -> np.ndarray:
        return self.array[row0:row1]

    def read_decimated(self, shape: tuple[int, int], window=None) -> np.ndarray:
        array = self.array if window is None else self.array[window[0] : window[1], window[2] : window[3]]
        sy, sx = -(-array.shape[0] // shape[0]), -(-array.shape[1] // shape[1])
        return array[::sy, ::sx]

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


@dataclass
class Product:
    """A Sentinel-2 image ready for the core steps.

    ``grid`` is the base grid (10 m for products); every band has an integer
    ``factor`` = its native pixel size in base pixels. ``units`` says whether
    band values are DN (``dn``) or reflectance (``reflectance``).
    """

    id: str
    level: str | None
    grid: Grid
    bands: dict[str, Any]
    units: str = "dn"
    offsets: dict[str, float] = field(default_factory=dict)
    quantification: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_QUANTIFICATION))
    baseline: str | None = None
    datetime: datetime | None = None
    platform: str | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)
    scaling_source: str | None = None  # what declared the offsets and quantification (None: the defaults)

    def verify(self, names) -> None:
        """Check the named bands' files against the product's manifest, where it has one."""
        for name in names:
            band = self.bands.get(name)
            if isinstance(band, FileBand):
                band.verify(self.source or self.id)

    def require(self, names) -> None:
        missing = [n for n in names if n not in self.bands]
        if missing:
            have = ", ".join(sorted(self.bands)) or "none"
            raise BandsError(f"{self.source or self.id}: missing band(s) {', '.join(missing)} (found: {have})")


# --------------------------------------------------------------------------- metadata

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
        try:
            value = float(text)
        except ValueError:
            raise InputError(f"{source}: product metadata {tag} is {text!r}, not a number") from None
        if not math.isfinite(value):
            raise InputError(f"{source}: product metadata {tag} is {text!r}, not a finite number")
        return value

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


def parse_baseline(text) -> tuple[int, int]:
    """A processing baseline such as '04.00', '4.0' or 'N0400' as (major, minor); anything else is an error."""
    m = re.fullmatch(r"\s*N?(\d{1,2})\.?(\d{2})\s*|\s*(\d{1,2})\.(\d{1,2})\s*", str(text))
    if not m:
        raise InputError(f"processing baseline {text!r} is not a version such as 04.00")
    major, minor = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    return int(major), int(minor)


OFFSET_BASELINE = (4, 0)  # from processing baseline 04.00 on, DN carry a -1000 offset


def _datetime_from_name(name: str) -> datetime | None:
    m = DATETIME_RE.search(name)
    return datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc) if m else None


# --------------------------------------------------------------------------- band files

def _pick_band_files(paths, source: str = "") -> dict[str, str]:
    """Map band name -> file, choosing the finest resolution where a band comes in several (L2A's R10m, R20m,
    R60m). Two files of one band at the same resolution (another prefix, extension or date; two products in
    one folder) are refused with both named: which one is meant cannot be told."""
    found: dict[str, dict[int, list[str]]] = {}
    for path in paths:
        m = BAND_FILE_RE.search(str(path))
        if not m:
            continue
        name = m.group(1).upper()
        res = int(m.group(2)) if m.group(2) else BAND_BY_NAME[name].resolution
        found.setdefault(name, {}).setdefault(res, []).append(str(path))
    chosen = {}
    for name, by_res in sorted(found.items()):
        candidates = by_res[min(by_res)]
        if len(candidates) > 1:
            names = ", ".join(Path(c).name for c in sorted(candidates)[:4])
            raise InputError(f"{source}: band {name} is in {len(candidates)} files ({names}); keep one product's "
                             "bands per folder")
        chosen[name] = candidates[0]
    return chosen


def _north_up(transform: Affine, shape) -> tuple[Affine, bool, bool]:
    """The transform of the file's pixels turned north-up and west-left, and whether rows / columns flip."""
    h, w = shape
    flip_y, flip_x = transform.e > 0, transform.a < 0
    a, c, e, f = transform.a, transform.c, transform.e, transform.f
    if flip_y:
        e, f = -e, f + transform.e * h
    if flip_x:
        a, c = -a, c + transform.a * w
    return Affine(a, 0, c, 0, e, f), flip_y, flip_x


def _band_header(name: str, path: str, source: str) -> dict:
    """What a band file says of itself, checked by the rules every reader shares: a geotransform without
    rotation, integer DN of at least 16 bits for spectral bands, and the layout its pixels are read in."""
    from rasterio.enums import MaskFlags

    try:
        with open_raster(path) as ds:
            shape, transform, crs, dtype = ds.shape, ds.transform, ds.crs, ds.dtypes[0]
            flags = ds.mask_flag_enums[0]
            scale, offset = ds.scales[0], ds.offsets[0]
    except Exception as exc:
        raise InputError(f"{source}: cannot open band {name} ({path}): {exc}") from None
    file = Path(str(path)).name
    if crs is not None and (transform.b != 0 or transform.d != 0):
        raise InputError(f"{source}: band {name} ({file}) has a rotated or sheared geotransform "
                         f"({tuple(transform)[:6]}); Sentinel-2 bands lie on a north-up UTM grid: the file was "
                         "warped, so give the product's own bands")
    check_dtype(name, dtype, f"{source}: band {name} ({file})", floats=False)
    scaled = (scale not in (None, 1.0)) or (offset not in (None, 0.0))
    if scaled and not (scale and math.isfinite(scale) and scale > 0 and math.isfinite(offset or 0.0)):
        raise InputError(f"{source}: band {name} ({file}) declares scale {scale} and offset {offset}; the scale must "
                         "be a positive number")
    georeferenced = crs is not None
    north_up, flip_y, flip_x = _north_up(transform, shape) if georeferenced else (transform, False, False)
    masked = MaskFlags.all_valid not in flags and MaskFlags.nodata not in flags  # a mask band or alpha
    layout = Layout(flip_y, flip_x, masked, float(scale) if scaled else None, float(offset or 0.0) if scaled else None)
    return {"shape": shape, "transform": north_up, "crs": crs, "dtype": dtype, "layout": layout}


def check_dtype(name: str, dtype, what: str, floats: bool = True, units: str = "dn") -> None:
    """The data type a band's values may have, whatever holds them: integers (floats only where ``floats``: openEO
    and xarray cubes), and for spectral DN at least 16 bits (an 8-bit band is a picture, not the band)."""
    kind = np.dtype(dtype)
    if np.issubdtype(kind, np.floating) and floats:
        return
    if not np.issubdtype(kind, np.integer):
        raise InputError(f"{what} has data type {dtype}; Sentinel-2 DN must be integers"
                         + (" (or floating-point values in an array)" if floats else ""))
    if units == "dn" and BAND_BY_NAME[name].quantification_key != "none" and kind.itemsize < 2:
        raise InputError(f"{what} holds {dtype} values, which cannot carry Sentinel-2 DN (up to 65535): it was "
                         "converted to 8 bits (a picture, not the band)")


def open_band_files(files: dict[str, str], source: str) -> tuple[Grid, dict[str, FileBand]]:
    """Open band headers only; derive the 10 m grid and each band's factor.

    The grid is the one most bands agree on, so that a damaged band (cropped,
    shifted, resampled) is the one named in the error, whatever its resolution.
    Bands are georeferenced all or none: without georeferencing, each band's native resolution comes from the
    band table and the grid is an unlocated 10 m grid (said once).
    """
    headers = {name: _band_header(name, path, source) for name, path in files.items()}
    located = sorted(n for n, h in headers.items() if h["crs"] is not None)
    if located and len(located) < len(headers):
        bare = sorted(set(headers) - set(located))
        raise InputError(f"{source}: band(s) {', '.join(bare)} have no georeferencing while {', '.join(located)} have; "
                         "the bands come from different sources (or the files were converted): give the product's "
                         "own bands")
    if not located:
        _say_once(f"{source}: the band files carry no georeferencing: each band is taken at its native Sentinel-2 "
                  "resolution on an unlocated 10 m grid, and the outputs have no coordinates")
        for name, header in headers.items():
            f = BAND_BY_NAME[name].factor
            header["transform"] = Affine(10.0 * f, 0, 0, 0, -10.0 * f, 0)
    factors = {}
    for name, header in headers.items():
        transform = header["transform"]
        factors[name] = max(1, round(abs(transform.a) / 10.0))
        # a band coarser than it exists (a 10 m band in 20 m pixels) is misnamed, e.g. swapped with another band;
        # only a resolution the file name states (B02_20m) allows it
        named = BAND_FILE_RE.search(str(files[name]))
        allowed = max(BAND_BY_NAME[name].resolution, int(named.group(2)) if named and named.group(2) else 0)
        if abs(transform.a) > allowed * 1.01:
            raise InputError(f"{source}: band {name} ({Path(str(files[name])).name}) has {abs(transform.a):g} m "
                             f"pixels, but {name} is a {BAND_BY_NAME[name].resolution} m band; the file is misnamed "
                             "or resampled")

    crss = {name: header["crs"] for name, header in headers.items() if header["crs"] is not None}
    if len(set(map(str, crss.values()))) > 1:
        by_crs: dict[str, list[str]] = {}
        for name, crs in crss.items():
            by_crs.setdefault(crs.to_string(), []).append(name)
        listed = "; ".join(f"{crs}: {', '.join(sorted(names))}" for crs, names in sorted(by_crs.items()))
        raise InputError(f"{source}: the bands are in different coordinate reference systems ({listed}); they "
                         "come from different products or were reprojected")

    def same_origin(name, origin):
        transform = headers[name]["transform"]
        return (abs(transform.c - origin[0]) < ORIGIN_TOLERANCE_M and
                abs(transform.f - origin[1]) < ORIGIN_TOLERANCE_M)

    def same_size(name, size):
        (h, w), f = headers[name]["shape"], factors[name]
        return (math.ceil(size[0] / f), math.ceil(size[1] / f)) == (h, w)

    candidates = []
    for name in sorted(headers, key=lambda n: factors[n]):  # finest bands first: their size is exact
        (h, w), transform = headers[name]["shape"], headers[name]["transform"]
        size = (h * factors[name], w * factors[name])
        origin = (transform.c, transform.f)
        agree = [n for n in headers if same_size(n, size) and same_origin(n, origin)]
        candidates.append((len(agree), -factors[name], name, size, origin))
    _, _, ref_name, size, _ = max(candidates, key=lambda c: (c[0], c[1]))
    f = factors[ref_name]
    grid = Grid(size[0], size[1], headers[ref_name]["transform"] @ Affine.scale(1 / f), headers[ref_name]["crs"])
    origin = (grid.transform.c, grid.transform.f)
    bands = {}
    for name, header in headers.items():
        btransform, bshape = header["transform"], header["shape"]
        if not same_origin(name, origin):
            raise InputError(
                f"{source}: band {name}'s upper-left corner ({btransform.c:.1f}, {btransform.f:.1f}) is "
                f"{btransform.c - origin[0]:+.1f} m, {btransform.f - origin[1]:+.1f} m from the other bands' "
                f"({origin[0]:.1f}, {origin[1]:.1f}); every band of a product starts at the same corner: the file is "
                "shifted or from another product")
        if not same_size(name, size):
            raise InputError(
                f"{source}: band {name} has shape {bshape} at {factors[name] * 10} m, which does not fit the "
                f"{grid.height} x {grid.width} 10 m grid of the other bands; the file is damaged or from another product"
            )
        bands[name] = FileBand(name, files[name], factors[name], bshape, header["dtype"], layout=header["layout"])
    return grid, bands


def declared_scaling(declared: dict[str, tuple[float, float]], source: str, what: str):
    """(offsets, quantification) from per-band (scale, offset) pairs, where physical value = DN x scale + offset
    (GeoTIFF tags, STAC ``raster:bands``): quantification 1 / scale and a DN offset of offset / scale. Bands of
    one quantification kind must agree on their scale."""
    offsets: dict[str, float] = {}
    quantification: dict[str, tuple[float, str]] = {}
    for name, (scale, offset) in declared.items():
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                   for v in (scale, offset)) or scale <= 0:
            raise InputError(f"{source}: {what} of {name} give scale {scale!r} and offset {offset!r}; the scale must "
                             "be a positive number and the offset a number")
        key = BAND_BY_NAME[name].quantification_key
        q = round(1.0 / scale, 6)
        if key in quantification and not math.isclose(quantification[key][0], q, rel_tol=1e-6):
            other = quantification[key][1]
            raise InputError(f"{source}: {what} of {other} and {name} give different scales "
                             f"({1 / quantification[key][0]:g} and {scale:g}); one product's bands share one scale")
        quantification.setdefault(key, (q, name))
        offsets[name] = round(offset / scale, 6)  # -0.2 / 0.0001 is -2000.0000000000002 in binary
    return offsets, {key: q for key, (q, _) in quantification.items()}


def tag_scaling(bands: dict, source: str):
    """(offsets, quantification) that the bands' own scale and offset tags declare (the GeoTIFFs of catalogues
    such as Earth Search), see :func:`declared_scaling`."""
    declared = {name: (band.layout.scale, band.layout.offset) for name, band in bands.items()
                if getattr(band, "layout", None) is not None and band.layout.scale is not None}
    return declared_scaling(declared, source, "the scale and offset tags")


def merge_scaling(product: "Product", offsets: dict, quantification: dict, what: str) -> None:
    """Take the scaling ``what`` declares (tags, STAC raster:bands) into the product. Where the product's scaling
    was already declared (``product.scaling_source``: its metadata file, another declaration), the two must
    agree: a product whose sources contradict each other is refused, never guessed."""
    if not offsets and not quantification:
        return
    if product.scaling_source is not None:
        for key, value in quantification.items():
            have = product.quantification[key]
            if not math.isclose(have, value, rel_tol=1e-6):
                raise InputError(f"{product.source}: {what} gives quantification {value:g} for {key} bands, but "
                                 f"{product.scaling_source} says {have:g}; the sources contradict each other")
        for name, value in offsets.items():
            have = product.offsets.get(name, 0.0)
            if not math.isclose(have, value, abs_tol=1e-3):
                raise InputError(f"{product.source}: {what} gives band {name} the DN offset {value:g}, but "
                                 f"{product.scaling_source} says {have:g}; the sources contradict each other")
        return
    product.quantification.update(quantification)
    product.offsets.update(offsets)
    product.scaling_source = what


def level_evidence(names, text: str = "") -> str | None:
    """The level a product's own bands and names say it is, or None when they do not say."""
    upper = text.upper()
    if "MSIL2A" in upper or {"AOT", "WVP", "SCL"} & set(names):
        return "L2A"
    if "MSIL1C" in upper or "B10" in names:
        return "L1C"
    return None


def check_level(level: str | None, names, text: str, source: str) -> str | None:
    """The product's level: its own evidence, checked against ``level`` when one is given."""
    evidence = level_evidence(names, text)
    if level and evidence and level != evidence:
        why = ("its file names say MSIL2A" if "MSIL2A" in text.upper() else "its file names say MSIL1C"
               if "MSIL1C" in text.upper() else "it has B10, which only L1C products carry" if evidence == "L1C"
               else "it has AOT, WVP or SCL, which only L2A products carry")
        raise BandsError(f"{source}: level {level} was requested, but the product is {evidence} ({why})")
    return evidence or level


def open_band_folder(folder: str | os.PathLike, level: str | None = None) -> Product:
    folder = Path(folder)
    paths = sorted(p for p in folder.iterdir() if p.is_file())
    files = _pick_band_files(paths, str(folder))
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


_SAID: set = set()


def _say_once(message: str) -> None:
    """A warning a batch that opens the product again (a rerun, each Dask task) need not repeat."""
    if message not in _SAID:
        _SAID.add(message)
        log.warning(message)


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
    files = _pick_band_files(member_of, source)
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
        _say_once(f"{source}: no manifest.safe, so the band files cannot be checked against its checksums (a damaged "
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


# --------------------------------------------------------------------------- xarray

def _grid_from_coords(da, crs) -> Grid:
    h, w = da.sizes["y"], da.sizes["x"]
    if "x" in da.coords and "y" in da.coords and w > 1 and h > 1:
        x, y = np.asarray(da["x"], float), np.asarray(da["y"], float)
        dx, dy = x[1] - x[0], y[1] - y[0]
        if np.allclose(np.diff(x), dx) and np.allclose(np.diff(y), dy):
            transform = Affine(dx, 0, x[0] - dx / 2, 0, dy, y[0] - dy / 2)
            return Grid(h, w, transform, crs)
    return Grid(h, w, Affine(10, 0, 0, 0, -10, 0), crs)  # ungeoreferenced: assume 10 m pixels


def flips_to_north_up(da) -> tuple[bool, bool]:
    """(flip rows, flip columns) that turn ``da`` north-up and west-left, from its y and x coordinates.

    A network sees shapes and the direction of shadows: an image that is upside down or mirrored (y
    ascending, as some cubes come) must be turned before it is classified, and the map turned back."""
    def descending(name):
        if name not in da.coords or da.sizes.get(name, 0) < 2:
            return False
        values = np.asarray(da[name], float)
        return bool(values[0] > values[-1])

    return (not descending("y") and "y" in da.coords and da.sizes.get("y", 0) > 1), descending("x")


def from_dataarray(da, level: str | None = None, units: str = "dn", product_id: str = "array") -> Product:
    """A product from an xarray DataArray with dims ('bands', 'y', 'x') (and an optional length-1 't'), turned
    north-up (:func:`flips_to_north_up`)."""
    import xarray as xr

    if not isinstance(da, xr.DataArray):
        raise InputError(f"expected an xarray.DataArray, got {type(da).__name__}")
    if units not in ("dn", "reflectance"):
        raise InputError(f"units must be 'dn' or 'reflectance', not {units!r}")
    for dim in ("t", "time"):
        if dim in da.dims:
            if da.sizes[dim] != 1:
                raise InputError(f"the array has {da.sizes[dim]} time steps; classify one image at a time")
            da = da.isel({dim: 0})
    if set(da.dims) != {"bands", "y", "x"}:
        raise InputError(f"the array must have dimensions ('bands', 'y', 'x'), got {da.dims}")
    if not (np.issubdtype(da.dtype, np.integer) or np.issubdtype(da.dtype, np.floating)):
        raise InputError(f"the array has data type {da.dtype}; expected integer DN or floating-point values")
    if "bands" not in da.coords:
        raise InputError("the array's 'bands' dimension has no labels; label it with band names such as B02")
    empty = [d for d in ("y", "x", "bands") if da.sizes[d] == 0]
    if empty:
        raise InputError(f"the array has no {' and no '.join(empty)} (shape {dict(da.sizes)})")
    flip_y, flip_x = flips_to_north_up(da)
    if flip_y or flip_x:
        da = da.isel(y=slice(None, None, -1) if flip_y else slice(None), x=slice(None, None, -1) if flip_x else slice(None))
    labels: dict[str, list] = {}  # band name -> the labels that name it ('B02', 'blue', ...)
    for label in da["bands"].values.tolist():
        try:
            labels.setdefault(normalise_band_name(str(label)), []).append(label)
        except KeyError:
            continue  # other bands (masks, indices) are not ours to use
    repeated = sorted(name for name, given in labels.items() if len(given) > 1)
    if repeated:  # two layers for one band: which one is meant cannot be known
        raise InputError(f"the array's band labels repeat ({', '.join(repeated)}): "
                         f"{[str(b) for b in da['bands'].values]}; give each band once")
    source = f"xarray.DataArray {product_id}"
    nodata = _attribute(da.attrs, ("nodata", "_FillValue"))
    bands = {}
    for name, given in labels.items():
        check_dtype(name, da.dtype, f"{source}: band {name}", units=units)
        values = np.asarray(da.sel(bands=given[0]).transpose("y", "x").values)
        if nodata is not None:  # the array's own no-data value is missing like Sentinel-2's 0
            values = as_missing(values.copy(), nodata)
        bands[name] = ArrayBand(name, values)
    _check_units(bands, units, source)
    crs = da.attrs.get("crs")
    if crs is None and "spatial_ref" in da.coords:
        crs = da["spatial_ref"].attrs.get("crs_wkt")
    if crs is not None:
        from rasterio.crs import CRS
        from rasterio.errors import CRSError

        try:
            crs = CRS.from_user_input(crs)
        except CRSError as exc:
            raise InputError(f"{source}: its CRS {str(crs)[:80]!r} is not understood ({exc})") from None
    product = Product(
        id=product_id,
        level=check_level(level, bands, "", source),
        grid=_grid_from_coords(da, crs),
        bands=bands,
        units=units,
        source=source,
    )
    declared = _scaling_attributes(da.attrs, labels)
    if declared and units == "dn":  # raw values with CF scale_factor / add_offset (rioxarray, odc-stac without decoding)
        merge_scaling(product, *declared_scaling(declared, source, "the scale_factor and add_offset attributes"),
                      "the array's scale_factor and add_offset attributes")
    return product


def _attribute(attrs: dict, keys):
    """A finite number among ``attrs[keys]`` (the first present), or None."""
    for key in keys:
        value = attrs.get(key)
        if isinstance(value, (list, tuple, np.ndarray)) and len(value) >= 1:
            value = value[0]
        if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and np.isfinite(value):
            return float(value)
    return None


def _scaling_attributes(attrs: dict, labels: dict) -> dict[str, tuple[float, float]]:
    """{band: (scale, offset)} from CF ``scale_factor`` / ``add_offset`` (one number, or one per band in the
    array's band order) or rioxarray's ``scales`` / ``offsets``; empty where the array declares none."""
    scale = next((attrs[k] for k in ("scale_factor", "scales") if k in attrs), None)
    offset = next((attrs[k] for k in ("add_offset", "offsets") if k in attrs), None)
    if scale is None and offset is None:
        return {}
    order = [name for name in labels]
    def per_band(value, default):
        if value is None:
            return [default] * len(order)
        values = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value] * len(order)
        return values if len(values) == len(order) else [values[0]] * len(order)
    scales, offsets = per_band(scale, 1.0), per_band(offset, 0.0)
    declared = {name: (float(s), float(o)) for name, s, o in zip(order, scales, offsets)}
    return {} if all(v == (1.0, 0.0) for v in declared.values()) else declared


# The largest valid value tells DN (thousands) from reflectance (about 0 to 1.5; at most 6.5535).
DN_AT_LEAST, REFLECTANCE_AT_MOST = 10.0, 100.0


def _check_units(bands: dict, units: str, source: str) -> None:
    """Refuse values whose range contradicts ``units``, for the array and for each band: a map made from them
    would be silently wrong (one band in reflectance among DN bands reads as black)."""
    peaks = {}
    for band in bands.values():
        if band.name in ("SCL",):
            continue
        values = band.array
        if np.issubdtype(values.dtype, np.floating):
            values = values[np.isfinite(values)]
        values = values[values != 0]
        if values.size:
            peaks[band.name] = float(np.abs(values).max())
    if not peaks:
        return  # no data at all: nothing to tell, every pixel comes out missing
    peak = max(peaks.values())
    if units == "dn" and peak < DN_AT_LEAST:
        raise InputError(f"{source}: the largest value is {peak:.3g}, which is reflectance, not DN (Sentinel-2 DN "
                         "are in the thousands); pass units='reflectance' (UDF context: \"units\")")
    if units == "reflectance" and peak > REFLECTANCE_AT_MOST:
        raise InputError(f"{source}: the largest value is {peak:.6g}, which is DN, not reflectance; pass units='dn' "
                         "(UDF context: \"units\")")
    # AOT and WVP are small quantities on scales of their own
    spectral = {name: value for name, value in peaks.items() if name not in ("AOT", "WVP")}
    if units == "dn":
        odd = sorted(name for name, value in spectral.items() if value < DN_AT_LEAST)
        if odd:
            raise InputError(f"{source}: band(s) {', '.join(odd)} hold values up to {max(spectral[n] for n in odd):.3g} "
                             f"while the other bands reach {peak:.6g}: they are on another scale (reflectance?); "
                             "give every band as DN")
        # negative DN are refused where every reader's values pass (kappamask_core.chain.scale.check_values)
    if units == "reflectance":
        odd = sorted(name for name, value in spectral.items() if value > REFLECTANCE_AT_MOST)
        if odd:
            raise InputError(f"{source}: band(s) {', '.join(odd)} hold values up to {max(peaks[n] for n in odd):.6g}, "
                             "which is DN among reflectance bands; give every band as reflectance")


# --------------------------------------------------------------------------- dispatch

def open_product(source, level: str | None = None, units: str = "dn") -> Product:
    """Open any supported input; ``level`` fills in (or checks) the product level."""
    if level is not None:
        level = level.upper()
        if level not in ("L1C", "L2A"):
            raise InputError(f"level must be L1C or L2A, not {level!r}")
    if isinstance(source, Product):
        return source
    try:
        import xarray as xr

        if isinstance(source, xr.DataArray):
            return from_dataarray(source, level, units)
    except ImportError:  # pragma: no cover - xarray is a dependency
        pass
    for reader in plugins.readers():  # other formats (STAC items) come from adapters
        if reader.accepts(source):
            return reader.open(source, level)
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"cannot classify a {type(source).__name__}; give a path, an xarray.DataArray or a STAC item")
    path = Path(source)
    if not str(source).strip():
        raise InputError("the input path is empty")
    if not path.exists():
        raise InputError(f"{source}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() == ".zip":
            return open_safe_zip(path, level)
        raise InputError(f"{source}: unsupported input file; give a SAFE folder or .zip, a band folder or a STAC item")
    if any(path.glob("MTD_MSIL*.xml")) or path.suffix.upper() == ".SAFE" or (path / "GRANULE").is_dir():
        return open_safe(path, level)
    safes = sorted(path.glob("*.SAFE"))
    if len(safes) == 1:
        return open_safe(safes[0], level)
    if len(safes) > 1:
        raise InputError(f"{source}: holds {len(safes)} SAFE products ({', '.join(p.name for p in safes[:3])}"
                         f"{', ...' if len(safes) > 3 else ''}); give each product as an input of its own")
    if not any(path.iterdir()):
        raise InputError(f"{source}: the folder is empty")
    return open_band_folder(path, level)
