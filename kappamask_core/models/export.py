"""Export a KappaMask network trained in PyTorch (optional extra ``train``) to ONNX with its model card.

The PyTorch weights are read by role (:func:`kappamask_core.models.networks.to_roles`)
and written by the same ONNX graph builder that imports the official Keras
files, so every KappaMask ONNX model of this package has one graph
definition. The card starts from the built-in card of the same version and
level (bands, the official min-max scaling, six outputs, 512 px tiles, 32 px
overlap). Without weights the network is random-initialised, and the card
says so in its id, name and description and sets ``trained`` to false: such
a file is for timing and tests only.
"""

from __future__ import annotations

from pathlib import Path

from ..foundation.errors import ModelError
from ..io.files import sha256_file
from .cards import builtin_card
from .keras_weights import canonical_arch
from .weights import write_network


def torch_networks(purpose: str, error: type[Exception]):
    """(torch, kappamask_core.models.networks), or ``error`` saying that ``purpose`` needs the train extra."""
    try:
        import torch
    except ImportError:
        raise error(f"{purpose} needs PyTorch: pip install 'kappamask[train]'") from None
    from . import networks  # imports torch

    return torch, networks


def export(arch: str, level: str, output, weights=None, seed: int = 0) -> tuple[Path, Path]:
    """Write ``output`` (.onnx) and ``<output>.json`` (card); return both paths."""
    torch, networks = torch_networks("exporting networks", ModelError)

    arch = canonical_arch(arch, ModelError)
    base = builtin_card(f"{arch}-{level.lower()}")
    torch.manual_seed(seed)
    model = networks.build(arch, len(base.bands)).eval()
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        except Exception as exc:
            raise ModelError(f"cannot load PyTorch weights {weights} into {arch}: {exc}") from None
    output = Path(output)
    trained = weights is not None
    provenance: dict[str, dict]
    if trained:
        card_id, name, note = f"{base.id}-export", f"{base.name} (exported from {Path(weights).name})", ""
        provenance = {"weights_source": {"format": "pytorch-state-dict", "file": Path(weights).name,
                                         "sha256": sha256_file(weights)}}
    else:
        card_id, name = f"{base.id}-random", f"{base.name} - RANDOM WEIGHTS, NOT A TRAINED MODEL"
        note = ("RANDOM-INITIALISED WEIGHTS: this network has the KappaMask architecture but was never trained. "
                "Its outputs are meaningless; use it for timing and tests only. ")
        provenance = {"weights_source": {"format": "random", "seed": seed}}
    return write_network(arch, base, networks.to_roles(model), output, output.with_suffix(".json"), card_id=card_id,
                         name=name, note=note, trained=trained, provenance=provenance)
