"""Observations in the store: a file's observations replace the previous run's
atomically, re-runs skip done content, and the GeoJSON is lon/lat ordered."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from city.errors import NotFound
from city.observations import Batch, BatchFile, Observation, feature_collection

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc)


def obs(n: int, file: str = "a.mp4", sha: str = "ab" * 32, **kw) -> Observation:
    data = dict(id=f"b1:{sha[:12]}:{n:03d}", batch_id="b1", file=file, file_sha256=sha, source="车巡", class_name="pothole",
                label_zh="坑槽", kind="事件", code="06013", confidence=0.9, mean_confidence=0.8, lat=29.5631 + n * 1e-4,
                lon=106.5502, error_m=4.2, frames=5, first_t=1.0 * n, last_t=1.0 * n + 2, best_t=1.0 * n + 1,
                box=(10, 20, 110, 80), model="demo-patrol@1")
    data.update(kw)
    return Observation(**data)


def done(file="a.mp4", sha="ab" * 32, n=0, status="done", error=None):
    return BatchFile(batch_id="b1", path=file, sha256=sha, status=status, error=error, observations=n, finished_at=NOW)


@pytest.fixture
def batch(store):
    return store.open_batch(Batch(id="b1", source="车巡", platform_id="渝A-巡01", root="/footage/b1", created_at=NOW, updated_at=NOW))


def test_finish_file_replaces_previous_run(store, batch):
    store.finish_file(done(n=3), [obs(1), obs(2), obs(3)])
    store.finish_file(done(n=2), [obs(1), obs(2)])  # a re-run of the same file
    got = store.observations("b1")
    assert [o.id for o in got] == ["b1:abababababab:001", "b1:abababababab:002"]
    assert got[0].box == (10.0, 20.0, 110.0, 80.0) and got[0].kind.value == "事件"
    assert store.batches()[0][1:] == (1, 2)


def test_done_file_matches_content(store, batch):
    store.finish_file(done(n=1), [obs(1)])
    assert store.done_file("b1", "a.mp4", "ab" * 32).observations == 1
    assert store.done_file("b1", "a.mp4", "cd" * 32) is None  # content changed → process again
    store.finish_file(done(file="bad.mp4", sha="ef" * 32, status="failed", error="bad.mp4：无法作为视频打开"))
    assert store.done_file("b1", "bad.mp4", "ef" * 32) is None  # failed files are retried
    files = store.batch_files("b1")
    assert [(f.path, f.status) for f in files] == [("a.mp4", "done"), ("bad.mp4", "failed")]
    assert "无法作为视频打开" in files[1].error


def test_filters_link_and_errors(store, batch):
    store.finish_file(done(n=2), [obs(1), obs(2, class_name="manhole_ok", kind=None, code=None, label_zh="完好井盖")])
    assert len(store.observations("b1", issues_only=True)) == 1
    assert len(store.observations(code="06013")) == 1
    store.link_observation("b1:abababababab:001", "JB20261120000001")
    assert store.observation("b1:abababababab:001").case_number == "JB20261120000001"
    with pytest.raises(NotFound):
        store.observation("nope")
    with pytest.raises(NotFound):
        store.batch("nope")


def test_open_batch_is_idempotent(store, batch):
    again = store.open_batch(Batch(id="b1", source="车巡", root="/footage/b1", manifest={"x": 1}, created_at=NOW, updated_at=NOW))
    assert again.created_at == NOW and again.manifest == {"x": 1} and again.platform_id == "渝A-巡01"
    assert len(store.batches()) == 1


def test_geojson_is_lon_lat():
    fc = feature_collection([obs(1)])
    feat = fc["features"][0]
    assert feat["geometry"]["coordinates"] == [106.5502, pytest.approx(29.5632)]
    assert feat["properties"]["code"] == "06013" and "lat" not in feat["properties"]
