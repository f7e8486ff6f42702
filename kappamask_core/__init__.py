"""KappaMask core: Sentinel-2 cloud and cloud-shadow classification.

Classes: 0 missing, 1 clear, 2 cloud shadow, 3 semi-transparent cloud, 4 cloud.
"""

__version__ = "0.1.0"

from .classes import CLASSES  # noqa: E402
from .errors import InputError, KappaMaskError, ModelError, OutputError  # noqa: E402
from .pipeline import ClassifyOptions, classify, run  # noqa: E402
from .readers import open_product  # noqa: E402

__all__ = [
    "CLASSES",
    "ClassifyOptions",
    "InputError",
    "KappaMaskError",
    "ModelError",
    "OutputError",
    "classify",
    "open_product",
    "run",
]
