"""The KappaMask networks in PyTorch (optional extra ``train``), layer for layer as the official Keras models.

* v1 (``unet``): U-Net, 5 levels, 64 initial filters doubling to 1024, ReLU
  3x3 convolutions, dropout 0.5 on the two deepest levels, nearest upsampling
  followed by a 2x2 convolution, a 2-channel 3x3 convolution and a 1x1
  sigmoid head.
* v2 (``deeplabv3plus``): DeepLabv3+ on an "aligned" Xception. High-level
  features are the exit flow's 1024-channel separable convolution (stride 16,
  after batch normalisation, before ReLU); low-level features the entry flow's
  second 256-channel separable convolution (stride 4). ASPP with image
  pooling and rates 6/12/18, a 48-channel skip, two 3x3 blocks, bilinear
  upsampling and a 1x1 softmax head.

No segmentation library ships this exact Xception variant (its residual path
chains the 1x1 convolutions from the stem, every convolution pads
symmetrically "same", and batch normalisation uses Keras' epsilon 1e-3), so
the blocks are written out here: exactness is what lets converted official
weights reproduce KappaMask.

Both take (N, bands, 512, 512) and return (N, 6, 512, 512) probabilities in
the official output order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .keras_weights import canonical_arch

OUTPUTS = ("UNDEFINED", "CLEAR", "CLOUD_SHADOW", "SEMI_TRANSPARENT_CLOUD", "CLOUD", "MISSING")
BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # Keras: epsilon 0.001, momentum 0.99 (PyTorch counts the other way)


def _symmetric_pad_axis(x: torch.Tensor, before: int, after: int, dim: int) -> torch.Tensor:
    """Mirror padding that repeats the edge pixel (TensorFlow's SYMMETRIC mode)."""
    parts = []
    if before:
        parts.append(x.narrow(dim, 0, before).flip(dim))
    parts.append(x)
    if after:
        parts.append(x.narrow(dim, x.shape[dim] - after, after).flip(dim))
    return torch.cat(parts, dim) if len(parts) > 1 else x


class SymmetricSamePad(nn.Module):
    """'same' output size for a strided/dilated kernel, padding by symmetric mirroring (extra pixel after)."""

    def __init__(self, kernel: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.kernel = kernel + (kernel - 1) * (dilation - 1)
        self.stride = stride

    def _amount(self, size: int) -> tuple[int, int]:
        rest = size % self.stride
        total = max(self.kernel - (self.stride if rest == 0 else rest), 0)
        return total // 2, total - total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = self._amount(x.shape[-2])
        left, right = self._amount(x.shape[-1])
        return _symmetric_pad_axis(_symmetric_pad_axis(x, top, bottom, -2), left, right, -1)


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(SymmetricSamePad(kernel, stride), nn.Conv2d(cin, cout, kernel, stride, bias=False),
                         nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM))


def sep_bn(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    """Keras SeparableConv2D (depthwise then pointwise, no bias) followed by batch normalisation."""
    return nn.Sequential(SymmetricSamePad(kernel), nn.Conv2d(cin, cin, kernel, groups=cin, bias=False),
                         nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM))


class EntryBlock(nn.Module):
    """Two separable convolutions, 3x3/2 max pooling, plus a strided 1x1 on the chained residual path."""

    def __init__(self, cin: int, cout: int, residual_in: int):
        super().__init__()
        self.sep1, self.sep2 = sep_bn(cin, cout), sep_bn(cout, cout)
        self.pool = nn.Sequential(SymmetricSamePad(3, 2), nn.MaxPool2d(3, 2))
        self.residual = conv_bn(residual_in, cout, 1, 2)

    def forward(self, x, residual):
        features = self.sep2(F.relu(self.sep1(x)))  # the stride-4 block's output is the low-level feature
        residual = self.residual(residual)
        return self.pool(features) + residual, residual, features


class MiddleBlock(nn.Module):
    def __init__(self, channels: int = 728):
        super().__init__()
        self.seps = nn.ModuleList([sep_bn(channels, channels) for _ in range(3)])

    def forward(self, x):
        y = x
        for sep in self.seps:
            y = sep(F.relu(y))
        return x + F.relu(y)


class ConvBlock(nn.Sequential):
    """DeepLab head block: symmetric 'same' padding, convolution, batch normalisation, ReLU."""

    def __init__(self, cin: int, cout: int = 256, kernel: int = 3, dilation: int = 1, bias: bool = False):
        super().__init__(SymmetricSamePad(kernel, 1, dilation), nn.Conv2d(cin, cout, kernel, dilation=dilation,
                                                                          bias=bias),
                         nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM), nn.ReLU())


class DeepLabV3PlusXception(nn.Module):
    """KappaMask v2."""

    def __init__(self, in_channels: int, classes: int = len(OUTPUTS)):
        super().__init__()
        self.stem1, self.stem2 = conv_bn(in_channels, 32, 3, 2), conv_bn(32, 64, 3)
        self.entry = nn.ModuleList([EntryBlock(64, 128, 64), EntryBlock(128, 256, 128), EntryBlock(256, 728, 256)])
        self.middle = nn.Sequential(*[MiddleBlock(728) for _ in range(8)])
        self.exit1, self.exit2 = sep_bn(728, 728), sep_bn(728, 1024)
        self.aspp_pool = ConvBlock(1024, 256, 1, bias=True)
        self.aspp = nn.ModuleList([ConvBlock(1024, 256, 1)] + [ConvBlock(1024, 256, 3, d) for d in (6, 12, 18)])
        self.aspp_project = ConvBlock(256 * 5, 256, 1)
        self.skip = ConvBlock(256, 48, 1)
        self.decoder = nn.Sequential(ConvBlock(256 + 48), ConvBlock(256))
        self.head = nn.Conv2d(256, classes, 1)

    def forward(self, x):
        size = x.shape[-2:]
        x = F.relu(self.stem1(x))
        residual = F.relu(self.stem2(x))
        x = residual
        low_level = None
        for i, block in enumerate(self.entry):
            x = F.relu(x) if i else x
            x, residual, features = block(x, residual)
            if i == 1:
                low_level = features
        x = self.middle(x)
        high = self.exit2(F.relu(self.exit1(F.relu(x))))
        pooled = self.aspp_pool(F.adaptive_avg_pool2d(high, 1)).expand(-1, -1, *high.shape[-2:])
        x = self.aspp_project(torch.cat([pooled] + [branch(high) for branch in self.aspp], 1))
        x = F.interpolate(x, size=low_level.shape[-2:], mode="bilinear", align_corners=False)
        x = self.decoder(torch.cat([x, self.skip(low_level)], 1))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return torch.softmax(self.head(x), dim=1)


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU())


class UpConv(nn.Module):
    """Nearest 2x upsampling, then a 2x2 'same' convolution (TensorFlow pads the extra pixel after) and ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 2)

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return F.relu(self.conv(F.pad(x, (0, 1, 0, 1))))


class UNet(nn.Module):
    """KappaMask v1."""

    def __init__(self, in_channels: int, classes: int = len(OUTPUTS), filters: int = 64):
        super().__init__()
        f = [filters * 2**i for i in range(5)]  # 64, 128, 256, 512, 1024
        self.down = nn.ModuleList([_double_conv(in_channels, f[0])] + [_double_conv(f[i - 1], f[i]) for i in range(1, 5)])
        self.dropout = nn.Dropout(0.5)
        self.up = nn.ModuleList([UpConv(f[i + 1], f[i]) for i in reversed(range(4))])
        self.merge = nn.ModuleList([_double_conv(2 * f[i], f[i]) for i in reversed(range(4))])
        self.to_two = nn.Sequential(nn.Conv2d(f[0], 2, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(2, classes, 1)

    def forward(self, x):
        skips = []
        for level, block in enumerate(self.down):
            x = block(x)
            if level >= 3:  # dropout after the deepest encoder level and the middle
                x = self.dropout(x)
            if level < 4:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
            x = merge(torch.cat([skip, up(x)], 1))
        return torch.sigmoid(self.head(self.to_two(x)))


ARCHITECTURES = {"kappamask-v2": DeepLabV3PlusXception, "kappamask-v1": UNet}


def build(arch: str, in_channels: int) -> nn.Module:
    """A network with the official code's initialisers (Keras': He normal where it asks for it, else Glorot
    uniform; zero biases), so that training from scratch starts where the official training started."""

    model = ARCHITECTURES[canonical_arch(arch)](in_channels)
    he_normal = set()
    if isinstance(model, UNet):  # every convolution but the head is he_normal in the official U-Net
        he_normal = {m for m in model.modules() if isinstance(m, nn.Conv2d) and m is not model.head}
    else:  # the DeepLab head's convolution blocks are he_normal; the Xception backbone keeps Keras' default
        for block in [model.aspp_pool, *model.aspp, model.aspp_project, model.skip, *model.decoder]:
            he_normal |= {m for m in block.modules() if isinstance(m, nn.Conv2d)}
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                fan_out = m.weight.shape[0] * m.weight[0, 0].numel()  # Keras: depthwise kernels count per group
                if m in he_normal:
                    nn.init.trunc_normal_(m.weight, std=(2.0 / fan_in) ** 0.5, a=-2 * (2.0 / fan_in) ** 0.5,
                                          b=2 * (2.0 / fan_in) ** 0.5)
                else:
                    limit = (6.0 / (fan_in + fan_out)) ** 0.5
                    nn.init.uniform_(m.weight, -limit, limit)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
    return model


# ----------------------------------------------------------------------------- weights by role

def _bn(prefix: str) -> list[str]:
    return [f"{prefix}.weight", f"{prefix}.bias", f"{prefix}.running_mean", f"{prefix}.running_var"]


def _v2_parameters() -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}

    def conv_bn(role, module):  # Sequential(pad, conv, batch norm[, relu])
        names[f"{role}.conv"] = [f"{module}.1.weight"]
        names[f"{role}.bn"] = _bn(f"{module}.2")

    def sep_bn(role, module):  # Sequential(pad, depthwise, pointwise, batch norm)
        names[f"{role}.sep"] = [f"{module}.1.weight", f"{module}.2.weight"]
        names[f"{role}.bn"] = _bn(f"{module}.3")

    conv_bn("stem1", "stem1")
    conv_bn("stem2", "stem2")
    for i in range(3):
        sep_bn(f"entry{i}.sep1", f"entry.{i}.sep1")
        sep_bn(f"entry{i}.sep2", f"entry.{i}.sep2")
        conv_bn(f"entry{i}.residual", f"entry.{i}.residual")
    for b in range(8):
        for j in range(3):
            sep_bn(f"middle{b}.sep{j}", f"middle.{b}.seps.{j}")
    sep_bn("exit1", "exit1")
    sep_bn("exit2", "exit2")
    conv_bn("aspp.pool", "aspp_pool")
    names["aspp.pool.conv"].append("aspp_pool.1.bias")
    for i, rate in enumerate((1, 6, 12, 18)):
        conv_bn(f"aspp.rate{rate}", f"aspp.{i}")
    conv_bn("aspp.project", "aspp_project")
    conv_bn("skip", "skip")
    conv_bn("decoder1", "decoder.0")
    conv_bn("decoder2", "decoder.1")
    names["head"] = ["head.weight", "head.bias"]
    return names


def _v1_parameters() -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for level in range(5):  # Sequential(conv, relu, conv, relu)
        names[f"down{level}.conv1"] = [f"down.{level}.0.weight", f"down.{level}.0.bias"]
        names[f"down{level}.conv2"] = [f"down.{level}.2.weight", f"down.{level}.2.bias"]
    for i, level in enumerate(reversed(range(4))):
        names[f"up{level}.conv"] = [f"up.{i}.conv.weight", f"up.{i}.conv.bias"]
        names[f"up{level}.conv1"] = [f"merge.{i}.0.weight", f"merge.{i}.0.bias"]
        names[f"up{level}.conv2"] = [f"merge.{i}.2.weight", f"merge.{i}.2.bias"]
    names["to_two"] = ["to_two.0.weight", "to_two.0.bias"]
    names["head"] = ["head.weight", "head.bias"]
    return names


PARAMETERS_BY_ROLE = {"kappamask-v2": _v2_parameters, "kappamask-v1": _v1_parameters}


def arch_of(model: nn.Module) -> str:
    return next(name for name, cls in ARCHITECTURES.items() if isinstance(model, cls))


def load_roles(model: nn.Module, roles: dict) -> nn.Module:
    """Fill ``model`` with weights by role (:func:`kappamask_core.models.keras_weights.to_roles`)."""
    state = model.state_dict()
    for role, names in PARAMETERS_BY_ROLE[arch_of(model)]().items():
        for name, array in zip(names, roles[role], strict=True):
            if tuple(state[name].shape) != array.shape:
                raise ValueError(f"{role}: {name} has shape {tuple(state[name].shape)}, the weights {array.shape}")
            state[name].copy_(torch.from_numpy(array))
    return model


def to_roles(model: nn.Module) -> dict:
    """The model's weights by role, as numpy float32 arrays (the input of the ONNX graph builder)."""
    state = model.state_dict()
    return {role: tuple(state[n].detach().cpu().numpy().astype("float32") for n in names)
            for role, names in PARAMETERS_BY_ROLE[arch_of(model)]().items()}


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
