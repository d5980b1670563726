"""Read-side queries: run snapshots, run lists, events after an id, step logs.

A snapshot is the JSON every consumer (client, widget, Lab panel, CLI) starts from before
applying events; its shape is mirrored in ``run_view.js``. Non-goal: mutations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..compiler import upstream_of
from . import db, profiles
from .expand import load_replay

if TYPE_CHECKING:
    from .eventlog import EventLog


# Packages are immutable per digest, so their parsed specs can be kept (bounded).
_SPECS: dict[str, dict[str, Any]] = {}


# A snapshot's queries, built once (building a SQLAlchemy expression per call costs more than running it).
_RUN_ROW = sa.select(db.runs).where(db.runs.c.id == sa.bindparam("w_run"))
_STEP_ROWS = sa.select(db.steps).where(db.steps.c.run_id == sa.bindparam("w_run"))
_LAST_EVENT = sa.select(sa.func.max(db.events.c.id)).where(db.events.c.run_id == sa.bindparam("w_run"))


def _remember(digest: str, spec: dict[str, Any]) -> None:
    if len(_SPECS) > 256:
        _SPECS.pop(next(iter(_SPECS)))
    _SPECS[digest] = spec


def _duration(start: float | None, end: float | None) -> float | None:
    return (end - start) if start and end else None


def run_summary(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"], "name": r["name"], "pipeline": r["pipeline"], "experiment": r["experiment"],
        "state": r["state"], "reason": r["reason"], "params": db.loads(r["params"]) or {},
        "labels": db.loads(r["labels"]) or {}, "package": r["package"],
        "created_at": r["created_at"], "started_at": r["started_at"], "finished_at": r["finished_at"],
        "duration": _duration(r["started_at"], r["finished_at"]), "archived_at": r.get("archived_at"),
    }


def archived_clause(archived: bool) -> Any:
    """Archived runs only, or (the lists' default) the others: see :mod:`.run_storage`."""
    return db.runs.c.archived_at.is_not(None) if archived else db.runs.c.archived_at.is_(None)


def list_runs(engine: sa.Engine, experiment: str | None = None, state: str | None = None,
              pipeline: str | None = None, limit: int = 50, offset: int = 0,
              archived: bool = False) -> list[dict[str, Any]]:
    q = sa.select(db.runs).where(*profiles.clauses(db.runs.c.profile), archived_clause(archived))  # the caller's only
    q = q.order_by(db.runs.c.created_at.desc()).limit(limit).offset(offset)
    if experiment:
        q = q.where(db.runs.c.experiment == experiment)
    if state:
        q = q.where(db.runs.c.state == state)
    if pipeline:
        q = q.where(db.runs.c.pipeline == pipeline)
    with engine.connect() as conn:
        out = [run_summary(r) for r in db.rows(conn.execute(q))]
        if out:
            counts = conn.execute(
                sa.select(db.steps.c.run_id, db.steps.c.state, sa.func.count())
                .where(db.steps.c.run_id.in_([r["id"] for r in out]))
                .group_by(db.steps.c.run_id, db.steps.c.state)).all()
    by_run: dict[str, dict[str, int]] = {}
    for run_id, st, n in counts if out else []:
        by_run.setdefault(run_id, {})[st] = n
    for r in out:
        r["step_counts"] = by_run.get(r["id"], {})
    return out


def snapshot(engine: sa.Engine, run_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(_RUN_ROW, {"w_run": run_id}).first()
        if row is None:
            return None
        r = dict(row._mapping)
        spec = _SPECS.get(r["package"])
        if spec is None:
            spec_row = conn.execute(sa.select(db.packages.c.spec).where(db.packages.c.digest == r["package"])).first()
            spec = db.loads(spec_row[0]) if spec_row else {"steps": [], "components": {}}
            if spec_row:
                _remember(r["package"], spec)
        srows = {s["name"]: s for s in db.rows(conn.execute(_STEP_ROWS, {"w_run": run_id}))}
        last = conn.execute(_LAST_EVENT, {"w_run": run_id}).scalar()
        step_specs = list(load_replay(conn, run_id, spec).specs.values()) if "groups" in spec else spec["steps"]
        gangs = {s["name"] for s in step_specs if int((s.get("options") or {}).get("workers", 1)) > 1}
        workers = _gang_workers(conn, run_id) if gangs else {}
    out = run_summary(r)
    out["last_event_id"] = int(last or 0)
    steps = []
    for s in step_specs:  # with loop iteration steps after the package's own steps
        row = srows.get(s["name"], {})
        outputs = db.loads(row.get("outputs")) or {}
        for o in outputs.values():
            o.pop("value", None) if len(db.dumps(o.get("value"))) > 4096 else None
        steps.append({
            "name": s["name"], "component": s["component"], "display_name": s.get("display_name", ""),
            "upstream": upstream_of(s), "group": s.get("group", ""),
            "state": row.get("state", "pending"), "attempt": row.get("attempt", 0),
            "max_attempts": row.get("max_attempts", 1), "started_at": row.get("started_at"),
            "finished_at": row.get("finished_at"), "duration": _duration(row.get("started_at"), row.get("finished_at")),
            "reason": row.get("reason", ""), "traceback": row.get("traceback", ""),
            "cached": row.get("state") == "cached",
            "inputs": db.loads(row.get("inputs")) or _bindings(s), "outputs": outputs,
            **({"workers": workers.get(s["name"], [])} if s["name"] in gangs else {}),
        })
    out["steps"] = steps
    return out


def _gang_workers(conn: sa.Connection, run_id: str) -> dict[str, list[dict[str, Any]]]:
    """Each distributed step's workers (workers=N) as its latest StepWorkers event says."""
    out: dict[str, list[dict[str, Any]]] = {}
    for (data,) in conn.execute(sa.select(db.events.c.data).where(
            db.events.c.run_id == run_id, db.events.c.type == "StepWorkers").order_by(db.events.c.id)):
        e = db.loads(data)
        out[e.get("step", "")] = e.get("workers", [])
    return out


def _bindings(s: dict[str, Any]) -> dict[str, Any]:
    return {k: dict(v) for k, v in s.get("inputs", {}).items()}


def events_after(engine: sa.Engine, run_id: str | None, after: int, limit: int = 1000,
                 log: "EventLog | None" = None) -> list[dict[str, Any]]:
    """Events with an id above ``after``: from ``log``'s memory when it reaches back that far (the
    live readers), else from the table. Shared: callers must not change them."""
    if log is not None and (run_id is not None or profiles.visible() is None):
        kept = log.after(run_id, after, limit)
        if kept is not None:
            return kept
    q = sa.select(db.events).where(db.events.c.id > after).order_by(db.events.c.id).limit(limit)
    if run_id is not None:
        q = q.where(db.events.c.run_id == run_id)
    elif profiles.visible() is not None:  # the all-runs stream: the caller's profiles' runs only
        q = q.where(db.events.c.run_id.in_(profiles.visible_runs()))
    with engine.connect() as conn:
        out = []
        for row in conn.execute(q):
            data = db.loads(row.data)
            data["id"] = row.id
            out.append(data)
    return out


def attempt_log(engine: sa.Engine, run_id: str, step: str, attempt: int | None) -> tuple[str, int] | None:
    """(log file path, attempt number) of a step's latest (or given) attempt."""
    q = sa.select(db.attempts.c.log_key, db.attempts.c.attempt).where(
        db.attempts.c.run_id == run_id, db.attempts.c.step == step)
    q = q.where(db.attempts.c.attempt == attempt) if attempt else q.order_by(db.attempts.c.attempt.desc())
    with engine.connect() as conn:
        row = conn.execute(q.limit(1)).first()
    return (row[0], row[1]) if row else None


def artifact_key(engine: sa.Engine, digest: str) -> str | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(db.artifacts.c.key).where(db.artifacts.c.digest == digest).limit(1)).first()
    return row[0] if row else None
