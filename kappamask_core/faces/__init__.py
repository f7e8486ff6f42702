"""The faces: how users call the product. The Python API that writes files (``api``), many products with
Dask (``batch``), openEO data cubes (``datacube``, behind the UDF) and the command line (``cli``).

May import: foundation, io, models, chain, learning, faces.
"""
