"""The class maps :func:`~kappamask_core.faces.stats.area_statistics` counts: one per date, from a classified cube
(eager, or lazy on dask: :func:`lazy_sums`), from COGs this package wrote, or from run folders. Each is read where
the areas lie (a file's windows only), in the five classes whatever encoding the file was written in."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..chain.buffers import usable_mask
from ..chain.coverage import Coverage, pixel_coverage
from ..foundation.classes import CLASSES, MISSING
from ..foundation.errors import InputError
from ..foundation.schemes import to_classes
from ..io.array_grid import array_crs, flips_to_north_up, grid_steps
from .areas import Areas

CLASS_NAMES = tuple(c.name for c in CLASSES if c.value != MISSING)
# the sums kept per area and map while pixels are counted: covered area on the map, with data, per class, usable
SUM_NAMES = ("on_map", "valid", *CLASS_NAMES, "usable")

PRODUCT_DATE = re.compile(r"_(\d{8}T\d{6})(?:_|$)")  # a Sentinel-2 product id's sensing time


@dataclass
class ClassMap:
    """One date's class map, read where it lies: a (y, x) array or a file, its grid and what it is of."""

    when: Any
    product_id: str
    transform: Any
    crs: Any
    shape: tuple[int, int]
    read: Any  # (rows, cols) -> classes (uint8, kappamask classes) of that window; or a whole array
    resolution: float


def coverages(areas: Areas, class_map: ClassMap) -> list[Coverage]:
    return [pixel_coverage(geom, class_map.transform, class_map.shape) for geom in areas.on(class_map.crs)]


def weighted_sums(classes: np.ndarray, usable: np.ndarray | None, weights: np.ndarray) -> np.ndarray:
    """:data:`SUM_NAMES` of a window of classes under pixel weights."""
    counts = np.bincount(classes.ravel(), weights=weights.ravel(), minlength=len(CLASSES))[:len(CLASSES)]
    out = np.zeros(len(SUM_NAMES))
    out[0] = weights.sum()
    out[1] = counts[1:].sum()
    out[2:2 + len(CLASS_NAMES)] = counts[1:]
    if usable is not None:
        out[-1] = weights[usable == 1].sum()
    return out


def class_maps(maps):
    """Each date's :class:`ClassMap` of ``maps`` (see :func:`~kappamask_core.faces.stats.area_statistics`)."""
    import xarray as xr

    if isinstance(maps, xr.DataArray):
        yield from _cube_maps(maps)
        return
    for item in maps if isinstance(maps, (list, tuple)) else [maps]:
        if isinstance(item, xr.DataArray):
            yield from _cube_maps(item)
            continue
        if hasattr(item, "to_dict") and hasattr(item, "assets"):  # a pystac Item
            yield _item_map(item.to_dict(), item.get_self_href())
            continue
        if isinstance(item, dict):
            yield _item_map(item, None)
            continue
        path = Path(item)
        if path.is_file() and path.suffix.lower() == ".json":
            try:
                yield _item_map(json.loads(path.read_text()), str(path))
            except ValueError as exc:
                raise InputError(f"{path}: not a STAC item ({exc})") from None
        elif path.is_dir():
            files = sorted(path.glob("*_kappamask.tif"))
            if not files:
                raise InputError(f"{path}: holds no class map (*_kappamask.tif)")
            yield from (_file_map(f) for f in files)
        elif path.is_file():
            yield _file_map(path)
        else:
            raise InputError(f"{item}: no such class map or run folder")


def _dates(cube):
    """(time label, (y, x) north-up map) of a classified cube, after its grid is checked."""
    dim = next((d for d in ("time", "t") if d in cube.dims), None)
    if set(cube.dims) - {dim, "y", "x"}:
        raise InputError(f"a class map has dimensions (time,) y, x; this one has {cube.dims}")
    flip_y, flip_x = flips_to_north_up(cube)
    cube = cube.isel(y=slice(None, None, -1) if flip_y else slice(None),
                     x=slice(None, None, -1) if flip_x else slice(None))
    if dim is None:
        return [(cube.attrs.get("datetime"), cube)]
    return [(cube[dim].values[i], cube.isel({dim: i})) for i in range(cube.sizes[dim])]


def _grid(cube):
    from affine import Affine

    source = "the class map"
    crs = array_crs(cube, source)
    steps = grid_steps(cube, source)
    if crs is None or steps is None:
        raise InputError("the class map has no CRS or no x and y coordinates: areas cannot be placed on it")
    size = abs(steps[0])
    x0, y0 = float(cube["x"].values[0]) - size / 2, float(cube["y"].values[0]) + size / 2
    return Affine(size, 0, x0, 0, -size, y0), crs, size


def _cube_maps(cube):
    transform, crs, size = _grid(cube)
    for when, date in _dates(cube):
        values = np.asarray(date.values)
        _check_classes(values)
        product_id = str(cube.attrs.get("product", "cube"))
        yield ClassMap(when if when is not None else sensing_time(product_id), product_id, transform, crs, values.shape,
                       lambda rows, cols, v=values: v[rows[0]:rows[1], cols[0]:cols[1]], size)


def _check_classes(values) -> None:
    if values.size and (np.nanmax(values) > 4 or np.nanmin(values) < 0):
        raise InputError("a class map holds values outside 0 to 4 (the five classes); give the classes, not scores "
                         "or another encoding")


def _file_map(path) -> ClassMap:
    """A COG this package wrote (a path, or a URL GDAL reads)."""
    import rasterio

    try:
        with rasterio.open(path) as ds:
            tags, transform, crs, shape = ds.tags(), ds.transform, ds.crs, ds.shape
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"{path}: not a readable class map ({exc})") from None
    encoding = tags.get("encoding")
    if encoding is None:
        raise InputError(f"{path}: not a class map this package wrote (no 'encoding' tag)")
    name = Path(str(path).split("?")[0]).name
    product_id = Path(name).stem.removesuffix("_kappamask")
    when = None
    item = path.with_suffix(".json") if isinstance(path, Path) else None  # the STAC item written beside the map
    if item is not None and item.is_file():
        when = json.loads(item.read_text()).get("properties", {}).get("datetime")

    read = _FileWindows(path, encoding)
    return ClassMap(when or sensing_time(product_id), product_id, transform, crs, shape, read, abs(transform.a))


def _item_map(item: dict, location: str | None) -> ClassMap:
    """The class map a STAC item of this package's masks names: its asset with classification classes (a COG,
    local or at a URL GDAL reads), dated by the item."""
    import posixpath
    from urllib.parse import urljoin

    if item.get("type") != "Feature" or not isinstance(item.get("assets"), dict):
        raise InputError(f"{location or 'the item'}: not a STAC item")
    asset = next((a for a in item["assets"].values() if "classification:classes" in a
                  and "data" in a.get("roles", ["data"])), None)
    if asset is None:
        raise InputError(f"{location or item.get('id')}: no asset with classification classes (a KappaMask mask)")
    href = str(asset["href"])
    if "://" not in href and not posixpath.isabs(href):
        if location is None:
            raise InputError(f"{item.get('id')}: its mask's href {href!r} is relative and the item has no location")
        href = urljoin(location, href) if "://" in location else str(Path(location).parent / href)
    found = _file_map(href if "://" in href else Path(href))
    found.when = item.get("properties", {}).get("datetime") or found.when
    found.product_id = str(item.get("id", found.product_id)).removesuffix("_kappamask")
    return found


def sensing_time(product_id: str) -> str | None:
    """The sensing time a Sentinel-2 product id names (ISO 8601, UTC), or None."""
    found = PRODUCT_DATE.search(product_id)
    if found is None:
        return None
    stamp = found.group(1)
    return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}Z"


class _FileWindows:
    """Windows of a class map file, as classes: the file stays open while its map is counted (:meth:`close`)."""

    def __init__(self, path: Path, encoding: str):
        self.path, self.encoding = path, encoding
        self.dataset: Any = None

    def __call__(self, rows, cols) -> np.ndarray:
        import rasterio
        from rasterio.windows import Window

        if self.dataset is None:
            self.dataset = rasterio.open(self.path)
        values = self.dataset.read(1, window=Window(cols[0], rows[0], cols[1] - cols[0], rows[1] - rows[0]))
        return to_classes(values, self.encoding)

    def close(self) -> None:
        if self.dataset is not None:
            self.dataset.close()
            self.dataset = None


def lazy_sums(maps, areas: Areas, buffers):
    """For a dask-backed cube: each date's :class:`ClassMap`, the areas' sizes in pixels and their sums, computed
    with one task per date and chunk (each sums the areas that reach into its chunk); None for other maps."""
    import xarray as xr

    if not isinstance(maps, xr.DataArray) or not type(maps.data).__module__.startswith("dask"):
        return None
    import dask

    from .lazycube import buffered_classes

    transform, crs, size = _grid(maps)
    dates = _dates(maps)
    first = dates[0][1]
    shape = first.shape
    template = ClassMap(None, str(maps.attrs.get("product", "cube")), transform, crs, shape, None, size)
    covers = coverages(areas, template)
    results = []
    for when, date in dates:
        classes = date.data[None, None]
        usable = (buffered_classes(classes, buffers, size).map_blocks(usable_mask, dtype=np.uint8)
                  if buffers else None)
        row_edges = np.cumsum((0,) + classes.chunks[2])
        col_edges = np.cumsum((0,) + classes.chunks[3])
        blocks = classes.to_delayed()[0, 0]
        usable_blocks = usable.to_delayed()[0, 0] if usable is not None else None
        parts = []
        for i in range(blocks.shape[0]):
            for j in range(blocks.shape[1]):
                box = ((row_edges[i], row_edges[i + 1]), (col_edges[j], col_edges[j + 1]))
                wanted = [k for k, c in enumerate(covers) if not c.empty and _overlaps(c, box)]
                if not wanted:
                    continue
                parts.append(dask.delayed(_block_sums)(blocks[i, j], None if usable_blocks is None else
                                                       usable_blocks[i, j], box, [covers[k] for k in wanted],
                                                       wanted, len(covers)))
        total = dask.delayed(sum)(parts, np.zeros((len(covers), len(SUM_NAMES)))) if parts else \
            np.zeros((len(covers), len(SUM_NAMES)))
        results.append((when, total))
    computed = dask.compute(*[total for _, total in results])
    return [(ClassMap(when, template.product_id, transform, crs, shape, None, size), [c.area_px for c in covers],
             sums) for (when, _), sums in zip(results, computed)]


def _overlaps(cover, box) -> bool:
    (r0, r1), (c0, c1) = cover.rows, cover.cols
    (a, b), (c, d) = box
    return r0 < b and a < r1 and c0 < d and c < c1


def _block_sums(block, usable, box, covers, wanted, n) -> np.ndarray:
    """The sums of the areas ``wanted`` over one chunk of a date (the parts of their windows inside it)."""
    out = np.zeros((n, len(SUM_NAMES)))
    block = np.asarray(block)[0, 0]
    _check_classes(block)
    usable = None if usable is None else np.asarray(usable)[0, 0]
    (a, b), (c, d) = box
    for k, cover in zip(wanted, covers):
        (r0, r1), (c0, c1) = cover.rows, cover.cols
        y0, y1, x0, x1 = max(r0, a), min(r1, b), max(c0, c), min(c1, d)
        weights = cover.fractions[y0 - r0:y1 - r0, x0 - c0:x1 - c0]
        window = (slice(y0 - a, y1 - a), slice(x0 - c, x1 - c))
        out[k] = weighted_sums(block[window], None if usable is None else usable[window], weights)
    return out
