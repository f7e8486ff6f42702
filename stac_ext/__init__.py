"""STAC adapters: items for every output (writer) and Sentinel-2 items as input (reader)."""
