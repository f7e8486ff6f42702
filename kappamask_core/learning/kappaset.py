"""KappaSet-format sub-tiles (netCDF, 512 x 512): read them and re-run the official golden check.

A sub-tile holds one variable per band with values DN / 65535 (the official
predictor's storage, i.e. a card's ``dn_fraction`` units), label variables
such as ``Label`` and, in the official test data, ``KML1C`` / ``KML2A``: the
argmax the official network produced for that sub-tile. Reading needs the
``kappaset`` extra (h5netcdf).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..chain.scale import apply_value_scaling
from ..foundation.errors import InputError
from ..models.cards import ModelCard

LABEL_VARIABLES = ("Label", "label", "KML1C", "KML2A")


def open_subtile(path):
    try:
        import xarray as xr

        return xr.open_dataset(path, engine="h5netcdf")
    except ImportError:
        raise InputError("reading KappaSet netCDF sub-tiles needs h5netcdf: pip install 'kappamask[kappaset]'") from None
    except Exception as exc:
        raise InputError(f"cannot read netCDF sub-tile {path}: {exc}") from None


def read_label(path, variable: str | None = None) -> np.ndarray:
    with open_subtile(path) as ds:
        names = [variable] if variable else [v for v in LABEL_VARIABLES if v in ds.variables]
        if not names or names[0] not in ds.variables:
            raise InputError(f"{path}: no label variable ({variable or ', '.join(LABEL_VARIABLES)}); "
                             f"variables: {', '.join(ds.variables)}")
        return np.asarray(ds[names[0]].values)


def read_subtile(path, card: ModelCard) -> np.ndarray:
    """The card's bands of one sub-tile, scaled as the card says: (bands, H, W) float32."""
    if card.units != "dn_fraction":
        raise InputError(f"model {card.id!r} does not take the sub-tiles' DN / 65535 values")
    with open_subtile(path) as ds:
        missing = [b for b in card.bands if b not in ds.variables]
        if missing:
            raise InputError(f"{path}: sub-tile lacks band(s) {', '.join(missing)}")
        stack = np.stack([np.asarray(ds[b].values, dtype=np.float32) for b in card.bands])
    return apply_value_scaling(stack, card.value_scaling, card.clip_min)


def verify_golden(runner, paths, label: str | None = None) -> list[tuple[str, float]]:
    """Run ``runner`` on each sub-tile; return (name, share of pixels whose argmax equals the stored label)."""
    results = []
    for path in sorted(Path(p) for p in paths):
        x = read_subtile(path, runner.card)[None]
        if x.shape[-2:] != (runner.card.tile_size,) * 2:
            raise InputError(f"{path}: a {x.shape[-2]} x {x.shape[-1]} px sub-tile; model {runner.card.id} takes "
                             f"{runner.card.tile_size} x {runner.card.tile_size} px tiles")
        argmax = np.argmax(runner.run(x)[0], axis=0)
        expected = read_label(path, label)
        if expected.shape != argmax.shape:
            raise InputError(f"{path}: label shape {expected.shape} differs from the prediction {argmax.shape}")
        results.append((path.name, float((argmax == expected).mean())))
    if not results:
        raise InputError("no sub-tiles given")
    return results
