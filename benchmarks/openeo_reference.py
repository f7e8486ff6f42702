"""The reference output of the openEO benchmark scenario: kappamask_l1c on its example area, executed here.

    python benchmarks/openeo_reference.py OUTDIR [--processes DIR]

Runs the published process (``kappamask openeo build --base-url ...`` output in --processes, default
process_graphs/) with its example extents through the tests' local backend (tests/openeo_backend.py:
openeo-pg-parser-networkx, openeo-processes-dask, and apply_neighborhood, run_udf and load_collection as
Copernicus Data Space runs them), on the bundled demo scene's product (``../shared/data``, T33UUU,
2017-02-16). Writes OUTDIR/reference/openEO_2017-02-16Z.tif (float32, as a GTiff batch job writes the date)
and OUTDIR/reference/preview.png; serve both under the base URL's reference/ folder. Needs the test extra.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


def reference(outdir: Path, processes: Path) -> list[Path]:
    import rasterio
    from affine import Affine

    import json

    import openeo_backend as backend
    from kappamask_core.models.resolve import resolve_card
    from kappamask_core.chain.pipeline import RGB_BANDS
    from kappamask_core.io.files import atomic_path
    from kappamask_core.io.writers import write_quicklook
    from kappamask_udf.openeo_build import EXAMPLE_BBOX, EXAMPLE_DATES, REFERENCE_FILE

    result = backend.crop_to_extent(backend.execute("kappamask_l1c", pg_dir=processes), "SENTINEL2_L1C")
    classes = result.isel(t=0, bands=0)
    x, y = classes["x"].values, classes["y"].values
    res = float(x[1] - x[0])
    transform = Affine(res, 0, float(x[0]) - res / 2, 0, -res, float(y[0]) + res / 2)
    crs = backend.scene("SENTINEL2_L1C").attrs["crs"]
    folder = Path(outdir) / "reference"
    folder.mkdir(parents=True, exist_ok=True)
    tif = folder / REFERENCE_FILE
    with atomic_path(tif) as tmp:
        with rasterio.open(tmp, "w", driver="GTiff", height=classes.shape[0], width=classes.shape[1], count=1,
                           dtype="float32", crs=crs, transform=transform, compress="deflate") as ds:
            ds.write(classes.values.astype(np.float32)[None])
            ds.set_band_description(1, str(result["bands"].values[0]))
    rgb = backend.crop_to_extent(backend.load_collection("SENTINEL2_L1C", EXAMPLE_BBOX, EXAMPLE_DATES["L1C"],
                                                         list(RGB_BANDS)), "SENTINEL2_L1C").isel(t=0)
    preview = np.clip(np.nan_to_num(rgb.transpose("y", "x", "bands").values) / 10000 / 0.3 * 255, 0, 255)
    spec = json.loads((processes / "kappamask_l1c.json").read_text())
    card = resolve_card(spec["parameters"][-1]["default"]["model"], "L1C")
    png = write_quicklook(folder / "preview.png", classes.values.astype(np.uint8), preview.astype(np.uint8),
                          f"kappamask_l1c on its example area (T33UUU, 2017-02-16)  model: {card.name}", card.predicts)
    return [tif, png]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir")
    parser.add_argument("--processes", default=str(ROOT / "process_graphs"),
                        help="folder with kappamask_l1c.json (default: %(default)s)")
    args = parser.parse_args(argv)
    for path in reference(Path(args.outdir), Path(args.processes)):
        print(path)


if __name__ == "__main__":
    main()
