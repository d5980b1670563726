"""Migration 4: model-serving endpoints and their versions (see :mod:`nbpipe.runner.endpoints`).

The tables are declared on :data:`nbpipe.runner.db.metadata` (so a new database gets them from
``create_all``); this migration creates them in a database made by an older nbpipe.
"""

from __future__ import annotations

import sqlalchemy as sa

from .. import db

endpoints = sa.Table(
    "endpoints", db.metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("default_version", sa.String(64), nullable=False, default=""),
    sa.Column("next_version", sa.Integer, nullable=False, default=1),
    sa.Column("port", sa.Integer),
    sa.Column("pid", sa.Integer),
    sa.Column("state", sa.String(20), nullable=False, default="starting"),  # starting|updating|ready|failed|restarting
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("restarts", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("profile", sa.String(63), nullable=False, default="default"),  # migration 5
)

endpoint_versions = sa.Table(
    "endpoint_versions", db.metadata,
    sa.Column("endpoint", sa.String(63), sa.ForeignKey("endpoints.name", ondelete="CASCADE"), primary_key=True),
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),  # deploy order, for rollback
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("key", sa.String(400), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("manifest", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False, default="{}"),  # {"kind": "kernel"} or {"run_id", "step"}
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
)


def apply(conn: sa.Connection) -> None:
    endpoints.create(conn, checkfirst=True)
    endpoint_versions.create(conn, checkfirst=True)
