"""The peers, run the way their users run them on a SAFE product: from the band files to a 10 m GeoTIFF.

Each function reads the product's bands with rasterio, resamples them to the peer's working
resolution, runs the peer, brings the mask back onto the 10 m grid and writes a GeoTIFF, and
returns the mask and the seconds that took. Reading with ``out_shape`` lets GDAL use the JPEG 2000
reduced resolution levels, exactly as it would for any user who resamples while reading.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import numpy as np

CSMASK_BANDS = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B11": "swir16", "B12": "swir22"}
S2CLOUDLESS_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")


def band_files(safe: Path) -> dict[str, Path]:
    files = {}
    for path in sorted(Path(safe).glob("GRANULE/*/IMG_DATA/*.jp2")):
        name = path.stem.rsplit("_", 1)[-1]
        files[name] = path
    return files


def _read(files, names, shape):
    """Bands as reflectance (DN / 10000; the generated product is from before baseline 04.00) on ``shape``."""
    import rasterio
    from rasterio.enums import Resampling

    out = np.empty((*shape, len(names)), np.float32)
    for i, name in enumerate(names):
        with rasterio.open(files[name]) as ds:
            out[..., i] = ds.read(1, out_shape=shape, resampling=Resampling.average) / 10000
    return out


def _write(mask10: np.ndarray, reference: Path, path: Path) -> None:
    import rasterio

    with rasterio.open(reference) as ref:
        profile = {"driver": "GTiff", "height": ref.height, "width": ref.width, "count": 1, "dtype": "uint8",
                   "crs": ref.crs, "transform": ref.transform, "tiled": True, "compress": "deflate"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(mask10[None])


def csmask_pipeline(safe: Path, out: Path, level: str = "l1c") -> tuple[np.ndarray, float]:
    """ukis-csmask's CSmask at 30 m: six bands averaged to 30 m, CSmask, the mask repeated back to 10 m."""
    from ukis_csmask.mask import CSmask

    start = time.perf_counter()
    files = band_files(safe)
    import rasterio

    with rasterio.open(files["B02"]) as ref:
        height, width = ref.shape
    image = _read(files, list(CSMASK_BANDS), (height // 3, width // 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        csm = CSmask(image, band_order=list(CSMASK_BANDS.values()), product_level=level,
                     intra_op_num_threads=os.cpu_count())
    mask = csm.csm[..., 0]
    mask10 = np.repeat(np.repeat(mask, 3, axis=0), 3, axis=1)[:height, :width].astype(np.uint8)
    _write(mask10, files["B02"], out)
    return mask10, time.perf_counter() - start


def s2cloudless_pipeline(safe: Path, out: Path, resolution: int = 60) -> tuple[np.ndarray, float]:
    """s2cloudless with all 13 bands at ``resolution`` and the post-processing of its published examples
    (threshold 0.4, averaging over 4 px, dilation 2 px), the mask repeated back to 10 m."""
    from s2cloudless import S2PixelCloudDetector

    start = time.perf_counter()
    files = band_files(safe)
    import rasterio

    with rasterio.open(files["B02"]) as ref:
        height, width = ref.shape
    factor = resolution // 10
    data = _read(files, S2CLOUDLESS_BANDS, (height // factor, width // factor))[None]
    detector = S2PixelCloudDetector(threshold=0.4, average_over=4, dilation_size=2, all_bands=True)
    mask = detector.get_cloud_masks(data)[0].astype(np.uint8)
    mask10 = np.repeat(np.repeat(mask, factor, axis=0), factor, axis=1)[:height, :width]
    _write(mask10, files["B02"], out)
    return mask10, time.perf_counter() - start


def s2cloudless_10m_rate(safe: Path, size: int) -> float:
    """Seconds per megapixel of s2cloudless at 10 m (as the KappaMask paper ran it), on a size x size crop
    read at 10 m; the full product is extrapolated from it."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.windows import Window
    from s2cloudless import S2PixelCloudDetector

    start = time.perf_counter()
    files = band_files(safe)
    data = np.empty((1, size, size, len(S2CLOUDLESS_BANDS)), np.float32)
    for i, name in enumerate(S2CLOUDLESS_BANDS):
        with rasterio.open(files[name]) as ds:
            f = round(ds.res[0] / 10)
            window = Window(0, 0, -(-size // f), -(-size // f))
            data[0, ..., i] = ds.read(1, window=window, out_shape=(size, size),
                                      resampling=Resampling.bilinear) / 10000
    detector = S2PixelCloudDetector(threshold=0.4, average_over=4, dilation_size=2, all_bands=True)
    detector.get_cloud_masks(data)
    return (time.perf_counter() - start) / (size * size / 1e6)
