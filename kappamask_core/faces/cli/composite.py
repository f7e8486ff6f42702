"""``kappamask composite``: products of one tile (or a catalogue search) to a cloud-free composite.

Each product is classified first, as ``kappamask classify`` does, into ``OUTDIR/masks`` (a rerun keeps the masks
that are complete); then the composite is computed block by block from the products' bands and their masks and
written as COGs with a STAC item, all together or none.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

from ...foundation import plugins
from ...foundation.errors import InputError
from .classify import inputs_of
from .common import add_run_options, log, progress_wanted, run_options

DEFAULT_BANDS = "blue,green,red,nir,swir16,swir22"  # common names: every sensor's bands of these roles
TILE = re.compile(r"T\d{2}[A-Z]{3}")  # the MGRS tile in a product id


def cmd_composite(args) -> int:
    import rasterio

    from ...chain.composite import METHODS
    from ...io.files import new_folder_removed_on_failure, safe_name
    from ..api import classify_to_files
    from ..composites import CompositeFiles, composite, plugin_outputs, product_cube, write_composite

    if args.method not in METHODS:
        raise InputError(f"--method must be one of {', '.join(METHODS)}")
    labels = [label.strip() for label in args.bands.split(",")]
    inputs = list(inputs_of(args))
    if len(inputs) < 2:
        log.warning("a composite of %d product is that product's clear pixels", len(inputs))
    options = replace(run_options(args), scores=args.method == "best-pixel")
    with new_folder_removed_on_failure(args.output) as folder:
        written = classify_to_files(inputs, folder / "masks", model=args.model, weights=args.weights,
                                    level=args.level, options=options, stac=not args.no_stac,
                                    force=args.force, progress=progress_wanted(args))
        cube = product_cube(inputs, labels, level=args.level)
        by_id = {safe_name(pid): pid for pid in cube.attrs["products"]}
        finals = {}
        for paths in written:
            stem = paths["cog"].name.removesuffix("_kappamask.tif")
            finals[by_id.get(stem, stem)] = paths
        ordered = [finals[pid] for pid in cube.attrs["products"]]
        masks = _stack([p["cog"] for p in ordered], cube, (1,))
        cloudiness = None
        if args.method == "best-pixel":
            cloudiness = _stack([p["scores"] for p in ordered], cube, (3, 4, 5)).sum(axis=1)
        result = composite(cube, masks, cloudiness=cloudiness, method=args.method)
        models = sorted({_tags(p["cog"]).get("model", "unknown") for p in ordered})
        with rasterio.open(ordered[0]["cog"]) as first:
            grid = _grid(first)
        dates = [str(t)[:10] for t in cube["time"].values]
        tile = next((m.group(0) for pid in cube.attrs["products"] for m in [TILE.search(pid)] if m), "composite")
        stem = f"{tile}_{dates[0]}_{dates[-1]}_{args.method}"
        info = CompositeFiles(grid, list(cube["bands"].values), args.method, dates, list(cube.attrs["products"]),
                              models, dict(options.buffers), sensor=cube.attrs["sensor"])
        outputs = () if args.no_stac else plugin_outputs()
        write_composite(result, grid, folder, stem, info, outputs)
    log.info("composite of %d products: %.1f %% of the pixels have a clear observation",
             len(ordered), 100 * info.clear_share)
    print(json.dumps({k: str(v) for k, v in info.paths.items()}))
    return 0


def _tags(path) -> dict:
    import rasterio

    with rasterio.open(path) as src:
        return src.tags()


def _grid(dataset):
    from ...foundation.grid import Grid

    return Grid(dataset.height, dataset.width, dataset.transform, dataset.crs)


def _stack(paths, cube, bands: tuple):
    """(time, len(bands), y, x) lazy reads of the files' ``bands`` (1-based), in the cube's row blocks."""
    import dask
    import dask.array as dsa

    height, width = cube.sizes["y"], cube.sizes["x"]
    rows = cube.data.chunks[2]
    dtype = "float32" if len(bands) > 1 or bands != (1,) else "uint8"
    dates = []
    for path in paths:
        parts, r0 = [], 0
        for n in rows:
            parts.append(dsa.from_delayed(dask.delayed(_read_window, pure=True)(str(path), bands, r0, r0 + n, dtype),
                                          shape=(len(bands), n, width), dtype=dtype))
            r0 += n
        dates.append(dsa.concatenate(parts, axis=1))
    stacked = dsa.stack(dates)
    if stacked.shape[2:] != (height, width):
        raise InputError(f"the masks are {stacked.shape[2:]} px, the products {(height, width)}")
    return stacked[:, 0] if bands == (1,) else stacked


def _read_window(path: str, bands: tuple, r0: int, r1: int, dtype: str):
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(path) as src:
        return src.read(list(bands), window=Window(0, r0, src.width, r1 - r0)).astype(dtype)


def register(sub) -> None:
    p = sub.add_parser("composite", help="a cloud-free composite of products of one tile, from their KappaMask masks")
    p.add_argument("inputs", nargs="*", help="products of one tile (SAFE folder or .zip, band folder, STAC item .json)")
    p.add_argument("-o", "--output", required=True, help="output folder (the masks go into its masks/ folder)")
    for source in plugins.sources():  # inputs from elsewhere, e.g. a STAC API search (kappamask_stac)
        source.add_arguments(p)
    p.add_argument("--method", default="median", choices=["median", "best-pixel"],
                   help="median: each band's median over the clear observations; best-pixel: one date per pixel, "
                        "the clear one farthest from clouds, else the least cloudy (default: %(default)s)")
    p.add_argument("--bands", default=DEFAULT_BANDS,
                   help="the composite's bands, as the products' sensor names them or by common name "
                        "(default: %(default)s)")
    p.add_argument("--force", action="store_true", help="classify again products whose masks exist")
    add_run_options(p, outputs=False)
    p.set_defaults(func=cmd_composite)
