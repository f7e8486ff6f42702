"""Inference over batches of tiles (ONNX Runtime; OpenVINO for bf16 variants); no geometry here.

A runner takes a resolved model (:func:`kappamask_core.models.resolve.resolve_model`: a card and its
verified ONNX file; it never looks for weights itself), checks the file against its card (band count, tile
size, number of outputs), and returns class probabilities in (N, classes, H, W) layout whatever the model's
layout. The ONNX Runtime runner picks execution providers (CUDA or TensorRT when onnxruntime-gpu and a GPU are
present, else CPU; overridable). A card whose ``engine`` is ``openvino`` (a bf16 variant,
:mod:`kappamask_core.models.quantize`) runs on OpenVINO's CPU plugin in bfloat16.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

import numpy as np

from ..foundation.errors import MemoryLimitError, ModelError, memory_limit_text, out_of_memory
from ..foundation.machine import available_cores
from .cards import ModelCard
from .resolve import Model

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "tensorrt")


def choose_providers(device: str = "auto") -> list:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device not in DEVICES:
        raise ModelError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "tensorrt":
        if "TensorrtExecutionProvider" not in available:
            raise ModelError("device 'tensorrt' needs onnxruntime-gpu with TensorRT; available: " + ", ".join(available))
        return [
            ("TensorrtExecutionProvider", {"trt_fp16_enable": True, "trt_engine_cache_enable": True}),
            "CUDAExecutionProvider",
            "CPUExecutionProvider",
        ]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ModelError(
            "device 'cuda' was requested but ONNX Runtime has no CUDA provider here "
            "(install the GPU extra: pip install 'kappamask[gpu]', and check the NVIDIA driver)"
        )
    return ["CPUExecutionProvider"]


def softmax(scores: np.ndarray, axis: int = 1) -> np.ndarray:
    scores = scores - scores.max(axis=axis, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=axis, keepdims=True)
    return scores


class Runner:
    """What every runner shares: the check of the file against its card, batching and the scores' layout."""

    model: Model
    card: ModelCard
    layout: str
    batch_size: int
    device: str
    providers: list  # what runs it, for the log and the outputs' runtime record

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check(self, in_shape, out_shape, path) -> str:
        card, n = self.card, len(self.card.bands)
        if len(in_shape) != 4:
            raise ModelError(f"model {path} input has shape {in_shape}; expected 4 dimensions (batch, bands, y, x)")
        layout: str | None = card.layout
        if layout == "auto":
            layout = "NCHW" if in_shape[1] == n else "NHWC" if in_shape[3] == n else None
        channel_axis = {"NCHW": 1, "NHWC": 3}.get(layout or "")
        if layout is None or channel_axis is None or (isinstance(in_shape[channel_axis], int)
                                                      and in_shape[channel_axis] != n):
            raise ModelError(
                f"model card {card.id!r} lists {n} input bands but the ONNX input of {path} has shape {in_shape}"
                + ("" if layout else "; set input.layout in the card if the band axis is dynamic")
            )
        spatial = [in_shape[i] for i in ((2, 3) if layout == "NCHW" else (1, 2))]
        for size in spatial:
            if isinstance(size, int) and size != card.tile_size:
                raise ModelError(
                    f"model card {card.id!r} uses {card.tile_size} px tiles but the ONNX input of {path} is {in_shape}"
                )
        k = out_shape[channel_axis] if len(out_shape) == 4 else None
        if isinstance(k, int) and k != len(card.outputs):
            raise ModelError(
                f"model card {card.id!r} lists {len(card.outputs)} output classes but the ONNX output of {path} "
                f"has shape {out_shape}"
            )
        return layout

    def run(self, tiles: np.ndarray) -> np.ndarray:
        """(N, bands, T, T) float32 -> (N, classes, T, T) probabilities."""
        results = []
        for start in range(0, len(tiles), self.batch_size):
            batch = np.ascontiguousarray(tiles[start : start + self.batch_size], dtype=np.float32)
            if self.layout == "NHWC":
                batch = np.ascontiguousarray(batch.transpose(0, 2, 3, 1))
            try:
                out = self._infer(batch)
            except Exception as exc:
                if out_of_memory(exc):
                    raise MemoryLimitError(f"out of memory while model {self.card.id!r} ran a batch of "
                                           f"{len(batch)} tile(s) ({' '.join(str(exc).split())[:200]}); "
                                           f"{memory_limit_text()}") from None
                raise
            if self.layout == "NHWC":
                out = out.transpose(0, 3, 1, 2)
            out = np.array(out, dtype=np.float32)
            if not np.isfinite(out).all():
                # a NaN score has no class: it must never become 'missing' or 'clear' in the map
                raise ModelError(f"model {self.card.id!r} ({self.model.path}) returned NaN or infinite scores; its "
                                 "weights are damaged or it cannot take this input")
            results.append(softmax(out) if self.card.activation == "logits" else out)  # softmax/sigmoid: as they are
        return np.concatenate(results)


class OnnxRunner(Runner):
    """One ONNX Runtime session for one resolved model."""

    def __init__(self, model: Model, device: str = "auto", threads: int | None = None,
                 batch_size: int | None = None, fp16: bool = False, io_binding: bool | None = None):
        import onnxruntime as ort  # heavy: only where a network runs

        if model.path is None:
            raise ModelError(f"model {model.card.id!r} looks up the product's own mask; it has no network to run")
        self.model, self.card, path = model, model.card, model.path
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or available_cores()
        options.inter_op_num_threads = 1
        # idle ONNX Runtime threads must not spin: band decoding for the next strip shares the cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.providers = choose_providers(device)
        if self.providers == ["CPUExecutionProvider"]:
            # measured on KappaMask v2 (benchmarks/ort_options.py, docs/performance.md): the preplanned memory
            # pattern holds more memory at the same speed per tile, and the results are identical
            options.enable_mem_pattern = False
        graph = _float16_model(path) if fp16 else str(path)
        try:
            self.session = ort.InferenceSession(graph, sess_options=options, providers=self.providers)
        except Exception as exc:
            if out_of_memory(exc):
                raise MemoryLimitError(f"out of memory while ONNX Runtime loaded model file {path} ({exc}); "
                                       f"{memory_limit_text()}") from None
            raise ModelError(f"ONNX Runtime cannot load model file {path}: {exc}") from None
        self.providers = self.session.get_providers()  # what ONNX Runtime took of those asked for
        self.device = "cuda" if "CUDAExecutionProvider" in self.providers else "cpu"
        # measured on CPU (benchmarks/run.py --batch-sweep): batches of 1 to 8 tiles run at the same speed per
        # tile, and 1 needs the least memory; GPUs want larger batches
        self.batch_size = max(1, int(batch_size)) if batch_size else (8 if self.device == "cuda" else 1)
        # On a GPU, bind inputs and outputs so ONNX Runtime copies each batch once each way
        self.io_binding = self.device == "cuda" if io_binding is None else io_binding
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise ModelError(f"model {path} has {len(inputs)} inputs; exactly one image input is supported")
        self.input_name = inputs[0].name
        self.layout = self._check(inputs[0].shape, outputs[0].shape, path)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self._run_bound(batch) if self.io_binding else self.session.run(None, {self.input_name: batch})[0]

    def _run_bound(self, batch: np.ndarray) -> np.ndarray:
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, batch)
        binding.bind_output(self.session.get_outputs()[0].name, self.device)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


class OpenVinoRunner(Runner):
    """OpenVINO's CPU plugin for a bf16 variant: the float32 network computed in bfloat16 where the CPU has it."""

    def __init__(self, model: Model, device: str = "auto", threads: int | None = None,
                 batch_size: int | None = None):
        if device not in ("auto", "cpu"):
            raise ModelError(f"model {model.card.id!r} is a {model.card.precision} variant for CPUs (OpenVINO); "
                             f"for device {device!r} run its parent")
        try:
            import openvino
        except ImportError:
            raise ModelError(f"model {model.card.id!r} runs on OpenVINO: pip install 'kappamask[openvino]'") from None
        self.model, self.card, self.device, path = model, model.card, "cpu", model.path
        self.providers = [f"OpenVINO CPU ({model.card.precision})"]
        self.batch_size = max(1, int(batch_size)) if batch_size else 1
        core = openvino.Core()
        try:
            network = core.read_model(str(path))
            inputs, outputs = network.inputs, network.outputs
            if len(inputs) != 1:
                raise ModelError(f"model {path} has {len(inputs)} inputs; exactly one image input is supported")
            shape = lambda port: [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
            self.layout = self._check(shape(inputs[0]), shape(outputs[0]), path)
            config = {"INFERENCE_PRECISION_HINT": "bf16" if self.card.precision == "bf16" else "f32",
                      "INFERENCE_NUM_THREADS": threads or available_cores(), "PERFORMANCE_HINT": "LATENCY"}
            self.compiled = core.compile_model(network, "CPU", config)
        except ModelError:
            raise
        except Exception as exc:
            text = " ".join(str(exc).split())[:300]
            if out_of_memory(exc):
                raise MemoryLimitError(f"out of memory while OpenVINO loaded model file {path} ({text}); "
                                       f"{memory_limit_text()}") from None
            raise ModelError(f"OpenVINO cannot load model file {path}: {text}") from None
        self._requests = threading.local()  # an infer request serves one call at a time: one per thread

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.compiled.create_infer_request()
        return request.infer({0: batch})[self.compiled.output(0)]


def _float16_model(path) -> bytes:
    """The model with float16 weights and arithmetic, float32 inputs and outputs kept (for GPUs)."""
    try:
        import onnx
        from onnxconverter_common import float16
    except ImportError:
        raise ModelError("fp16 needs onnx and onnxconverter-common: pip install 'kappamask[gpu]'") from None
    try:
        model = float16.convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
    except Exception as exc:  # the converter fails in many ways on graphs it cannot handle
        raise ModelError(f"cannot run {path} in float16 ({exc}); --fp16 is for GPUs and for float32 models, "
                         "run without it") from None
    return model.SerializeToString()


def open_runner(model: Model, device: str = "auto", threads: int | None = None, batch_size: int | None = None,
                fp16: bool = False) -> Runner:
    """A session for a resolved model, on the engine its card names."""
    if model.card.engine == "openvino":
        if fp16:
            raise ModelError(f"model {model.card.id!r} is a {model.card.precision} variant; fp16 is for GPUs")
        return OpenVinoRunner(model, device, threads, batch_size)
    return OnnxRunner(model, device, threads, batch_size, fp16)


class RunnerCache:
    """One runner per model file and settings, kept for reuse (a batch's products, an openEO worker's calls); the
    least recently used of more than ``limit`` is dropped."""

    def __init__(self, limit: int = 8):
        self.limit = limit
        self._runners: "OrderedDict[tuple, Runner]" = OrderedDict()
        self.opened = 0  # sessions made so far: a worker that runs many chunks makes one per model
        self._lock = threading.Lock()  # tasks in threads of one worker (dask's threaded scheduler) share it

    def get(self, model: Model, device: str = "auto", threads: int | None = None, batch_size: int | None = None,
            fp16: bool = False) -> Runner:
        key = (model.card.source, model.card.sha256, str(model.path), device, threads, batch_size, fp16)
        with self._lock:  # one session per key, however many threads ask at once
            if key in self._runners:
                self._runners.move_to_end(key)
                return self._runners[key]
            runner = self._runners[key] = open_runner(model, device, threads, batch_size, fp16)
            self.opened += 1
            while len(self._runners) > self.limit:
                self._runners.popitem(last=False)
            return runner

    def __iter__(self):
        return iter(self._runners.values())


PROCESS_RUNNERS = RunnerCache()  # openEO workers call the UDF many times: one session per model and settings
