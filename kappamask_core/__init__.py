"""KappaMask core: Sentinel-2 cloud and cloud-shadow classification.

Classes: 0 missing, 1 clear, 2 cloud shadow, 3 semi-transparent cloud, 4 cloud.

The parts, in the order the data flows (each sub-package's docstring says what it owns and may import):
``foundation`` (tables, errors, grid arithmetic), ``io`` (reading products, writing files), ``models`` (cards,
weights, and :func:`~kappamask_core.models.resolve.resolve_model`, where a model name becomes a runnable
model), ``chain`` (scale, resample, infer, stitch, buffers, and the pipeline), ``learning`` (training,
selection, evaluation) and ``faces`` (the Python API that writes files, batches, data cubes, the command line).
"""

from .chain.pipeline import ClassifyOptions, classify, run
from .foundation.classes import CLASSES
from .foundation.errors import InputError, KappaMaskError, ModelError, OutputError
from .foundation.version import __version__
from .io.readers import open_product
from .models.resolve import Model, resolve_model

__all__ = [
    "CLASSES",
    "ClassifyOptions",
    "InputError",
    "KappaMaskError",
    "Model",
    "ModelError",
    "OutputError",
    "__version__",
    "classify",
    "open_product",
    "resolve_model",
    "run",
]
