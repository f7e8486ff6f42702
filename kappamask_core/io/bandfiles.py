"""Band files: one raster file per band (JPEG 2000, GeoTIFF, COG; local, in a zip or remote through GDAL), read
north-up in row windows whatever the file's own orientation, with its mask band and nodata value applied, and
checked by the rules every reader shares (:func:`open_band_files`: one grid, one CRS, one corner, georeferencing
all or none, integer DN of at least 16 bits, scale and offset tags)."""

from __future__ import annotations

import hashlib
import math
import re
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from ..foundation.bands import BAND_BY_NAME, SENSORS
from ..foundation.errors import InputError
from ..foundation.grid import Grid
from .gdal import decoding_env, open_raster
from .product import check_dtype, declared_scaling, say_once

ORIGIN_TOLERANCE_M = 1.0  # the bands of one product share their upper-left corner to well under a metre
BAND_FILE_RE = re.compile(r"_(B\d{2}|B8A|AOT|WVP|SCL)(?:_(\d{2})m)?\.(jp2|tif|tiff)$", re.IGNORECASE)
# what reading a zip member can raise: damaged data (zlib, CRC), encryption, compression zipfile cannot read
ZIP_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)


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
        self.nan_missing = False  # missing pixels read as NaN, not 0 (products whose 0 is a value)

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
        band.checksum, band.nan_missing = self.checksum, self.nan_missing
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
        """Values read from the file turned north-up, with pixels its mask or nodata value marks set to 0 (to NaN,
        as float32, where 0 is a value: the harmonised values of HLS)."""
        if self.nan_missing:
            missing = np.zeros(values.shape, bool) if dataset.nodata is None else values == dataset.nodata
            values = values.astype(np.float32)
            values[missing] = np.nan
        else:
            values = as_missing(values, dataset.nodata)
        if self.layout.masked:
            mask = dataset.read_masks(1, window=window, out_shape=values.shape)
            values[mask == 0] = np.nan if self.nan_missing else 0
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


def pick_band_files(paths, source: str = "") -> dict[str, str]:
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


def open_band_files(files: dict[str, str], source: str,
                    sensor: str = "sentinel-2") -> tuple[Grid, dict[str, FileBand]]:
    """Open band headers only; derive the product's base grid (10 m for Sentinel-2, 30 m for Landsat and HLS:
    the sensor's :attr:`~kappamask_core.foundation.bands.Sensor.resolution`) and each band's factor.

    The grid is the one most bands agree on, so that a damaged band (cropped,
    shifted, resampled) is the one named in the error, whatever its resolution.
    Bands are georeferenced all or none: without georeferencing, each band's native resolution comes from the
    band table and the grid is an unlocated 10 m grid (said once).
    """
    info = SENSORS[sensor]
    base = info.resolution
    headers = {name: _band_header(name, path, source) for name, path in files.items()}
    located = sorted(n for n, h in headers.items() if h["crs"] is not None)
    if located and len(located) < len(headers):
        bare = sorted(set(headers) - set(located))
        raise InputError(f"{source}: band(s) {', '.join(bare)} have no georeferencing while {', '.join(located)} have; "
                         "the bands come from different sources (or the files were converted): give the product's "
                         "own bands")
    if not located:
        say_once(f"{source}: the band files carry no georeferencing: each band is taken at its native {info.title} "
                  f"resolution on an unlocated {base} m grid, and the outputs have no coordinates")
        for name, header in headers.items():
            pixel = float(info.resolution_of(name))
            header["transform"] = Affine(pixel, 0, 0, 0, -pixel, 0)
    factors = {}
    for name, header in headers.items():
        transform = header["transform"]
        factors[name] = max(1, round(abs(transform.a) / base))
        # a band coarser than it exists (a 10 m band in 20 m pixels) is misnamed, e.g. swapped with another band;
        # only a resolution the file name states (B02_20m) allows it
        named = BAND_FILE_RE.search(str(files[name]))
        native = info.resolution_of(name)
        allowed = max(native, int(named.group(2)) if named and named.group(2) else 0)
        if abs(transform.a) > allowed * 1.01:
            raise InputError(f"{source}: band {info.label(name)} ({Path(str(files[name])).name}) has "
                             f"{abs(transform.a):g} m pixels, but it is a {native} m band; the file is misnamed "
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
                f"{source}: band {info.label(name)}'s upper-left corner ({btransform.c:.1f}, {btransform.f:.1f}) is "
                f"{btransform.c - origin[0]:+.1f} m, {btransform.f - origin[1]:+.1f} m from the other bands' "
                f"({origin[0]:.1f}, {origin[1]:.1f}); every band of a product starts at the same corner: the file is "
                "shifted or from another product")
        if not same_size(name, size):
            raise InputError(
                f"{source}: band {info.label(name)} has shape {bshape} at {factors[name] * base} m, which does not "
                f"fit the {grid.height} x {grid.width} {base} m grid of the other bands; the file is damaged or from "
                "another product"
            )
        bands[name] = FileBand(name, files[name], factors[name], bshape, header["dtype"], layout=header["layout"])
    return grid, bands


def tag_scaling(bands: Mapping[str, Any], source: str) -> tuple[dict[str, float], dict[str, float]]:
    """(offsets, quantification) that the bands' own scale and offset tags declare (the GeoTIFFs of catalogues
    such as Earth Search), see :func:`declared_scaling`."""
    declared = {name: (band.layout.scale, band.layout.offset) for name, band in bands.items()
                if getattr(band, "layout", None) is not None and band.layout.scale is not None}
    return declared_scaling(declared, source, "the scale and offset tags")
