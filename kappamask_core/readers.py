"""Readers: turn a SAFE folder or zip, a folder of band files, or an xarray
DataArray into a :class:`Product` whose bands are read lazily at native
resolution, with the metadata the scaling step needs.

Only the bands a model asks for are read, at native resolution (a rescaled
read of a JP2 can be very slow in GDAL): the pipeline opens each band once and
reads it in row windows, strip by strip (:meth:`FileBand.open`), and
:mod:`kappamask_core.resample` brings the rows onto the working grid.
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from .bands import BAND_BY_NAME, BAND_ID, DEFAULT_QUANTIFICATION, normalise_band_name
from .errors import InputError
from .gdal import open_raster
from .grid import Grid

BAND_FILE_RE = re.compile(r"_(B\d{2}|B8A|AOT|WVP|SCL)(?:_(\d{2})m)?\.(jp2|tif|tiff)$", re.IGNORECASE)
DATETIME_RE = re.compile(r"(\d{8}T\d{6})")


class FileBand:
    """One band stored in a raster file (local path or GDAL path such as /vsizip/)."""

    def __init__(self, name: str, path: str, factor: int, shape: tuple[int, int], dtype: str):
        self.name, self.path, self.factor, self.shape, self.dtype = name, path, factor, shape, dtype

    def read(self) -> np.ndarray:
        with self.open() as rows:
            return rows.read_rows(0, self.shape[0])

    def open(self) -> "FileRows":
        return FileRows(self)

    def read_decimated(self, shape: tuple[int, int]) -> np.ndarray:
        """The whole band shrunk to ``shape`` (JP2 and COG decode a lower resolution level)."""
        from rasterio.enums import Resampling

        try:
            with open_raster(self.path) as ds:
                return ds.read(1, out_shape=shape, resampling=Resampling.nearest)
        except Exception as exc:
            raise InputError(f"cannot read band {self.name} from {self.path}: {exc}") from None


class FileRows:
    """An open band file from which rows are read window by window (GDAL caches decoded blocks)."""

    def __init__(self, band: FileBand):
        self.band = band
        try:
            self.dataset = open_raster(band.path)
        except Exception as exc:
            raise InputError(f"cannot read band {band.name} from {band.path}: {exc}") from None

    def read_rows(self, row0: int, row1: int) -> np.ndarray:
        from rasterio.windows import Window

        try:
            return self.dataset.read(1, window=Window(0, row0, self.band.shape[1], row1 - row0))
        except Exception as exc:  # GDAL errors for truncated or corrupt files come in many types
            raise InputError(f"cannot read band {self.band.name} from {self.band.path}: {exc}") from None

    def close(self):
        self.dataset.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


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

    def read_decimated(self, shape: tuple[int, int]) -> np.ndarray:
        sy, sx = -(-self.shape[0] // shape[0]), -(-self.shape[1] // shape[1])
        return self.array[::sy, ::sx]

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

    def require(self, names) -> None:
        missing = [n for n in names if n not in self.bands]
        if missing:
            have = ", ".join(sorted(self.bands)) or "none"
            raise InputError(f"{self.source or self.id}: missing band(s) {', '.join(missing)} (found: {have})")


# --------------------------------------------------------------------------- metadata

def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_product_metadata(xml_bytes: bytes, source: str) -> dict:
    """Level, baseline, time, platform, quantification and offsets from MTD_MSIL1C/2A.xml."""
    try:
        root = ET.fromstring(xml_bytes)
    except ET.ParseError as exc:
        raise InputError(f"{source}: product metadata is not valid XML ({exc})") from None
    meta: dict[str, Any] = {"offsets": {}, "quantification": dict(DEFAULT_QUANTIFICATION)}
    for el in root.iter():
        tag, text = _local(el.tag), (el.text or "").strip()
        if tag == "PRODUCT_TYPE":
            meta["level"] = "L2A" if "2A" in text else "L1C" if "1C" in text else None
        elif tag == "PROCESSING_BASELINE":
            meta["baseline"] = text
        elif tag == "PRODUCT_START_TIME":
            meta["datetime"] = datetime.fromisoformat(text.replace("Z", "+00:00"))
        elif tag == "SPACECRAFT_NAME":
            meta["platform"] = text.lower()
        elif tag == "PRODUCT_URI":
            meta["id"] = text.removesuffix(".SAFE")
        elif tag in ("QUANTIFICATION_VALUE", "BOA_QUANTIFICATION_VALUE"):
            meta["quantification"]["band"] = float(text)
        elif tag == "AOT_QUANTIFICATION_VALUE":
            meta["quantification"]["AOT"] = float(text)
        elif tag == "WVP_QUANTIFICATION_VALUE":
            meta["quantification"]["WVP"] = float(text)
        elif tag in ("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET"):
            band_id = int(el.attrib["band_id"])
            name = next(n for n, i in BAND_ID.items() if i == band_id)
            meta["offsets"][name] = float(text)
    return meta


def _datetime_from_name(name: str) -> datetime | None:
    m = DATETIME_RE.search(name)
    return datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc) if m else None


# --------------------------------------------------------------------------- band files

def _pick_band_files(paths) -> dict[str, str]:
    """Map band name -> file, choosing the finest resolution where a band comes in several."""
    chosen: dict[str, tuple[int, str]] = {}
    for path in paths:
        m = BAND_FILE_RE.search(str(path))
        if not m:
            continue
        name = m.group(1).upper()
        res = int(m.group(2)) if m.group(2) else BAND_BY_NAME[name].resolution
        if name not in chosen or res < chosen[name][0]:
            chosen[name] = (res, str(path))
    return {name: path for name, (_, path) in chosen.items()}


def _open_band_files(files: dict[str, str], source: str) -> tuple[Grid, dict[str, FileBand]]:
    """Open headers only; derive the 10 m grid and each band's factor."""
    headers = {}
    for name, path in files.items():
        try:
            with open_raster(path) as ds:
                headers[name] = (ds.shape, ds.transform, ds.crs, ds.dtypes[0])
        except Exception as exc:
            raise InputError(f"{source}: cannot open band {name} ({path}): {exc}") from None
    base_res = 10.0
    ref_name = min(headers, key=lambda n: abs(headers[n][1].a))
    shape, transform, crs, _ = headers[ref_name]
    factor = max(1, round(abs(transform.a) / base_res)) if crs is not None else BAND_BY_NAME[ref_name].factor
    grid = Grid(shape[0] * factor, shape[1] * factor, transform @ Affine.scale(1 / factor), crs)
    bands = {}
    for name, (bshape, btransform, bcrs, dtype) in headers.items():
        f = max(1, round(abs(btransform.a) / grid.resolution)) if bcrs is not None else BAND_BY_NAME[name].factor
        if (math.ceil(grid.height / f), math.ceil(grid.width / f)) != tuple(bshape):
            raise InputError(
                f"{source}: band {name} has shape {bshape}, which does not fit the {grid.height} x {grid.width} "
                f"10 m grid at {f * 10} m"
            )
        if not np.issubdtype(np.dtype(dtype), np.integer):
            raise InputError(f"{source}: band {name} has data type {dtype}; Sentinel-2 DN must be integers")
        bands[name] = FileBand(name, files[name], f, bshape, dtype)
    return grid, bands


def _infer_level(names, text: str) -> str | None:
    if "MSIL2A" in text.upper() or {"AOT", "WVP", "SCL"} & set(names):
        return "L2A"
    if "MSIL1C" in text.upper() or "B10" in names:
        return "L1C"
    return None


def open_band_folder(folder: str | os.PathLike, level: str | None = None) -> Product:
    folder = Path(folder)
    paths = sorted(p for p in folder.iterdir() if p.is_file())
    files = _pick_band_files(paths)
    if not files:
        raise InputError(
            f"{folder}: no Sentinel-2 band files found (expected names like *_B02.jp2, *_B02_10m.jp2 or *_B8A.tif)"
        )
    grid, bands = _open_band_files(files, str(folder))
    stems = [Path(p).name for p in files.values()]
    prefixes = {BAND_FILE_RE.split(stem)[0] for stem in stems}
    prefix = prefixes.pop() if len(prefixes) == 1 else folder.name
    return Product(
        id=prefix,
        level=level or _infer_level(bands, " ".join(stems)),
        grid=grid,
        bands=bands,
        datetime=_datetime_from_name(prefix),
        source=str(folder),
    )


def _safe_from_listing(names: list[str], read_member, gdal_path, source: str, level: str | None) -> Product:
    mtd = [n for n in names if re.search(r"(^|/)MTD_MSIL(1C|2A)\.xml$", n)]
    if not mtd:
        raise InputError(f"{source}: no MTD_MSIL1C.xml or MTD_MSIL2A.xml found; is this a Sentinel-2 SAFE product?")
    meta = parse_product_metadata(read_member(mtd[0]), source)
    images = [n for n in names if "/IMG_DATA/" in n.replace("\\", "/")]
    files = _pick_band_files(gdal_path(n) for n in images)
    if not files:
        raise InputError(f"{source}: the SAFE product has no band files under GRANULE/*/IMG_DATA")
    grid, bands = _open_band_files(files, source)
    product_level = meta.get("level")
    if level and product_level and level != product_level:
        raise InputError(f"{source}: the product is {product_level}, but level {level} was requested")
    return Product(
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
    )


def open_safe(path: str | os.PathLike, level: str | None = None) -> Product:
    path = Path(path)
    names = [str(p.relative_to(path)).replace(os.sep, "/") for p in path.rglob("*") if p.is_file()]
    return _safe_from_listing(
        names, lambda n: (path / n).read_bytes(), lambda n: str(path / n), str(path), level
    )


def open_safe_zip(path: str | os.PathLike, level: str | None = None) -> Product:
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{path}: not a readable zip file ({exc})") from None
    with archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        return _safe_from_listing(
            names, archive.read, lambda n: f"/vsizip/{path.resolve()}/{n}", str(path), level
        )


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


def from_dataarray(da, level: str | None = None, units: str = "dn", product_id: str = "array") -> Product:
    """A product from an xarray DataArray with dims ('bands', 'y', 'x') (and an optional length-1 't')."""
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
    bands = {}
    for label in da["bands"].values.tolist():
        try:
            name = normalise_band_name(str(label))
        except KeyError:
            continue  # other bands (masks, indices) are not ours to use
        bands[name] = ArrayBand(name, np.asarray(da.sel(bands=label).transpose("y", "x").values))
    crs = da.attrs.get("crs")
    if crs is None and "spatial_ref" in da.coords:
        crs = da["spatial_ref"].attrs.get("crs_wkt")
    if crs is not None:
        from rasterio.crs import CRS

        crs = CRS.from_user_input(crs)
    return Product(
        id=product_id,
        level=level,
        grid=_grid_from_coords(da, crs),
        bands=bands,
        units=units,
        source=f"xarray.DataArray {product_id}",
    )


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
    if type(source).__name__ == "Item":  # pystac.Item, without importing pystac here
        from stac_ext.reader import open_item

        return open_item(source, level)
    path = Path(source)
    if str(source).endswith(".json"):
        from stac_ext.reader import open_item

        return open_item(str(source), level)
    if not path.exists():
        raise InputError(f"{source}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() == ".zip":
            return open_safe_zip(path, level)
        raise InputError(f"{source}: unsupported input file; give a SAFE folder or .zip, a band folder or a STAC item")
    if any(path.glob("MTD_MSIL*.xml")):
        return open_safe(path, level)
    safes = sorted(path.glob("*.SAFE"))
    if len(safes) == 1:
        return open_safe(safes[0], level)
    if not any(path.iterdir()):
        raise InputError(f"{source}: the folder is empty")
    return open_band_folder(path, level)
