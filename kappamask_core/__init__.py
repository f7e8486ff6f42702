"""KappaMask core: Sentinel-2 cloud and cloud-shadow classification.

Classes: 0 missing, 1 clear, 2 cloud shadow, 3 semi-transparent cloud, 4 cloud.

The parts, in the order the data flows (each sub-package's docstring says what it owns and may import, and
``__all__`` lists its public names): ``foundation`` (tables, errors, grid arithmetic), ``io`` (reading products,
writing files), ``models`` (cards, weights, runners, variants, and :func:`resolve_model`, where a model name
becomes a runnable model), ``chain`` (the prepared job and the steps it streams through), ``learning``
(training, selection, evaluation) and ``faces`` (the Python API that writes files, batches, data cubes, variants,
the command line). The names below are the ones most users need.
"""

from .chain import Classification, ClassifyOptions
from .faces import (area_statistics, classify, classify_cube, classify_datacube, classify_many, classify_to_files,
                    clear_dates, composite, make_variant, run)
from .foundation import (
                         CLASSES,
                         BandsError,
                         InputError,
                         KappaMaskError,
                         ModelError,
                         OutputError,
                         TrainingError,
                         __version__,
)
from .io import Product, open_product
from .models import Model, ModelCard, resolve_model

__all__ = ["CLASSES", "BandsError", "Classification", "ClassifyOptions", "InputError", "KappaMaskError", "Model",
           "ModelCard", "ModelError", "OutputError", "Product", "TrainingError", "__version__", "area_statistics", "classify",
           "classify_cube", "classify_datacube", "classify_many", "classify_to_files", "clear_dates", "composite",
           "make_variant",
           "open_product", "resolve_model", "run"]
