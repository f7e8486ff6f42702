"""Models: what a model is, and how a name becomes a model that can run.

- ``cards``: the model card (bands, level, scaling, tiles, resolution, output classes), validated
- ``resolve``: the one place where a name, alias, ``auto``, card or ONNX path becomes a :class:`Model`: the card
  and its verified ONNX file
- ``weights``: finding, downloading (sha256-checked) and importing weights; ``folders``: where they live
- ``keras_weights`` reads KappaZeta's Keras files and ``onnx_graphs`` builds the ONNX graph from them
- ``runners``: ONNX Runtime (and OpenVINO for bf16) sessions over batches of tiles, shared per process
- ``variants`` names, finds, seals and chooses reduced-precision variants; ``quantize`` makes and checks them
- ``networks`` defines the KappaMask networks in PyTorch for training (extra ``train``); ``export`` writes
  them through the same graph builder

May import: foundation, io, models.
"""

from .cards import ALIASES, AUTO, ModelCard, OutputChannel, builtin_card, builtin_ids, card_from_dict, load_card
from .folders import cache_dir, weights_dir, weights_folder
from .quantize import Check, VariantResult, build_variant, check_variant
from .resolve import Model, resolve_card, resolve_model
from .runners import PROCESS_RUNNERS, Runner, RunnerCache, open_runner
from .variants import PRECISIONS, find_variant, with_precision
from .weights import import_keras, offline

__all__ = ["ALIASES", "AUTO", "Check", "Model", "ModelCard", "OutputChannel", "PRECISIONS", "PROCESS_RUNNERS",
           "Runner", "RunnerCache", "VariantResult", "build_variant", "builtin_card", "builtin_ids", "cache_dir",
           "card_from_dict", "check_variant", "find_variant", "import_keras", "load_card", "offline",
           "open_runner", "resolve_card", "resolve_model", "weights_dir", "weights_folder", "with_precision"]
