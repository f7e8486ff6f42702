"""Learning on top of the chain: fine-tuning (``training``), choosing what to label next (``selection``),
scoring masks against labels (``evaluate``) and the KappaSet sub-tile format (``kappaset``).

May import: foundation, io, models, chain, learning.
"""
