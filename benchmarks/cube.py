"""Lazy cubes on a Dask cluster against one run per date: time, each worker's peak memory, and the agreement.

    python benchmarks/cube.py [--size 5490] [--dates 1 4 16] [--chunk 2048] [--kappamask-v2 [HDF5]] [--v2-dates 1 4]
                              [--skip-default] [--scl FOLDER]

A generated lazy cube: the bundled demo scene's bands (all 13, at 10 m), tiled over ``--size`` x ``--size`` pixels
and shifted a little from date to date, as a dask array that makes each chunk when a task asks for it (nothing is
held before ``compute``). For each number of dates it classifies the cube on a LocalCluster of 2 single-threaded
worker processes (``kappamask_core.classify_cube``, chunks of ``--chunk`` px) and, in this process, one date at a
time from memory (the eager run on the same pixels), and prints both times, their ratio, each worker's peak
resident memory (VmHWM, read in the worker after the run) and whether the maps are equal. ``--kappamask-v2``
imports KappaMask v2 from the golden fixture (RANDOM weights: the network's cost, not its skill) and measures it
with ``--v2-dates``, with its faithful bf16 variant where one was made (``kappamask models quantize``).

``--scl FOLDER``: the usable mask from the Sen2Cor scene classification of an L2A product (classes 3, 8, 9, 10
masked and dilated by 2 pixels at 20 m, as openEO's mask_scl_dilation does) beside the bundled model's usable mask
(not KappaMask's: its weights cannot be reached here; give a KappaMask card with ``--scl-model``), on the
product's data: the share of pixels where they disagree, by SCL class, and a PNG of both into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
GOLDEN_V2 = ROOT.parent / "shared" / "data" / "kappamask_keras_golden" / "kappamask_v2_l1c_random.hdf5"
T56LMM = ROOT.parent / "shared" / "data" / "s2_l2a_safe_T56LMM"
BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")


def demo_bands() -> np.ndarray:
    """The demo scene's 13 bands at 10 m (nearest), uint16 DN: the tile the generated cube repeats."""
    from kappamask_core.chain.resample import nearest_rows
    from kappamask_core.io import DEMO_DATA, open_product

    product = open_product(DEMO_DATA)
    h, w = product.grid.shape
    return np.stack([nearest_rows(product.bands[b].read(), product.bands[b].factor, 0, h, w) for b in BANDS])


def _chunk_of(tile: np.ndarray, date: int, block_info=None) -> np.ndarray:
    (_, _), (_, _), (r0, r1), (c0, c1) = block_info[None]["array-location"]
    h, w = tile.shape[1:]
    rows = (np.arange(r0, r1) + 37 * date) % h
    cols = (np.arange(c0, c1) + 53 * date) % w
    return tile[:, rows][:, :, cols][None]


def generated_cube(size: int, dates: int, chunk: int):
    """A lazy (time, bands, y, x) cube of ``dates`` shifted copies of the demo scene tiled to ``size`` px."""
    import dask
    import dask.array as dsa
    import xarray as xr

    tile = dask.delayed(demo_bands, pure=True)()  # made once per worker that needs it, not shipped in the graph
    parts = [dsa.map_blocks(_chunk_of, tile, t, dtype=np.uint16, chunks=((1,), (len(BANDS),),
                                                                        _sizes(size, chunk), _sizes(size, chunk)))
             for t in range(dates)]
    data = dsa.concatenate(parts, axis=0)
    return xr.DataArray(data, dims=("time", "bands", "y", "x"),
                        coords={"time": np.datetime64("2017-02-16") + np.arange(dates).astype("timedelta64[D]"),
                                "bands": list(BANDS), "y": 5.9e6 - 10 * np.arange(size) - 5,
                                "x": 3.0e5 + 10 * np.arange(size) + 5}, attrs={"crs": "EPSG:32633"})


def _sizes(size: int, chunk: int) -> tuple[int, ...]:
    return tuple(min(chunk, size - s) for s in range(0, size, chunk))


def _worker_peak() -> float:
    from peak import peak_mib

    return peak_mib()


def measure(label: str, model: str, size: int, dates_list, chunk: int) -> None:
    from distributed import Client, LocalCluster

    import kappamask_core as km

    print(f"\n## {label}: {size} x {size} px, chunks of {chunk} px, 2 workers x 1 thread")
    print("| dates | cluster (s) | one run per date (s) | ratio | worker peaks (MiB) | equal |")
    print("|---:|---:|---:|---:|---|---|")
    for dates in dates_list:
        cube = generated_cube(size, dates, chunk)
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                          memory_limit=None) as cluster, Client(cluster) as client:
            client.run(lambda: sys.path.insert(0, str(HERE)))
            started = time.perf_counter()
            lazy = km.classify_cube(cube, model=model, level="L1C").compute()
            cluster_s = time.perf_counter() - started
            peaks = sorted(client.run(_worker_peak).values())
        started = time.perf_counter()
        eager = np.stack([km.classify_cube(cube.isel(time=[t]).compute(), model=model, level="L1C").values[0]
                          for t in range(dates)])
        eager_s = time.perf_counter() - started
        equal = bool(np.array_equal(lazy.values, eager))
        print(f"| {dates} | {cluster_s:.1f} | {eager_s:.1f} | {cluster_s / eager_s:.2f} x | "
              f"{', '.join(f'{p:.0f}' for p in peaks)} | {equal} |", flush=True)


def scl_beside_kappamask(folder: Path, out: Path, model: str = "default") -> None:
    """Where the SCL usable mask (3, 8, 9, 10 masked, dilated) and the model's usable mask disagree."""
    from PIL import Image

    import kappamask_core as km
    from kappamask_core.chain.buffers import usable_mask, within_disk
    from kappamask_core.chain.resample import nearest_rows
    from kappamask_core.io import open_product

    product = open_product(folder)
    h, w = product.grid.shape
    scl = nearest_rows(product.bands["SCL"].read(), product.bands["SCL"].factor, 0, h, w)
    masked = np.isin(scl, (3, 8, 9, 10))
    scl_usable = ~within_disk(masked, 2 * 2.0) & (scl != 0)  # 2 px at 20 m = 4 px at 10 m
    result = km.run(folder, model)

    ours = usable_mask(result.classes) == 1
    valid = (scl != 0) & (result.classes != 0)
    print(f"\n## SCL (3, 8, 9, 10 masked, dilated) beside the usable mask of {result.card.id} ({result.card.name}) "
          f"on {product.id}")
    print(f"usable by SCL {scl_usable[valid].mean():.1%}, by {result.card.id} {ours[valid].mean():.1%}, "
          f"disagree on {(scl_usable != ours)[valid].mean():.1%} of {valid.sum()} pixels")
    print(f"| SCL class | pixels | SCL usable | {result.card.id} usable | disagree |")
    print("|---:|---:|---:|---:|---:|")
    for value in np.unique(scl[valid]):
        here = valid & (scl == value)
        print(f"| {value} | {here.sum()} | {scl_usable[here].mean():.1%} | {ours[here].mean():.1%} | "
              f"{(scl_usable != ours)[here].mean():.1%} |")
    out.mkdir(parents=True, exist_ok=True)
    picture = np.zeros((h, w, 3), np.uint8)
    picture[scl_usable & ours] = (80, 170, 80)
    picture[scl_usable & ~ours] = (230, 120, 40)  # SCL keeps, the model masks
    picture[~scl_usable & ours] = (60, 110, 230)  # the model keeps, SCL masks
    Image.fromarray(picture).save(out / "scl_beside_kappamask.png")
    print(f"picture: {out / 'scl_beside_kappamask.png'} (green: both usable; orange: SCL only; blue: the model only)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=5490)
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--dates", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--kappamask-v2", nargs="?", const=str(GOLDEN_V2), metavar="HDF5")
    parser.add_argument("--v2-dates", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--skip-default", action="store_true")
    parser.add_argument("--scl", nargs="?", const=str(T56LMM), metavar="FOLDER")
    parser.add_argument("--scl-model", default="default", help="the model whose usable mask --scl compares")
    parser.add_argument("--out", default="cube-benchmark", help="folder for the pictures")
    args = parser.parse_args(argv)
    if not args.skip_default:
        measure("the bundled model (ukis-csmask-6b-l1c)", "default", args.size, args.dates, args.chunk)
    if args.kappamask_v2:
        import tempfile

        from kappamask_core.models import import_keras

        with tempfile.TemporaryDirectory() as folder:
            _, card = import_keras(args.kappamask_v2, outdir=folder, trained=False)
            measure("KappaMask v2's network (golden file, RANDOM weights)", str(card), args.size, args.v2_dates,
                    args.chunk)
    if args.scl:
        scl_beside_kappamask(Path(args.scl), Path(args.out), args.scl_model)


if __name__ == "__main__":
    main()
