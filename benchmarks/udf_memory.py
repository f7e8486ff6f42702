"""Memory and time of the openEO UDF on one chunk, for long time series: what to give executor-memory and
python-memory on Copernicus Data Space.

    python benchmarks/udf_memory.py [--dates 1 10 50] [--kappamask-v2 [HDF5]] [--kappamask-v1 [HDF5]] [--v2-card CARD]
                                    [--precision fp32 auto] [--skip-default]

One chunk is what apply_neighborhood hands the UDF with the process graphs: a 2048 px core plus 768 px of context
on each side (3584 x 3584 px), all 13 L1C bands as float32 DN with float32 cell-centre coordinates (the bundled
demo scene mirrored out to the chunk's size, repeated over the dates). For each number of dates it runs the UDF in a child process twice: the whole time series in one call
(apply_neighborhood without a t size), and one date per call (a t size of P1D, what the process graphs use).
The worker's first call (the model resolved and its session made, once per Python worker) is timed apart from the
calls after it, which reuse the session: its cost is not part of the seconds per date. Each child reports its own
peak resident memory (VmHWM) after building the input and after the UDF, so the input's share and the UDF's (model,
session and working memory) are told apart. With --kappamask-v2 the KappaMask v2 network imported from the golden
fixture (RANDOM weights: the network's real cost, no accuracy implied) is measured as well.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
UDF = ROOT / "udf" / "kappamask_udf.py"
GOLDEN_V2 = ROOT.parent / "shared" / "data" / "kappamask_keras_golden" / "kappamask_v2_l1c_random.hdf5"
GOLDEN_V1 = GOLDEN_V2.with_name("kappamask_v1_l1c_random.hdf5")
sys.path.insert(0, str(ROOT))
from udf.processes import CHUNK as CORE, OVERLAP, TASK_CPUS, WORKER_IMPORTS  # noqa: E402

CHUNK = CORE + 2 * OVERLAP

_CHILD = r"""
import json, sys, time
import importlib
for name in sys.argv[8].split(","):  # what a Copernicus Data Space worker has imported before the UDF runs
    if name:
        importlib.import_module(name)
import numpy as np, xarray as xr
from kappamask_core.io import DEMO_DATA
from kappamask_core.io import open_product
from kappamask_core.chain.resample import nearest_rows

sys.path.insert(0, sys.argv[6])
from peak import peak_address_mib, peak_mib

dates, per_date, model, size = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3], int(sys.argv[4])
product = open_product(DEMO_DATA)
names = sorted(product.bands)
h, w = product.grid.shape
scene = np.stack([nearest_rows(product.bands[n].read(), product.bands[n].factor, 0, h, w) for n in names])
crop = np.pad(scene, ((0, 0), (0, max(0, size - h)), (0, max(0, size - w))), mode="symmetric")[:, :size, :size]
crop = crop.astype(np.float32)
t = product.grid.transform
cube = xr.DataArray(np.repeat(crop[None], dates, axis=0), dims=("t", "bands", "y", "x"),
                    coords={"t": np.arange(dates).astype("datetime64[D]"), "bands": names,
                            "y": (t.f - 10 * (np.arange(size) + 0.5)).astype(np.float32),
                            "x": (t.c + 10 * (np.arange(size) + 0.5)).astype(np.float32)})
input_peak = peak_mib()
namespace = {}
exec(compile(open(sys.argv[5]).read(), "kappamask_udf.py", "exec"), namespace)
context = {"model": model, "precision": sys.argv[7], "threads": THREADS}
first = time.perf_counter()
namespace["apply_datacube"](cube.isel(t=[0]), context)  # model loaded once, as in a reused worker
first_call_s = time.perf_counter() - first
started = time.perf_counter()
if per_date:
    for i in range(dates):
        namespace["apply_datacube"](cube.isel(t=i), context)
else:
    namespace["apply_datacube"](cube, context)
seconds = time.perf_counter() - started
print(json.dumps({"input_mib": cube.nbytes / 2**20, "peak_before_mib": input_peak, "peak_mib": peak_mib(),
                  "address_peak_mib": peak_address_mib(),
                  "seconds_per_date": seconds / dates, "first_call_s": first_call_s}))
"""


def measure(dates: int, per_date: bool, model: str, env: dict, precision: str = "auto") -> dict:
    child = _CHILD.replace("THREADS", str(TASK_CPUS))
    proc = subprocess.run([sys.executable, "-c", child, str(dates), "1" if per_date else "0", model, str(CHUNK),
                           str(UDF), str(HERE), precision, ",".join(WORKER_IMPORTS)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"the UDF failed ({model}, {dates} dates): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(model: str, label: str, dates_list, env: dict, precision: str = "auto") -> None:
    print(f"\n{label}, precision {precision}")
    print("| dates | input | whole series per call: resident peak (UDF's share), address space | one date per call: "
          "resident peak (UDF's share), address space | s per date | first call of the worker |")
    print("|---:|---:|---:|---:|---:|---:|")
    for dates in dates_list:
        whole = measure(dates, False, model, env, precision)
        single = measure(dates, True, model, env, precision)
        print(f"| {dates} | {whole['input_mib']:.0f} MiB | {whole['peak_mib']:.0f} MiB "
              f"(+{whole['peak_mib'] - whole['peak_before_mib']:.0f}), {_mib(whole['address_peak_mib'])} "
              f"| {single['peak_mib']:.0f} MiB (+{single['peak_mib'] - single['peak_before_mib']:.0f}), "
              f"{_mib(single['address_peak_mib'])} | {single['seconds_per_date']:.2f} | {single['first_call_s']:.2f} s |",
              flush=True)


def _mib(value) -> str:
    return "n/a" if value is None else f"{value:.0f} MiB"


def main(argv=None) -> None:
    from kappamask_core.models.variants import PRECISIONS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dates", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--kappamask-v2", nargs="?", const=str(GOLDEN_V2), metavar="HDF5",
                        help="also measure KappaMask v2 imported from this official-format Keras file (default: the "
                             "golden fixture, RANDOM weights)")
    parser.add_argument("--kappamask-v1", nargs="?", const=str(GOLDEN_V1), metavar="HDF5",
                        help="also measure KappaMask v1 imported from this file (default: the golden fixture, RANDOM "
                             "weights)")
    parser.add_argument("--v2-card", metavar="CARD",
                        help="also measure this KappaMask v2 card, e.g. the trained subject of benchmarks/subjects.py, "
                             "whose faithful int8 or bf16 variant (benchmarks/precision.py --keep) runs with precision auto")
    parser.add_argument("--precision", nargs="+", default=["auto"], choices=PRECISIONS,
                        help="the UDF's context key precision; each is measured (default: auto)")
    parser.add_argument("--skip-default", action="store_true")
    args = parser.parse_args(argv)
    env = {**os.environ, "KAPPAMASK_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    print(f"one chunk: {CHUNK} x {CHUNK} px, 13 bands, float32; {os.cpu_count()} cores, {TASK_CPUS} thread(s) per "
          f"worker as the processes ask; a worker's modules imported first ({', '.join(WORKER_IMPORTS)}); resident "
          "peaks are each child's VmHWM, the UDF's share (model, session, working memory) = the peak minus the peak "
          "after building the input; address space is VmPeak, what Spark's RLIMIT_AS on python-memory limits")
    models = [] if args.skip_default else [("ukis-csmask-6b-l1c", "bundled model (ukis-csmask-6b-l1c, 30 m)")]
    if args.kappamask_v2:
        sys.path.insert(0, str(HERE))
        from run import imported_v2

        card = imported_v2(Path(args.kappamask_v2))
        models.append((card.source, f"KappaMask v2 ({card.name})"))
    if args.kappamask_v1:
        sys.path.insert(0, str(HERE))
        from run import imported_v2

        card = imported_v2(Path(args.kappamask_v1), "kappamask-v1")
        models.append((card.source, f"KappaMask v1 ({card.name})"))
    if args.v2_card:
        models.append((args.v2_card, f"KappaMask v2 network of {args.v2_card}"))
    for model, label in models:
        for precision in args.precision:
            table(model, label, args.dates, env, precision)


if __name__ == "__main__":
    main()
