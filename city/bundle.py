"""All of a city's data, loaded and cross-checked once: :func:`load_city`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from city import settings
from city.catalogue import Catalogue, CatalogueEntry, WorkDuration, load_catalogue
from city.departments import CitySettings, Department, Departments, load_city_settings, load_departments
from city.errors import DataError
from city.jurisdiction import Jurisdiction, Location, load_jurisdiction
from city.routing import Place, RouteDecision, Router, load_router
from city.worktime import Calendars, WorkCalendar, load_calendars


@dataclass(frozen=True)
class CityData:
    folder: Path
    settings: CitySettings
    catalogue: Catalogue
    departments: Departments
    jurisdiction: Jurisdiction
    calendars: Calendars
    router: Router

    def locate(self, lat: float | None, lon: float | None) -> Location:
        if lat is None or lon is None:
            return Location()
        return self.jurisdiction.locate(lat, lon)

    def route(
        self,
        entry: CatalogueEntry,
        lat: float | None = None,
        lon: float | None = None,
        context: str | None = None,
        owner: str | None = None,
        exclude: frozenset[str] = frozenset(),
    ) -> RouteDecision:
        loc = self.locate(lat, lon)
        place = Place(district_id=loc.district_id, street_id=loc.street_id, context=context, owner=owner)
        return self.router.route(entry, place, exclude=exclude)

    def calendar(self, department: Department | str) -> WorkCalendar:
        dept = self.departments.get(department) if isinstance(department, str) else department
        return self.calendars[dept.calendar]

    def deadline(self, department: Department | str, start: datetime, limit: WorkDuration) -> datetime:
        return self.calendar(department).add(start, limit)


@lru_cache(maxsize=4)
def _load(folder: Path) -> CityData:
    city = load_city_settings(folder / "city.yaml")
    catalogue = load_catalogue(folder / "catalogue")
    departments = load_departments(folder / "departments.yaml")
    jurisdiction = load_jurisdiction(folder / "sample" / "jurisdiction.geojson")
    calendars = load_calendars(folder / "calendars.yaml")
    for d in departments:
        if d.calendar not in calendars:
            raise DataError(f"{folder / 'departments.yaml'}: {d.id}: field calendar: unknown calendar {d.calendar!r}")
        if d.district and d.district not in jurisdiction.districts:
            raise DataError(f"{folder / 'departments.yaml'}: {d.id}: field district: unknown district {d.district!r}")
        if d.street and d.street not in jurisdiction.streets:
            raise DataError(f"{folder / 'departments.yaml'}: {d.id}: field street: unknown street {d.street!r}")
    for district in jurisdiction.districts:
        if departments.coordinator(district) is None:
            raise DataError(f"{folder / 'departments.yaml'}: district {district} has no 区协调中心 (无责任主体 cases need one)")
    router = load_router(folder, catalogue, departments, city.coordinator)
    return CityData(folder, city, catalogue, departments, jurisdiction, calendars, router)


def load_city(folder: Path | str | None = None) -> CityData:
    """Load (once per folder) the city data from ``folder`` or ``XUNJIAN_CITY_DATA``
    or the bundled sample."""
    return _load(Path(folder or settings.city_data_dir()).resolve())
