"""Migration 5: runs, schedules and endpoints belong to a profile (see :mod:`nbpipe.runner.profiles`).

Existing rows go to the ``default`` profile, the one the runner's own (local admin) token submits to,
so a single-user runner sees no change. The audit table is new (``create_all`` makes it).
"""

from __future__ import annotations

import sqlalchemy as sa

TABLES = ("runs", "schedules", "endpoints")


def apply(conn: sa.Connection) -> None:
    inspector = sa.inspect(conn)
    for table in TABLES:
        if not inspector.has_table(table):
            continue  # created later by create_all, with the column
        if "profile" in {c["name"] for c in inspector.get_columns(table)}:
            continue
        conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN profile VARCHAR(63) NOT NULL DEFAULT 'default'"))
    if inspector.has_table("runs"):
        conn.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_runs_profile ON runs (profile)"))
