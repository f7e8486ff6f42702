"""Read KappaMask's official Keras weight files (HDF5) and match them to the two networks.

The official files are weights-only Keras 2 HDF5 files: a root attribute
``layer_names`` lists every layer in model order, and each layer with weights
has a group whose ``weight_names`` attribute lists its arrays (a full-model
save keeps the same groups under ``model_weights/``). Keras itself loads such
files by layer order, and the official files were written by an older Keras
whose layer names differ from today's, so layers are matched here **by order
and shape**, never by name.

Each network is described by its *layout*: the layers with weights, in the
order Keras stores them, each with a role (``entry1.sep2``, ``aspp.rate12``,
...) and the shapes it must have. Matching a file against a layout yields the
weights by role, already converted to the ONNX / PyTorch layout (OIHW kernels,
depthwise kernels as (C, 1, k, k)). Both the ONNX graphs
(:mod:`kappamask_core.models.onnx_graphs`) and the PyTorch networks read this one
mapping.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..foundation.errors import ModelError

# KappaMask versions and the official file names' architecture part
ARCHITECTURES = {"kappamask-v2": "deeplabv3plus", "kappamask-v1": "unet"}
ARCH_ALIASES = {"v2": "kappamask-v2", "kappamask-v2": "kappamask-v2", "deeplabv3plus": "kappamask-v2",
                "v1": "kappamask-v1", "kappamask-v1": "kappamask-v1", "unet": "kappamask-v1"}
OUTPUTS = 6  # UNDEFINED, CLEAR, CLOUD_SHADOW, SEMI_TRANSPARENT_CLOUD, CLOUD, MISSING
XCEPTION_MIDDLE_BLOCKS = 8
UNET_FILTERS = (64, 128, 256, 512, 1024)


def canonical_arch(arch: str, error: type[Exception] = ValueError) -> str:
    """'kappamask-v2' or 'kappamask-v1' for any of their names, or ``error`` naming the choices."""
    if arch not in ARCH_ALIASES:
        raise error(f"unknown architecture {arch!r}; choose one of {', '.join(ARCH_ALIASES)}")
    return ARCH_ALIASES[arch]


@dataclass(frozen=True)
class Slot:
    """One layer with weights: its role in the network and what Keras stores for it."""

    role: str
    kind: str  # conv | conv_bias | sep | bn
    kernel: int = 1
    cin: int = 0
    cout: int = 0

    def keras_shapes(self) -> list[tuple[int, ...]]:
        k, cin, cout = self.kernel, self.cin, self.cout
        if self.kind == "conv":
            return [(k, k, cin, cout)]
        if self.kind == "conv_bias":
            return [(k, k, cin, cout), (cout,)]
        if self.kind == "sep":
            return [(k, k, cin, 1), (1, 1, cin, cout)]
        if self.kind == "bn":
            return [(cout,)] * 4  # gamma, beta, moving mean, moving variance
        raise ValueError(self.kind)


def _conv_bn(role, k, cin, cout, bias=False):
    return [Slot(f"{role}.conv", "conv_bias" if bias else "conv", k, cin, cout), Slot(f"{role}.bn", "bn", cout=cout)]


def _sep_bn(role, cin, cout):
    return [Slot(f"{role}.sep", "sep", 3, cin, cout), Slot(f"{role}.bn", "bn", cout=cout)]


def v2_layout(channels: int) -> list[Slot]:
    """KappaMask v2, DeepLabv3+ on the aligned Xception, in the order Keras stores its layers.

    Keras orders a functional model's layers by graph depth, so inside each entry
    block the residual 1x1 convolution comes after the second separable
    convolution, and in the ASPP the four branch convolutions come before their
    four batch normalisations.
    """
    slots = _conv_bn("stem1", 3, channels, 32) + _conv_bn("stem2", 3, 32, 64)
    cin, residual_in = 64, 64
    for i, cout in enumerate((128, 256, 728)):
        slots += _sep_bn(f"entry{i}.sep1", cin, cout) + [Slot(f"entry{i}.sep2.sep", "sep", 3, cout, cout)]
        slots += [Slot(f"entry{i}.sep2.bn", "bn", cout=cout)] + _conv_bn(f"entry{i}.residual", 1, residual_in, cout)
        cin = residual_in = cout
    for b in range(XCEPTION_MIDDLE_BLOCKS):
        for j in range(3):
            slots += _sep_bn(f"middle{b}.sep{j}", 728, 728)
    slots += _sep_bn("exit1", 728, 728) + _sep_bn("exit2", 728, 1024)
    slots += _conv_bn("aspp.pool", 1, 1024, 256, bias=True)
    branches = (("aspp.rate1", 1), ("aspp.rate6", 3), ("aspp.rate12", 3), ("aspp.rate18", 3))
    slots += [Slot(f"{role}.conv", "conv", k, 1024, 256) for role, k in branches]
    slots += [Slot(f"{role}.bn", "bn", cout=256) for role, _ in branches]
    slots += _conv_bn("aspp.project", 1, 5 * 256, 256) + _conv_bn("skip", 1, 256, 48)
    slots += _conv_bn("decoder1", 3, 256 + 48, 256) + _conv_bn("decoder2", 3, 256, 256)
    slots.append(Slot("head", "conv_bias", 1, 256, OUTPUTS))
    return slots


def v1_layout(channels: int) -> list[Slot]:
    """KappaMask v1, the U-Net: two 3x3 convolutions per level, 2x2 'up' convolutions, a 2-channel 3x3 and the head."""
    f = UNET_FILTERS
    slots, cin = [], channels
    for level, cout in enumerate(f):
        slots += [Slot(f"down{level}.conv1", "conv_bias", 3, cin, cout), Slot(f"down{level}.conv2", "conv_bias", 3, cout, cout)]
        cin = cout
    for level in reversed(range(4)):
        slots += [Slot(f"up{level}.conv", "conv_bias", 2, f[level + 1], f[level]),
                  Slot(f"up{level}.conv1", "conv_bias", 3, 2 * f[level], f[level]),
                  Slot(f"up{level}.conv2", "conv_bias", 3, f[level], f[level])]
    slots += [Slot("to_two", "conv_bias", 3, f[0], 2), Slot("head", "conv_bias", 1, 2, OUTPUTS)]
    return slots


LAYOUTS = {"kappamask-v2": v2_layout, "kappamask-v1": v1_layout}


@dataclass
class KerasWeights:
    """The layers with weights of one Keras HDF5 file, in stored order."""

    path: str
    layers: list[tuple[str, list[np.ndarray]]]  # (layer name, arrays in weight_names order)

    @property
    def input_channels(self) -> int | None:
        """Input features of the network: the input depth of its first kernel."""
        if not self.layers or not self.layers[0][1] or self.layers[0][1][0].ndim != 4:
            return None
        return int(self.layers[0][1][0].shape[2])


def _text(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def read_keras_weights(path: str | os.PathLike) -> KerasWeights:
    """The layers with weights of a Keras 2 HDF5 file (weights-only, or a full-model save)."""
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is a dependency
        raise ModelError("reading Keras weight files needs h5py: pip install h5py") from None
    path = str(path)
    if not os.path.isfile(path):
        raise ModelError(f"weights file {path} does not exist")
    if not h5py.is_hdf5(path):
        raise ModelError(f"{path} is not an HDF5 file; KappaMask's official weights are Keras .hdf5 files")
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f and "layer_names" not in f.attrs else f
            if "layer_names" not in root.attrs:
                hint = " (it looks like a Keras 3 .weights.h5 file)" if "layers" in root else ""
                raise ModelError(f"{path} is HDF5 but not a Keras 2 weights file: it has no 'layer_names'{hint}")
            layers = []
            for name in map(_text, root.attrs["layer_names"]):
                if name not in root:
                    raise ModelError(f"{path}: layer {name!r} is listed but has no group; the file is damaged")
                group = root[name]
                names = [_text(w) for w in group.attrs.get("weight_names", [])]
                if names:
                    layers.append((name, [np.asarray(group[w][()], dtype=np.float32) for w in names]))
    except ModelError:
        raise
    except Exception as exc:  # truncated or corrupt HDF5 raises OSError, KeyError, ValueError ...
        raise ModelError(f"cannot read Keras weights from {path}: {exc}") from None
    return KerasWeights(path, layers)


def _mismatch(weights: KerasWeights, layout: list[Slot], arch: str) -> str | None:
    """Why the file does not fit ``layout``; None when it fits."""
    if len(weights.layers) != len(layout):
        return (f"it has {len(weights.layers)} layers with weights, {arch} has {len(layout)}")
    for i, (slot, (name, arrays)) in enumerate(zip(layout, weights.layers)):
        shapes = [a.shape for a in arrays]
        if shapes != slot.keras_shapes():
            return (f"layer {i + 1} ({name!r}) has weight shapes {shapes}, but {arch} needs "
                    f"{slot.keras_shapes()} there ({slot.role})")
    return None


def input_bands(weights: KerasWeights) -> int:
    """The number of input bands: the first convolution's input channels."""
    channels = weights.input_channels
    if channels is None:
        raise ModelError(f"{weights.path}: the first layer with weights is not a convolution; "
                         "this is not a KappaMask network")
    return channels


def detect_architecture(weights: KerasWeights, arch: str | None = None) -> str:
    """The KappaMask version whose layout the file fits (checked against ``arch`` when given)."""
    channels = input_bands(weights)
    candidates = [ARCH_ALIASES[arch]] if arch else list(LAYOUTS)
    reasons = {}
    for name in candidates:
        reason = _mismatch(weights, LAYOUTS[name](channels), name)
        if reason is None:
            return name
        reasons[name] = reason
    detail = "; ".join(f"not {name}: {reason}" for name, reason in reasons.items())
    raise ModelError(f"{weights.path} is not a KappaMask network file ({detail})")


def to_roles(weights: KerasWeights, arch: str) -> dict[str, tuple[np.ndarray, ...]]:
    """Weights by role, in ONNX / PyTorch layout: conv (W[, b]), sep (depthwise, pointwise), bn (4 vectors)."""
    layout = LAYOUTS[arch](input_bands(weights))
    reason = _mismatch(weights, layout, arch)
    if reason:
        raise ModelError(f"{weights.path} does not fit {arch}: {reason}")
    roles = {}
    for slot, (_, arrays) in zip(layout, weights.layers):
        if slot.kind in ("conv", "conv_bias"):
            roles[slot.role] = (np.ascontiguousarray(arrays[0].transpose(3, 2, 0, 1)), *arrays[1:])  # HWIO -> OIHW
        elif slot.kind == "sep":
            depthwise = np.ascontiguousarray(arrays[0].transpose(2, 3, 0, 1))  # (k, k, C, 1) -> (C, 1, k, k)
            pointwise = np.ascontiguousarray(arrays[1].transpose(3, 2, 0, 1))  # (1, 1, C, F) -> (F, C, 1, 1)
            roles[slot.role] = (depthwise, pointwise)
        else:
            roles[slot.role] = tuple(arrays)
    return roles
