"""Areas of interest for :func:`~kappamask_core.faces.stats.area_statistics`: read from a GeoDataFrame, GeoJSON, a
vector file or shapely geometries, checked (polygons, valid, ids named once), and placed on a map's CRS."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..foundation.errors import InputError


@dataclass(frozen=True)
class Areas:
    """Areas of interest: their ids and shapely geometries, in ``crs``."""

    ids: list
    geometries: list
    crs: Any

    def on(self, crs) -> list:
        """The geometries in ``crs`` (edges densified first, so that a long straight edge follows the projection)."""
        import shapely
        from rasterio.crs import CRS
        from rasterio.warp import transform_geom

        source, target = CRS.from_user_input(self.crs), CRS.from_user_input(crs)
        if source == target:
            return list(self.geometries)
        out = []
        for geom in self.geometries:
            west, south, east, north = geom.bounds
            dense = shapely.segmentize(geom, max(max(east - west, north - south) / 64, 1e-9))
            out.append(shapely.geometry.shape(transform_geom(source, target, shapely.geometry.mapping(dense))))
        return out


def read_areas(areas, crs=None, id_column: str | None = None) -> Areas:
    """Areas from a GeoDataFrame, a GeoJSON file or mapping (WGS84 unless it says otherwise), another vector file
    (through geopandas), or shapely geometries (one, a list or a dict id -> geometry) in ``crs``."""
    import shapely

    if isinstance(areas, Areas):
        return areas
    if hasattr(areas, "geometry") and hasattr(areas, "crs"):  # a GeoDataFrame
        if areas.crs is None:
            raise InputError("the areas' GeoDataFrame has no CRS; set one (gdf.set_crs(...))")
        ids = list(areas[id_column]) if id_column else list(areas.index)
        return _checked(Areas(ids, list(areas.geometry), areas.crs))
    if isinstance(areas, (str, Path)):
        path = Path(areas)
        if not path.is_file():
            raise InputError(f"{areas}: no such file of areas")
        if path.suffix.lower() in (".geojson", ".json"):
            try:
                areas = json.loads(path.read_text())
            except ValueError as exc:
                raise InputError(f"{path}: not GeoJSON ({exc})") from None
        else:
            try:
                import geopandas
            except ImportError:
                raise InputError(f"{path}: reading {path.suffix} files needs geopandas (pip install geopandas), "
                                 "or give the areas as GeoJSON") from None
            return read_areas(geopandas.read_file(path), id_column=id_column)
    if isinstance(areas, dict) and areas.get("type") in ("FeatureCollection", "Feature"):
        features = areas["features"] if areas["type"] == "FeatureCollection" else [areas]
        named = areas.get("crs", {}).get("properties", {}).get("name") if isinstance(areas.get("crs"), dict) else None
        ids = [(f.get("properties") or {}).get(id_column) if id_column else f.get("id", i)
               for i, f in enumerate(features)]
        return _checked(Areas(ids, [shapely.geometry.shape(f["geometry"]) for f in features],
                              crs or named or "EPSG:4326"))
    if isinstance(areas, dict):  # id -> geometry
        if crs is None:
            raise InputError("give the areas' CRS (crs=...) with shapely geometries")
        return _checked(Areas(list(areas), list(areas.values()), crs))
    geometries = [areas] if hasattr(areas, "geom_type") else list(areas)
    if crs is None:
        raise InputError("give the areas' CRS (crs=...) with shapely geometries")
    return _checked(Areas(list(range(len(geometries))), geometries, crs))


def _checked(areas: Areas) -> Areas:
    for area_id, geom in zip(areas.ids, areas.geometries):
        if geom is None or geom.geom_type not in ("Polygon", "MultiPolygon"):
            raise InputError(f"area {area_id!r} is a {getattr(geom, 'geom_type', 'missing geometry')}; areas are "
                             "polygons")
        if not geom.is_valid:
            raise InputError(f"area {area_id!r} is not a valid polygon (it crosses itself?); repair it first "
                             "(shapely.make_valid)")
    if len(set(map(str, areas.ids))) != len(areas.ids):
        raise InputError("the areas' ids repeat; name each area once (id_column=...)")
    return areas


def areas_bbox(areas: Areas) -> tuple[float, float, float, float]:
    """West, south, east, north of all the areas in WGS84 degrees (a STAC search's bbox)."""
    import shapely

    west, south, east, north = shapely.GeometryCollection(areas.on("EPSG:4326")).bounds
    return west, south, east, north
