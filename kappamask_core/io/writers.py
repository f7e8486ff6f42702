"""Writers: the class map as a Cloud-Optimized GeoTIFF and a quicklook PNG.

Every file is written under a temporary name in the target folder and moved
into place only when complete (:mod:`kappamask_core.io.files`), so an
interrupted run never leaves a partial file under the final name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..foundation.classes import CLASSES, ENCODINGS, USABLE_CLASSES, USABLE_MISSING, data_window, encode, palette
from ..foundation.errors import OutputError
from ..foundation.grid import Grid
from ..foundation.types import PathLike
from .files import atomic_path, temp_beside
from .gdal import cache_env


def _translate(src, path, *, resampling) -> Path:
    """Write the open dataset ``src`` to ``path`` as a COG (deflate, 512 px blocks, overviews by ``resampling``),
    atomically, and check the file with rio-cogeo's validator before it takes its name.

    GDAL's COG driver writes it in one pass, on every core for the compression: half the time rio-cogeo's
    translation takes for a full product's class map (benchmarks/run.py --profile), with the same layout.
    """
    from rasterio.shutil import copy
    from rio_cogeo.cogeo import cog_validate

    options = {"COMPRESS": "DEFLATE", "BLOCKSIZE": 512, "OVERVIEW_RESAMPLING": resampling.upper(),
               "NUM_THREADS": "ALL_CPUS", "BIGTIFF": "IF_SAFER"}
    with atomic_path(path) as tmp, cache_env(256):
        copy(src, tmp, driver="COG", **options)
        valid, errors, _ = cog_validate(tmp, quiet=True)
        if not valid:
            raise OutputError(f"{path}: the COG written is not valid ({'; '.join(errors)})")
    return Path(path)


def _write_palette_cog(path, values: np.ndarray, grid: Grid, nodata, colours: dict, tags: dict) -> Path:
    """A one-band uint8 map with a colour table as a COG (mode overviews, so values never mix)."""
    from rasterio.io import MemoryFile

    profile = {"driver": "GTiff", "height": grid.height, "width": grid.width, "count": 1, "dtype": "uint8",
               "transform": grid.transform, "nodata": nodata, **({"crs": grid.crs} if grid.crs is not None else {})}
    with MemoryFile() as memfile:
        with memfile.open(**profile) as mem:
            mem.write_colormap(1, colours)  # before the pixels: GDAL fixes the photometric tag then
            mem.write(values[None])
            mem.update_tags(**tags)
        with memfile.open() as src:
            return _translate(src, path, resampling="mode")


def write_cog(path: PathLike, classes: np.ndarray, grid: Grid, encoding: str = "kappamask", tags: dict | None = None) -> Path:
    """Write a uint8 class map as a COG with the class palette and mode overviews (``tags``: e.g. the model)."""
    if encoding not in ENCODINGS:
        raise OutputError(f"unknown encoding {encoding!r}; choose one of {sorted(ENCODINGS)}")
    # The paper's encoding marks missing (0) as nodata; km_predict files carry no nodata tag.
    nodata = 0 if encoding == "kappamask" else None
    codes = ENCODINGS[encoding]
    return _write_palette_cog(path, encode(classes, encoding), grid, nodata, palette(encoding),
                              {"encoding": encoding, **{f"class_{codes[c.value]}": c.name for c in CLASSES},
                               **(tags or {})})


def write_usable(path: PathLike, usable: np.ndarray, grid: Grid) -> Path:
    """The usable-pixel mask (:func:`kappamask_core.chain.buffers.usable_mask`) as a COG: 1 clear after
    buffering, 0 not clear, 255 missing (nodata)."""
    colours = {value: (*CLASSES[colour].rgb, 0 if value == USABLE_MISSING else 255)
               for value, _, _, colour in USABLE_CLASSES}
    return _write_palette_cog(path, usable, grid, USABLE_MISSING, colours,
                              {f"class_{value}": name for value, name, _, _ in USABLE_CLASSES})


class ScoresWriter:
    """Per-class scores (float32, one band per class) streamed to disk in row blocks, then made a COG.

    Memory stays one strip whatever the product size: rows go into a tiled
    GeoTIFF beside ``path`` while the product streams, which becomes the COG
    when the block ends without an error and is deleted in every case. With
    ``path`` None the writer does nothing (scores were not asked for).
    """

    def __init__(self, path: PathLike | None, grid: Grid):
        self.path = None if path is None else Path(path)
        self.grid = grid
        self._strips: Path | None = None
        self._dataset: Any = None  # a rasterio dataset while open

    def __enter__(self) -> "ScoresWriter":
        if self.path is None:
            return self
        import rasterio

        self._strips = Path(temp_beside(self.path.with_name(self.path.name + ".strips")))
        grid = self.grid
        self._dataset = rasterio.open(
            self._strips, "w", driver="GTiff", height=grid.height, width=grid.width, count=len(CLASSES),
            dtype="float32", transform=grid.transform, tiled=True, blockxsize=512, blockysize=512,
            compress="deflate", zlevel=1, predictor=3, **({"crs": grid.crs} if grid.crs is not None else {}))
        for c in CLASSES:
            self._dataset.update_tags(c.value + 1, **{"class": c.name})
            self._dataset.set_band_description(c.value + 1, c.name)
        return self

    def write(self, row: int, block: np.ndarray) -> None:
        """Rows ``row`` .. ``row + block.shape[1]`` of the (classes, rows, width) scores."""
        from rasterio.windows import Window

        self._dataset.write(block.astype(np.float32, copy=False), window=Window(0, row, block.shape[2], block.shape[1]))

    def __exit__(self, exc_type, *exc) -> None:
        try:
            if self._dataset is not None:
                self._dataset.close()
                if exc_type is None:
                    import rasterio

                    with cache_env(256), rasterio.open(self._strips) as src:
                        _translate(src, self.path, resampling="average")
        finally:
            if self._strips is not None:
                self._strips.unlink(missing_ok=True)


def write_scores(path: PathLike, scores: np.ndarray, grid: Grid) -> Path:
    """Write in-memory per-class scores (5, H, W) as a COG, one band per class."""
    with ScoresWriter(path, grid) as writer:
        writer.write(0, scores)
    return Path(path)


THUMBNAIL_SIDE = 256  # px: the longest side of an item's thumbnail


def write_thumbnail(path: PathLike, classes: np.ndarray, window: tuple[int, int, int, int] | None = None) -> Path:
    """A small PNG of the classes in their palette over the data window (``window`` as for
    :func:`write_quicklook`), missing pixels transparent: the picture catalogues and browsers show for an item
    (at most :data:`THUMBNAIL_SIDE` px a side; an 8-bit palette image, a few kB)."""
    from PIL import Image

    r0, r1, c0, c1 = window or data_window(classes)
    step = max(1, int(np.ceil(max(r1 - r0, c1 - c0) / THUMBNAIL_SIDE)))
    image = Image.fromarray(np.ascontiguousarray(classes[r0:r1:step, c0:c1:step]), mode="P")
    colours = [0] * 768
    for c in CLASSES:
        colours[3 * c.value : 3 * c.value + 3] = c.rgb
    image.putpalette(colours)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", optimize=True, transparency=0)  # class 0 (missing) is transparent
    return Path(path)


def write_raster_blocks(path: PathLike, grid: Grid, read, dtype: str, nodata, descriptions, block: int = 2048,
                        resampling: str = "average") -> Path:
    """A multi-band COG computed block by block: ``read(((r0, r1), (c0, c1)))`` gives each window's (bands, rows,
    cols) values, so no more than one block is held (a lazy composite computes as it is written)."""
    import rasterio
    from rasterio.windows import Window

    strips = Path(temp_beside(Path(path).with_name(Path(path).name + ".blocks")))
    try:
        profile = {"driver": "GTiff", "height": grid.height, "width": grid.width, "count": len(descriptions),
                   "dtype": dtype, "transform": grid.transform, "tiled": True, "blockxsize": 512,
                   "blockysize": 512, "compress": "deflate", "zlevel": 1, "nodata": nodata, "BIGTIFF": "IF_SAFER",
                   **({"crs": grid.crs} if grid.crs is not None else {})}
        with rasterio.open(strips, "w", **profile) as dst:
            for i, description in enumerate(descriptions, start=1):
                dst.set_band_description(i, description)
            for r0 in range(0, grid.height, block):
                for c0 in range(0, grid.width, block):
                    r1, c1 = min(r0 + block, grid.height), min(c0 + block, grid.width)
                    dst.write(read(((r0, r1), (c0, c1))), window=Window(c0, r0, c1 - c0, r1 - r0))
        with cache_env(256), rasterio.open(strips) as src:
            _translate(src, path, resampling=resampling)
    finally:
        strips.unlink(missing_ok=True)
    return Path(path)


def class_image(classes: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """RGB rendering of a class map (values 0..4), optionally shrunk by striding."""
    lut = np.zeros((256, 3), np.uint8)
    for c in CLASSES:
        lut[c.value] = c.rgb
    if size is not None:
        sy = max(1, classes.shape[0] // size[0])
        sx = max(1, classes.shape[1] // size[1])
        classes = classes[::sy, ::sx][: size[0], : size[1]]
    return lut[classes]


QUICKLOOK_SIDE = 1024  # longest side of each panel (px)
QUICKLOOK_MIN_SIDE = 256  # small inputs are enlarged to this, so the legend fits and pixels can be seen


def write_quicklook(path: PathLike, classes: np.ndarray, preview: np.ndarray | None, title: str = "",
                    predicts: tuple[str, ...] | None = None, window: tuple[int, int, int, int] | None = None) -> Path:
    """PNG: true colour beside the class map, with a legend of the five classes.

    Both panels show ``window`` (row0, row1, col0, col1 of the map; default: the
    extent of the data plus a margin, :func:`~kappamask_core.foundation.classes.data_window`),
    so a product whose data is a sliver of its tile is not lost in black;
    ``preview`` is the true colour of that window at any size. Classes outside
    ``predicts`` (the model's possible outputs) are marked in the legend.
    """
    from PIL import Image, ImageDraw

    r0, r1, c0, c1 = window or data_window(classes)
    step = max(1, int(np.ceil(max(r1 - r0, c1 - c0) / QUICKLOOK_SIDE)))
    panel = Image.fromarray(class_image(classes[r0:r1:step, c0:c1:step]))
    scale = max(1.0, QUICKLOOK_MIN_SIDE / max(panel.size))
    size = (round(panel.size[0] * scale), round(panel.size[1] * scale))
    panels = [panel.resize(size, Image.Resampling.NEAREST)]
    if preview is not None:
        panels.insert(0, Image.fromarray(np.ascontiguousarray(preview)).resize(size, Image.Resampling.BILINEAR))
    labels = []
    for c in CLASSES:
        absent = predicts is not None and c.name not in predicts and c.value != 0
        labels.append((c, f"{c.value} {c.title}" + ("  (not predicted by this model)" if absent else ""), absent))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_width = max([probe.textlength(title)] + [30 + probe.textlength(text) for _, text, _ in labels]) + 12
    gap, legend_h = 8, 28 + 20 * len(CLASSES)
    w, h = size
    canvas = Image.new("RGB", (max(len(panels) * w + (len(panels) - 1) * gap, int(text_width)), h + legend_h),
                       (32, 32, 32))
    for i, image in enumerate(panels):
        canvas.paste(image, (i * (w + gap), 0))
    draw = ImageDraw.Draw(canvas)
    y = h + 6
    if title:
        draw.text((6, y), title, fill=(230, 230, 230))
    for c, text, absent in labels:
        y += 20
        draw.rectangle([6, y, 22, y + 14], fill=c.rgb, outline=(200, 200, 200))
        draw.text((30, y + 1), text, fill=(150, 150, 150) if absent else (230, 230, 230))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(path)
