"""The reference outputs of the openEO benchmark scenarios: each published process on its example area, executed here.

    python benchmarks/openeo_reference.py PUBLISHED [--process ID ...]

PUBLISHED is what ``kappamask openeo build OUT --base-url ...`` wrote. For each process, its scenario
(``algorithm_catalog/<organization>/<process>/benchmark_scenarios/<process>.json``) is run through the tests'
local backend (tests/helpers/openeo_backend.py: openeo-pg-parser-networkx, openeo-processes-dask, and apply_neighborhood,
run_udf and load_collection as Copernicus Data Space runs them) on the real products behind the example areas
(``../shared/data``: T33UUU on 2017-02-16 for L1C, T56LMM on 2019-02-20 for L2A), and its results are written the
way the catalogue downloads a job's results (``download_results(include_stac_metadata=True)``): the GeoTIFF of
the date (float32, as a GTiff batch job writes it) and ``job-results.json``, into the process's ``reference/``
folder, which the scenario's reference data name. Serve them with the rest. Needs the test extra.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


def job_results(outdir: Path, spec: dict, scenario: dict) -> list[Path]:
    """Run the scenario's call of ``spec`` (a process, as JSON) and write its results into ``outdir`` as the
    catalogue downloads them: one GeoTIFF per date with data, named as a GTiff batch job names it, and the
    results' metadata (a STAC collection whose ``derived_from`` links name the products the job read)."""
    import rasterio
    from affine import Affine
    from helpers import openeo_backend as backend

    from kappamask_core.io.files import atomic_files

    (node,) = scenario["process_graph"].values()
    collection = next(n for n in spec["process_graph"].values()
                      if n["process_id"] == "load_collection")["arguments"]["id"]
    result = backend.crop_to_extent(backend.execute_spec(spec, **node["arguments"]), collection)
    x, y = result["x"].values, result["y"].values
    res = float(x[1] - x[0])
    transform = Affine(res, 0, float(x[0]) - res / 2, 0, -res, float(y[0]) + res / 2)
    crs = backend.scene(collection).attrs["crs"]
    outdir = Path(outdir)
    dates, files = [], {}
    if "t" not in result.dims:  # a composite: one file without a date, over the dates the call asked for
        dates = [str(d)[:10] for d in node["arguments"]["temporal_extent"]]
        files[outdir / "openEO.tif"] = result.transpose("bands", "y", "x").values.astype(np.float32)
    for i, when in enumerate(result["t"].values if "t" in result.dims else []):
        values = result.isel(t=i).values.astype(np.float32)
        if not np.isfinite(values).any() or not (np.nan_to_num(values) != 0).any():
            continue  # a date without data: no file, as a batch job writes none
        date = str(when)[:10]
        dates.append(date)
        files[outdir / f"openEO_{date}Z.tif"] = values
    metadata = {
        "type": "Collection", "stac_version": "1.0.0", "id": f"{node['process_id']}-reference",
        "description": f"The results of {node['process_id']} on its example area, made by benchmarks/"
                       "openeo_reference.py (the project's emulation of the backend)",
        "license": "proprietary",
        "extent": {"spatial": {"bbox": [[node["arguments"]["spatial_extent"][k] for k in
                                         ("west", "south", "east", "north")]]},
                   "temporal": {"interval": [[f"{dates[0]}T00:00:00Z", f"{dates[-1]}T00:00:00Z"]]}},
        "links": [{"rel": "derived_from", "href": product} for product in backend.products_read(collection, dates)],
        "assets": {path.name: {"href": f"./{path.name}", "type": "image/tiff; application=geotiff",
                               "roles": ["data"], "bands": [{"name": str(b)} for b in result["bands"].values]}
                   for path in files},
    }
    finals = [*files, outdir / "job-results.json"]
    with atomic_files(*finals) as temps:
        for temp, (path, values) in zip(temps, files.items()):
            with rasterio.open(temp, "w", driver="GTiff", height=values.shape[1], width=values.shape[2],
                               count=values.shape[0], dtype="float32", crs=crs, transform=transform,
                               compress="deflate") as ds:
                ds.write(values)
                for band, name in enumerate(result["bands"].values, 1):
                    ds.set_band_description(band, str(name))
        Path(temps[-1]).write_text(json.dumps(metadata, indent=2) + "\n")
    return finals


def scenario_folders(published: Path):
    """(process id, process JSON, scenario) of every process in a publication."""
    for path in sorted(Path(published).glob("algorithm_catalog/*/*/benchmark_scenarios/*.json")):
        pid = path.stem
        spec = json.loads((path.parents[1] / "openeo_udp" / f"{pid}.json").read_text())
        (scenario,) = json.loads(path.read_text())
        yield pid, path.parents[1], spec, scenario


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("published", help="the folder kappamask openeo build --base-url wrote")
    parser.add_argument("--process", action="append", help="only these processes (default: all)")
    args = parser.parse_args(argv)
    for pid, folder, spec, scenario in scenario_folders(Path(args.published)):
        if args.process and pid not in args.process:
            continue
        for path in job_results(folder / "reference", spec, scenario):
            print(path)


if __name__ == "__main__":
    main()
