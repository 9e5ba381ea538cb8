"""The ``open311`` job (run by :mod:`app.api.worker`, queued by
:func:`app.api.open311.intake.accept`): a stored request through the case
pipeline (classify, dedupe, route, draft, review gate, dispatch), its case
number and a status note recorded on the request. The chosen service guides the
classification: the pipeline reads ``【<service name>】<description>``."""

from __future__ import annotations

from app.api.open311.config import Open311Config, load_config
from app.api.open311.intake import DESCRIPTION_MAX
from app.api.worker import handler
from city.bundle import CityData
from city.cases import Evidence
from city.catalogue import Kind, Source


def report_of(token: str, payload: dict, city: CityData, cfg: Open311Config):
    """The pipeline's input for a stored Open311 request."""
    from agents.state import Report

    service = cfg.service(payload["service_code"])
    entry = city.catalogue.get(payload["service_code"], Kind.EVENT)
    description = payload.get("description") or ""
    prefix = f"【{entry.name}】"
    text = prefix + description if len(prefix) + len(description) <= DESCRIPTION_MAX else description
    mapped = {}
    for code, value in (payload.get("attributes") or {}).items():
        a = cfg.attributes.get(code)
        if a and a.maps_to and service and code in service.attributes:
            mapped[a.maps_to] = value
    name = "".join(x for x in (payload.get("last_name"), payload.get("first_name")) if x) or None
    evidence = [Evidence(kind="image", uri=m["path"], sha256=m["sha256"], note="市民上传照片（Open311）")
                for m in payload.get("media") or []]
    if payload.get("media_url"):
        evidence.append(Evidence(kind="link", uri=payload["media_url"], note="市民提供的照片链接（Open311）"))
    return Report(source=Source.CITIZEN, text=text, lat=payload.get("lat"), lon=payload.get("long"),
                  address=payload.get("address_string") or "", context=mapped.get("context"),
                  owner=mapped.get("owner"), reporter_name=name, reporter_phone=payload.get("phone"),
                  external_id=f"open311:{token}", evidence=evidence)


@handler("open311")
def process(job, services, progress) -> dict:
    """Run one Open311 request through the case pipeline and record its case."""
    store = services.store
    token = job.params["token"]
    req = store.open311(token)
    if req.status != "received":  # done before (a re-run of the job)
        return {"token": token, "case_number": req.case_number, "status": req.status}
    try:
        report = report_of(token, req.payload, store.city, load_config(store.city))
        result = services.pipeline.run(report)
    except Exception as e:
        store.open311_done(token, case_number=None, note=f"处理失败：{type(e).__name__}", failed=True)
        raise
    st = result.state
    number = st.case_number
    if result.waiting:
        outcome, note = "waiting", "已受理，等待人工审核后派遣"
    elif st.outcome == "attached":
        outcome, note = "attached", f"与未结案案件 {st.duplicate_of} 是同一问题，已并入该案件"
    elif st.outcome == "rejected":
        outcome, note = "rejected", "经审核不予立案"
    elif st.outcome == "dispatched":
        dept = st.route.department_name if st.route else ""
        outcome, note = "dispatched", f"已立案并派遣至{dept}"
    else:
        outcome, note = "unclassified", "未能归类到受理的问题类别，未立案"
    store.open311_done(token, case_number=number, note=note)
    return {"token": token, "case_number": number, "outcome": outcome}
