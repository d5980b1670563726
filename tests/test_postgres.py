"""Run metadata on a real PostgreSQL server, and the migrations on both SQLite and PostgreSQL.

The module starts its own PostgreSQL (Debian's ``postgresql`` package: ``make system-deps``)
with ``initdb`` into a temporary folder, on a loopback port, and stops it at the end. As root,
the server runs as the ``postgres`` user (PostgreSQL refuses to run as root).
Non-goal: PostgreSQL tuning or replication; the server runs with ``fsync=off`` for speed.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa
from runner_process import RunnerProcess

from nbpipe import component, pipeline
from nbpipe.errors import NbpipeError
from nbpipe.runner import db, migrations


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        pytest.fail("PostgreSQL server binaries are missing (/usr/lib/postgresql/*/bin). Install them with "
                    "`make system-deps` (Debian package postgresql).")
    return Path(found[-1]).parent


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    """A private PostgreSQL server; yields a SQLAlchemy URL prefix ``postgresql+psycopg://nbpipe@127.0.0.1:PORT``."""
    bin_dir = _pg_bin()
    folder = Path(tempfile.mkdtemp(prefix="nbpipe-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data = folder / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(_as_server_user([str(bin_dir / "initdb"), "-D", str(data), "-U", "nbpipe", "--auth=trust",
                                    "-E", "UTF8", "--no-sync"]), check=True, capture_output=True)
    opts = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={folder} -c fsync=off"
    subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", opts, "-l",
                                    str(folder / "server.log"), "-w", "-t", "60", "start"]), check=True,
                   capture_output=True)
    try:
        yield f"postgresql+psycopg://nbpipe@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def new_database(server: str, name: str) -> str:
    engine = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return f"{server}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nbpipe.db'}"
    return new_database(request.getfixturevalue("pg_server"), f"t_{os.urandom(4).hex()}")


def test_a_new_database_is_created_at_the_latest_version_and_reconnects_without_changes(fresh_url: str) -> None:
    engine = db.connect(fresh_url)
    assert migrations.applied(engine) == [m.version for m in migrations.MIGRATIONS]
    assert migrations.upgrade(engine) == []
    names = set(sa.inspect(engine).get_table_names())
    assert {"runs", "steps", "attempts", "events", "nbpipe_migrations"} <= names
    indexes = {ix["name"] for ix in sa.inspect(engine).get_indexes("attempts")}
    assert "ix_attempts_run_id_state" in indexes
    engine.dispose()


def test_a_database_from_before_migrations_is_upgraded_in_order(fresh_url: str) -> None:
    engine = sa.create_engine(fresh_url)
    db.metadata.create_all(engine)  # what nbpipe 0.1 did, then undo what migrations 2 and 3 add
    with engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX ix_attempts_run_id_state"))
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("ALTER TABLE attempts ALTER COLUMN id TYPE VARCHAR(120)"))
    engine.dispose()
    engine = db.connect(fresh_url)
    assert migrations.applied(engine) == list(range(1, migrations.LATEST + 1))
    with engine.connect() as conn:
        names = [n for (n,) in conn.execute(sa.select(migrations.versions.c.name).order_by(migrations.versions.c.version))]
    assert names[0].startswith("baseline") and "400 characters" in names[1]
    assert "ix_attempts_run_id_state" in {ix["name"] for ix in sa.inspect(engine).get_indexes("attempts")}
    long_id = "r1." + "s" * 250 + ".1"  # longer than the old 120: PostgreSQL enforces VARCHAR lengths
    with engine.begin() as conn:
        conn.execute(db.packages.insert().values(digest="d" * 64, name="p", size=1, spec="{}", created_at=0.0))
        conn.execute(db.runs.insert().values(id="r1", name="r", pipeline="p", experiment="e", package="d" * 64,
                                             params="{}", state="running", reason="", labels="{}", created_at=0.0))
        conn.execute(db.attempts.insert().values(id=long_id, run_id="r1", step="s" * 250, attempt=1, state="running",
                                                 executor="local", log_key="x", started_at=0.0, reason=""))
    engine.dispose()


def test_a_failing_migration_leaves_the_previous_version(fresh_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = db.connect(fresh_url)

    def broken(conn: sa.Connection) -> None:
        conn.execute(sa.text("CREATE TABLE half_done (x INTEGER)"))
        conn.execute(sa.text("SELECT no_such_column FROM runs"))

    before = migrations.applied(engine)
    nxt = migrations.LATEST + 1
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, migrations.Migration(nxt, "broken", broken)))
    monkeypatch.setattr(migrations, "LATEST", nxt)
    with pytest.raises(sa.exc.DBAPIError, match="no_such_column"):
        migrations.upgrade(engine)
    assert migrations.applied(engine) == before == list(range(1, nxt))
    assert "half_done" not in sa.inspect(engine).get_table_names()  # same transaction: rolled back
    engine.dispose()


def test_a_database_from_a_newer_nbpipe_is_refused(fresh_url: str) -> None:
    engine = db.connect(fresh_url)
    with engine.begin() as conn:
        conn.execute(migrations.versions.insert().values(version=99, name="from the future", applied_at=0.0))
    engine.dispose()
    with pytest.raises(NbpipeError, match="schema version 99, newer than this nbpipe knows.*Upgrade nbpipe"):
        db.connect(fresh_url)


@component(cache=False)
def add_one(x: int) -> int:
    return x + 1


@pipeline
def chain(x: int = 1):
    add_one(x=add_one(x=add_one(x=x).output).output)


def _timed_run(r: RunnerProcess) -> tuple[str, float]:
    c = r.client()
    t0 = time.perf_counter()
    run = c.submit(chain, {"x": 1}).wait(timeout=120)
    elapsed = time.perf_counter() - t0
    assert run.output("add_one-3") == 4
    return run.id, elapsed


def test_runner_keeps_runs_in_postgresql_across_restarts(pg_server: str, tmp_path: Path) -> None:
    url = new_database(pg_server, "runner")
    r = RunnerProcess(tmp_path / "pg-runner", extra_env={"NBPIPE_DATABASE_URL": url}).start()
    try:
        run_id, pg_s = _timed_run(r)
        r.stop()
        assert not (tmp_path / "pg-runner" / "nbpipe.db").exists()  # nothing went to SQLite
        r.start()
        runs = {x["id"]: x for x in r.client().runs()}
        assert runs[run_id]["state"] == "succeeded"
        assert r.client().run(run_id).output("add_one-2") == 3
    finally:
        r.stop()
    s = RunnerProcess(tmp_path / "sqlite-runner").start()
    try:
        _, sqlite_s = _timed_run(s)
    finally:
        s.stop()
    print(f"\n3-step run: PostgreSQL {pg_s:.2f} s, SQLite {sqlite_s:.2f} s")


def test_bad_input_is_a_4xx_on_postgresql_too(pg_server: str, tmp_path: Path) -> None:
    """Over-long strings and NUL bytes used to reach PostgreSQL (StringDataRightTruncation, NUL): 500s."""
    import hashlib
    import io
    import json
    import zipfile

    import httpx

    from nbpipe.package import build_package

    url = new_database(pg_server, "badinput")
    r = RunnerProcess(tmp_path / "pg-bad", extra_env={"NBPIPE_DATABASE_URL": url}).start()
    try:
        c = r.client()
        auth = r.headers()
        digest = c.upload(build_package(chain))
        api = f"{r.url}/api/v1"
        for body in ({"package": digest, "experiment": "e" * 201}, {"package": digest, "experiment": "a\x00b"},
                     {"package": digest, "name": "n\x00"}, {"package": digest, "labels": {"k": "v\x00"}},
                     {"package": digest, "params": {"x": "a\x00"}}, {"package": "x" * 300}):
            resp = httpx.post(f"{api}/runs", json=body, headers=auth)
            assert resp.status_code == 422, (body, resp.status_code, resp.text)
        for path in ("/runs/a%00b", "/runs/a%00b/cancel", "/runs?experiment=a%00b", "/schedules/a%00"):
            resp = httpx.request("POST" if path.endswith("cancel") else "GET", f"{api}{path}", headers=auth)
            assert resp.status_code == 400, (path, resp.text)
        assert httpx.get(f"{api}/runs/{'r' * 500}", headers=auth).status_code == 404
        assert httpx.get(f"{api}/runs", params={"offset": 2**63}, headers=auth).status_code == 422

        zin = zipfile.ZipFile(io.BytesIO(build_package(chain)))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zout:
            for info in zin.infolist():
                blob = zin.read(info)
                if info.filename == "nbpipe.json":
                    spec = json.loads(blob)
                    spec["pipeline"]["name"] = "p" * 201
                    blob = json.dumps(spec).encode()
                zout.writestr(info.filename, blob)
        data = out.getvalue()
        resp = httpx.put(f"{api}/packages/{hashlib.sha256(data).hexdigest()}", content=data, headers=auth)
        assert resp.status_code == 400 and ("too long" in resp.json()["error"] or "at most 200" in resp.json()["error"])
        assert c.submit(chain, {"x": 1}, experiment="ok").wait(timeout=120).state == "succeeded"
    finally:
        r.stop()


def test_user_errors_with_nul_and_the_newer_routes_on_postgresql(pg_server: str, tmp_path: Path) -> None:
    """PostgreSQL text holds no NUL: a user's error or log tail with one is kept (shown as \\x00), not
    a failed write; schedules and endpoints bound their strings like runs do (422, not 500)."""
    import httpx
    from test_runner_robust import check_nul_errors

    from nbpipe.package import build_package

    r = RunnerProcess(tmp_path / "pg-nul", extra_env={"NBPIPE_DATABASE_URL": new_database(pg_server, "nul")}).start()
    try:
        c = r.client()
        check_nul_errors(c)
        api, auth = f"{r.url}/api/v1", r.headers()
        digest = c.upload(build_package(chain))
        for body in ({"name": "s" * 301}, {"name": "a\x00"}, {"experiment": "e" * 201}, {"params": {"x": "\x00"}},
                     {"trigger": {"folder": "a\x00"}}, {"cron": "\x00"}):
            resp = httpx.post(f"{api}/schedules", json={"package": digest, "interval": 3600, **body}, headers=auth)
            assert resp.status_code == 422, (body, resp.status_code, resp.text)
        for version in ("a\x00", "v" * 65):
            resp = httpx.post(f"{api}/endpoints/nope/rollback", json={"version": version}, headers=auth)
            assert resp.status_code in (400, 404, 422), (version, resp.status_code, resp.text)
        assert c.health()["loop"]["ticking"]
    finally:
        r.stop()
