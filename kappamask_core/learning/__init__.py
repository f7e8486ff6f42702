"""Learning on top of the chain.

- ``training``: fine-tuning a KappaMask network (extra ``train``): :func:`train`; its checks before any epoch
  (``training_checks``) and its sub-tiles, split by product (``training_data``)
- ``selection``: choosing what to label next, by the model's uncertainty: :func:`select`
- ``evaluate``: class maps scored against labels, as the papers' tables: :func:`evaluate_paths`
- ``kappaset``: the KappaSet sub-tile format

May import: foundation, io, models, chain, learning.
"""

from .evaluate import Evaluation, evaluate_arrays, evaluate_paths, write_evaluation
from .selection import select
from .training import TrainingResult, train

__all__ = ["Evaluation", "TrainingResult", "evaluate_arrays", "evaluate_paths", "select", "train",
           "write_evaluation"]
