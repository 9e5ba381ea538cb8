"""Backup and restore of a deployment: the store's database (cases, audit log,
observations, users, LangGraph checkpoints: all in one database) and the data
directory's files (evidence frames and crops, Open311 photos, batch outputs,
``llm.yaml``). ``xunjian db backup DIR`` / ``xunjian db restore DIR``; the
procedure, and how to do the same by hand, is in docs/scale.md.

A backup is a folder::

    DIR/manifest.json   what, when, from which schema revision, row counts
    DIR/store.sqlite    SQLite: an online copy (the sqlite3 backup API: consistent
                        while the server keeps writing)
    DIR/store.dump      PostgreSQL: ``pg_dump -Fc`` (consistent snapshot; only the
                        URL's schema when it sets ``search_path``)
    DIR/files.tar.gz    the data directory without what can be rebuilt or
                        re-downloaded (the SQLite database itself, ``cache/``,
                        ``llm/`` model weights, ``uploads/`` raw footage unless asked)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import URL

from city import settings
from city.errors import InvalidInput, XunjianError
from city.store.db import current_revision, make_engines

SKIP_DIRS = ("cache", "llm")  # rebuilt (embeddings cache) or re-downloaded (model weights)
COUNTED = ("cases", "case_audit", "case_evidence", "observations", "users", "checkpoints")


def _counts(engine) -> dict[str, int]:
    names = set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in COUNTED if t in names}


def _schema_of(url: URL) -> str | None:
    """The schema a PostgreSQL URL pins with ``options=-csearch_path=NAME`` (one name), if any."""
    options = url.query.get("options") or ""
    if isinstance(options, tuple):
        options = " ".join(options)
    m = re.search(r"-c\s*search_path=([^\s,]+)(\s|$)", options)
    return m.group(1).strip('"') if m else None


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """(a libpq connection URI without the password, the environment with PGPASSWORD)."""
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    query = {k: v for k, v in plain.query.items() if k != "options"}  # pg_dump/pg_restore: no search_path games
    return plain.set(query=query).render_as_string(hide_password=False), env


def _run(cmd: list[str], env: dict) -> None:
    tool = cmd[0]
    if not shutil.which(tool):
        raise XunjianError(f"{tool} not found: install the PostgreSQL client tools (Debian: postgresql-client), "
                           "the same major version as the server or newer")
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode:
        raise XunjianError(f"{tool} failed ({res.returncode}): {res.stderr.strip()[-2000:]}")


def _sqlite_copy(src: str, dest: str) -> None:
    """Copy one SQLite database into another with the backup API (safe while it is in use)."""
    source = sqlite3.connect(src, timeout=30)
    target = sqlite3.connect(dest, timeout=30)
    try:
        with target:
            source.backup(target)
    finally:
        target.close()
        source.close()


def backup(url: str, dest: Path, *, files: bool = True, uploads: bool = False, home: Path | None = None) -> dict:
    """Write a backup of the store at ``url`` (and of the data directory ``home``)
    into the new or empty folder ``dest``; returns the manifest."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise InvalidInput(f"{dest} is not empty: back up into a new folder")
    dest.mkdir(parents=True, exist_ok=True)
    home = Path(home or settings.home())
    read, write = make_engines(url)
    try:
        parsed = write.url
        manifest = {"format": 1, "created_at": datetime.now(UTC).isoformat(), "dialect": write.dialect.name,
                    "revision": current_revision(write), "counts": _counts(write)}
        if write.dialect.name == "sqlite":
            db = Path(parsed.database).expanduser().resolve()
            _sqlite_copy(str(db), str(dest / "store.sqlite"))
            manifest["database"] = "store.sqlite"
        else:
            conn, env = _libpq(parsed)
            cmd = ["pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--file={dest / 'store.dump'}"]
            schema = _schema_of(parsed)
            if schema:
                cmd.append(f"--schema={schema}")
                manifest["schema"] = schema
            _run([*cmd, conn], env)
            manifest["database"] = "store.dump"
    finally:
        read.dispose()
        write.dispose()
    if files and home.is_dir():
        skip = set(SKIP_DIRS) | (set() if uploads else {"uploads"})
        db_file = str(Path(parsed.database).expanduser().resolve()) if write.dialect.name == "sqlite" else None

        def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
            top = info.name.split("/", 1)[0]
            full = str((home / info.name).resolve())
            if top in skip or (db_file and full.startswith(db_file)):  # the database (+ -wal, -shm, .locks)
                return None
            return info

        names = []
        with tarfile.open(dest / "files.tar.gz", "w:gz") as tar:
            for child in sorted(home.iterdir()):
                before = len(tar.getmembers())
                tar.add(child, arcname=child.name, filter=keep)
                if len(tar.getmembers()) > before:
                    names.append(child.name)
        manifest["files"] = {"archive": "files.tar.gz", "top": names, "skipped": sorted(skip)}
    (dest / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    return manifest


def restore(url: str, src: Path, *, force: bool = False, files: bool = True, home: Path | None = None) -> dict:
    """Restore the backup folder ``src`` into the store at ``url`` (and its files
    into the data directory ``home``). Refuses a store that already holds cases
    unless ``force``; stop the server and workers first. Opening the store
    afterwards migrates an older backup to the current schema."""
    src = Path(src)
    try:
        manifest = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"{src} holds no backup (manifest.json missing)") from None
    read, write = make_engines(url)
    try:
        if manifest["dialect"] != write.dialect.name:
            raise InvalidInput(f"this is a {manifest['dialect']} backup; the store at {write.url.render_as_string()} is "
                               f"{write.dialect.name} (move data between them with an export, not a restore)")
        existing = _counts(write).get("cases", 0)
        if existing and not force:
            raise InvalidInput(f"the store already holds {existing} cases; restore into an empty database, or --force "
                               "to replace everything in it")
        parsed = write.url
        if write.dialect.name == "sqlite":
            db = Path(parsed.database).expanduser()
            db.parent.mkdir(parents=True, exist_ok=True)
            read.dispose()
            write.dispose()
            _sqlite_copy(str(src / manifest["database"]), str(db))
        else:
            conn, env = _libpq(parsed)
            schema = manifest.get("schema")
            if schema and schema != _schema_of(parsed):
                raise InvalidInput(f"the backup holds schema {schema!r}; restore it with a URL whose search_path is {schema}")
            with write.begin() as c:  # replace: what pg_restore --clean would, without its noise on an empty database
                if schema:
                    c.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                else:
                    for t in inspect(write).get_table_names():
                        c.exec_driver_sql(f'DROP TABLE IF EXISTS "{t}" CASCADE')
            write.dispose()
            _run(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
                  f"--dbname={conn}", str(src / manifest["database"])], env)
    finally:
        read.dispose()
        write.dispose()
    archive = src / "files.tar.gz"
    if files and archive.is_file():
        home = Path(home or settings.home())
        home.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(home, filter="data")
    return manifest
