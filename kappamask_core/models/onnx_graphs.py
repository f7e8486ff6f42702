"""The two KappaMask networks as ONNX graphs, built from their weights with numpy and ``onnx`` alone.

No TensorFlow and no PyTorch: :func:`build` takes the weights by role (see
:mod:`kappamask_core.models.keras_weights`) and writes the same computation as the
official Keras models, node for node:

* v2, DeepLabv3+ on the aligned Xception. Every strided or 3 x 3 convolution
  and max-pool is preceded by TensorFlow "same" padding done by mirroring
  with the edge pixel repeated (TensorFlow's ``SYMMETRIC``). One pixel of that
  is ONNX ``edge`` padding; wider pads (the dilated ASPP branches) are built
  from reversed slices. Batch normalisation uses Keras' epsilon 1e-3; the
  ASPP image pooling is a global average; upsampling is bilinear with
  half-pixel centres; the head is a softmax.
* v1, the U-Net: zero-padded "same" 3 x 3 convolutions with ReLU, 2 x 2 max
  pooling, nearest 2x upsampling followed by a 2 x 2 convolution that
  TensorFlow pads by one pixel after, and a sigmoid head.

Graphs take (N, bands, 512, 512) float32 (NCHW, dynamic batch) and return
(N, 6, 512, 512) in the official output order.
"""

from __future__ import annotations

import numpy as np

from .keras_weights import UNET_FILTERS, XCEPTION_MIDDLE_BLOCKS

OPSET = 17
BN_EPSILON = 1e-3  # Keras' default
INPUT_NAME, OUTPUT_NAME = "input", "probabilities"


class GraphBuilder:
    """A small helper that appends ONNX nodes and initializers and names the tensors."""

    def __init__(self, weights: dict):
        from onnx import helper

        self.helper = helper
        self.weights = weights
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def const(self, array: np.ndarray, prefix: str = "w", name: str | None = None) -> str:
        """An initializer; weights are named ``<role>:<index>`` so that :func:`roles_from_onnx` can read them back."""
        from onnx import numpy_helper

        name = name or self._name(prefix)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        out = self._name(op.lower())
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    # ---------------------------------------------------------------- layers

    def conv(self, x: str, role: str, stride: int = 1, dilation: int = 1, pads=(0, 0, 0, 0), group: int = 1,
             index: int | None = None) -> str:
        """A convolution with the weights of ``role`` (or, with ``index``, only that array of it: separable parts)."""
        arrays: tuple[np.ndarray, ...] = self.weights[role] if index is None else (self.weights[role][index],)
        first = 0 if index is None else index
        w = arrays[0]
        inputs = [x, self.const(w, name=f"{role}:{first}")]
        if len(arrays) > 1:
            inputs.append(self.const(arrays[1], name=f"{role}:1"))
        return self.node("Conv", inputs, kernel_shape=list(w.shape[2:]), strides=[stride, stride],
                         dilations=[dilation, dilation], pads=list(pads), group=group)

    def bn(self, x: str, role: str) -> str:
        gamma, beta, mean, var = self.weights[role]
        return self.node("BatchNormalization",
                         [x] + [self.const(a, name=f"{role}:{i}") for i, a in enumerate((gamma, beta, mean, var))],
                         epsilon=BN_EPSILON)

    def relu(self, x: str) -> str:
        return self.node("Relu", [x])

    def symmetric_pad(self, x: str, pads: tuple[int, int, int, int]) -> str:
        """Pad H and W by (top, bottom, left, right), mirroring with the edge pixel repeated."""
        top, bottom, left, right = pads
        if max(pads) <= 1:  # one mirrored pixel is the edge pixel itself
            if not any(pads):
                return x
            return self.node("Pad", [x, self.const(np.array([0, 0, top, left, 0, 0, bottom, right], np.int64), "p")],
                             mode="edge")
        for axis, before, after in ((2, top, bottom), (3, left, right)):
            parts = []
            if before:  # elements before-1 .. 0
                parts.append(self._slice(x, axis, before - 1, np.iinfo(np.int64).min, -1))
            parts.append(x)
            if after:  # elements -1 .. -after
                parts.append(self._slice(x, axis, -1, -after - 1, -1))
            x = self.node("Concat", parts, axis=axis) if len(parts) > 1 else x
        return x

    def _slice(self, x: str, axis: int, start: int, end: int, step: int) -> str:
        consts = [self.const(np.array([v], np.int64), "s") for v in (start, end, axis, step)]
        return self.node("Slice", [x] + consts)


def same_pads(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow 'same' padding of one axis (the extra pixel goes after)."""
    span = kernel + (kernel - 1) * (dilation - 1)
    rest = size % stride
    total = max(span - (stride if rest == 0 else rest), 0)
    return total // 2, total - total // 2


def _v2(g: GraphBuilder, x: str, tile: int) -> str:
    size = tile

    def padded(t, kernel, stride=1, dilation=1):
        before, after = same_pads(size, kernel, stride, dilation)
        return g.symmetric_pad(t, (before, after, before, after))

    def conv_bn(t, role, kernel, stride=1, dilation=1):
        return g.bn(g.conv(padded(t, kernel, stride, dilation), f"{role}.conv", stride, dilation), f"{role}.bn")

    def sep_bn(t, role):
        depthwise = g.weights[f"{role}.sep"][0]
        t = g.conv(padded(t, 3), f"{role}.sep", group=depthwise.shape[0], index=0)
        return g.bn(g.conv(t, f"{role}.sep", index=1), f"{role}.bn")

    x = g.relu(conv_bn(x, "stem1", 3, 2))
    size = -(-size // 2)
    residual = x = g.relu(conv_bn(x, "stem2", 3))
    low_level = None
    for i in range(3):
        if i:
            x = g.relu(x)
        features = sep_bn(g.relu(sep_bn(x, f"entry{i}.sep1")), f"entry{i}.sep2")
        if i == 1:
            low_level = features  # stride 4, after batch normalisation
        pooled = g.node("MaxPool", [padded(features, 3, 2)], kernel_shape=[3, 3], strides=[2, 2])
        residual = conv_bn(residual, f"entry{i}.residual", 1, 2)
        size = -(-size // 2)
        x = g.node("Add", [residual, pooled])
    for b in range(XCEPTION_MIDDLE_BLOCKS):
        y = x
        for j in range(3):
            y = sep_bn(g.relu(y), f"middle{b}.sep{j}")
        x = g.node("Add", [x, g.relu(y)])
    high = sep_bn(g.relu(sep_bn(g.relu(x), "exit1")), "exit2")  # stride 16, before ReLU

    pooled = g.relu(conv_bn(g.node("GlobalAveragePool", [high]), "aspp.pool", 1))
    pooled = g.node("Expand", [pooled, g.const(np.array([1, 256, size, size], np.int64), "shape")])
    branches = [pooled, g.relu(conv_bn(high, "aspp.rate1", 1))]
    branches += [g.relu(conv_bn(high, f"aspp.rate{r}", 3, 1, r)) for r in (6, 12, 18)]
    x = g.relu(conv_bn(g.node("Concat", branches, axis=1), "aspp.project", 1))
    x = _resize(g, x, 4, "linear")
    size *= 4
    x = g.node("Concat", [x, g.relu(conv_bn(low_level, "skip", 1))], axis=1)
    x = g.relu(conv_bn(x, "decoder1", 3))
    x = g.relu(conv_bn(x, "decoder2", 3))
    x = _resize(g, x, 4, "linear")
    return g.node("Softmax", [g.conv(x, "head")], axis=1)


def _v1(g: GraphBuilder, x: str, tile: int) -> str:
    same3 = (1, 1, 1, 1)
    skips = []
    for level in range(len(UNET_FILTERS)):
        x = g.relu(g.conv(x, f"down{level}.conv1", pads=same3))
        x = g.relu(g.conv(x, f"down{level}.conv2", pads=same3))  # dropout is the identity at inference
        if level < len(UNET_FILTERS) - 1:
            skips.append(x)
            x = g.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    for level in reversed(range(len(UNET_FILTERS) - 1)):
        up = _resize(g, x, 2, "nearest")
        up = g.relu(g.conv(up, f"up{level}.conv", pads=(0, 0, 1, 1)))  # 2 x 2 'same': one pixel after
        x = g.node("Concat", [skips[level], up], axis=1)
        x = g.relu(g.conv(x, f"up{level}.conv1", pads=same3))
        x = g.relu(g.conv(x, f"up{level}.conv2", pads=same3))
    x = g.relu(g.conv(x, "to_two", pads=same3))
    return g.node("Sigmoid", [g.conv(x, "head")])


def _resize(g: GraphBuilder, x: str, factor: int, mode: str) -> str:
    scales = g.const(np.array([1, 1, factor, factor], np.float32), "scales")
    if mode == "linear":  # Keras UpSampling2D(interpolation="bilinear"): half-pixel centres
        return g.node("Resize", [x, "", scales], mode="linear", coordinate_transformation_mode="half_pixel")
    return g.node("Resize", [x, "", scales], mode="nearest", coordinate_transformation_mode="asymmetric",
                  nearest_mode="floor")  # each pixel repeated


BUILDERS = {"kappamask-v2": _v2, "kappamask-v1": _v1}


def roles_from_onnx(path) -> dict:
    """The weights by role of an ONNX model written by :func:`build` (e.g. imported official weights), to
    continue training from them."""
    import onnx
    from onnx import numpy_helper

    found: dict[str, dict[int, np.ndarray]] = {}
    for tensor in onnx.load(str(path)).graph.initializer:
        role, sep, index = tensor.name.rpartition(":")
        if sep and index.isdigit():
            found.setdefault(role, {})[int(index)] = numpy_helper.to_array(tensor)
    return {role: tuple(arrays[i] for i in sorted(arrays)) for role, arrays in found.items()}


def build(arch: str, weights: dict, channels: int, tile: int = 512, doc: str = ""):
    """The ONNX model (onnx.ModelProto) of ``arch`` with ``weights`` by role."""
    from onnx import TensorProto, checker, helper

    g = GraphBuilder(weights)
    out = BUILDERS[arch](g, INPUT_NAME, tile)
    g.nodes[-1].output[0] = OUTPUT_NAME
    graph = helper.make_graph(
        g.nodes, arch,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", channels, tile, tile])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", 6, tile, tile])],
        g.initializers,
    )
    del out
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="kappamask",
                              doc_string=doc)
    model.ir_version = 8  # readable by every ONNX Runtime from 1.14 on
    checker.check_model(model, full_check=True)
    return model
