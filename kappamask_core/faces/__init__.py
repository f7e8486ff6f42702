"""The faces: how users call the product.

- ``api``: :func:`classify` and :func:`run` for one product, :func:`classify_to_files` for a run's files
- ``batch``: many products at once with Dask (:func:`classify_many`)
- ``datacube``: data cubes: the openEO UDF's (:func:`classify_datacube`) and the lazy, many-date cubes of notebooks
  (:func:`classify_cube`, on dask)
- ``composites``: cloud-free composites of cubes (:func:`composite`) and of products of one tile
  (:func:`product_cube`, ``kappamask composite``)
- ``quantize``: reduced-precision variants made from real tiles and checked (:func:`make_variant`)
- ``stats`` and ``class_maps``: cloud statistics per area of interest (:func:`area_statistics`, :func:`clear_dates`)
  from classified cubes, COGs and run folders (``kappamask stats``)
- ``cli``: the ``kappamask`` command line, one module per group of commands with its parser

May import: foundation, io, models, chain, learning, faces.
"""

from .api import classify, classify_to_files, run
from .batch import classify_many
from .composites import composite, product_cube
from .datacube import OUTPUT_BANDS, classify_cube, classify_datacube
from .quantize import make_variant
from .stats import area_statistics, clear_dates

__all__ = ["OUTPUT_BANDS", "area_statistics", "classify", "classify_cube", "classify_datacube", "classify_many",
           "classify_to_files", "clear_dates", "composite", "make_variant", "product_cube", "run"]
