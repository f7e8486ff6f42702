"""Readers: any supported input becomes a :class:`~kappamask_core.io.product.Product` whose bands are read lazily
at native resolution (:func:`open_product` dispatches): SAFE folders and zips, folders of band files
(:mod:`~kappamask_core.io.safe`), Landsat Collection 2 and HLS v2.0 folders (:mod:`~kappamask_core.io.landsat`),
xarray DataArrays (:mod:`~kappamask_core.io.arrays`), and formats adapters add (:class:`Reader`, e.g. STAC
items).

Only the bands a model asks for are read, at native resolution (a rescaled
read of a JP2 can be very slow in GDAL): the pipeline opens each band once and
reads it in row windows, strip by strip, and
:mod:`kappamask_core.chain.resample` brings the rows onto the working grid.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from ..foundation import plugins
from ..foundation.bands import sensor_named
from ..foundation.errors import InputError
from ..foundation.types import ProductSource
from .arrays import array_sensor, from_dataarray
from .landsat import is_hls_folder, is_landsat_folder, open_hls_folder, open_landsat_folder
from .product import Product
from .safe import open_band_folder, open_safe, open_safe_zip

# the bundled demo scene (package data): a real L1C crop near Berlin, 13 band files (see its README)
DEMO_DATA = Path(__file__).resolve().parents[1] / "demo_data"


class Reader(Protocol):
    """An input format an adapter adds (entry point group ``kappamask.readers``): STAC items, for one."""

    name: str

    def accepts(self, source: Any) -> bool: ...

    def open(self, source: Any, level: str | None = None) -> Product: ...


def open_product(source: ProductSource, level: str | None = None, units: str = "dn",
                 sensor: str | None = None) -> Product:
    """Open any supported input; ``level`` fills in (or checks) the product level; ``sensor`` says whose bands an
    array holds, and must be the sensor a file product or STAC item says it is."""
    if level is not None:
        level = level.upper()
        if level not in ("L1C", "L2A"):
            raise InputError(f"level must be L1C or L2A, not {level!r}")
    wanted = None if sensor is None else sensor_named(sensor).id
    try:
        import xarray as xr

        if isinstance(source, xr.DataArray):
            return from_dataarray(source, level, units, sensor=wanted or array_sensor(source) or "sentinel-2")
    except ImportError:  # pragma: no cover - xarray is a dependency
        pass
    product = source if isinstance(source, Product) else _open_file_product(source, level)
    if wanted is not None and product.sensor != wanted:
        raise InputError(f"{product.source or product.id}: sensor {wanted} was given, but the product is "
                         f"{product.sensor_info.title}")
    return product


def _open_file_product(source: ProductSource, level: str | None) -> Product:
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
        if path.name.lower().endswith((".tar", ".tar.gz", ".tgz")):
            raise InputError(f"{source}: a Landsat archive is read unpacked: unpack it (tar xf) and give the folder")
        raise InputError(f"{source}: unsupported input file; give a SAFE folder or .zip, a band folder (Sentinel-2, "
                         "Landsat, HLS) or a STAC item")
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
    if is_hls_folder(path):
        return open_hls_folder(path, level)
    if is_landsat_folder(path):
        return open_landsat_folder(path, level)
    return open_band_folder(path, level)
