"""The foundation: the tables and arithmetic every other part reads.

The five classes and their encodings (``classes``), the Sentinel-2 band table (``bands``), the class schemes
of other masks (``schemes``), the error hierarchy (``errors``), grid and tile arithmetic without I/O
(``grid``), and the entry points through which adapters plug in (``plugins``).

May import: foundation.
"""
