"""Versioned migrations of the runner's metadata database, the same on SQLite and PostgreSQL.

:func:`upgrade` (called by :func:`nbpipe.runner.db.connect`) brings a database to
:data:`LATEST`:

- a new database gets the current tables of :mod:`nbpipe.runner.db` and is recorded as being at
  the latest version (what ``alembic stamp head`` does after ``create_all``);
- a database from before migrations existed (tables but no ``nbpipe_migrations``) counts as
  version 1;
- pending migrations run in version order, each in its own transaction together with the row
  that records it in ``nbpipe_migrations`` (version, name, applied_at), so a failed migration
  leaves the database at the previous version;
- a database at a version newer than this nbpipe knows is refused.

How to change the schema: a **new table** is declared in ``db.py`` only (``create_all`` adds
missing tables on every start). A change to an **existing table** (column, type, index) goes in
``db.py`` for new databases *and* as a new :class:`Migration` here for existing ones.
PostgreSQL runs take an advisory lock so two runners never migrate at once.

Non-goals: downgrades (restore a backup), and online migration of large tables.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import sqlalchemy as sa

from ...errors import NbpipeError
from . import m0004_endpoints as _m0004
from . import m0005_profiles as _m0005

versions = sa.Table(
    "nbpipe_migrations", sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.Float, nullable=False),
)

_LOCK_ID = 0x6E627069  # "nbpi": the PostgreSQL advisory lock key for migrations


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[sa.Connection], None]


def _baseline(conn: sa.Connection) -> None:
    from .. import db

    db.metadata.create_all(conn)


def _widen_attempt_ids(conn: sa.Connection) -> None:
    # run id + "." + step name (up to 250) + "." + attempt: longer than 120 for long step names.
    # SQLite does not enforce VARCHAR lengths, PostgreSQL does.
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("ALTER TABLE attempts ALTER COLUMN id TYPE VARCHAR(400)"))


def _index_attempt_state(conn: sa.Connection) -> None:
    # the restart recovery looks up a run's running attempts
    conn.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_attempts_run_id_state ON attempts (run_id, state)"))


def _archived_runs(conn: sa.Connection) -> None:
    # Kubeflow's run storage state: archived runs leave the run lists (see nbpipe.runner.run_storage)
    if "archived_at" not in {c["name"] for c in sa.inspect(conn).get_columns("runs")}:
        conn.execute(sa.text("ALTER TABLE runs ADD COLUMN archived_at FLOAT"))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "baseline: the tables of nbpipe 0.1", _baseline),
    Migration(2, "attempts.id up to 400 characters (long step names on PostgreSQL)", _widen_attempt_ids),
    Migration(3, "index attempts by (run_id, state) for restart recovery", _index_attempt_state),
    Migration(4, "model-serving endpoints and their versions", _m0004.apply),
    Migration(5, "runs, schedules and endpoints belong to a profile", _m0005.apply),
    Migration(6, "runs can be archived (runs.archived_at)", _archived_runs),
)
LATEST = MIGRATIONS[-1].version


def applied(engine: sa.Engine) -> list[int]:
    """Versions recorded in the database, in order."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(versions.name):
            return []
        return [int(v) for (v,) in conn.execute(sa.select(versions.c.version).order_by(versions.c.version))]


def _begin(conn: sa.Connection) -> None:
    """Make DDL part of the transaction: PostgreSQL does; Python's sqlite3 starts none before DDL."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN")
    elif conn.dialect.name == "postgresql":
        conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({_LOCK_ID})"))


def _record(conn: sa.Connection, m: Migration) -> None:
    conn.execute(versions.insert().values(version=m.version, name=m.name, applied_at=time.time()))


def upgrade(engine: sa.Engine) -> list[int]:
    """Apply pending migrations; return the versions applied now (empty when up to date)."""
    from .. import db

    done: list[int] = []
    with engine.begin() as conn:
        _begin(conn)
        inspector = sa.inspect(conn)
        if not inspector.has_table(versions.name):
            legacy = inspector.has_table("runs")
            versions.create(conn)
            if legacy:
                _record(conn, MIGRATIONS[0])  # tables from before migrations: version 1
            else:
                db.metadata.create_all(conn)
                for m in MIGRATIONS:
                    _record(conn, m)
                done = [m.version for m in MIGRATIONS]
        have = {int(v) for (v,) in conn.execute(sa.select(versions.c.version))}
    newest = max(have, default=0)
    if newest > LATEST:
        raise NbpipeError(
            f"The metadata database is at schema version {newest}, newer than this nbpipe knows ({LATEST})",
            "a newer nbpipe has migrated it.",
            "Upgrade nbpipe on this runner, or point NBPIPE_DATABASE_URL at another database.")
    for m in MIGRATIONS:
        if m.version in have:
            continue
        with engine.begin() as conn:
            _begin(conn)
            if conn.execute(sa.select(versions.c.version).where(versions.c.version == m.version)).first():
                continue  # another runner applied it while we waited for the lock
            m.apply(conn)
            _record(conn, m)
        done.append(m.version)
    with engine.begin() as conn:
        db.metadata.create_all(conn)  # tables added since (new tables need no migration)
    return done
