"""A vision batch through the case pipeline: Send fan-out with bounded
concurrency, idempotent re-runs, observations linked to their cases, and a
second sighting of the same issue joining the open case."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from agents.batch import report_of, run_batch
from agents.pipeline import Pipeline
from city.errors import NotFound
from city.observations import Batch, BatchFile, Observation

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc)
# places inside the sample jurisdiction (江北区 / 渝中区 streets)
PLACES = [(29.5752, 106.5311), (29.5728, 106.5372), (29.5703, 106.5752), (29.5555, 106.5442), (29.5578, 106.5751), (29.5668, 106.5431)]
CLASSES = [("pothole", "坑槽", "事件", "06013"), ("garbage", "暴露垃圾", "事件", "06010"), ("bin_overflow", "垃圾满溢", "事件", "06042")]


def add_batch(store, batch_id: str, items: list[tuple[int, int]], non_issue: bool = True) -> list[Observation]:
    store.open_batch(Batch(id=batch_id, source="车巡", platform_id="渝A-巡01", root="/footage", created_at=NOW, updated_at=NOW))
    obs = []
    for n, (place, cls) in enumerate(items, 1):
        name, zh, kind, code = CLASSES[cls]
        lat, lon = PLACES[place]
        obs.append(Observation(id=f"{batch_id}:f:{n:03d}", batch_id=batch_id, file="a.mp4", file_sha256="ab" * 32, source="车巡",
                               platform_id="渝A-巡01", class_name=name, label_zh=zh, kind=kind, code=code, confidence=0.9,
                               mean_confidence=0.8, lat=lat, lon=lon, error_m=4.0, frames=6, first_t=n, last_t=n + 1, best_t=n + 0.5,
                               seen_at=NOW, box=(1, 2, 30, 40), frame_uri=f"/ev/{n}-frame.jpg", crop_uri=f"/ev/{n}-crop.jpg",
                               model="demo-patrol@1"))
    if non_issue:
        obs.append(obs[0].model_copy(update={"id": f"{batch_id}:f:999", "class_name": "manhole_ok", "label_zh": "完好井盖",
                                             "kind": None, "code": None}))
    store.finish_file(BatchFile(batch_id=batch_id, path="a.mp4", sha256="ab" * 32, status="done", observations=len(obs),
                                finished_at=NOW), obs)
    return obs


def test_report_of_observation():
    o = Observation(id="b:f:001", batch_id="b", file="a.mp4", file_sha256="ab" * 32, source="机巡", class_name="garbage",
                    label_zh="暴露垃圾", kind="事件", code="06010", confidence=0.81, mean_confidence=0.7, lat=29.57, lon=106.53,
                    error_m=2.5, frames=3, first_t=1, last_t=2, best_t=1.5, box=(0, 0, 1, 1), frame_uri="/f.jpg", model="m@1")
    r = report_of(o)
    assert r.detector_code == "事件:06010" and r.detector_confidence == 0.81 and r.external_id == "obs:b:f:001"
    assert "暴露垃圾" in r.text and "±2 米" in r.text
    assert [e.uri for e in r.evidence] == ["/f.jpg"]


def test_fan_out_creates_one_case_per_issue_and_links(store):
    add_batch(store, "b1", [(0, 0), (1, 1), (2, 2), (3, 0), (4, 1)])
    pipe = Pipeline(store)
    results = run_batch(pipe, "b1", max_concurrency=2)
    assert len(results) == 5  # the intact manhole cover is not an issue
    assert {r["code"] for r in results} == {"06013", "06010", "06042"}
    for r in results:
        assert r["case"], r
        case = store.get(r["case"])
        assert case.code == r["code"] and case.source.value == "车巡"
        assert [e.uri for e in case.evidence][:2] == [f"/ev/{int(r['observation'][-3:])}-frame.jpg", f"/ev/{int(r['observation'][-3:])}-crop.jpg"]
        assert store.observation(r["observation"]).case_number == r["case"]
    assert run_batch(pipe, "b1") == []  # idempotent: everything has its case


def test_second_sighting_joins_the_open_case(store):
    add_batch(store, "b1", [(0, 0)], non_issue=False)
    pipe = Pipeline(store)
    [first] = run_batch(pipe, "b1")
    add_batch(store, "b2", [(0, 0)], non_issue=False)  # the same pothole on the next patrol
    [second] = run_batch(pipe, "b2")
    assert second["outcome"] == "attached" and second["case"] == first["case"]
    assert store.observation("b2:f:001").case_number == first["case"]


def test_unknown_batch(store):
    with pytest.raises(NotFound, match="nope"):
        run_batch(Pipeline(store), "nope")


def test_a_run_that_died_before_its_checkpoint_continues_its_own_case(store):
    """With durability="exit" a crash mid-run leaves the case in the store but no
    checkpoint: the re-run must carry on with that case, not merge it into itself."""
    from city.cases import NewCase

    [o] = add_batch(store, "b1", [(0, 0)], non_issue=False)
    r = report_of(o)
    orphan = store.create_case(NewCase(source=r.source, kind="事件", code="06013", description=r.text, lat=r.lat, lon=r.lon,
                                       external_id=r.external_id))
    [res] = run_batch(Pipeline(store), "b1")
    assert res["case"] == orphan.number and res["outcome"] != "attached"
    assert store.get(orphan.number).status.value in ("派遣", "上报")
