"""Checking a POSTed Open311 request (``api_key``, service, place, description,
attributes, photo) and taking it in: stored, its photo kept, and a job of kind
``open311`` queued (:mod:`app.api.open311.job` runs it) — or, when the same
device sent the same request within :data:`RESUBMIT_WINDOW`, the first token again."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import Request
from sqlalchemy import select

from app.api.deps import services as get_services
from app.api.open311.config import (
    Open311Config,
    ServiceDef,
    check_jurisdiction,
    load_config,
)
from app.api.open311.formats import Open311Error
from app.api.open311.media import check_media, save_photo
from app.api.ratelimit import check, key_of_secret
from app.api.worker import wake
from city import geo
from city.store.schema import Open311RequestRow

DESCRIPTION_MAX = 4000
RESUBMIT_WINDOW = timedelta(minutes=10)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ATTR = re.compile(r"^attribute\[([^\[\]]{1,64})\](\[\])?$")


def job_id(token: str) -> str:
    """The id of the job that runs the request ``token``."""
    return f"open311-{token}"


# -- the fields -------------------------------------------------------------------------------


def _one(form: dict[str, list[str]], name: str, max_len: int) -> str | None:
    values = [v.strip() for v in form.get(name, [])]
    values = [v for v in values if v]
    if not values:
        return None
    if len(set(values)) > 1:
        raise Open311Error(400, f"参数 {name} 给了多个不同的值")
    v = values[0]
    if len(v) > max_len:
        raise Open311Error(400, f"参数 {name} 过长：最多 {max_len} 个字符")
    if _CONTROL.search(v.replace("\n", "").replace("\r", "").replace("\t", "")):
        raise Open311Error(400, f"参数 {name} 含有控制字符")
    return v


def _number(form, name: str) -> float | None:
    v = _one(form, name, 32)
    if v is None:
        return None
    try:
        x = float(v)
    except ValueError:
        raise Open311Error(400, f"{name} 必须是数字（WGS-84 十进制度），收到「{v}」") from None
    if not math.isfinite(x):
        raise Open311Error(400, f"{name} 必须是有限的数字")
    return x


def _location(form) -> tuple[float | None, float | None, str | None]:
    lat, lon = _number(form, "lat"), _number(form, "long")
    address = _one(form, "address_string", 256)
    if (lat is None) != (lon is None):
        raise Open311Error(400, "lat 和 long 要同时提供（纬度和经度，WGS-84）")
    if lat is None and not address:
        hint = "（本服务不能解析 address_id）" if _one(form, "address_id", 128) else ""
        raise Open311Error(400, f"缺少位置：请提供 lat 和 long（WGS-84），或 address_string{hint}")
    if lat is not None:
        crs = (_one(form, "crs", 8) or "wgs84").lower()
        if crs not in ("wgs84", "gcj02"):
            raise Open311Error(400, "crs 只能是 wgs84 或 gcj02")
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            if -90 <= lon <= 90 and -180 <= lat <= 180 and geo.in_china(lon, lat):
                raise Open311Error(400, f"lat 和 long 写反了：lat 是纬度（如 29.56），long 是经度（如 106.55），收到 lat={lat}, long={lon}")
            raise Open311Error(400, f"坐标超出范围：lat 应在 -90…90，long 应在 -180…180，收到 lat={lat}, long={lon}")
        if not geo.in_china(lat, lon):
            if geo.in_china(lon, lat):
                raise Open311Error(400, f"lat 和 long 写反了：lat 是纬度（如 29.56），long 是经度（如 106.55），收到 lat={lat}, long={lon}")
            raise Open311Error(400, f"位置 {lat},{lon} 不在中国境内：请提供 WGS-84 坐标（lat 纬度，long 经度）")
        if crs == "gcj02":
            lat, lon = geo.gcj02_to_wgs84(lat, lon)
            lat, lon = round(lat, 7), round(lon, 7)
    return lat, lon, address


def _attributes(form, cfg: Open311Config, service: ServiceDef) -> dict[str, str | list[str]]:
    given: dict[str, list[str]] = {}
    for k, values in form.items():
        m = _ATTR.match(k)
        if m:
            given.setdefault(m.group(1), []).extend(v.strip() for v in values if v.strip())
        elif k.startswith("attribute"):
            raise Open311Error(400, f"参数 {k[:64]} 格式不对：应为 attribute[属性代码]")
    out: dict[str, str | list[str]] = {}
    for code, values in given.items():
        if code not in service.attributes:
            allowed = "、".join(service.attributes) or "无"
            raise Open311Error(400, f"类别 {service.code} 没有属性「{code[:32]}」（可用：{allowed}）")
        a = cfg.attributes[code]
        if not values:
            continue
        keys = {v.key for v in a.values}
        if a.datatype != "multivaluelist" and len(set(values)) > 1:
            raise Open311Error(400, f"属性 {code} 只能有一个值")
        for v in values:
            if len(v) > 1000:
                raise Open311Error(400, f"属性 {code} 的值过长")
            if a.values and v not in keys:
                raise Open311Error(400, f"属性 {code} 的值「{v[:32]}」不在可选范围内：{'、'.join(sorted(keys))}")
            if a.datatype == "number":
                try:
                    float(v)
                except ValueError:
                    raise Open311Error(400, f"属性 {code} 应为数字") from None
            if a.datatype == "datetime":
                try:
                    datetime.fromisoformat(v)
                except ValueError:
                    raise Open311Error(400, f"属性 {code} 应为 ISO 8601 时间") from None
        out[code] = sorted(set(values)) if a.datatype == "multivaluelist" else values[0]
    missing = [c for c in service.attributes if cfg.attributes[c].required and c not in out]
    if missing:
        raise Open311Error(400, f"缺少必填属性：{'、'.join(f'attribute[{c}]' for c in missing)}")
    return out


# -- taking it in -------------------------------------------------------------------------------


def _api_client(request: Request, store, form) -> str:
    """The client label of a valid API key (rate-limited per key, or per IP without one)."""
    key = _one(form, "api_key", 256)
    found = store.token(key) if key else None
    valid = found is not None and found[0] == "api_key"
    check(request, "open311_post", key_of_secret(key) if valid else None)
    if not key:
        raise Open311Error(403, "缺少 api_key：Open311 提交需要管理员签发的 API key")
    if not valid:
        raise Open311Error(403, "api_key 无效或已吊销")
    return found[2]


def _resubmitted(store, client: str, payload: dict) -> str | None:
    """The token of the same request from the same device within RESUBMIT_WINDOW."""
    if not payload.get("device_id"):
        return None
    since = datetime.now(UTC) - RESUBMIT_WINDOW
    same = ("device_id", "service_code", "description", "lat", "long", "address_string")
    with store.reading() as s:
        rows = s.execute(select(Open311RequestRow.token, Open311RequestRow.payload)
                         .where(Open311RequestRow.client == client, Open311RequestRow.received_at >= since)
                         .order_by(Open311RequestRow.received_at.desc()).limit(200)).all()
    for token, p in rows:
        if all(p.get(k) == payload.get(k) for k in same):
            return token
    return None


def accept(request: Request, form: dict[str, list[str]], photo_file: Path | None) -> tuple[dict, int]:
    """Check a POSTed request (its fields, and the photo sent with it, if any), save
    it and queue it: (the answer, the status)."""
    store = get_services(request).store
    client = _api_client(request, store, form)
    city = store.city
    check_jurisdiction(city, _one(form, "jurisdiction_id", 64))
    cfg = load_config(city)
    code = _one(form, "service_code", 16)
    if not code:
        raise Open311Error(400, "缺少 service_code：请先 GET services.json 查看可上报的类别")
    service = cfg.service(code)
    if service is None:
        raise Open311Error(400, f"service_code「{code}」不在受理范围：请先 GET services.json 查看可上报的类别")
    lat, lon, address = _location(form)
    description = _one(form, "description", DESCRIPTION_MAX) or ""
    payload = {
        "service_code": code, "lat": lat, "long": lon, "address_string": address,
        "address_id": _one(form, "address_id", 128), "description": description,
        "attributes": _attributes(form, cfg, service),
        "email": _one(form, "email", 254), "device_id": _one(form, "device_id", 128),
        "account_id": _one(form, "account_id", 128), "first_name": _one(form, "first_name", 32),
        "last_name": _one(form, "last_name", 32), "phone": _one(form, "phone", 32),
        "media_url": _one(form, "media_url", 1024), "media": [],
    }
    if payload["media_url"] and not payload["media_url"].startswith(("http://", "https://")):
        raise Open311Error(400, "media_url 必须是 http(s) 地址")
    photo = check_media(photo_file) if photo_file is not None else None
    notice = service.notice or cfg.notice
    if (token := _resubmitted(store, client, payload)) is not None:
        return {"token": token, "service_notice": f"相同的诉求刚刚已提交，沿用原 token。{notice}"}, 200
    created: list[Path] = []
    try:
        if photo is not None:
            path, created = save_photo(photo)
            payload["media"].append({"path": str(path), "sha256": photo.sha256, "format": photo.format,
                                     "bytes": photo.path.stat().st_size})
        req = store.add_open311(client, payload)
        store.add_job("open311", client, {"token": req.token}, job_id=job_id(req.token))
    except BaseException:
        for f in created:
            f.unlink(missing_ok=True)
        raise
    wake(request)
    return {"token": req.token, "service_notice": notice}, 201
