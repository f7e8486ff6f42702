"""The chain: read -> scale -> resample -> tile -> infer -> stitch, and the pipeline that drives one product.

Each step is a small module with plain functions on numpy arrays: ``scale`` (DN to the card's units and
scaling), ``resample`` (native grids to the working grid and back), ``infer`` (ONNX Runtime over batches of
tiles of a resolved model), ``stitch`` (tiles back into rows), ``buffers`` (growing classes after stitching).
``pipeline`` streams a product through them, one tile row at a time.

May import: foundation, io, models, chain.
"""
