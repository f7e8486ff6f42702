"""The band table: Sentinel-2's bands (native resolution, levels, common names) and every other sensor's bands as
the models know them, with the names each catalogue gives them.

The models name their input bands as Sentinel-2 does (``B02`` .. ``B12``): a band's *role*. Another sensor's band
fills the role of the Sentinel-2 band it matches (Landsat 8's B5, near infrared, fills ``B08``), and
:data:`SENSORS` says, for each sensor, which of its bands fill which role and under which names the USGS and
HLS files, Earth Search, Planetary Computer, Copernicus Data Space and openEO label them. Every reader, cube and
catalogue resolves a label here (:func:`asset_band`), and nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InputError


@dataclass(frozen=True)
class Band:
    """One Sentinel-2 band: its native resolution, the levels that carry it, its quantification."""

    name: str
    resolution: int  # native pixel size in metres
    common_name: str | None  # STAC eo common name, where one exists
    levels: tuple[str, ...]  # product levels that carry the band
    quantification_key: str = "band"  # which quantification value applies

    @property
    def factor(self) -> int:
        """Native pixel size in units of the 10 m grid."""
        return self.resolution // 10


_BOTH = ("L1C", "L2A")
BANDS: tuple[Band, ...] = (
    Band("B01", 60, "coastal", _BOTH),
    Band("B02", 10, "blue", _BOTH),
    Band("B03", 10, "green", _BOTH),
    Band("B04", 10, "red", _BOTH),
    Band("B05", 20, "rededge1", _BOTH),
    Band("B06", 20, "rededge2", _BOTH),
    Band("B07", 20, "rededge3", _BOTH),
    Band("B08", 10, "nir", _BOTH),
    Band("B8A", 20, "nir08", _BOTH),
    Band("B09", 60, "nir09", _BOTH),
    Band("B10", 60, "cirrus", ("L1C",)),
    Band("B11", 20, "swir16", _BOTH),
    Band("B12", 20, "swir22", _BOTH),
    Band("AOT", 10, None, ("L2A",), quantification_key="AOT"),
    Band("WVP", 10, None, ("L2A",), quantification_key="WVP"),
    Band("SCL", 20, None, ("L2A",), quantification_key="none"),
)

BAND_BY_NAME = {b.name: b for b in BANDS}
SPECTRAL_BANDS = tuple(b.name for b in BANDS if b.common_name is not None)
# Index of each spectral band in the product metadata (band_id="0".."12").
BAND_ID = {name: i for i, name in enumerate(SPECTRAL_BANDS)}

DEFAULT_QUANTIFICATION = {"band": 10000.0, "AOT": 1000.0, "WVP": 1000.0, "none": 1.0}

# The units a product's values can be in. "dn": stored DN, never negative, 0 is no data, the product's offset still
# to be added. "harmonised": DN with the offset already added by whoever loaded them (reflectance x 10000, as
# Copernicus Data Space's openEO loader delivers Sentinel-2 bands: int16, not clipped), so as low as
# HARMONISED_FLOOR (reflectance -0.1, a stored DN of 0 less baseline 04.00's 1000), a 0 is reflectance 0 and only
# the loader's no-data value (NaN) is missing. "reflectance": reflectance, 0 and NaN no data.
UNITS = ("dn", "harmonised", "reflectance")
HARMONISED_FLOOR = -1000.0


@dataclass(frozen=True)
class Sensor:
    """A sensor whose products the readers know: its own band names, the role each fills (the Sentinel-2 band
    the models know it as), the names catalogues give them, and the facts its products' metadata must agree with."""

    id: str  # what model cards list under "sensors"
    title: str  # for messages: "Landsat 8 (OLI)"
    instrument: str  # STAC "instruments" value
    constellation: str
    platforms: tuple[str, ...]  # STAC "platform" values of its satellites
    resolution: int  # pixel size of its products' base grid (m): every reflective band's native size but Sentinel-2's
    bands: dict[str, str]  # its own band name (as its files name it) -> role
    common: dict[str, str]  # eo common names and catalogue asset keys -> role
    # (lowest, highest) DN offset its products' metadata may declare: an offset outside it shifts every value
    offset_range: tuple[float, float] = (-2000.0, 0.0)
    levels: tuple[str, ...] = ("L1C", "L2A")

    def role(self, label: str) -> str | None:
        """The role of one of this sensor's bands as a file, catalogue or cube labels it, or None."""
        key = str(label).strip()
        match = RESOLUTION_SUFFIX.match(key)
        if match and self.id == "sentinel-2":  # Copernicus Data Space's asset keys: B02_10m
            key = match.group(1)
        upper = key.upper().removeprefix("SR_")  # USGS Level-2 files: SR_B4
        if upper in self.bands:
            return self.bands[upper]
        if upper.startswith("B") and upper[1:].isdigit():  # B4, B04, b4
            for own, role in self.bands.items():
                if own[1:].isdigit() and int(own[1:]) == int(upper[1:]):
                    return role
        return self.common.get(key.lower())

    def own(self, role: str) -> str:
        """This sensor's own name of the band that fills ``role`` (Landsat 8's 'B5' for B08)."""
        return next((name for name, r in self.bands.items() if r == role), role)

    def common_name(self, role: str) -> str | None:
        """The eo common name (catalogues' asset key) of the band that fills ``role`` ('nir08' for Landsat's B08)."""
        return next((name for name, r in self.common.items() if r == role), None)

    def label(self, role: str) -> str:
        """The band that fills ``role`` as messages name it: 'B02', or 'B5 (nir08)' for Landsat 8's B08."""
        own, common = self.own(role), self.common_name(role)
        return own if own == role or common is None else f"{own} ({common})"

    def resolution_of(self, role: str) -> int:
        """The native pixel size (m) of the band that fills ``role``."""
        return BAND_BY_NAME[role].resolution if self.id == "sentinel-2" else self.resolution


_S2_OWN = {b.name: b.name for b in BANDS}
_S2_COMMON = {b.common_name: b.name for b in BANDS if b.common_name}
# Landsat 8 and 9 (OLI): Earth Search's and Planetary Computer's landsat-c2-l2 asset keys and eo common names
_OLI_COMMON = dict(coastal="B01", blue="B02", green="B03", red="B04", nir08="B08", nir="B08", swir16="B11",
                   swir22="B12", cirrus="B10")
_OLI_OWN = {"B1": "B01", "B2": "B02", "B3": "B03", "B4": "B04", "B5": "B08", "B6": "B11", "B7": "B12", "B9": "B10"}
# Landsat 5 (TM) and 7 (ETM+): band 1 is blue, band 6 thermal
_TM_OWN = {"B1": "B02", "B2": "B03", "B3": "B04", "B4": "B08", "B5": "B11", "B7": "B12"}
_TM_COMMON = {k: v for k, v in _OLI_COMMON.items() if k not in ("coastal", "cirrus")}
# Landsat Collection 2 DN offsets: Level-1 TOA reflectance -0.1 at 2e-5 per DN (-5000), Level-2 surface
# reflectance -0.2 at 2.75e-5 per DN (about -7272.7)
_LANDSAT_OFFSETS = (-8000.0, 0.0)


def _landsat(number: int, instrument: str, own: dict, common: dict) -> Sensor:
    return Sensor(f"landsat-{number}", f"Landsat {number} ({instrument.upper()})", instrument, "landsat",
                  (f"landsat-{number}",), 30, own, common, _LANDSAT_OFFSETS)


SENSORS: dict[str, Sensor] = {s.id: s for s in (
    Sensor("sentinel-2", "Sentinel-2 (MSI)", "msi", "sentinel-2", ("sentinel-2a", "sentinel-2b", "sentinel-2c"), 10,
           _S2_OWN, _S2_COMMON),
    _landsat(5, "tm", _TM_OWN, _TM_COMMON),
    _landsat(7, "etm+", _TM_OWN, _TM_COMMON),
    _landsat(8, "oli", _OLI_OWN, _OLI_COMMON),
    _landsat(9, "oli", _OLI_OWN, _OLI_COMMON),
    # NASA's Harmonized Landsat Sentinel-2 (v2.0): surface reflectance x 10000 on a 30 m grid; L30 numbers
    # Landsat's bands with two digits, S30 keeps Sentinel-2's numbers (B8A is its narrow near infrared)
    Sensor("hls-l30", "HLS L30 (Landsat 8 and 9 OLI)", "oli", "landsat", ("landsat-8", "landsat-9"), 30,
           {"B01": "B01", "B02": "B02", "B03": "B03", "B04": "B04", "B05": "B08", "B06": "B11", "B07": "B12",
            "B09": "B10"}, _OLI_COMMON, (0.0, 0.0), ("L2A",)),
    Sensor("hls-s30", "HLS S30 (Sentinel-2 MSI)", "msi", "sentinel-2", ("sentinel-2a", "sentinel-2b", "sentinel-2c"),
           30, {name: name for name in SPECTRAL_BANDS}, _S2_COMMON, (0.0, 0.0), ("L2A",)),
)}
SENTINEL_2 = SENSORS["sentinel-2"]
# what the levels mean for every sensor: Landsat Collection 2 Level-1 is top-of-atmosphere reflectance (the L1C
# models), Level-2 and HLS surface reflectance (the L2A models)
LEVEL_MEANING = {"L1C": "top-of-atmosphere reflectance", "L2A": "surface reflectance"}


def sensor_named(name: "str | Sensor | None") -> Sensor:
    """The sensor ``name`` ('landsat-8', 'Landsat 8', 'LANDSAT_8', 'hls-l30', a STAC platform such as
    'sentinel-2b'), or Sentinel-2 for None; an unknown name is an InputError that lists the known ones."""
    if isinstance(name, Sensor):
        return name
    if name is None:
        return SENTINEL_2
    key = re.sub(r"[\s_]+", "-", str(name).strip().lower())
    if key in SENSORS:
        return SENSORS[key]
    for sensor in SENSORS.values():
        if not sensor.id.startswith("hls") and key in sensor.platforms:
            return sensor
    raise InputError(f"unknown sensor {name!r}; known: {', '.join(SENSORS)}")


def sensor_of_platforms(platforms: list[str], what: str) -> str | None:
    """The one sensor of the dates whose STAC ``platform`` values are ``platforms`` (None for none). Dates of
    several sensors are one sensor only where their bands are labelled alike (Landsat 8 and 9; Landsat 5 and 7);
    others are refused (InputError), as is a platform no sensor here has."""
    found = set()
    for value in platforms:
        try:
            found.add(sensor_named(value).id)
        except InputError:
            raise InputError(f"{what}'s platform {value!r} is not a sensor the models know ({', '.join(SENSORS)}); "
                             "give its sensor") from None
    if len({(tuple(SENSORS[s].bands.items()), tuple(SENSORS[s].common.items())) for s in found}) > 1:
        raise InputError(f"{what} holds dates of {', '.join(SENSORS[s].title for s in sorted(found))}, whose bands "
                         "are numbered differently; load each sensor's dates as a cube of its own")
    return min(found) if found else None


def normalise_band_name(name: str, sensor: "str | Sensor | None" = None) -> str:
    """The role of a band label ('b2', 'B02', 'b8a', 'blue'; Landsat's 'B5', 'SR_B5', 'nir08') for ``sensor``
    (Sentinel-2 where none is given); KeyError where the label names none of its bands."""
    role = sensor_named(sensor).role(name)
    if role is None:
        raise KeyError(name)
    return role


RESOLUTION_SUFFIX = re.compile(r"^(.*?)[_-](\d{2})m$", re.IGNORECASE)  # "B02_10m", "SCL-20m"


def asset_band(key: str, sensor: "str | Sensor | None" = None) -> tuple[str, int] | None:
    """(role, resolution in m) of a band of ``sensor`` (Sentinel-2 where none is given) as files, catalogues and
    cubes label it: its own name ('B02', 'b8a'; Landsat's 'B5', 'SR_B5'; HLS's 'B05'), an eo common name or a
    catalogue's asset key ('blue', 'nir08'), Copernicus Data Space's keys with a resolution suffix ('B02_10m');
    None for anything else (thumbnails, metadata, quality layers)."""
    sensor = sensor_named(sensor)
    role = sensor.role(str(key))
    if role is None:
        return None
    match = RESOLUTION_SUFFIX.match(str(key))
    stated = int(match.group(2)) if match and sensor is SENTINEL_2 else None
    return role, stated or sensor.resolution_of(role)
