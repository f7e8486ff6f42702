"""STAC adapters (installed as ``kappamask_stac``), plugged into the core through entry points.

- ``writer``: the STAC item beside every output COG (classification, raster, projection, file, processing
  extensions) and ``collection``: the collection and catalog of a run
- ``reader``: Sentinel-2 STAC items as input (``open_item``)
- ``search``: a STAC API search as the inputs of a run (``search_items``); ``publish``: a run's items into a
  STAC API, read back (``publish``)
- ``validate``: offline validation against the bundled schemas (``validate_path``); ``cli``: ``kappamask stac``
"""
