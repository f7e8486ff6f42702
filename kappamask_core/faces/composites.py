"""Cloud-free composites: of a data cube (lazy on dask, as a notebook has it) and of products (the command line).

:func:`composite` takes a cube (:func:`~kappamask_core.faces.datacube.band_cube` says which) and, unless given,
classifies it on the way (one pass of the network gives the classes and, for ``best-pixel``, the cloud and shadow
scores); :mod:`kappamask_core.chain.composite` holds the arithmetic. :func:`product_cube` reads products of one
tile as such a cube, lazily, on the 10 m grid; :func:`write_composite` writes a composite of products as COGs
(bands, clear-observation count, date chosen), whole or not at all, with the STAC item the output plugins add.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..chain import composite as arithmetic
from ..chain.options import ClassifyOptions
from ..chain.strips import open_rows, working_rows
from ..foundation import plugins
from ..foundation.bands import asset_band
from ..foundation.errors import InputError
from ..foundation.grid import Grid
from ..io.array_grid import pixel_size
from ..io.arrays import array_sensor
from ..io.files import atomic_files
from ..io.product import Product
from ..io.readers import open_product
from .datacube import CLASSES_AND_CLOUDINESS, CLOUDY, band_cube, cube_values, date_spec
from .lazycube import buffered_classes, is_dask

if TYPE_CHECKING:
    import xarray

log = logging.getLogger(__name__)

SCALE = 10000.0  # reflectance x SCALE as uint16 in the written COGs, 0 = no data (Sentinel-2's own DN scale)


def composite(cube: Any, masks: Any = None, *, cloudiness: Any = None, method: str = "median", buffers: Any = None,
              model: Any = "auto",
              level: str | None = None, units: str = "dn", offset: float = 0.0, weights: str | None = None,
              options: ClassifyOptions | None = None, sensor: str | None = None) -> "xarray.Dataset":
    """A cloud-free composite over time: one variable per band (float32, in the cube's units, NaN where no date
    qualifies), ``clear_count`` (uint16, the clear observations of each pixel) and, for ``best-pixel``, ``date``
    (the date each pixel was taken from, NaT where none).

    ``masks``: the cube's (time, y, x) class maps (``classify(cube)``); without them the cube is classified with
    ``model`` on the way, and ``best-pixel`` also scores the dates by the cloud and shadow scores (with given
    masks, by ``cloudiness``, the (time, y, x) sum of those scores, or else by their classes). ``buffers`` grow clouds and shadows before a pixel counts as clear
    (``"cloud=300,shadow=100"``). ``sensor``: whose bands the cube holds, where its ``platform`` does not say
    (Sentinel-2 where neither does). Lazy where the cube is dask-backed.
    """
    import xarray as xr

    if method not in arithmetic.METHODS:
        raise InputError(f"method must be one of {', '.join(arithmetic.METHODS)}, not {method!r}")
    sensor = sensor or array_sensor(cube)
    cube = band_cube(cube, sensor)
    options = options or ClassifyOptions()
    if buffers is not None:
        options = replace(options, buffers=buffers)
    if masks is None:
        spec = date_spec(cube["bands"].values, model, level=level, units=units, offset=offset, weights=weights,
                         output=CLASSES_AND_CLOUDINESS, options=options, attrs=cube.attrs, sensor=sensor)
        classes, cloudiness = _classes_and_cloudiness(cube, spec)
    else:
        classes = _mask_values(masks, cube, options.buffers)
        cloudiness = _class_cloudiness(classes) if cloudiness is None else cloudiness
    values = cube.data
    if is_dask(values):
        out = _lazy_composite(values, classes, cloudiness, method)
    else:
        out = _composite_block(np.asarray(values), np.asarray(classes), np.asarray(cloudiness), method)
    names = [str(b) for b in cube["bands"].values]
    coords = {k: v for k, v in cube.coords.items() if "time" not in v.dims and "bands" not in v.dims}
    data = {name: xr.DataArray(out[i], dims=("y", "x"), coords=coords) for i, name in enumerate(names)}
    data["clear_count"] = xr.DataArray(out[len(names) + 1].astype(np.uint16), dims=("y", "x"), coords=coords)
    if method == "best-pixel":
        index = out[len(names)]
        times = cube["time"].values
        if is_dask(index):
            date = index.map_blocks(_date_of, times, dtype=times.dtype)
        else:
            date = _date_of(index, times)
        data["date"] = xr.DataArray(date, dims=("y", "x"), coords=coords)
    return xr.Dataset(data, attrs={"method": method, "dates": [str(t)[:10] for t in cube["time"].values],
                                   "buffers": dict(options.buffers)})


def _date_of(index: np.ndarray, times: np.ndarray) -> np.ndarray:
    index = np.asarray(index).astype(np.int64)
    picked = times[np.clip(index, 0, len(times) - 1)]
    return np.where(index >= 0, picked, np.array("NaT", dtype=times.dtype))


def _classes_and_cloudiness(cube, spec):
    """(time, y, x) classes (buffered) and cloudiness of the cube's dates: one pass of the network."""
    both = cube_values(cube, spec)
    return both[:, 0].astype(np.uint8), both[:, 1]


def _mask_values(masks, cube, buffers):
    """The given class maps as (time, y, x), on the cube's grid, grown by ``buffers``."""
    import xarray as xr

    masks = masks if isinstance(masks, xr.DataArray) else xr.DataArray(masks)
    masks = masks.rename({d: "time" for d in ("t",) if d in masks.dims})
    if masks.ndim == 2:
        masks = masks.expand_dims(time=1)
    if masks.shape != (cube.sizes["time"], cube.sizes["y"], cube.sizes["x"]):
        raise InputError(f"the masks' shape {masks.shape} is not the cube's dates, rows and columns "
                         f"({cube.sizes['time']}, {cube.sizes['y']}, {cube.sizes['x']}): classify this cube")
    data = masks.data
    if not buffers:
        return data
    size = pixel_size(cube) or 10.0  # metres per pixel: the buffers are in metres
    if is_dask(data):
        return buffered_classes(data[:, None].astype(np.uint8), buffers, size)[:, 0]
    from ..chain.buffers import buffer_classes

    return np.stack([buffer_classes(np.asarray(date, np.uint8), buffers, size) for date in data])


def _class_cloudiness(classes):
    """Cloudiness from classes alone (1 for cloud, semi-transparent cloud and shadow, else 0)."""
    if is_dask(classes):
        return classes.map_blocks(lambda c: np.isin(c, CLOUDY).astype(np.float32), dtype=np.float32)
    return np.isin(np.asarray(classes), CLOUDY).astype(np.float32)


def _composite_block(values: np.ndarray, classes: np.ndarray, cloudiness: np.ndarray, method: str) -> np.ndarray:
    """(bands + 2, y, x) float32: the composite's bands, the date index (best-pixel), the clear count."""
    classes = np.asarray(classes, np.uint8)
    if method == "median":
        bands, count = arithmetic.median_composite(values, classes)
        index = np.full(count.shape, arithmetic.NO_DATE, np.int16)
    else:
        distance = arithmetic.cloud_distance(classes)
        bands, index, count = arithmetic.best_pixel(values, classes, cloudiness, distance)
    return np.concatenate([bands, index[None].astype(np.float32), count[None].astype(np.float32)])


def _lazy_composite(values, classes, cloudiness, method: str):
    """The composite as dask: every date of a pixel in one chunk (rechunked), spatial chunks as the cube's; for
    ``best-pixel`` the cloud distances are computed per date with a halo of the largest distance step."""
    import dask.array as dsa

    spatial = (values.chunks[2], values.chunks[3])
    values = values.rechunk((-1, -1, *spatial))
    classes = dsa.asarray(classes).rechunk((-1, *spatial)).astype(np.uint8)
    cloudiness = dsa.asarray(cloudiness).rechunk((-1, *spatial))
    out_chunks = ((values.shape[1] + 2,), *spatial)
    if method == "median":
        return dsa.map_blocks(_median_block, values, classes, dtype=np.float32, chunks=out_chunks, drop_axis=0)
    halo = min(int(arithmetic.HALO_M / 10), *classes.shape[1:])  # no farther than the cube reaches
    distance = dsa.map_overlap(arithmetic.cloud_distance, classes, depth={0: 0, 1: halo, 2: halo},
                               boundary="none", dtype=np.uint8).rechunk((-1, *spatial))  # dask may grow chunks
    return dsa.map_blocks(_best_block, values, classes, cloudiness, distance, dtype=np.float32, chunks=out_chunks,
                          drop_axis=0)


def _median_block(values, classes):
    bands, count = arithmetic.median_composite(values, classes)
    return np.concatenate([bands, np.full((1, *count.shape), arithmetic.NO_DATE, np.float32),
                           count[None].astype(np.float32)])


def _best_block(values, classes, cloudiness, distance):
    bands, index, count = arithmetic.best_pixel(values, classes, cloudiness, distance)
    return np.concatenate([bands, index[None].astype(np.float32), count[None].astype(np.float32)])


# ----------------------------------------------------------------------------- products as a cube

def product_cube(sources, labels, *, level: str | None = None, rows: int = 1024) -> "xarray.DataArray":
    """Products of one tile as a lazy (time, bands, y, x) cube of reflectance on their grid (10 m for Sentinel-2,
    30 m for Landsat and HLS), sorted by date: each task reads ``rows`` rows of one product's bands (20 and 60 m
    bands resampled as a run resamples them). ``labels`` name the bands as the products' sensor does, or by common
    name; the cube's bands are their roles. Products on different grids, or of sensors whose bands are numbered
    differently, are refused: a composite is made over one tile of one kind of product."""
    import dask.array as dsa
    import xarray as xr

    products = sorted((open_product(s, level=level) for s in sources),
                      key=lambda p: (p.datetime is None, p.datetime or 0, p.id))
    if not products:
        raise InputError("no products to composite")
    first = products[0]
    sensor = first.sensor_info
    for product in products[1:]:
        if (product.grid.shape, product.grid.transform, product.grid.crs) != \
                (first.grid.shape, first.grid.transform, first.grid.crs):
            raise InputError(f"{product.id} and {first.id} lie on different grids; a composite is made over one "
                             "tile: give products of one MGRS tile")
        if product.sensor_info.bands != sensor.bands:
            raise InputError(f"{product.id} is {product.sensor_info.title} and {first.id} {sensor.title}, whose "
                             "bands are numbered differently; composite each sensor's products on their own")
    bands = []
    for label in labels:
        found = asset_band(label, sensor)
        if found is None:
            raise InputError(f"--bands: {label!r} is not a {sensor.title} band (its own names such as "
                             f"{sensor.own('B02')}, or common names such as blue, nir, swir16)")
        bands.append(found[0])
    for product in products:
        product.require(bands)
    height, width = first.grid.shape
    starts = list(range(0, height, rows))
    dates = []
    for product in products:
        parts = [dsa.from_delayed(_delayed_rows(product, tuple(bands), r0, min(r0 + rows, height)),
                                  shape=(len(bands), min(r0 + rows, height) - r0, width), dtype=np.float32)
                 for r0 in starts]
        dates.append(dsa.concatenate(parts, axis=1))
    y, x = first.grid.coords()
    times = [np.datetime64(p.datetime.replace(tzinfo=None)) if p.datetime else np.datetime64("NaT")
             for p in products]
    cube = xr.DataArray(dsa.stack(dates), dims=("time", "bands", "y", "x"),
                        coords={"time": times, "bands": list(bands), "y": y, "x": x},
                        attrs={"products": [p.id for p in products], "levels": sorted({str(p.level) for p in products}),
                               "sensor": sensor.id})
    return cube


def _delayed_rows(product: Product, bands: tuple, r0: int, r1: int):
    import dask

    return dask.delayed(_read_rows, pure=True)(product, bands, r0, r1)


def _read_rows(product: Product, bands: tuple, r0: int, r1: int) -> np.ndarray:
    """Rows [r0, r1) of the bands at 10 m, reflectance (offsets removed), NaN where a band has no data."""
    with open_rows(product, bands) as readers:
        values, valid = working_rows(product, readers, bands, "reflectance", 1, r0, r1, "bilinear")
    values[:, ~valid] = np.nan
    return values


# ----------------------------------------------------------------------------- writing a composite of products

@dataclass
class CompositeFiles:
    """A composite written from products: where its files are and what made it (for its STAC item)."""

    grid: Grid
    bands: list[str]
    method: str
    dates: list[str]
    products: list[str]
    models: list[str]
    buffers: dict
    paths: dict[str, Path] = field(default_factory=dict)  # role -> final path: bands, clear_count, date
    clear_share: float = 0.0  # the share of the grid's pixels with at least one clear observation
    sensor: str = "sentinel-2"  # whose bands the products hold (their names in the STAC item)


def write_composite(result: "xarray.Dataset", grid: Grid, outdir: Path, stem: str, info: CompositeFiles,
                    outputs=(), block: int = 2048) -> CompositeFiles:
    """The composite's bands (uint16, reflectance x 10000, 0 = no data), its clear-observation count and, for
    best-pixel, its dates (days since 1970-01-01, int32, -1 = none) as COGs in ``outdir``, computed block by block;
    with the files of ``outputs`` (the STAC item), all together or none."""
    from ..io.writers import write_raster_blocks

    roles = {"bands": f"{stem}.tif", "clear_count": f"{stem}_clear_count.tif"}
    if "date" in result:
        roles["date"] = f"{stem}_date.tif"
    finals = {role: outdir / name for role, name in roles.items()}
    for output in outputs:
        finals.update({role: outdir / name for role, name in output.composite_file_names(stem).items()})
    info.paths = finals
    with atomic_files(*finals.values()) as temps:
        temp = dict(zip(finals, map(Path, temps)))
        names = info.bands
        layers = {
            "bands": (lambda w: np.stack([_as_dn(result[n], w) for n in names]), "uint16", 0, names),
            "clear_count": (lambda w: _window(result["clear_count"], w)[None].astype(np.uint16), "uint16", None,
                            ["clear_count"]),
        }
        if "date" in result:
            layers["date"] = (lambda w: _days(_window(result["date"], w))[None], "int32", -1, ["date"])
        clear = 0
        for role, (read, dtype, nodata, descriptions) in layers.items():
            def counted(window, read=read, role=role):
                nonlocal clear
                values = read(window)
                if role == "clear_count":
                    clear += int((values > 0).sum())
                return values
            write_raster_blocks(temp[role], grid, counted, dtype, nodata, descriptions, block)
        info.clear_share = clear / (grid.height * grid.width)
        for output in outputs:
            output.write_composite(info, finals, temp)
    return info


def _window(array, window):
    (r0, r1), (c0, c1) = window
    return np.asarray(array[r0:r1, c0:c1].values)


def _as_dn(array, window) -> np.ndarray:
    values = _window(array, window)
    dn = np.where(np.isfinite(values), np.clip(np.round(values * SCALE), 1, 65535), 0)
    return dn.astype(np.uint16)


def _days(dates: np.ndarray) -> np.ndarray:
    days = dates.astype("datetime64[D]").astype(np.int64)
    return np.where(np.isnat(dates), -1, days).astype(np.int32)


def plugin_outputs() -> tuple:
    """The output plugins that write a composite's files (those with ``write_composite``)."""
    return tuple(o for o in plugins.outputs() if hasattr(o, "write_composite"))
