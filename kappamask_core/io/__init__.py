"""Reading and writing at the edges of the chain.

Sentinel-2 products (SAFE folders and zips, band folders, xarray) become a ``Product`` whose bands are read
lazily (``readers``); class maps become Cloud-Optimized GeoTIFFs and quicklooks (``writers``); every file is
written under a temporary name and renamed into place whole (``files``); GDAL's settings live in one place
(``gdal``).

May import: foundation, io.
"""
