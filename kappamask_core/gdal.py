"""GDAL settings in one place: remote-file options and a bounded block cache.

GDAL's default block cache is a share of all RAM, which on a large machine
lets one product fill gigabytes; every read and write of this package runs
under :func:`cache_env` instead. A user's own ``GDAL_CACHEMAX`` always wins.
"""

from __future__ import annotations

import os

# For remote files; GDAL reads these from the environment, and a user's own values win.
REMOTE_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no directory listing per file
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_HTTP_TIMEOUT": "60",
}
REMOTE_PREFIXES = ("/vsicurl/", "/vsis3/", "/vsigs/", "/vsiaz/")


def open_raster(path: str):
    import rasterio

    if path.startswith(REMOTE_PREFIXES):
        for key, value in REMOTE_OPTIONS.items():
            os.environ.setdefault(key, value)
    return rasterio.open(path)


def cache_env(mib: int, **options):
    """A rasterio.Env with the block cache bounded to ``mib`` MiB (unless GDAL_CACHEMAX is set) and ``options``."""
    import rasterio

    if "GDAL_CACHEMAX" not in os.environ:
        options["GDAL_CACHEMAX"] = mib * 2**20  # rasterio hands an integer to GDAL as bytes
    return rasterio.Env(**options)
