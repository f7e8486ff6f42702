"""Cloud statistics per area at scale: many field polygons over full-size class maps.

    python benchmarks/stats.py [--fields 10000] [--dates 1 20] [--size 10980] [--compare 1000]

Generates a full-size class map (``--size`` px at 10 m, blobs of the five classes, as a COG this package writes)
and ``--fields`` field polygons of 0.5 to 50 ha (irregular quadrilaterals, some with a hole, spread over the map),
then times ``kappamask_core.faces.stats.area_statistics`` over one map and over ``--dates`` copies of it (the
maps are read window by window, only where the fields lie), with the process's peak resident memory. The plain
way a user writes it, one rasterio ``mask`` per polygon (pixel centres, not fractions), is timed on the first
``--compare`` fields, and, where it is installed, rasterstats' ``zonal_stats`` with categorical counts (pixel
centres too); the shares they give differ from the exact ones at the fields' edges, which is printed as well.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
CRS = "EPSG:32633"
X0, Y0 = 300000.0, 5900040.0


def class_map(path: Path, size: int, seed: int = 0) -> Path:
    """A COG of blobs of classes 1 to 4 (64 px blocks, smoothed edges), no data in one corner."""
    from affine import Affine

    from kappamask_core.foundation.grid import Grid
    from kappamask_core.io.writers import write_cog

    rng = np.random.default_rng(seed)
    blocks = rng.choice([1, 1, 1, 2, 3, 4], size=(-(-size // 64), -(-size // 64))).astype(np.uint8)
    values = np.kron(blocks, np.ones((64, 64), np.uint8))[:size, :size]
    values[: size // 10, : size // 10] = 0
    write_cog(path, values, Grid(size, size, Affine(10, 0, X0, 0, -10, Y0), CRS))
    return path


def fields(count: int, size: int, seed: int = 1) -> dict:
    """Field polygons of 0.5 to 50 ha inside the map: quadrilaterals with jittered corners, one in ten with a hole."""
    import shapely

    rng = np.random.default_rng(seed)
    areas = rng.uniform(0.5, 50, count) * 1e4
    out = {}
    for i, area in enumerate(areas):
        side = np.sqrt(area)
        cx = X0 + rng.uniform(side, size * 10 - side)
        cy = Y0 - rng.uniform(side, size * 10 - side)
        angle = rng.uniform(0, np.pi)
        corners = []
        for k in range(4):
            a = angle + k * np.pi / 2 + rng.uniform(-0.2, 0.2)
            r = side / np.sqrt(2) * rng.uniform(0.85, 1.15)
            corners.append((cx + r * np.cos(a), cy + r * np.sin(a)))
        polygon = shapely.Polygon(corners)
        if i % 10 == 0:
            polygon = polygon.difference(shapely.Point(cx, cy).buffer(side / 6))
        out[f"field_{i}"] = polygon
    return out


def peak_mib() -> float:
    from peak import peak_mib as peak

    return peak()


def exact(maps, areas) -> tuple[float, object]:
    from kappamask_core.faces.stats import area_statistics

    started = time.perf_counter()
    table = area_statistics(maps, areas, crs=CRS)
    return time.perf_counter() - started, table


def mask_loop(path: Path, areas: dict) -> tuple[float, np.ndarray]:
    """One rasterio.mask per polygon: the clear share of each field by pixel centres."""
    import rasterio
    from rasterio.mask import mask
    from shapely.geometry import mapping

    started = time.perf_counter()
    shares = []
    with rasterio.open(path) as ds:
        for geom in areas.values():
            values, _ = mask(ds, [mapping(geom)], crop=True, filled=False)
            data = values.compressed()
            valid = data[data > 0]
            shares.append((valid == 1).mean() if valid.size else np.nan)
    return time.perf_counter() - started, np.array(shares)


def rasterstats_counts(path: Path, areas: dict) -> tuple[float, np.ndarray] | None:
    try:
        from rasterstats import zonal_stats
    except ImportError:
        return None
    from shapely.geometry import mapping

    started = time.perf_counter()
    stats = zonal_stats([mapping(g) for g in areas.values()], str(path), categorical=True, nodata=0)
    seconds = time.perf_counter() - started
    shares = [s.get(1, 0) / max(sum(v for k, v in s.items() if k != 0), 1) for s in stats]
    return seconds, np.array(shares)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fields", type=int, default=10000)
    parser.add_argument("--dates", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--compare", type=int, default=1000, help="fields for the rasterio and rasterstats loops")
    parser.add_argument("--make-map", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.make_map:
        class_map(Path(args.make_map), args.size)
        return
    with tempfile.TemporaryDirectory(prefix="kappamask-stats-") as work:
        work = Path(work)
        started = time.perf_counter()
        path = work / "S2A_MSIL2A_20240501T101031_N0510_R022_T33UUU_20240501T120000_kappamask.tif"
        # made in a child process, so that this process's peak is the statistics' own
        subprocess.run([sys.executable, __file__, "--make-map", str(path), "--size", str(args.size)], check=True)
        areas = fields(args.fields, args.size)
        print(f"a {args.size} px class map (COG) and {args.fields} fields of 0.5 to 50 ha made in "
              f"{time.perf_counter() - started:.1f} s; peak so far {peak_mib():.0f} MiB")
        print("| dates | fields | exact shares (s) | per field and date (ms) | peak resident (MiB) |")
        print("|---:|---:|---:|---:|---:|")
        table = None
        for dates in args.dates:
            seconds, result = exact([path] * dates, areas)
            table = table if table is not None else result
            print(f"| {dates} | {args.fields} | {seconds:.1f} | {1000 * seconds / dates / args.fields:.2f} | "
                  f"{peak_mib():.0f} |", flush=True)
        some = dict(list(areas.items())[: args.compare])
        exact_s, exact_table = exact([path], some)
        loop_s, loop_clear = mask_loop(path, some)
        exact_clear = exact_table["clear"].to_numpy(float)
        print(f"\n{len(some)} fields, one date: exact shares {exact_s:.2f} s; one rasterio.mask per polygon "
              f"{loop_s:.2f} s ({loop_s / exact_s:.1f} x); the clear share by pixel centres differs from the exact one "
              f"by {np.nanmean(np.abs(loop_clear - exact_clear)) * 100:.2f} points on average, "
              f"{np.nanmax(np.abs(loop_clear - exact_clear)) * 100:.1f} at most")
        counted = rasterstats_counts(path, some)
        if counted is None:
            print("rasterstats is not installed: pip install rasterstats to compare with it")
        else:
            rs_s, rs_clear = counted
            print(f"rasterstats zonal_stats (categorical): {rs_s:.2f} s ({rs_s / exact_s:.1f} x); differs by "
                  f"{np.nanmean(np.abs(rs_clear - exact_clear)) * 100:.2f} points on average")


if __name__ == "__main__":
    main()
