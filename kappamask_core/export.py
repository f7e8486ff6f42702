"""Export a KappaMask network (PyTorch, optional extra ``train``) to ONNX with its model card.

The card starts from the built-in card of the same version and level (bands,
the official min-max scaling, six outputs, 512 px tiles, 32 px overlap) and
points at the exported file by relative path and sha256. Without weights the
network is random-initialised and the card says so in its id, name and
description, and sets ``trained`` to false: such a file is for timing and
tests only.
"""

from __future__ import annotations

import json
from pathlib import Path

from .cards import builtin_card, card_from_dict, sha256_file
from .errors import ModelError

ARCH_ALIASES = {"v2": "deeplabv3plus", "kappamask-v2": "deeplabv3plus", "deeplabv3plus": "deeplabv3plus",
                "v1": "unet", "kappamask-v1": "unet", "unet": "unet"}
OPSET = 17


def export(arch: str, level: str, output, weights=None, seed: int = 0) -> tuple[Path, Path]:
    """Write ``output`` (.onnx) and ``<output>.json`` (card); return both paths."""
    try:
        import torch
    except ImportError:
        raise ModelError("exporting networks needs PyTorch: pip install 'kappamask[train]'") from None
    from . import networks
    from .writers import atomic_path

    if arch not in ARCH_ALIASES:
        raise ModelError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCH_ALIASES)}")
    arch = ARCH_ALIASES[arch]
    level = level.upper()
    version = networks.VERSION_OF[arch]
    base = builtin_card(f"kappamask-{version}-{level.lower()}")
    torch.manual_seed(seed)
    model = networks.build(arch, len(base.bands)).eval()
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        except Exception as exc:
            raise ModelError(f"cannot load PyTorch weights {weights} into {arch}: {exc}") from None
    output = Path(output)
    tile = base.tile_size
    with atomic_path(output) as tmp:
        torch.onnx.export(model, (torch.zeros(1, len(base.bands), tile, tile),), tmp, dynamo=False,
                          opset_version=OPSET, input_names=["input"], output_names=["probabilities"],
                          dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}})
    card = json.loads(json.dumps(base.raw))
    trained = weights is not None
    card["id"] = f"{base.id}-export" if trained else f"{base.id}-random"
    card["trained"] = trained
    card["architecture"] = f"{base.architecture}; PyTorch definition in kappamask_core.networks, ONNX opset {OPSET}"
    card["framework"] = "ONNX"
    card["input"]["layout"] = "NCHW"
    card["weights"] = {"file": output.name, "path": output.name, "sha256": sha256_file(output)}
    if trained:
        card["name"] = f"{base.name} (exported from {Path(weights).name})"
    else:
        card["name"] = f"{base.name} - RANDOM WEIGHTS, NOT A TRAINED MODEL"
        card["description"] = ("RANDOM-INITIALISED WEIGHTS: this network has the KappaMask architecture but was never "
                               "trained. Its outputs are meaningless; use it for timing and tests only. "
                               + card["description"])
    card_from_dict(card, source=str(output))  # the card must validate like any other
    card_path = output.with_suffix(".json")
    with atomic_path(card_path) as tmp:
        Path(tmp).write_text(json.dumps(card, indent=2) + "\n")
    return output, card_path
