"""What every reader makes: a :class:`Product`, an image of one sensor (Sentinel-2, Landsat, HLS) whose bands
are read lazily at native resolution, with the metadata the scaling step needs; and the rules every reader applies
alike: the level a product's own bands and names tell, the data types a band's values may have, and scalings
declared by several sources, which must agree (:func:`declared_scaling`, :func:`merge_scaling`)."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from ..foundation.bands import BAND_BY_NAME, DEFAULT_QUANTIFICATION, LEVEL_MEANING, SENSORS, Sensor
from ..foundation.errors import BandsError, InputError
from ..foundation.grid import Grid

log = logging.getLogger(__name__)

OFFSET_BASELINE = (4, 0)  # from processing baseline 04.00 on, DN carry a -1000 offset


class Band(Protocol):
    """One band of a product, read at its native resolution: a file (:class:`kappamask_core.io.bandfiles.FileBand`)
    or an array held in memory (:class:`kappamask_core.io.arrays.ArrayBand`)."""

    name: str
    factor: int  # native pixel size in units of the product's 10 m grid
    shape: tuple[int, int]
    dtype: str

    def read(self) -> np.ndarray: ...

    def open(self) -> Any: ...

    def read_decimated(self, shape: tuple[int, int], window: object = None) -> np.ndarray: ...


@dataclass
class Product:
    """An image ready for the core steps.

    ``grid`` is the base grid (10 m for Sentinel-2 products, 30 m for Landsat and HLS); every band has an integer
    ``factor`` = its native pixel size in base pixels. Bands are keyed by their role (Sentinel-2's name of the
    band, see :data:`~kappamask_core.foundation.bands.SENSORS`). ``units`` says whether band values are DN
    (``dn``), harmonised DN or reflectance (``reflectance``).
    """

    id: str
    level: str | None
    grid: Grid
    bands: Mapping[str, Band]
    units: str = "dn"
    offsets: dict[str, float] = field(default_factory=dict)
    quantification: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_QUANTIFICATION))
    baseline: str | None = None
    datetime: datetime | None = None
    platform: str | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)
    scaling_source: str | None = None  # what declared the offsets and quantification (None: the defaults)
    sensor: str = "sentinel-2"  # a key of SENSORS

    @property
    def sensor_info(self) -> Sensor:
        return SENSORS[self.sensor]

    def verify(self, names: Iterable[str]) -> None:
        """Check the named bands' files against the product's manifest, where it has one."""
        for name in names:
            verify = getattr(self.bands.get(name), "verify", None)
            if verify is not None:  # bands of files a manifest lists
                verify(self.source or self.id)

    def require(self, names: Iterable[str]) -> None:
        missing = [n for n in names if n not in self.bands]
        if missing:
            label = self.sensor_info.label
            have = ", ".join(sorted(map(label, self.bands))) or "none"
            raise BandsError(f"{self.source or self.id}: missing band(s) {', '.join(map(label, missing))} "
                             f"(found: {have})")


def parse_baseline(text: object) -> tuple[int, int]:
    """A processing baseline such as '04.00', '4.0' or 'N0400' as (major, minor); anything else is an error."""
    m = re.fullmatch(r"\s*N?(\d{1,2})\.?(\d{2})\s*|\s*(\d{1,2})\.(\d{1,2})\s*", str(text))
    if not m:
        raise InputError(f"processing baseline {text!r} is not a version such as 04.00")
    major, minor = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    return int(major), int(minor)


def metadata_number(text: str, what: str) -> float:
    """A metadata value (``what`` names it: the file and the key) as a finite number; anything else is one line."""
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{what} is {text!r}, not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{what} is {text!r}, not a finite number")
    return value


def check_dtype(name: str, dtype, what: str, floats: bool = True, units: str = "dn") -> None:
    """The data type a band's values may have, whatever holds them: integers (floats only where ``floats``: openEO
    and xarray cubes), and for spectral DN at least 16 bits (an 8-bit band is a picture, not the band)."""
    kind = np.dtype(dtype)
    if np.issubdtype(kind, np.floating) and floats:
        return
    if not np.issubdtype(kind, np.integer):
        raise InputError(f"{what} has data type {dtype}; band DN must be integers"
                         + (" (or floating-point values in an array)" if floats else ""))
    if units != "reflectance" and BAND_BY_NAME[name].quantification_key != "none" and kind.itemsize < 2:
        raise InputError(f"{what} holds {dtype} values, which cannot carry band DN (up to 65535): it was "
                         "converted to 8 bits (a picture, not the band)")


def declared_scaling(declared: dict[str, tuple[float, float]], source: str,
                     what: str) -> tuple[dict[str, float], dict[str, float]]:
    """(offsets, quantification) from per-band (scale, offset) pairs, where physical value = DN x scale + offset
    (GeoTIFF tags, STAC ``raster:bands``): quantification 1 / scale and a DN offset of offset / scale. Bands of
    one quantification kind must agree on their scale."""
    offsets: dict[str, float] = {}
    quantification: dict[str, tuple[float, str]] = {}
    for name, (scale, offset) in declared.items():
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                   for v in (scale, offset)) or scale <= 0:
            raise InputError(f"{source}: {what} of {name} give scale {scale!r} and offset {offset!r}; the scale must "
                             "be a positive number and the offset a number")
        key = BAND_BY_NAME[name].quantification_key
        q = round(1.0 / scale, 6)
        if key in quantification and not math.isclose(quantification[key][0], q, rel_tol=1e-6):
            other = quantification[key][1]
            raise InputError(f"{source}: {what} of {other} and {name} give different scales "
                             f"({1 / quantification[key][0]:g} and {scale:g}); one product's bands share one scale")
        quantification.setdefault(key, (q, name))
        offsets[name] = round(offset / scale, 6)  # -0.2 / 0.0001 is -2000.0000000000002 in binary
    return offsets, {key: q for key, (q, _) in quantification.items()}


def merge_scaling(product: "Product", offsets: dict, quantification: dict, what: str) -> None:
    """Take the scaling ``what`` declares (tags, STAC raster:bands) into the product. Where the product's scaling
    was already declared (``product.scaling_source``: its metadata file, another declaration), the two must
    agree: a product whose sources contradict each other is refused, never guessed."""
    if not offsets and not quantification:
        return
    if product.scaling_source is not None:
        for key, value in quantification.items():
            have = product.quantification[key]
            if not math.isclose(have, value, rel_tol=1e-6):
                raise InputError(f"{product.source}: {what} gives quantification {value:g} for {key} bands, but "
                                 f"{product.scaling_source} says {have:g}; the sources contradict each other")
        for name, value in offsets.items():
            have = product.offsets.get(name, 0.0)
            if not math.isclose(have, value, abs_tol=1e-3):
                raise InputError(f"{product.source}: {what} gives band {name} the DN offset {value:g}, but "
                                 f"{product.scaling_source} says {have:g}; the sources contradict each other")
        return
    product.quantification.update(quantification)
    product.offsets.update(offsets)
    product.scaling_source = what


def level_evidence(names, text: str = "", sensor: str = "sentinel-2") -> str | None:
    """The level a product's own bands and names say it is, or None when they do not say: Sentinel-2's product
    types and level-only bands; Landsat Collection 2's processing level in its names (L1TP, L2SP); HLS is surface
    reflectance only."""
    upper = text.upper()
    if sensor != "sentinel-2":
        if len(SENSORS[sensor].levels) == 1:
            return SENSORS[sensor].levels[0]
        return "L2A" if re.search(r"_L2S[PR]_", upper) else "L1C" if re.search(r"_L1(TP|GT|GS)_", upper) else None
    if "MSIL2A" in upper or {"AOT", "WVP", "SCL"} & set(names):
        return "L2A"
    if "MSIL1C" in upper or "B10" in names:
        return "L1C"
    return None


def check_level(level: str | None, names: Iterable[str], text: str, source: str,
                sensor: str = "sentinel-2") -> str | None:
    """The product's level: its own evidence, checked against ``level`` when one is given."""
    evidence = level_evidence(names, text, sensor)
    if level and evidence and level != evidence and sensor != "sentinel-2":
        raise BandsError(f"{source}: level {level} was requested, but the {SENSORS[sensor].title} product is "
                         f"{evidence} ({LEVEL_MEANING[evidence]}, as its metadata and names say)")
    if level and evidence and level != evidence:
        why = ("its file names say MSIL2A" if "MSIL2A" in text.upper() else "its file names say MSIL1C"
               if "MSIL1C" in text.upper() else "it has B10, which only L1C products carry" if evidence == "L1C"
               else "it has AOT, WVP or SCL, which only L2A products carry")
        raise BandsError(f"{source}: level {level} was requested, but the product is {evidence} ({why})")
    return evidence or level


_SAID: set = set()


def say_once(message: str) -> None:
    """A warning a batch that opens the product again (a rerun, each Dask task) need not repeat."""
    if message not in _SAID:
        _SAID.add(message)
        log.warning(message)
