"""How a product is cut into model tiles (:func:`plan_tiles`): the working-grid factor, the tile layout, the bands as
the run decodes them (at a reduced resolution level where the working grid is coarser than 10 m), and whether the
memory the run needs is there."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..foundation.errors import InputError
from ..foundation.grid import Grid, TileLayout, ground_anchor
from ..io.product import Product
from ..models.cards import ModelCard
from .options import ClassifyOptions


@dataclass(frozen=True)
class TilePlan:
    """How a product is cut into model tiles: the working-grid factor, the tile layout and the product as read."""

    factor: int
    layout: TileLayout
    reading: Product  # the product with the band sources the run decodes (see reading_product)
    overlap: int
    margin: int | tuple[int, int]  # (rows, columns) where the two differ
    # 10 m pixels before the raster's first row and column in its first working pixel: the ground's working
    # pixels start at multiples of their size, which the raster's origin need not be
    shift: tuple[int, int] = (0, 0)


def plan_tiles(product: Product, card: ModelCard, options: ClassifyOptions) -> TilePlan:
    """The tiles a network with ``card`` sees of ``product`` under ``options``."""
    factor = max(1, round(card.resolution / product.grid.resolution))
    anchor = ground_anchor(product.grid) if options.tiles == "ground" else None
    shift = (0, 0) if anchor is None else (anchor[0] % factor, anchor[1] % factor)
    work = Grid(-(-(product.grid.height + shift[0]) // factor), -(-(product.grid.width + shift[1]) // factor))
    work_anchor = None if anchor is None else (anchor[0] // factor, anchor[1] // factor)
    window = None
    if options.window is not None and work_anchor is not None:  # the working pixels that hold the window's pixels
        (r0, r1), (c0, c1) = options.window
        window = (((r0 + shift[0]) // factor, -(-(r1 + shift[0]) // factor)),
                  ((c0 + shift[1]) // factor, -(-(c1 + shift[1]) // factor)))
    overlap = card.overlap if options.overlap is None else options.overlap
    margin = card.margin if options.margin is None else options.margin
    margin_y, margin_x = margin if isinstance(margin, tuple) else (margin, margin)
    for name, value in (("overlap", overlap), ("margin", margin_y), ("margin", margin_x)):
        if value >= card.tile_size:
            raise InputError(f"{name} {value} must be smaller than the model's tile size {card.tile_size}")

    def layout_with(overlap: int) -> TileLayout:
        return TileLayout(work.height, work.width, card.tile_size, overlap, margin_y, margin_x, work_anchor, window,
                          options.stitch)

    if card.tile_size - overlap < card.tile_size / 4:
        raise InputError(f"overlap {overlap} leaves a stride of {card.tile_size - overlap} px, less than a quarter of "
                         f"the model's {card.tile_size} px tiles: {len(layout_with(overlap))} tiles instead of "
                         f"{len(layout_with(card.overlap))}; use an overlap of at most {card.tile_size * 3 // 4}")
    layout = layout_with(overlap)
    plan = TilePlan(factor, layout, reading_product(product, card.bands, factor, options.decode), overlap,
                    margin_y if margin_x == margin_y else (margin_y, margin_x), shift)
    need, have = memory_needed(plan, card, product.grid, options), available_memory()
    if have is not None and need > have:
        raise InputError(f"{product.id}: this run needs about {need / 2**30:.1f} GiB of memory (model {card.id}: "
                         f"{len(card.bands)} bands in strips of {card.tile_size} x {layout.width + sum(layout.col_padding())} px, "
                         f"a {product.grid.height} x {product.grid.width} px map), but only {have / 2**30:.1f} GiB "
                         "are available")
    return plan


def memory_needed(plan: TilePlan, card: ModelCard, grid: Grid, options: ClassifyOptions) -> int:
    """Bytes a run holds at its peak, roughly: three strips of model input (the one inferred, the one being
    prepared, a padded copy), the stitcher's sums, the class map, the 10 m valid masks of a strip, and the
    scores when they are kept in memory. The network's own working memory comes on top."""
    strip_px = plan.layout.tile * (plan.layout.width + sum(plan.layout.col_padding()))
    strips_bytes = 3 * len(card.bands) * strip_px * 4 + 2 * len(card.outputs) * strip_px * 4
    rows_10m = min(grid.height, plan.layout.tile * plan.factor)
    masks = 2 * rows_10m * grid.width
    scores = 5 * grid.height * grid.width * 4 if options.scores else 0
    return strips_bytes + masks + grid.height * grid.width + scores


def available_memory() -> int | None:
    """Bytes the system can give without swapping (Linux MemAvailable); None where it cannot tell."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def reading_product(product: Product, names, factor: int, decode: str) -> Product:
    """The product as the run reads it: with ``decode="reduced"``, bands finer than the working grid come from
    their reduced resolution level closest to it (10 m bands at 20 m for a 30 m grid); the area average onto
    the working grid then weights them as any native 20 m band."""
    if decode != "reduced" or factor == 1:
        return product
    bands = dict(product.bands)
    for name in names:
        reduced = getattr(bands[name], "reduced", None)  # band files have reduced resolution levels; arrays not
        if reduced is not None:
            bands[name] = reduced(factor)
    return replace(product, bands=bands)
