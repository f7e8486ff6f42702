"""Making reduced-precision variants of a network from its ONNX file, and checking them against it on real tiles
(which variants there are, which one runs, and how an edited one is told apart: :mod:`kappamask_core.models.variants`;
reading the tiles of products: :mod:`kappamask_core.faces.quantize`).

A variant is an ONNX file plus a card that names its parent (id and weights sha256), its precision, how it
was made, the calibration data and the result of its check. :func:`make_variant`:

1. **Tiles**: the tiles the chain feeds the network (:func:`kappamask_core.chain.strips.model_tiles`:
   read, resampled, scaled and padded exactly as in a run), from real products: the ones named for
   calibration (by default the bundled demo scene, for L1C models) and, if named, others for the check. With
   no check products, the tiles alternate: even ones calibrate, odd ones check, so no tile is used for both.
   The face (:func:`kappamask_core.faces.quantize.make_variant`) reads them and hands them to
   :func:`build_variant`.
2. **int8** (ONNX Runtime static quantisation): weights int8 per output channel, activations uint8, ranges
   from the calibration tiles (min and max), as QuantizeLinear / DequantizeLinear pairs that ONNX Runtime
   fuses into integer kernels (VNNI on CPUs that have it). A network published in float16 is quantised from
   its exact float32 copy.
   **bf16** (OpenVINO): the exact float32 copy of the network, run by OpenVINO's CPU plugin with bfloat16
   inference precision. Nothing is calibrated, so every tile checks. It is made only where OpenVINO is
   installed and the CPU has bfloat16 arithmetic (AVX-512 BF16, AMX): elsewhere OpenVINO computes in float32
   and the check would prove nothing.
3. **Check**: parent and variant classify every check tile; over the tile's valid pixels the five-class
   maps must agree on at least :data:`MIN_AGREEMENT` of the pixels, and no class may have a Dice below
   :data:`MIN_DICE` against the parent's map (classes under :data:`MIN_SHARE` of the pixels in both maps are
   reported, not judged: a handful of pixels makes Dice a coin toss). Only a variant that passes is
   *faithful*; ``auto`` never runs another, and one that fails is written only when asked (``keep_failed``).

The figures say how closely the variant follows its parent on these tiles, nothing about the parent's
accuracy.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..foundation.classes import CLASSES, MISSING
from ..foundation.errors import InputError
from ..foundation.version import __version__
from ..io.files import atomic_files, sha256_file
from .cards import MIN_AGREEMENT, MIN_DICE, MIN_SHARE, card_from_dict, check_passes
from .resolve import Model
from .runners import OnnxRunner, open_runner
from .variants import ENGINES, FILE_PRECISION, sealed, variant_card_name

log = logging.getLogger(__name__)

METHODS = {
    "int8": "ONNX Runtime static quantisation (QDQ): int8 weights per output channel, uint8 activations, min-max "
            "ranges from the calibration tiles",
    "bf16": "the float32 network run by OpenVINO's CPU plugin with inference precision bf16 (weights and "
            "activations rounded to bfloat16 inside the kernels, float32 accumulation)",
}


@dataclass
class Check:
    """How a variant's maps compare with its parent's on the check tiles."""

    tiles: int
    valid_pixels: int
    agreement: float
    dice: dict  # class name -> Dice of the variant's map against the parent's (None: in neither map)
    share: dict  # class name -> share of the valid pixels in the parent's map
    judged: list  # the classes the Dice threshold applies to
    parent_s_per_tile: float
    variant_s_per_tile: float

    @property
    def faithful(self) -> bool:
        return check_passes({"agreement": self.agreement, "dice": self.dice, "judged": self.judged,
                             "share": self.share})

    def failures(self) -> list[str]:
        """What fell short, in words."""
        failed = [] if self.agreement >= MIN_AGREEMENT else [
            f"agreement {100 * self.agreement:.2f} % (needs {100 * MIN_AGREEMENT:.1f} %)"]
        return failed + [f"Dice {name} {self.dice[name]:.3f} (needs {MIN_DICE})" for name in self.judged
                         if self.dice[name] < MIN_DICE]

    def record(self) -> dict:
        return {"tiles": self.tiles, "valid_pixels": self.valid_pixels, "agreement": round(self.agreement, 6),
                "dice": {k: (None if v is None else round(v, 6)) for k, v in self.dice.items()},
                "share": {k: round(v, 6) for k, v in self.share.items()}, "judged": self.judged,
                "faithful": self.faithful,
                "thresholds": {"agreement": MIN_AGREEMENT, "dice": MIN_DICE, "min_share": MIN_SHARE},
                "seconds_per_tile": {"parent": round(self.parent_s_per_tile, 4),
                                     "variant": round(self.variant_s_per_tile, 4), "cores": os.cpu_count()}}


@dataclass
class VariantResult:
    """A variant made: its card, its check, and its files (None where it was not written)."""

    card: dict  # the variant's card (written or not)
    check: Check
    onnx: Path | None  # None when a failed variant was not kept
    card_path: Path | None


def float32_model(path: Path):
    """The ONNX model at ``path`` with float32 weights and arithmetic: as it is, or the exact upcast of a network
    published in float16 (every float16 value is a float32 value)."""
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load(str(path))

    def upcast(tensor):
        if tensor.data_type == TensorProto.FLOAT16:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), tensor.name))

    for tensor in model.graph.initializer:
        upcast(tensor)
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name == "to" and attribute.i == TensorProto.FLOAT16:
                attribute.i = TensorProto.FLOAT  # a Cast to float16 becomes a Cast to float32 (a no-op)
            if attribute.type == onnx.AttributeProto.TENSOR:
                upcast(attribute.t)
    graph = model.graph
    for info in list(graph.value_info) + list(graph.input) + list(graph.output):
        if info.type.tensor_type.elem_type == TensorProto.FLOAT16:
            info.type.tensor_type.elem_type = TensorProto.FLOAT
    return model


def _bar(total: int, what: str, progress: bool):
    """A progress bar on stderr over ``total`` tiles (a no-op bar without ``progress``)."""
    from tqdm import tqdm

    return tqdm(total=total, unit="tile", desc=what, leave=False, disable=not progress)


def quantize_int8(parent: Model, calibration, out: Path, progress: bool = False) -> None:
    """Write the int8 variant of ``parent``'s network to ``out``, calibrated on ``calibration`` tiles."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    runner = OnnxRunner(parent, "cpu", batch_size=1)  # the input's name and layout, checked against the card
    name, nhwc = runner.input_name, runner.layout == "NHWC"
    del runner  # its session is not needed while the calibrator runs its own

    class TileReader(CalibrationDataReader):
        """The calibration tiles, one at a time, NCHW or NHWC as the network wants them."""

        def __init__(self, bar):
            self.i, self.bar = 0, bar

        def get_next(self):
            if self.i >= len(calibration):
                return None
            tile = calibration[self.i][0][None]
            self.i += 1
            self.bar.update(1)
            return {name: np.ascontiguousarray(tile.transpose(0, 2, 3, 1) if nhwc else tile)}

    with tempfile.TemporaryDirectory(prefix="kappamask-quantize-") as work:
        exact, prepared = Path(work) / "float32.onnx", Path(work) / "prepared.onnx"
        onnx.save(float32_model(parent.network), str(exact))
        # shape inference and graph clean-up before quantisation, as ONNX Runtime recommends
        quant_pre_process(str(exact), str(prepared), skip_symbolic_shape=True)
        with _bar(len(calibration), "calibrating", progress) as bar:
            quantize_static(str(prepared), str(out), TileReader(bar), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)


def check_variant(parent: Model, variant_path: Path, tiles: list[tuple[np.ndarray, np.ndarray]], precision: str = "int8",
                  progress: bool = False) -> Check:
    """Compare the variant's five-class maps with the parent's on ``tiles`` ((tile, valid) pairs)."""
    card = parent.card
    lut = card.class_lut()
    exact = open_runner(parent, "cpu", batch_size=1)
    variant = dataclasses.replace(card, variant={"precision": precision, "engine": ENGINES[precision]})
    reduced = open_runner(Model(variant, variant_path), "cpu", batch_size=1)
    n = len(CLASSES)
    confusion = np.zeros((n, n), np.int64)  # parent class x variant class, valid pixels only
    seconds = {"parent": 0.0, "variant": 0.0}
    with _bar(len(tiles), f"checking the {precision} variant", progress) as bar:
        for tile, valid in tiles:
            maps = {}
            for name, runner in (("parent", exact), ("variant", reduced)):
                started = time.perf_counter()
                scores = runner.run(tile[None])[0]
                seconds[name] += time.perf_counter() - started
                maps[name] = lut[scores.argmax(0)][valid]
            confusion += np.bincount(maps["parent"].astype(np.int64) * n + maps["variant"],
                                     minlength=n * n).reshape(n, n)
            bar.update(1)
    total = int(confusion.sum())
    if total == 0:
        raise InputError("the check tiles hold no valid pixel")
    dice, share, judged = {}, {}, []
    for c in CLASSES:
        if c.value == MISSING:
            continue
        in_parent, in_variant = confusion[c.value].sum(), confusion[:, c.value].sum()
        dice[c.name] = None if in_parent + in_variant == 0 else float(2 * confusion[c.value, c.value]
                                                                       / (in_parent + in_variant))
        share[c.name] = float(in_parent / total)
        if max(in_parent, in_variant) >= MIN_SHARE * total:
            judged.append(c.name)
    count = max(1, len(tiles))
    return Check(len(tiles), total, float(np.trace(confusion) / total), dice, share, judged,
                 seconds["parent"] / count, seconds["variant"] / count)


def build_variant(parent: Model, precision: str, calibration: list, checking: list, how: str, folder: Path,
                  keep_failed: bool = False, progress: bool = False) -> VariantResult:
    """Make the ``precision`` variant of ``parent``'s network from ``calibration`` tiles, check it on ``checking``
    tiles (both as (product name, index, (tile, valid)) triples) and write it into ``folder`` (ONNX file and sealed
    card, together) when faithful, or when ``keep_failed``."""
    card = parent.card
    stem = Path(variant_card_name(card.id, precision)).stem
    onnx_path, card_path = folder / f"{stem}.onnx", folder / f"{stem}.json"
    with tempfile.TemporaryDirectory(prefix="kappamask-variant-") as work:
        candidate = Path(work) / f"{stem}.onnx"
        if precision == "int8":
            quantize_int8(parent, [t for _, _, t in calibration], candidate, progress)
        else:
            import onnx

            onnx.save(float32_model(parent.network), str(candidate))  # OpenVINO rounds to bf16 as it runs
        result = check_variant(parent, candidate, [t for _, _, t in checking], precision, progress)
        raw = variant_card(card, parent, stem, precision, candidate, calibration, checking, result, how)
        card_from_dict(raw, source=str(card_path))  # it must load like any other card
        if not result.faithful and not keep_failed:
            return VariantResult(raw, result, None, None)
        with atomic_files(onnx_path, card_path) as (tmp_onnx, tmp_card):
            Path(tmp_onnx).write_bytes(candidate.read_bytes())
            Path(tmp_card).write_text(json.dumps(raw, indent=2) + "\n")
    return VariantResult(raw, result, onnx_path, card_path)


def engine_version(precision: str) -> dict:
    if ENGINES[precision] != "openvino":
        return {}
    import openvino

    return {"openvino": openvino.__version__}


def variant_card(card, parent: Model, stem: str, precision: str, onnx_file: Path, calibration, checking,
                 result: Check, how: str) -> dict:
    """The variant's card: the parent's, with its own id, file, precision and the record of its making."""
    import onnxruntime

    raw = copy.deepcopy(card.raw)
    raw["id"] = stem
    raw["name"] = f"{card.name} ({precision})"
    verdict = "faithful" if result.faithful else "NOT faithful"
    raw["description"] = (f"The {precision} variant of {card.id}, made by kappamask models quantize; {verdict} to it "
                          f"on {result.tiles} check tiles (agreement {100 * result.agreement:.2f} %). "
                          + card.description)
    raw["weights"] = {"file": f"{stem}.onnx", "path": f"{stem}.onnx",
                      "sha256": sha256_file(onnx_file),
                      "precision": FILE_PRECISION[precision]}  # a bf16 variant's file is float32
    raw["variant"] = {
        "parent": {"id": card.id, "name": card.name, "weights_sha256": sha256_file(parent.network),
                   "card": Path(card.source).name},  # found beside the variant or in the weights folder
        "precision": precision,
        "engine": ENGINES[precision],
        "method": METHODS[precision],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "software": {"kappamask": __version__, "onnxruntime": onnxruntime.__version__, **engine_version(precision)},
        "calibration": {"products": sorted({name for name, _, _ in calibration}), "tiles": len(calibration)},
        "check": {"products": sorted({name for name, _, _ in checking}), "how": how, **result.record()},
    }
    return sealed(raw)  # from here on, any change to the card makes the variant unusable
