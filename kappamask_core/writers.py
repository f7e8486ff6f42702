"""Writers: the class map as a Cloud-Optimized GeoTIFF and a quicklook PNG.

Every file is written under a temporary name in the target folder and moved
into place only when complete, so an interrupted run never leaves a partial
file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np

from .classes import CLASSES, ENCODINGS, encode, palette
from .errors import OutputError
from .gdal import cache_env
from .grid import Grid


def _temp_beside(final: Path) -> str:
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".part")
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; outputs are ordinary files
    except OSError as exc:
        raise OutputError(f"cannot write to {final.parent}: {exc}") from None
    return tmp


@contextlib.contextmanager
def atomic_files(*finals: str | os.PathLike):
    """Yield a temporary path beside each final path; when the block succeeds, rename them all into place.

    If the block fails, or a rename fails, none of the files is left under its
    final name, and no temporary file is left either.
    """
    finals = [Path(f) for f in finals]
    temps: list[str] = []
    try:
        for final in finals:
            temps.append(_temp_beside(final))
        yield temps
        renamed = []
        try:
            for tmp, final in zip(temps, finals):
                os.replace(tmp, final)
                renamed.append(final)
        except OSError as exc:
            for final in renamed:
                final.unlink(missing_ok=True)
            raise OutputError(f"cannot move {final.name} into place in {final.parent}: {exc}") from None
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike):
    """Yield a temporary path beside ``final``; rename it into place on success."""
    with atomic_files(final) as (tmp,):
        yield tmp


def _write_cog(path, data: np.ndarray, grid: Grid, *, nodata=None, colormap=None, resampling="nearest",
               tags=None, band_tags=None) -> Path:
    """Write a (bands, height, width) array as a COG (deflate, 512 px blocks, overviews)."""
    from rasterio.io import MemoryFile
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    profile = {
        "driver": "GTiff", "height": grid.height, "width": grid.width, "count": data.shape[0],
        "dtype": data.dtype.name, "transform": grid.transform, "nodata": nodata,
    }
    if grid.crs is not None:
        profile["crs"] = grid.crs
    out_profile = cog_profiles.get("deflate")
    out_profile.update({"blockxsize": 512, "blockysize": 512, "NUM_THREADS": "ALL_CPUS"})  # parallel compression
    with atomic_path(path) as tmp, cache_env(256, GDAL_TIFF_INTERNAL_MASK=True):
        with MemoryFile() as memfile:
            with memfile.open(**profile) as mem:
                if colormap:  # before the pixels: GDAL fixes the photometric tag at the first write
                    mem.write_colormap(1, colormap)
                mem.write(data)
                mem.update_tags(**(tags or {}))
                for i, btags in enumerate(band_tags or [], start=1):
                    mem.update_tags(i, **btags)
            with memfile.open() as src:
                cog_translate(src, tmp, out_profile, overview_resampling=resampling, nodata=nodata, quiet=True,
                              in_memory=False, use_cog_driver=False)
    return Path(path)


def write_cog(path, classes: np.ndarray, grid: Grid, encoding: str = "kappamask", tags: dict | None = None) -> Path:
    """Write a uint8 class map as a COG with the class palette and mode overviews (``tags``: e.g. the model)."""
    if encoding not in ENCODINGS:
        raise OutputError(f"unknown encoding {encoding!r}; choose one of {sorted(ENCODINGS)}")
    # The paper's encoding marks missing (0) as nodata; km_predict files carry no nodata tag.
    nodata = 0 if encoding == "kappamask" else None
    codes = ENCODINGS[encoding]
    return _write_cog(
        path, encode(classes, encoding)[None], grid, nodata=nodata, colormap=palette(encoding), resampling="mode",
        tags={"encoding": encoding, **{f"class_{codes[c.value]}": c.name for c in CLASSES}, **(tags or {})},
    )


def write_scores(path, scores: np.ndarray, grid: Grid) -> Path:
    """Write the per-class scores (5, H, W) float32 as a COG, one band per class."""
    return _write_cog(path, scores.astype(np.float32), grid, resampling="average",
                      band_tags=[{"class": c.name} for c in CLASSES])


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


def write_quicklook(path, classes: np.ndarray, preview: np.ndarray | None, title: str = "",
                    predicts: tuple[str, ...] | None = None) -> Path:
    """PNG: true colour beside the class map, with a legend of the five classes.

    Classes outside ``predicts`` (the model's possible outputs) are marked in the legend.
    """
    from PIL import Image, ImageDraw

    max_side = 1024
    step = max(1, int(np.ceil(max(classes.shape) / max_side)))
    class_rgb = class_image(classes[::step, ::step])
    h, w = class_rgb.shape[:2]
    panels = [class_rgb]
    if preview is not None:
        panels.insert(0, np.asarray(Image.fromarray(preview).resize((w, h), Image.BILINEAR)))
    gap, legend_h = 8, 28 + 20 * len(CLASSES)
    canvas = Image.new("RGB", (len(panels) * w + (len(panels) - 1) * gap, h + legend_h), (32, 32, 32))
    for i, panel in enumerate(panels):
        canvas.paste(Image.fromarray(panel), (i * (w + gap), 0))
    draw = ImageDraw.Draw(canvas)
    y = h + 6
    if title:
        draw.text((6, y), title, fill=(230, 230, 230))
    for c in CLASSES:
        y += 20
        draw.rectangle([6, y, 22, y + 14], fill=c.rgb, outline=(200, 200, 200))
        absent = predicts is not None and c.name not in predicts and c.value != 0
        label = f"{c.value} {c.title}" + ("  (not predicted by this model)" if absent else "")
        draw.text((30, y + 1), label, fill=(150, 150, 150) if absent else (230, 230, 230))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(path)
