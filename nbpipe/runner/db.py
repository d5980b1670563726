"""The runner's metadata: runs, steps, attempts, artifacts, the cache and the event log.

SQLAlchemy Core tables, so the same code runs on SQLite (WAL, the embedded default) and on
PostgreSQL. The DAG state machine lives here: a restarted runner reloads every run from it.
Non-goals: artifact bytes (see stores) and business logic (see :mod:`.scheduler`).
"""

from __future__ import annotations

import contextlib
import json
import operator
import threading
import time
from typing import Any, Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy import event as sa_event

from . import failpoints

metadata = sa.MetaData()

packages = sa.Table(
    "packages", metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(300), nullable=False),
    sa.Column("pipeline", sa.String(200), nullable=False),
    sa.Column("experiment", sa.String(200), nullable=False, index=True),
    sa.Column("package", sa.String(64), sa.ForeignKey("packages.digest"), nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("state", sa.String(20), nullable=False, index=True),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("labels", sa.Text, nullable=False, default="{}"),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("profile", sa.String(63), nullable=False, default="default", index=True),  # migration 5
    sa.Column("archived_at", sa.Float),  # migration 6: set while the run is archived (see .run_storage)
)

steps = sa.Table(
    "steps", metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("name", sa.String(250), primary_key=True),
    sa.Column("component", sa.String(200), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False, default=0),
    sa.Column("max_attempts", sa.Integer, nullable=False, default=1),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("traceback", sa.Text, nullable=False, default=""),
    sa.Column("cache_key", sa.String(64)),
    sa.Column("outputs", sa.Text, nullable=False, default="{}"),
    sa.Column("inputs", sa.Text, nullable=False, default="{}"),
)

attempts = sa.Table(
    "attempts", metadata,
    sa.Column("id", sa.String(400), primary_key=True),  # migration 2
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("step", sa.String(250), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("executor", sa.String(40), nullable=False),
    sa.Column("pid", sa.Integer),
    sa.Column("pod", sa.String(253)),
    sa.Column("log_key", sa.String(400), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("exit_code", sa.Integer),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Index("ix_attempts_run_id_state", "run_id", "state"),  # migration 3
)

artifacts = sa.Table(
    "artifacts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("step", sa.String(250), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False, index=True),
    sa.Column("key", sa.String(400), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("format", sa.String(20), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

cache = sa.Table(
    "cache", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("outputs", sa.Text, nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("step", sa.String(250), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

events = sa.Table(
    "events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Index("ix_events_run_id_id", "run_id", "id"),
)

expansions = sa.Table(  # ParallelFor loops expanded at run time (nbpipe.runner.expand replays them)
    "expansions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("loop", sa.String(100), nullable=False),
    sa.Column("templates", sa.Text, nullable=False),
    sa.Column("items", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

schedules = sa.Table(  # recurring runs and data triggers (nbpipe.runner.schedules)
    "schedules", metadata,
    sa.Column("id", sa.String(20), primary_key=True),
    sa.Column("name", sa.String(300), nullable=False),
    sa.Column("package", sa.String(64), sa.ForeignKey("packages.digest"), nullable=False),
    sa.Column("pipeline", sa.String(200), nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("experiment", sa.String(200), nullable=False),
    sa.Column("cron", sa.String(200), nullable=False, default=""),
    sa.Column("interval", sa.Float),
    sa.Column("trigger", sa.Text, nullable=False, default="{}"),
    sa.Column("max_concurrency", sa.Integer, nullable=False, default=1),
    sa.Column("catchup", sa.Boolean, nullable=False, default=False),
    sa.Column("paused", sa.Boolean, nullable=False, default=False),
    sa.Column("next_fire_at", sa.Float, nullable=False),
    sa.Column("last_fire_at", sa.Float),
    sa.Column("fires", sa.Integer, nullable=False, default=0),
    sa.Column("skipped", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("profile", sa.String(63), nullable=False, default="default"),  # migration 5
)

trigger_seen = sa.Table(  # files a data trigger has already started runs for
    "trigger_seen", metadata,
    sa.Column("schedule_id", sa.String(20), primary_key=True),
    sa.Column("key", sa.String(1000), primary_key=True),
)

audit = sa.Table(  # who submitted, cancelled, re-ran or deployed what (nbpipe.runner.audit)
    "audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False, index=True),
    sa.Column("user", sa.String(128), nullable=False, index=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("profile", sa.String(63), nullable=False),
    sa.Column("target", sa.String(400), nullable=False, default=""),
    sa.Column("detail", sa.Text, nullable=False, default="{}"),
)

meta_info = sa.Table(
    "nbpipe_meta", metadata,
    sa.Column("key", sa.String(50), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


def connect(url: str, background_checkpoints: bool = False) -> sa.Engine:
    """Open (and create/upgrade) the metadata database at a SQLAlchemy URL.

    ``background_checkpoints``: a SQLite file's WAL is checkpointed by a thread of its own, not by
    the commit that fills it (see :mod:`.checkpoint`; the runner's engine)."""
    from . import checkpoint

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        # The pool hands out the connection returned last: the loop thread's writes then keep one
        # connection whose page cache stays valid (SQLite drops a connection's cache when another
        # one wrote). Round-robin (the default) re-read ~45 pages from the WAL per cached run.
        kwargs["pool_use_lifo"] = True
    engine = sa.create_engine(url, future=True, **kwargs)
    path = engine.url.database if url.startswith("sqlite") else None
    background = bool(background_checkpoints and path and path != ":memory:" and "mode=memory" not in url)
    if url.startswith("sqlite"):
        @sa_event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            if background:  # the checkpointer thread does it; this is the backstop
                cur.execute(f"PRAGMA wal_autocheckpoint={checkpoint.BACKSTOP_PAGES}")
            cur.close()
    if engine.dialect.driver == "psycopg":
        sa_event.listen(engine, "after_cursor_execute", _sync_for_rows)
    from . import failpoints, migrations

    if failpoints.armed("write"):
        @sa_event.listens_for(engine, "after_cursor_execute")
        def _after_write(_conn: Any, _cur: Any, statement: str, *_: Any) -> None:
            if statement.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
                failpoints.hit("write")

    migrations.upgrade(engine)
    if background:
        checkpoint.attach(engine, str(path))
    return engine


_WRITE_LOCKS: dict[int, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def write_lock(engine: sa.Engine) -> threading.RLock:
    """The lock that serialises this process's write transactions on ``engine``.

    SQLite allows one writer; with deferred transactions two writers in one process can also
    deadlock (``database is locked`` without waiting) when a transaction that read first tries
    to write after another committed. Writers from the event loop and from worker threads
    (package uploads) take turns here instead; readers never wait.
    """
    with _LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(id(engine), threading.RLock())


@contextlib.contextmanager
def write_tx(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A write transaction on its own connection, serialised with the process's other writers."""
    with write_lock(engine), engine.begin() as conn:
        yield conn


@contextlib.contextmanager
def begin_batched(engine: sa.Engine) -> Iterator[sa.Connection]:
    """``engine.begin()``, with a PostgreSQL (psycopg) transaction sent as one pipeline.

    psycopg otherwise waits for the server after ``BEGIN``, after each statement and after
    ``COMMIT``: ~7 round trips for a step's start on the event loop's thread. In pipeline mode
    ``BEGIN`` and the statements are sent without waiting for their results, which are collected
    when the ``COMMIT``'s is (or when a result is read, e.g. ``RETURNING``): one or two round trips. Atomicity is unchanged: a failed statement aborts the
    transaction and raises at the next read or at the commit, which rolls back everything. Caveat:
    ``rowcount`` is not known before the pipeline syncs, so callers must not use it (the scheduler's
    transactions do not; :func:`write_tx` stays unpipelined for the callers that do). SQLite: plain
    ``engine.begin()``.
    """
    if engine.dialect.driver != "psycopg":
        with engine.begin() as conn:
            yield conn
        return
    with engine.connect() as conn:
        with conn.connection.dbapi_connection.pipeline() as pipe:
            conn.info[_PIPE] = pipe  # for _sync_for_rows
            try:
                with conn.begin():  # the commit is sent in the pipeline
                    yield conn
            finally:
                conn.info.pop(_PIPE, None)


_PIPE = "nbpipe_pipeline"


def _sync_for_rows(conn: sa.Connection, _cur: Any, statement: str, *_: Any) -> None:
    """In a pipelined transaction, a statement whose rows are read (a SELECT, a single-row INSERT's
    implicit ``RETURNING``) waits for its result here: SQLAlchemy looks at the cursor's description
    right after executing it. Writes without rows are not waited for."""
    pipe = conn.info.get(_PIPE)
    if pipe is not None and (statement.lstrip()[:6].upper() not in ("INSERT", "UPDATE", "DELETE")
                             or " RETURNING " in statement.upper()):
        pipe.sync()


_ENCODE = json.JSONEncoder(sort_keys=True, default=str).encode  # what json.dumps builds per call, built once


def _c_encoder() -> Any:
    """The C encoder ``_ENCODE`` builds on every call (``JSONEncoder.iterencode``), built once and
    without its circular-reference check (which needs a fresh dict per call): a value here is JSON
    read back or built by the runner, never circular (if one were, RecursionError instead of
    ValueError). None when this Python has no C encoder or it does not give ``_ENCODE``'s text."""
    from json import encoder

    try:
        enc = encoder.c_make_encoder(None, str, encoder.encode_basestring_ascii, None, ": ", ", ", True, False, True)  # type: ignore[misc]
        probe = {"b": [1.5, float("nan"), None, True, "é\n"], "a": {"z": 1, "y": object}, "c": 10**30}
        return enc if "".join(enc(probe, 0)) == _ENCODE(probe) else None
    except Exception:  # noqa: BLE001 - no C accelerator, or another signature: the plain encoder
        return None


_C_ENCODE = _c_encoder()


def dumps(value: Any) -> str:
    """``json.dumps(value, sort_keys=True, default=str)``: ~60 a cached run, so its encoder is built once
    (~2x faster than ``_ENCODE``, which wraps the same C encoder in two Python calls)."""
    if _C_ENCODE is None or type(value) is str:  # a bare string: JSONEncoder.encode's own shortcut
        return _ENCODE(value)
    return "".join(_C_ENCODE(value, 0))


def loads(text: str | None) -> Any:
    return json.loads(text) if text else None


def now() -> float:
    return time.time()


def rows(result: Iterable[Any]) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in result]


# The hot writes as statements built once (bound per call): building a SQLAlchemy expression per
# call cost ~3x the statement itself, ~1 ms per cached step.
_STEP_SET = steps.update().where(steps.c.run_id == sa.bindparam("w_run"), steps.c.name == sa.bindparam("w_step"))
_RUN_SET = runs.update().where(runs.c.id == sa.bindparam("w_id"))
_ATTEMPT_SET = attempts.update().where(attempts.c.id == sa.bindparam("w_id"))
ATTEMPT_ADD = attempts.insert()


def set_step(conn: sa.Connection, run_id: str, step: str, **values: Any) -> None:
    if not _raw(conn, "steps", values, ("run_id", "name"), (run_id, step)):
        conn.execute(_STEP_SET, {"w_run": run_id, "w_step": step, **values})


def set_run(conn: sa.Connection, run_id: str, **values: Any) -> None:
    if not _raw(conn, "runs", values, ("id",), (run_id,)):
        conn.execute(_RUN_SET, {"w_id": run_id, **values})


def set_attempt(conn: sa.Connection, att_id: str, **values: Any) -> None:
    if not _raw(conn, "attempts", values, ("id",), (att_id,)):
        conn.execute(_ATTEMPT_SET, {"w_id": att_id, **values})


def insert(conn: sa.Connection, table: sa.Table, rows: dict[str, Any] | list[dict[str, Any]]) -> None:
    """``conn.execute(table.insert(), rows)``; on SQLite, when every row names the same columns and
    all of the table's columns with a default, straight to the driver (see :func:`_raw`)."""
    many = rows if isinstance(rows, list) else [rows]
    if many and _sqlite_raw(conn):
        keys = tuple(many[0])
        sql = _SQL.get((table.name, keys))
        if sql is None:
            if not _DEFAULTED[table.name].issubset(keys) or not set(keys).issubset(table.c.keys()):
                sql = ""  # SQLAlchemy fills the defaults (or says what is wrong)
            else:
                sql = "INSERT INTO %s (%s) VALUES (%s)" % (_q(table.name), ", ".join(map(_q, keys)), ", ".join("?" * len(keys)))
            _SQL[(table.name, keys)] = sql
        if sql and len(keys) > 1 and all(len(r) == len(keys) for r in many):
            get = operator.itemgetter(*keys)
            try:
                values = [get(r) for r in many]
            except KeyError:
                values = None
            if values is not None:
                _driver(conn, sql, values, True)
                return
    stmt = _INSERTS.get(table.name)
    if stmt is None:
        stmt = _INSERTS[table.name] = table.insert()  # built once: ``table.insert()`` per call cost ~0.1 ms
    conn.execute(stmt, rows)


# The hot writes straight to SQLite's driver: SQLAlchemy's execution of a cached statement costs
# ~0.1 ms (context, parameter processing, events) around a ~0.02 ms sqlite3 call, several times per
# step. Same transaction (the connection's), same SQL; the SQLite types here bind as they are. Not
# when the ``write`` failpoint is armed (it counts statements through SQLAlchemy's events), nor on
# PostgreSQL (pipelined: see begin_batched).
_SQL: dict[tuple[str, tuple[str, ...]], str] = {}
_INSERTS: dict[str, Any] = {}
_WRITE_FAILPOINT = failpoints.armed("write")  # read once, like failpoints itself reads its variable
_DEFAULTED = {t.name: {c.name for c in t.c if c.default is not None} for t in metadata.tables.values()}


def _sqlite_raw(conn: sa.Connection) -> bool:
    return conn.dialect.name == "sqlite" and not _WRITE_FAILPOINT


def _raw(conn: sa.Connection, table: str, values: dict[str, Any], where: tuple[str, ...], key: tuple[Any, ...]) -> bool:
    if not values or not _sqlite_raw(conn):
        return False
    cols = tuple(values)
    sql = _SQL.get((table, cols + ("", ) + where))
    if sql is None:
        if not set(cols).issubset(metadata.tables[table].c.keys()):
            return False
        sql = _SQL[(table, cols + ("",) + where)] = (
            "UPDATE %s SET %s WHERE %s" % (_q(table), ", ".join(_q(c) + "=?" for c in cols), " AND ".join(_q(w) + "=?" for w in where)))
    _driver(conn, sql, (*values.values(), *key), False)
    return True


def _q(name: str) -> str:
    return '"' + name + '"'  # the schema's own names (never a request's): quoted, keywords or not


def last_id(conn: sa.Connection, table: sa.Table) -> int:
    """``max(id)`` of ``table`` in ``conn``'s transaction (0 if empty)."""
    if _sqlite_raw(conn):
        return int(conn.connection.dbapi_connection.execute("SELECT max(id) FROM " + _q(table.name)).fetchone()[0] or 0)
    return int(conn.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0)


def _driver(conn: sa.Connection, sql: str, params: Any, many: bool) -> None:
    import sqlite3

    dbc = conn.connection.dbapi_connection
    try:
        dbc.executemany(sql, params) if many else dbc.execute(sql, params)  # type: ignore[union-attr]
    except sqlite3.Error as exc:  # as SQLAlchemy would raise it
        raise sa.exc.DBAPIError.instance(sql, params, exc, sqlite3.Error) from exc
