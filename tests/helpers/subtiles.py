"""Synthetic KappaSet sub-tiles whose labels follow a known rule of the bands, for training and its checks."""

from __future__ import annotations

import numpy as np

BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
TILE = 32


def rule(dn: np.ndarray) -> np.ndarray:
    """The known function of the bands the synthetic labels follow: KappaSet codes 1 to 4 from two bands, B02
    above 3000 and B11 above 2500; neither band alone tells the four classes apart."""
    return (1 + (dn[1] > 3000) + 2 * (dn[11] > 2500)).astype(np.uint8)


def write_subtile(path, dn, label):
    import xarray as xr

    ds = xr.Dataset({b: (("y", "x"), (dn[i] / 65535).astype(np.float32)) for i, b in enumerate(BANDS)})
    ds["Label"] = (("y", "x"), label)
    ds.to_netcdf(path, engine="h5netcdf")


def synthetic_set(folder, products=4, per_product=6, seed=0):
    """Small sub-tiles (32 px, for the U-Net of v1) whose B02 is 8 px blocks of DN in 0..6000; other bands random."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for p in range(products):
        for k in range(per_product):
            dn = rng.integers(500, 4000, (13, TILE, TILE)).astype(np.float32)
            dn[1] = np.kron(rng.integers(0, 6000, (TILE // 8, TILE // 8)), np.ones((8, 8)))
            label = rule(dn)
            label[:2, :2] = 5  # missing pixels, left out of the loss
            write_subtile(folder / f"S2A_MSIL1C_2020010{p}T000000_T00XX{p}_{k}.nc", dn, label)
    return folder
