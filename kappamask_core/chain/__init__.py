"""The chain: read -> scale -> resample -> tile -> infer -> stitch, for one prepared job.

- ``options``: :class:`ClassifyOptions`, how a run classifies (stitching, overlap, precision, buffers, ...)
- ``job``: :func:`prepare` makes the :class:`Job` (product opened, model resolved and checked, runner made in a
  thread of its own while reading starts, tiles and memory planned), once, for every face
- ``plan``: the tile layout and the memory a product needs
- ``strips``: the bands read and prepared one tile-high strip at a time, in a worker thread
- ``scale``: DN to the card's units and scaling; ``resample``: native grids to the working grid and back
- ``stitch``: tiles back into rows; ``buffers``: classes grown by metres after stitching
- ``pipeline``: :func:`execute` streams a job through the steps; ``lookup``: models that read the product's own
  mask; ``preview``: the true-colour picture of the quicklook, sampled from the strips
- ``results``: :class:`Classification`, what a run returns
- ``coverage``: the exact share of each pixel an area of interest covers (for statistics per area)
- ``composite``: cloud-free composites over time from the bands and their class maps (median, best pixel)

May import: foundation, io, models, chain.
"""

from .job import Job, prepare
from .options import ClassifyOptions
from .pipeline import execute
from .results import Classification

__all__ = ["Classification", "ClassifyOptions", "Job", "execute", "prepare"]
