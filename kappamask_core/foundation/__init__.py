"""The foundation: the tables and arithmetic every other part reads.

- ``classes``: the five classes, their encodings and the usable-pixel table, the one source of truth
- ``bands``: the Sentinel-2 band table (resolution, levels, quantification)
- ``schemes``: the class schemes of other masks, mapped onto the five classes
- ``errors``: the error hierarchy (each error is also a ``ValueError``, ``OSError`` or ``RuntimeError``)
- ``grid``: grids and tile layouts, arithmetic without I/O
- ``redact``: secrets kept out of every log line and message
- ``urls``: every URL a user gives, checked by one rule and joined as paths
- ``machine``: the cores this process may use (affinity and cgroup quota)
- ``stages``: where a run's time goes, stage by stage (wall and core-seconds)
- ``plugins``: the entry points through which the adapters plug in
- ``types``: the names of the kinds of values public functions take (paths, band names, product sources)
- ``version``: the package version

May import: foundation.
"""

from .bands import BAND_BY_NAME, BANDS, SENSORS, Band, Sensor, asset_band, normalise_band_name, sensor_named
from .classes import (
                      CLASS_BY_NAME,
                      CLASSES,
                      ENCODINGS,
                      MISSING,
                      USABLE_CLASSES,
                      USABLE_MISSING,
                      OutputClass,
                      data_bounds,
                      data_window,
                      encode,
)
from .errors import (BandsError, InputError, KappaMaskError, MemoryLimitError, ModelError, OutputError, TrainingError,
                     memory_limit_text)
from .grid import Grid, TileLayout
from .redaction import add_secret, redact
from .schemes import SCHEMES, to_classes
from .stages import Stages
from .types import Bands, PathLike, ProductSource
from .urls import checked_url, join_path
from .version import __version__

__all__ = ["BANDS", "BAND_BY_NAME", "Band", "BandsError", "CLASSES", "CLASS_BY_NAME", "ENCODINGS", "Grid",
           "InputError", "KappaMaskError", "MISSING", "MemoryLimitError", "ModelError", "OutputClass", "OutputError", "SCHEMES",
           "Stages", "TileLayout", "TrainingError", "USABLE_CLASSES", "USABLE_MISSING", "__version__", "add_secret", "asset_band", "checked_url", "join_path", "Bands", "PathLike", "ProductSource",
           "data_bounds", "data_window", "encode", "memory_limit_text", "normalise_band_name", "redact", "to_classes",
           "SENSORS", "Sensor", "sensor_named"]
