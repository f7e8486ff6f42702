"""GDAL settings in one place: remote-file options and a bounded block cache.

GDAL's default block cache is a share of all RAM, which on a large machine
lets one product fill gigabytes; every read and write of this package runs
under :func:`cache_env` instead. A user's own ``GDAL_CACHEMAX`` always wins.
"""

from __future__ import annotations

import logging
import os

# For remote files; GDAL reads these from the environment, and a user's own values win.
# A server that never answers costs at most (retries + 1) x timeout, about a minute, not GDAL's default of many.
REMOTE_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no directory listing per file
    "GDAL_HTTP_MAX_RETRY": "2",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_HTTP_CONNECTTIMEOUT": "10",
    "GDAL_HTTP_TIMEOUT": "20",
}
REMOTE_PREFIXES = ("/vsicurl/", "/vsis3/", "/vsigs/", "/vsiaz/")


def open_raster(path: str, overview_level: int | None = None):
    """Open a raster for reading; ``overview_level`` opens that reduced resolution level instead."""
    import rasterio

    if not path.startswith(REMOTE_PREFIXES):
        return rasterio.open(path) if overview_level is None else rasterio.open(path, overview_level=overview_level)
    for key, value in REMOTE_OPTIONS.items():
        os.environ.setdefault(key, value)
    try:
        return rasterio.open(path) if overview_level is None else rasterio.open(path, overview_level=overview_level)
    except Exception as exc:
        tries = int(os.environ["GDAL_HTTP_MAX_RETRY"]) + 1
        raise RemoteError(f"{exc} (gave up after {tries} tries of at most {os.environ['GDAL_HTTP_TIMEOUT']} s "
                          "each; GDAL_HTTP_TIMEOUT and GDAL_HTTP_MAX_RETRY set these)") from None


class RemoteError(OSError):
    """A remote raster that could not be opened, with how long was waited for it."""


def cache_env(mib: int, **options):
    """A rasterio.Env with the block cache bounded to ``mib`` MiB (unless GDAL_CACHEMAX is set) and ``options``.

    Without rasterio (an openEO UDF runtime, where the data arrive as arrays) there is nothing to bound.
    """
    try:
        import rasterio
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    if "GDAL_CACHEMAX" not in os.environ:
        options["GDAL_CACHEMAX"] = mib * 2**20  # rasterio hands an integer to GDAL as bytes
    return rasterio.Env(**options)


def decoding_env():
    """The settings every pixel read runs under: GDAL decodes in the calling thread.

    With GDAL's own decoding threads (GDAL_NUM_THREADS), an error in a damaged
    JPEG 2000 or GeoTIFF block is printed by the worker thread and the block
    reads as zeros: a truncated band would become a wrong map. Decoding in the
    calling thread makes every such error fail the read. The pipeline keeps
    the cores busy by reading several bands at once instead.
    """
    import rasterio

    return rasterio.Env(GDAL_NUM_THREADS="1")


class _PaletteOverviewNotice(logging.Filter):
    """Drops GDAL's notice about overviews of palette bands, which it gives even for 'mode' resampling.

    Class maps get overviews by mode, which picks one of the existing class
    values and never mixes colours, so the notice does not apply to them (the
    tests check that every overview pixel is a class value).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "overviews on palette index raster bands" not in record.getMessage()


logging.getLogger("rasterio._env").addFilter(_PaletteOverviewNotice())
