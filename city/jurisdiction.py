"""The governance hierarchy: city → district (区) → street/town (街道/镇) →
unit grid (单元网格), and where a point falls in it.

One GeoJSON FeatureCollection (WGS-84, ``[lon, lat]``) holds all levels; each
feature's properties are ``level`` (``district`` | ``street`` | ``grid``),
``id``, ``name`` and ``parent`` (the id of the level above; ``null`` or the
collection's ``city.id`` for a district). Grid ids follow GB/T 30428.1
(street code + community + sequence), but any unique string works. The
bundled sample (:data:`SAMPLE_PATH`) is simplified, not official; see
``city/data/sample/make_jurisdiction.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import shapely
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError
from shapely.geometry import shape as to_shape
from shapely.geometry.base import BaseGeometry

from city.errors import DataError, NotFound
from city.geo import LatLon

SAMPLE_PATH = Path(__file__).parent / "data" / "sample" / "jurisdiction.geojson"

Level = Literal["district", "street", "grid"]
_ABOVE: dict[str, str | None] = {"district": None, "street": "district", "grid": "street"}
_LEVEL_ZH = {"district": "区", "street": "街道", "grid": "单元网格"}
TOLERANCE_DEG = 1e-5
"""How far (≈ 1 m) a street may stick out of its district, or a grid out of its street."""


class Area(BaseModel):
    """One polygon of the hierarchy; its shapely geometry is ``shape`` (lon, lat)."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    parent: str | None = None
    _shape: BaseGeometry = PrivateAttr()

    @classmethod
    def build(cls, geometry: BaseGeometry, **fields) -> "Area":
        area = cls(**fields)
        area._shape = geometry
        shapely.prepare(geometry)
        return area

    @property
    def shape(self) -> BaseGeometry:
        return self._shape

    @property
    def wkt(self) -> str:
        return self._shape.wkt


class District(Area):
    """A district (区/县)."""


class Street(Area):
    """A street or town (街道/镇); ``parent`` is its district."""


class Grid(Area):
    """A unit grid (单元网格); ``parent`` is its street."""


_MODEL: dict[str, type[Area]] = {"district": District, "street": Street, "grid": Grid}


class Location(BaseModel):
    """Where a point falls; a field is None where no area holds the point."""

    district_id: str | None = None
    district_name: str | None = None
    street_id: str | None = None
    street_name: str | None = None
    grid_id: str | None = None
    grid_name: str | None = None

    @property
    def found(self) -> bool:
        return self.district_id is not None


class Jurisdiction:
    """All districts, streets and grids, with point lookup through STRtrees."""

    def __init__(self, areas: list[Area], *, note: str = "", sample: bool = False, source: str = ""):
        self.note, self.sample, self.source = note, sample, source
        self.districts: dict[str, District] = {a.id: a for a in areas if isinstance(a, District)}
        self.streets: dict[str, Street] = {a.id: a for a in areas if isinstance(a, Street)}
        self.grids: dict[str, Grid] = {a.id: a for a in areas if isinstance(a, Grid)}
        # per level: (tree, areas sorted by id): on a shared border the smallest id wins
        self._trees = {}
        for level, d in (("grid", self.grids), ("street", self.streets), ("district", self.districts)):
            items = [d[k] for k in sorted(d)]
            self._trees[level] = (shapely.STRtree([a.shape for a in items]), items)

    def __repr__(self) -> str:
        return (f"<Jurisdiction {len(self.districts)} districts, {len(self.streets)} streets, "
                f"{len(self.grids)} grids{' (sample)' if self.sample else ''}>")

    def _get(self, d: dict, id_: str, what: str):
        try:
            return d[id_]
        except KeyError:
            raise NotFound(f"jurisdiction: no {what} with id {id_!r}") from None

    def district(self, id_: str) -> District:
        return self._get(self.districts, id_, "district (区)")

    def street(self, id_: str) -> Street:
        return self._get(self.streets, id_, "street (街道)")

    def grid(self, id_: str) -> Grid:
        return self._get(self.grids, id_, "grid (单元网格)")

    def area(self, id_: str) -> Area:
        """The district, street or grid with this id."""
        for d in (self.districts, self.streets, self.grids):
            if id_ in d:
                return d[id_]
        raise NotFound(f"jurisdiction: no district, street or grid with id {id_!r}")

    def children(self, id_: str) -> list[Area]:
        """The streets of a district or the grids of a street, by id."""
        area = self.area(id_)
        below = self.streets if isinstance(area, District) else self.grids if isinstance(area, Street) else {}
        return [below[k] for k in sorted(below) if below[k].parent == id_]

    def centroid(self, id_: str) -> LatLon:
        """The area's centroid, or a point inside it where the centroid falls outside."""
        geom = self.area(id_).shape
        c = geom.centroid
        if not geom.covers(c):
            c = geom.representative_point()
        return LatLon(lat=round(c.y, 6), lon=round(c.x, 6))

    def _location(self, grid: Grid | None, street: Street | None, district: District | None) -> Location:
        if grid is not None:
            street = self.streets[grid.parent]
        if street is not None:
            district = self.districts[street.parent]
        return Location(
            district_id=district and district.id, district_name=district and district.name,
            street_id=street and street.id, street_name=street and street.name,
            grid_id=grid and grid.id, grid_name=grid and grid.name,
        )

    def locate(self, lat: float, lon: float) -> Location:
        """The district, street and grid holding the WGS-84 point (all None outside)."""
        point = shapely.Point(lon, lat)
        found: dict[str, Area | None] = {}
        for level in ("grid", "street", "district"):
            tree, items = self._trees[level]
            hits = tree.query(point, predicate="intersects")
            found[level] = items[int(hits.min())] if len(hits) else None
            if found[level] is not None:
                break
        return self._location(found.get("grid"), found.get("street"), found.get("district"))

    def locate_many(self, lats, lons) -> list[Location]:
        """:meth:`locate` for arrays of points, querying each tree once."""
        points = shapely.points(np.asarray(lons, dtype=float), np.asarray(lats, dtype=float))
        first: dict[str, np.ndarray] = {}
        for level in ("grid", "street", "district"):
            tree, _ = self._trees[level]
            pt, idx = tree.query(points, predicate="intersects")
            best = np.full(len(points), np.iinfo(np.int64).max)
            np.minimum.at(best, pt, idx)
            first[level] = best
        out = []
        for i in range(len(points)):
            picks = [self._trees[lv][1][int(first[lv][i])] if first[lv][i] < np.iinfo(np.int64).max else None
                     for lv in ("grid", "street", "district")]
            out.append(self._location(*picks))
        return out


# -- loading ------------------------------------------------------------------------


class _Props(BaseModel):
    level: Level
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    parent: str | None


def load_jurisdiction(path: Path) -> Jurisdiction:
    """Read and check a jurisdiction GeoJSON: unique ids, every parent present
    and one level up, valid (Multi)Polygons in lon/lat range, streets inside
    their district and grids inside their street (within ``TOLERANCE_DEG``).
    Raises :class:`DataError` naming the file and the feature."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid UTF-8 JSON: {e}") from None
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection" or not isinstance(data.get("features"), list):
        raise DataError(f"{path}: expected a GeoJSON FeatureCollection with a 'features' list")
    city = data.get("city") or {}
    city_id = city.get("id") if isinstance(city, dict) else None

    areas: dict[str, tuple[str, Area]] = {}  # id -> (level, area)
    for n, feat in enumerate(data["features"], start=1):
        props = feat.get("properties") if isinstance(feat, dict) else None
        label = f"feature {n}" + (f" ({props.get('id')})" if isinstance(props, dict) and props.get("id") else "")
        try:
            p = _Props.model_validate(props)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"]) or "properties"
            raise DataError(f"{path}: {label}: field {loc}: {err['msg']}") from None
        where = f"{path}: feature {p.id} ({p.name})"
        if p.id in areas:
            raise DataError(f"{where}: duplicate id (already used by {areas[p.id][1].name})")
        try:
            geom = to_shape(feat.get("geometry"))
        except Exception as e:  # shapely raises several kinds for malformed GeoJSON
            raise DataError(f"{where}: geometry is not valid GeoJSON: {e}") from None
        if geom.geom_type not in ("Polygon", "MultiPolygon") or geom.is_empty:
            raise DataError(f"{where}: geometry must be a non-empty Polygon or MultiPolygon, got {geom.geom_type}")
        minx, miny, maxx, maxy = geom.bounds
        if not (-180 <= minx and maxx <= 180 and -90 <= miny and maxy <= 90):
            raise DataError(f"{where}: coordinates out of range; GeoJSON needs [lon, lat] in WGS-84 degrees")
        if not geom.is_valid:
            raise DataError(f"{where}: invalid polygon: {shapely.is_valid_reason(geom)}")
        areas[p.id] = (p.level, _MODEL[p.level].build(geom, id=p.id, name=p.name, parent=p.parent))

    buffered: dict[str, BaseGeometry] = {}
    for level, area in areas.values():
        where = f"{path}: feature {area.id} ({area.name})"
        above = _ABOVE[level]
        if above is None:
            if area.parent not in (None, city_id):
                raise DataError(f"{where}: a district's parent must be null or the city id {city_id!r}, got {area.parent!r}")
            continue
        if area.parent is None or area.parent not in areas:
            raise DataError(f"{where}: parent {area.parent!r} not found; a {level} needs a {above} ({_LEVEL_ZH[above]}) as parent")
        plevel, parent = areas[area.parent]
        if plevel != above:
            raise DataError(f"{where}: parent {parent.id} ({parent.name}) is a {plevel}; a {level} needs a {above} ({_LEVEL_ZH[above]})")
        if parent.id not in buffered:
            buffered[parent.id] = parent.shape.buffer(TOLERANCE_DEG)
            shapely.prepare(buffered[parent.id])
        if not buffered[parent.id].covers(area.shape):
            share = area.shape.difference(parent.shape).area / area.shape.area
            raise DataError(
                f"{where}: not inside its {above} {parent.id} ({parent.name}): {share:.1%} of its area lies outside"
            )
    return Jurisdiction(
        [a for _, a in areas.values()],
        note=str(data.get("note", "")),
        sample=bool(data.get("sample", False)),
        source=str(path),
    )
