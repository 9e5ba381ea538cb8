"""What Open311 shows: services and their definitions (from ``open311.yaml`` and
the catalogue), and cases as GeoReport service requests — which cases are
public (:func:`visible`), the columns read (:data:`VIEW_COLUMNS`), descriptions
and status notes masked, photos only as links to their public copies — plus the
query string's lists and times for ``requests.json``."""

from __future__ import annotations

import re
from datetime import datetime

from fastapi import Request
from sqlalchemy import or_, select

from app.api.deps import services as get_services
from app.api.open311.config import Open311Config, ServiceDef, load_config
from app.api.open311.formats import Open311Error
from app.api.open311.media import media_dirs
from city.bundle import CityData
from city.cases import mask_text
from city.catalogue import Kind, Source
from city.errors import DataError
from city.lifecycle import OPEN
from city.store.schema import AuditRow, CaseRow, EvidenceRow, Open311RequestRow

LIST_MAX = 1000
PUBLIC_SOURCES = (Source.CITIZEN.value, Source.HOTLINE.value)
CLOSED = "closed"
OPEN_VALUES = frozenset(s.value for s in OPEN)

#: the columns a request view reads (not whole ORM rows: a page of 1000 loads 3× faster)
VIEW_COLUMNS = (CaseRow.id, CaseRow.number, CaseRow.status, CaseRow.title, CaseRow.code, CaseRow.description,
                CaseRow.department_id, CaseRow.created_at, CaseRow.updated_at, CaseRow.deadline, CaseRow.address,
                CaseRow.lat, CaseRow.lon)


def service_view(city: CityData, s: ServiceDef) -> dict:
    e = city.catalogue.get(s.code, Kind.EVENT)
    return {"service_code": e.code, "service_name": e.name, "description": e.definition or e.name,
            "metadata": bool(s.attributes), "type": "batch", "keywords": ", ".join(e.synonyms), "group": e.major_name}


def definition_view(cfg: Open311Config, s: ServiceDef) -> dict:
    attrs = []
    for i, code in enumerate(s.attributes, start=1):
        a = cfg.attributes[code]
        view = {"variable": True, "code": code, "datatype": a.datatype, "required": a.required,
                "datatype_description": a.datatype_description or None, "order": i, "description": a.description}
        if a.values:
            view["values"] = [v.model_dump() for v in a.values]
        attrs.append(view)
    return {"service_code": s.code, "attributes": attrs}


def _opened_by_open311():
    return select(Open311RequestRow.case_number).where(Open311RequestRow.case_number.is_not(None))


def visible():
    """The cases that are service requests: reported by citizens (市民, 热线), or
    one an Open311 request was merged into."""
    return or_(CaseRow.source.in_(PUBLIC_SOURCES), CaseRow.number.in_(_opened_by_open311()))


def _iso(dt: datetime | None, tz) -> str | None:
    return dt.astimezone(tz).isoformat(timespec="seconds") if dt else None


def request_views(request: Request, rows: list) -> list[dict]:
    """The GeoReport view of cases (one query each for their notes and photos)."""
    store = get_services(request).store
    city, tz = store.city, store.tz
    if not rows:
        return []
    ids = [r.id for r in rows]
    notes: dict[int, tuple[str, str]] = {}
    photos: dict[int, list[str]] = {}
    with store.reading() as s:
        for case_id, action, note in s.execute(
                select(AuditRow.case_id, AuditRow.action, AuditRow.note)
                .where(AuditRow.case_id.in_(ids), AuditRow.note != "").order_by(AuditRow.id)):
            notes[case_id] = (action, note)
        for case_id, sha in s.execute(
                select(EvidenceRow.case_id, EvidenceRow.sha256)
                .where(EvidenceRow.case_id.in_(ids), EvidenceRow.kind == "image", EvidenceRow.sha256.is_not(None))
                .order_by(EvidenceRow.id)):
            photos.setdefault(case_id, []).append(sha)
    _, public = media_dirs()
    try:
        cfg = load_config(city)
    except DataError:
        cfg = None
    out = []
    for r in rows:
        dept = city.departments.by_id[r.department_id].name if r.department_id in city.departments else None
        media = next((s for s in photos.get(r.id, []) if (public / f"{s}.jpg").is_file()), None)
        note = notes.get(r.id)
        service = cfg.service(r.code) if cfg else None
        out.append({
            "service_request_id": r.number,
            "status": "open" if r.status in OPEN_VALUES else CLOSED,
            "status_notes": mask_text(f"{note[0]}：{note[1]}") if note else None,
            "service_name": r.title,
            "service_code": r.code,
            "description": mask_text(r.description),
            "agency_responsible": dept,
            "service_notice": service.notice if service else None,  # (the general notice answers the POST)
            "requested_datetime": _iso(r.created_at, tz),
            "updated_datetime": _iso(r.updated_at, tz),
            "expected_datetime": _iso(r.deadline, tz),
            "address": r.address or None,
            "address_id": None,
            "zipcode": None,
            "lat": r.lat,
            "long": r.lon,
            "media_url": str(request.url_for("media", name=f"{media}.jpg")) if media else None,
        })
    return out


def csv(value: str | None, what: str, max_items: int = LIST_MAX) -> list[str]:
    """A comma-separated query parameter's items (at most ``max_items``)."""
    items = [x.strip() for x in (value or "").split(",") if x.strip()]
    if len(items) > max_items:
        raise Open311Error(400, f"{what} 最多 {max_items} 个")
    return items


def when(value: str | None, name: str, tz) -> datetime | None:
    """An ISO 8601 time; without an offset, in the city's time zone. A ``+`` left
    unencoded in the query string arrives as a space: read it as ``+``."""
    if not value or not value.strip():
        return None
    text = value.strip()
    if re.fullmatch(r".+T.+ \d{2}:?\d{2}", text):
        text = text.replace(" ", "+")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise Open311Error(400, f"{name} 不是 ISO 8601 时间（如 2026-11-23T00:00:00+08:00），收到「{value[:40]}」") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=tz)
