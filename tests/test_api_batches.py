"""Footage batches over HTTP on a real server: multipart and zip uploads of the
rendered demo batch, the background ingest + case pipeline job watched over
Server-Sent Events, the batch report, re-runs that duplicate nothing, resumable
chunked uploads (an interrupted chunk, a wrong offset, a restart), and bad
input refused up front with nothing left behind.

The demo video is ingested three times in all (multipart, zip, chunked), each a
few seconds on CPU; one server serves the whole module."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import time
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from live_server import ADMIN, DEPARTMENT, DISPATCHER, VIEWER, serve

from vision.ingest import DEFAULT_WEIGHTS

pytestmark = pytest.mark.skipif(not DEFAULT_WEIGHTS.with_suffix(".onnx").exists(), reason="demo detector weights not built")

DEMO_FILES = ("patrol.mp4", "patrol.gpx", "manifest.yaml")


@pytest.fixture(scope="module")
def srv(city, tmp_path_factory):
    """One server for the module, over a fresh store and data directory."""
    from app.api.deps import Services
    from city.store import Store

    tmp = tmp_path_factory.mktemp("api-batches")
    mp = pytest.MonkeyPatch()
    mp.setenv("XUNJIAN_HOME", str(tmp / "home"))
    for var in ("XUNJIAN_MAX_UPLOAD_MB", "XUNJIAN_MAX_BATCH_MB"):
        mp.delenv(var, raising=False)
    store = Store(f"sqlite:///{tmp / 'api.db'}", city)
    services = Services(store=store)
    with serve(services) as live:
        live.home = tmp / "home"
        yield live
    store.close()
    mp.undo()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_events(response: httpx.Response) -> list[tuple[str, dict]]:
    """Parse an SSE stream until its ``done`` event: [(event, data)]."""
    events, name, data = [], None, []
    for line in response.iter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and name:
            events.append((name, json.loads("\n".join(data))))
            if name == "done":
                break
            name, data = None, []
    return events


def watch(live, job_id: str, user: str = DISPATCHER) -> list[tuple[str, dict]]:
    with live.client(user, timeout=120) as c, c.stream("GET", f"/api/jobs/{job_id}/events") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        return read_events(r)


def snapshot(live) -> tuple[int, set[str]]:
    """(jobs in the store, every path under uploads/): to check a refusal wrote nothing."""
    root = live.home / "uploads"
    files = {p.relative_to(root).as_posix() for p in root.rglob("*")} if root.exists() else set()
    return len(live.store.jobs(limit=10_000)), files


def raw_multipart(parts: list[tuple[str, bytes]], fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """A multipart body with filenames exactly as given (no client-side clean-up)."""
    boundary = "----xunjian-test-boundary"
    out = io.BytesIO()
    for k, v in (fields or {}).items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    for name, data in parts:
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
                  f"Content-Type: application/octet-stream\r\n\r\n".encode())
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def post_raw(live, parts, fields=None, user: str = DISPATCHER) -> httpx.Response:
    body, ctype = raw_multipart(parts, fields)
    with live.client(user) as c:
        return c.post("/api/batches", content=body, headers={"content-type": ctype})


# -- the demo batch, uploaded as files, watched to the end --------------------------------------------


@pytest.fixture(scope="module")
def uploaded(srv, demo_batch):
    """The demo batch uploaded file by file (multipart), its job watched over SSE to the end."""
    files = [("files", (name, (demo_batch / name).open("rb"))) for name in DEMO_FILES]
    try:
        with srv.client(DISPATCHER) as c:
            r = c.post("/api/batches", files=files, data={"source": "vehicle"})
    finally:
        for _, (_, fh) in files:
            fh.close()
    assert r.status_code == 202, r.text
    body = r.json()
    events = watch(srv, body["job"]["id"])
    return body, events


def test_upload_answers_202_with_the_queued_job_and_file_digests(srv, uploaded, demo_batch):
    body, _ = uploaded
    job = body["job"]
    assert job["kind"] == "ingest" and job["owner"] == DISPATCHER and job["status"] == "queued"
    assert job["params"]["batch"] == body["batch"] == "demo-2026-11-20"  # from the manifest
    assert {f["name"]: (f["size"], f["sha256"]) for f in body["files"]} == {
        n: ((demo_batch / n).stat().st_size, sha((demo_batch / n).read_bytes())) for n in DEMO_FILES}
    batch_dir = Path(body["batch_dir"])
    assert batch_dir.parent == srv.home / "uploads"
    assert sorted(p.name for p in batch_dir.iterdir()) == sorted(DEMO_FILES)
    assert body["media"] == ["patrol.mp4"]


def test_progress_streams_over_sse_until_done(uploaded):
    _, events = uploaded
    names = [e for e, _ in events]
    assert names[-1] == "done" and names.count("done") == 1
    progress = [d["progress"] for e, d in events if e == "progress" and d["progress"]]
    ingest = [p for p in progress if p["stage"] == "ingest"]
    assert len(ingest) >= 3, names
    ts = [p["current"]["t"] for p in ingest if p.get("current")]
    assert ts == sorted(ts) and len(set(ts)) >= 3, ts  # the current file's time advances
    done_counts = [p["files_done"] for p in progress]
    assert done_counts == sorted(done_counts) and done_counts[0] == 0 and done_counts[-1] == 1
    assert ingest[0]["files_total"] == 1 and ingest[0]["files"][0]["path"] == "patrol.mp4"
    assert any(p["stage"] == "pipeline" for p in progress)
    final = events[-1][1]
    assert final["status"] == "done", final["error"]
    assert final["progress"]["pipeline"]["done"] == final["progress"]["pipeline"]["total"] > 0
    assert final["progress"]["files"][0]["status"] == "done"


def test_the_job_result_and_the_batch_report(srv, uploaded):
    _, events = uploaded
    res = events[-1][1]["result"]
    assert res["batch"] == "demo-2026-11-20" and res["errors"] == []
    [f] = res["files"]
    assert f["path"] == "patrol.mp4" and f["status"] == "done" and f["observations"] > 0
    assert 40 <= res["frames"] == f["frames"] <= 75  # ~117 m sampled every 2 m
    assert res["observations"] >= res["issues"] > 0
    assert res["cases"]["opened"], res["cases"]
    opened = set(res["cases"]["opened"]) | set(res["cases"]["waiting"])
    with srv.client(VIEWER) as c:  # a viewer reads batches (not other people's jobs)
        listing = c.get("/api/batches").json()
        rep = c.get("/api/batches/demo-2026-11-20").json()
        obs = c.get("/api/batches/demo-2026-11-20/observations").json()
        assert c.get("/api/batches/no-such-batch").status_code == 404
    row = next(b for b in listing if b["id"] == "demo-2026-11-20")
    assert row["source"] == "车巡" and row["platform_id"] == "渝A-巡01" and row["files"] == 1
    assert row["observations"] == res["observations"] == rep["observations"] == len(obs)
    assert rep["frames"] == res["frames"] and rep["errors"] == []
    assert rep["files"] == [{"path": "patrol.mp4", "status": "done", "observations": f["observations"],
                             "frames": f["frames"], "error": None}]
    numbers = {c["number"] for c in rep["cases"]}
    assert numbers == opened | set(res["cases"]["attached"])
    assert all(c["status"] and c["observations"] >= 1 for c in rep["cases"])
    assert {o["case_number"] for o in obs if o["code"]} == numbers  # every issue has its case


def test_running_the_job_again_duplicates_nothing(srv, uploaded):
    from app.api.worker import run_job
    from city.store.schema import JobRow

    job_id = uploaded[0]["job"]["id"]
    store = srv.store
    before_obs = sorted(o.id for o in store.observations("demo-2026-11-20"))
    before_cases = store.count()
    before_ver = len(store.verifications())
    # as if the server died mid-job: a fresh run of the same job
    again = run_job(store.job(job_id), srv.services)
    assert again.status == "done", again.error
    assert [f["status"] for f in again.result["files"]] == ["skipped"]
    assert again.result["cases"] == {"opened": [], "attached": [], "waiting": [], "rejected": []}
    # and through the worker: a job left running is queued again at start
    with store.writing() as s:
        s.get(JobRow, job_id).status = "running"
    assert store.requeue_stale() == 1
    srv.app.state.worker.wake()
    final = srv.wait_job(job_id, timeout=60)
    assert final["status"] == "done" and final["attempts"] == 2
    assert sorted(o.id for o in store.observations("demo-2026-11-20")) == before_obs
    assert store.count() == before_cases and len(store.verifications()) == before_ver


def test_who_may_see_a_job(srv, uploaded):
    job_id = uploaded[0]["job"]["id"]
    with srv.client(DISPATCHER) as c:
        assert c.get(f"/api/jobs/{job_id}").json()["status"] == "done"
        assert job_id in [j["id"] for j in c.get("/api/jobs", params={"kind": "ingest"}).json()]
    with srv.client(ADMIN) as c:
        assert c.get(f"/api/jobs/{job_id}").status_code == 200
    for user in (DEPARTMENT, VIEWER):
        with srv.client(user) as c:
            r = c.get(f"/api/jobs/{job_id}")
            assert r.status_code == 403 and "不能查看别人的任务" in r.json()["detail"]
            assert c.get(f"/api/jobs/{job_id}/events").status_code == 403
            assert c.get("/api/jobs", params={"kind": "ingest"}).json() == []
    with srv.client() as c:
        assert c.get(f"/api/jobs/{job_id}").status_code == 401
    with srv.client(DISPATCHER) as c:
        assert c.get("/api/jobs/ingest-nope").status_code == 404


# -- a zip with a corrupt video ------------------------------------------------------------------------


def test_a_zip_with_a_corrupt_video_fails_that_file_only(srv, uploaded, demo_batch, tmp_path):
    """The same footage again as a zip of a folder (manifest.json, a second,
    truncated video): the good file is ingested under the new batch, its issues
    join the cases already open, the broken one fails with a message."""
    video = (demo_batch / "patrol.mp4").read_bytes()
    manifest = {"batch": "demo-zip", "source": "vehicle", "platform_id": "渝A-巡01",
                "files": [{"video": "patrol.mp4", "track": "patrol.gpx",
                           "mount": {"kind": "forward", "height_m": 1.6, "pitch_deg": -12.0}},
                          {"video": "broken.mp4", "track": "broken.gpx"}]}
    archive = tmp_path / "巡检.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        z.writestr("day1/manifest.json", json.dumps(manifest, ensure_ascii=False))
        z.writestr("day1/patrol.mp4", video)
        z.writestr("day1/patrol.gpx", (demo_batch / "patrol.gpx").read_bytes())
        z.writestr("day1/broken.mp4", video[:100_000])  # an mp4 header, then nothing: cut off mid-upload
        z.writestr("day1/broken.gpx", (demo_batch / "patrol.gpx").read_bytes())
    cases_before = srv.store.count()
    with srv.client(DISPATCHER) as c, archive.open("rb") as fh:
        r = c.post("/api/batches", files={"files": (archive.name, fh, "application/zip")})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["batch"] == "demo-zip" and body["media"] == ["patrol.mp4", "broken.mp4"]
    assert body["files"] == [{"name": "巡检.zip", "size": archive.stat().st_size, "sha256": sha(archive.read_bytes())}]
    assert Path(body["batch_dir"]).name == "day1" and not (Path(body["batch_dir"]).parent.parent / "巡检.zip").exists()
    job = srv.wait_job(body["job"]["id"], timeout=120)
    assert job["status"] == "done", job["error"]
    res = job["result"]
    status = {f["path"]: f for f in res["files"]}
    assert status["patrol.mp4"]["status"] == "done" and status["patrol.mp4"]["observations"] > 0
    assert status["broken.mp4"]["status"] == "failed"
    [err] = res["errors"]
    assert err["file"] == "broken.mp4" and "broken.mp4" in err["error"] and "损坏" in err["error"]
    assert res["cases"]["opened"] == [] and res["cases"]["attached"]  # the same issues: no duplicate cases
    assert srv.store.count() == cases_before
    rep = srv.client(DISPATCHER).get("/api/batches/demo-zip").json()
    assert rep["errors"] == res["errors"] and {c["number"] for c in rep["cases"]} <= {
        c["number"] for c in srv.client(DISPATCHER).get("/api/batches/demo-2026-11-20").json()["cases"]}


# -- resumable chunked upload ------------------------------------------------------------------------------


def interrupted_put(live, upload_id: str, start: int, declared: bytes, sent: int, total: int) -> None:
    """PUT a chunk of ``len(declared)`` bytes, send only the first ``sent`` of them, hang up."""
    u = urlsplit(live.url)
    head = (f"PUT /api/uploads/{upload_id} HTTP/1.1\r\nHost: {u.netloc}\r\n"
            f"Authorization: Bearer {live.token(DISPATCHER)}\r\n"
            f"Content-Range: bytes {start}-{start + len(declared) - 1}/{total}\r\n"
            f"Content-Length: {len(declared)}\r\n\r\n")
    with socket.create_connection((u.hostname, u.port)) as s:
        s.sendall(head.encode() + declared[:sent])
        time.sleep(0.3)


def test_chunked_upload_resumes_after_an_interruption_and_a_restart(srv, uploaded, demo_batch):
    video = (demo_batch / "patrol.mp4").read_bytes()
    with srv.client(DISPATCHER) as c:
        r = c.post("/api/uploads", json={"filename": "patrol.mp4", "size": len(video), "sha256": sha(video)})
        assert r.status_code == 201, r.text
        up = r.json()
        uid, chunk = up["upload_id"], up["chunk_size"]
        assert up["received"] == 0 and up["size"] == len(video) and chunk > 0

        def put(start: int, end: int) -> httpx.Response:
            return c.put(f"/api/uploads/{uid}", content=video[start:end + 1],
                         headers={"Content-Range": f"bytes {start}-{end}/{len(video)}"})

        assert put(0, chunk - 1).json()["received"] == chunk
        # the next chunk breaks off after 3 MB: what arrived is kept
        interrupted_put(srv, uid, chunk, video[chunk:2 * chunk], 3 << 20, len(video))
        for _ in range(50):
            received = c.get(f"/api/uploads/{uid}").json()["received"]
            if received > chunk:
                break
            time.sleep(0.1)
        assert chunk < received <= chunk + (3 << 20)
        # a client that lost track sends from the wrong place: 409 says where to go on
        wrong = put(0, chunk - 1)
        assert wrong.status_code == 409 and wrong.json()["received"] == received
        assert wrong.json()["error"] == "offset_mismatch"
        assert put(received + 10, received + 20).status_code == 409
    # a restarted server knows the upload (its state is on disk)
    with serve(srv.services, worker=False) as other, other.client(DISPATCHER) as c2:
        state = c2.get(f"/api/uploads/{uid}").json()
        assert state == {**state, "received": received, "complete": False, "filename": "patrol.mp4"}
    with srv.client(DISPATCHER) as c:
        assert c.post("/api/batches/from-uploads", json={"uploads": [uid]}).status_code == 409  # not complete yet
        pos = received
        while pos < len(video):
            end = min(pos + chunk, len(video)) - 1
            r = c.put(f"/api/uploads/{uid}", content=video[pos:end + 1],
                      headers={"Content-Range": f"bytes {pos}-{end}/{len(video)}"})
            assert r.status_code == 200, r.text
            pos = r.json()["received"]
        assert c.get(f"/api/uploads/{uid}").json()["complete"] is True
        ids = [uid]
        for name in ("patrol.gpx", "manifest.yaml"):
            data = (demo_batch / name).read_bytes()
            u = c.post("/api/uploads", json={"filename": name, "size": len(data)}).json()["upload_id"]
            r = c.put(f"/api/uploads/{u}", content=data, headers={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"})
            assert r.json()["complete"] is True
            ids.append(u)
        with srv.client(ADMIN) as other_user:  # an upload is its owner's
            assert other_user.get(f"/api/uploads/{uid}").status_code == 200  # (an admin may look)
        with srv.client(DEPARTMENT) as dept:
            assert dept.get(f"/api/uploads/{uid}").status_code == 403
        r = c.post("/api/batches/from-uploads", json={"uploads": ids, "batch": "demo-chunked", "run_pipeline": False})
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["batch"] == "demo-chunked"
        assert body["files"][0] == {"name": "patrol.mp4", "size": len(video), "sha256": sha(video)}
        assert c.get(f"/api/uploads/{uid}").status_code == 404  # used up
    job = srv.wait_job(body["job"]["id"], timeout=120)
    assert job["status"] == "done", job["error"]
    res = job["result"]
    assert res["pipeline"] is False and res["cases"] == {"opened": [], "attached": [], "waiting": [], "rejected": []}
    assert res["observations"] == len(srv.store.observations("demo-2026-11-20")) > 0
    assert "pipeline" not in job["progress"]
    assert all(o.case_number is None for o in srv.store.observations("demo-chunked"))


def test_chunked_upload_checks(srv, monkeypatch):
    data = b"<?xml version='1.0'?><gpx></gpx>\n" * 40
    with srv.client(DISPATCHER) as c:
        u = c.post("/api/uploads", json={"filename": "t.gpx", "size": len(data), "sha256": "0" * 64}).json()["upload_id"]
        r = c.put(f"/api/uploads/{u}", content=data, headers={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"})
        assert r.status_code == 422 and r.json()["error"] == "checksum_mismatch" and r.json()["received"] == 0
        assert c.get(f"/api/uploads/{u}").json()["received"] == 0
        assert c.put(f"/api/uploads/{u}", content=data).status_code == 422  # no Content-Range
        r = c.put(f"/api/uploads/{u}", content=data + b"extra",
                  headers={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"})
        assert r.status_code == 422 and c.get(f"/api/uploads/{u}").json()["received"] == 0
        assert c.delete(f"/api/uploads/{u}").status_code == 204
        assert c.get(f"/api/uploads/{u}").status_code == 404
        fake = b"MZ\x90\x00" + b"\x00" * 1000  # a Windows program named .mp4
        u = c.post("/api/uploads", json={"filename": "clip.mp4", "size": len(fake)}).json()["upload_id"]
        r = c.put(f"/api/uploads/{u}", content=fake, headers={"Content-Range": f"bytes 0-{len(fake) - 1}/{len(fake)}"})
        assert r.status_code == 415 and "clip.mp4" in r.json()["detail"]
        assert c.post("/api/uploads", json={"filename": "run.exe", "size": 10}).status_code == 415
        assert c.post("/api/uploads", json={"filename": "../x.mp4", "size": 10}).status_code == 422
        monkeypatch.setenv("XUNJIAN_MAX_UPLOAD_MB", "1")
        r = c.post("/api/uploads", json={"filename": "big.mp4", "size": 2 << 20})
        assert r.status_code == 413 and "big.mp4" in r.json()["detail"]
        assert c.get("/api/uploads/not-an-id").status_code == 404
    with srv.client(VIEWER) as c:
        assert c.post("/api/uploads", json={"filename": "a.mp4", "size": 10}).status_code == 403


# -- refusals: a clear 4xx, nothing written -------------------------------------------------------------------------


GPX = b'<?xml version="1.0"?>\n<gpx version="1.1"><trk><trkseg></trkseg></trk></gpx>\n'


def test_only_dispatchers_and_admins_upload(srv):
    before = snapshot(srv)
    parts = [("a.gpx", GPX)]
    assert post_raw(srv, parts, user=DEPARTMENT).status_code == 403
    r = post_raw(srv, parts, user=VIEWER)
    assert r.status_code == 403 and "李只读" in r.json()["detail"]
    body, ctype = raw_multipart(parts)
    assert httpx.post(f"{srv.url}/api/batches", content=body, headers={"content-type": ctype}).status_code == 401
    assert httpx.get(f"{srv.url}/api/batches").status_code == 401
    assert snapshot(srv) == before


def test_an_oversized_file_is_413_and_nothing_is_kept(srv, monkeypatch, demo_batch):
    monkeypatch.setenv("XUNJIAN_MAX_UPLOAD_MB", "1")
    before = snapshot(srv)
    big = GPX + b"<!-- padding -->\n" * 100_000  # 1.7 MB of text
    r = post_raw(srv, [("patrol.gpx", GPX), ("big.gpx", big), ("later.gpx", GPX)])
    assert r.status_code == 413, r.text
    assert "big.gpx" in r.json()["detail"] and "1.0 MB" in r.json()["detail"]
    assert r.json()["error"] == "too_large" and r.json()["file"] == "big.gpx"
    assert snapshot(srv) == before
    monkeypatch.setenv("XUNJIAN_MAX_UPLOAD_MB", "4096")
    monkeypatch.setenv("XUNJIAN_MAX_BATCH_MB", "1")  # the request in all
    r = post_raw(srv, [("a.gpx", big[:700_000]), ("b.gpx", big[:700_000])])
    assert r.status_code == 413 and "合计" in r.json()["detail"]
    assert snapshot(srv) == before


@pytest.mark.parametrize(("name", "data", "status", "says"), [
    ("setup.exe", b"MZ\x90\x00" * 100, 415, "不支持的文件类型"),
    ("hack.py", b"import os\n", 415, "不支持的文件类型"),
    ("notes.yaml", b"batch: x\n", 415, "不支持的文件类型"),  # a manifest must be called manifest.yaml
    ("clip.mp4", b"this is not a video at all" * 40, 415, "内容不是 .mp4 视频"),
    ("photo.jpg", b"GIF89a" + b"\x00" * 600, 415, "内容不是 JPEG 图片"),
    ("track.gpx", b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 600, 415, "内容不是文本"),
    ("empty.mp4", b"", 415, "文件是空的"),
    ("../evil.gpx", GPX, 422, "上级目录"),
    ("/etc/cron.d/evil.gpx", GPX, 422, "绝对路径"),
    ("C:\\\\Windows\\\\evil.gpx", GPX, 422, "绝对路径"),
    ("sub/evil.gpx", GPX, 422, "含目录"),
    ("sub\\\\evil.gpx", GPX, 422, "含目录"),
    ("evil\x01.gpx", GPX, 422, "控制字符"),
    ("evil\u202egpx.exe", GPX, 422, "控制字符"),
    (".hidden.gpx", GPX, 422, "隐藏文件"),
])
def test_bad_files_are_refused_by_name_and_nothing_is_written(srv, name, data, status, says):
    before = snapshot(srv)
    r = post_raw(srv, [("patrol.gpx", GPX), (name, data)], fields={"source": "vehicle"})
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert says in detail, detail
    if status == 415:
        assert name in detail and ".mp4" in detail and "manifest.yaml" in detail and ".zip" in detail  # what is accepted
        assert r.json()["accepted"]["video"] == [".avi", ".mkv", ".mov", ".mp4"]
    assert snapshot(srv) == before


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_bad_archives_and_fields_are_refused_up_front(srv, demo_batch):
    before = snapshot(srv)
    mp4_head = (demo_batch / "patrol.mp4").read_bytes()[:4096]
    cases = [
        ([("batch.zip", zip_bytes({"ok.gpx": GPX, "../../escape.gpx": GPX}))], {}, 422, "../../escape.gpx"),
        ([("batch.zip", zip_bytes({"/abs/x.gpx": GPX}))], {}, 422, "/abs/x.gpx"),
        ([("batch.zip", zip_bytes({"a.mp4": b"not a video" * 100, "a.gpx": GPX}))], {}, 415, "batch.zip 里的 a.mp4"),
        ([("batch.zip", b"PK\x03\x04 but then garbage" * 40)], {}, 422, "压缩包损坏"),
        ([("batch.zip", zip_bytes({"a.gpx": GPX})), ("b.gpx", GPX)], {}, 422, "须单独上传"),
        ([("manifest.yaml", b"batch: x\nfiles:\n- video: patrol.mp4\n  track: patrol.gpx\n")], {}, 422, "patrol.mp4 不存在"),
        ([("a.gpx", GPX)], {}, 422, "没有找到视频或图片"),
        ([("a.mp4", mp4_head)], {"source": "boat"}, 422, "source 应为 vehicle"),
        ([("a.mp4", mp4_head)], {"batch": "a/b"}, 422, "批次号"),
        ([("a.mp4", mp4_head)], {"run_pipeline": "maybe"}, 422, "run_pipeline"),
        ([("a.mp4", mp4_head), ("A.MP4", mp4_head)], {}, 422, "重复"),
        ([], {"source": "vehicle"}, 422, "没有收到文件"),
    ]
    for parts, fields, status, says in cases:
        r = post_raw(srv, parts, fields)
        assert r.status_code == status, (parts[0][0] if parts else fields, r.text)
        assert says in r.json()["detail"], r.json()["detail"]
        assert str(srv.home) not in r.json()["detail"]  # no server paths in messages
    # a tar with a link in it
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("passwd.gpx")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(info)
    r = post_raw(srv, [("batch.tar", buf.getvalue())])
    assert r.status_code == 422 and "passwd.gpx" in r.json()["detail"]
    with srv.client(DISPATCHER) as c:
        r = c.post("/api/batches", json={"files": []})
        assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    assert snapshot(srv) == before
