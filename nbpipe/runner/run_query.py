"""The run list of a dashboard: filters, search, a total and facets, paged in SQL.

``GET /api/v1/dashboard/runs`` (:func:`run_query_router`) answers one page of run summaries
(the same rows as ``GET /api/v1/runs``, with step counts), the number of runs that match, the
values each filter can take (experiments, pipelines, notebooks, states) and the id of the last
event, so a live list can follow ``/api/v1/events`` from exactly there. A run names its notebook
with the label ``notebook`` (the Lab panel: a path under the Jupyter root) or ``kernel_notebook``
(``%nbpipe run`` / ``nbpipe.run`` in a kernel: an absolute path); the notebook filter matches
either, so a notebook's runs are found whichever way they were submitted. Everything is done by the
database with its indexes, so a page stays fast with tens of thousands of runs.

Archived runs (see :mod:`.run_storage`) are left out unless asked for (``archived=true``).

The search ``q`` is a substring of the id, name, pipeline, experiment or labels, or ``NAME=VALUE``:
runs whose parameter NAME is VALUE (``lr=0.1``, ``model=rf``, ``fast=true``). Parameters are not
searched as text: every run of a pipeline has the same parameter names, so a word would match them all.

Non-goals: sorting by anything but creation time; full-text search (a substring match on id,
name, pipeline, experiment and labels, and parameters by value, is what a run list needs).
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

import sqlalchemy as sa

from ..errors import NbpipeError
from . import db, profiles
from .views import archived_clause

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
MAX_LIMIT = 500


def _label(engine: sa.Engine, key: str) -> Any:
    """SQL expression for ``labels[key]`` (labels are a JSON text column)."""
    if engine.dialect.name == "postgresql":
        return sa.cast(db.runs.c.labels, sa.JSON)[key].as_string()
    return sa.func.json_extract(db.runs.c.labels, f"$.{key}")


def _conditions(engine: sa.Engine, experiment: str | None, pipeline: str | None, state: str | None,
                notebook: str | None, q: str | None, kernel_notebook: list[str] | None = None,
                archived: bool = False) -> list[Any]:
    where: list[Any] = [*profiles.clauses(db.runs.c.profile), archived_clause(archived)]  # the caller's, (un)archived
    if experiment:
        where.append(db.runs.c.experiment == experiment)
    if pipeline:
        where.append(db.runs.c.pipeline == pipeline)
    if state:
        states = [s for s in state.split(",") if s]
        bad = [s for s in states if s not in STATES]
        if bad:
            raise NbpipeError(f"Unknown run state {bad[0]!r}", hint=f"Use one of: {', '.join(STATES)}.")
        where.append(db.runs.c.state.in_(states))
    if notebook or kernel_notebook:
        # The panel's label, or a kernel's absolute path: the notebook given as such, or the
        # absolute paths the caller knows it by (the Lab server joins its root and the path).
        paths = [p for p in [notebook, *(kernel_notebook or [])] if p]
        where.append(sa.or_(*([_label(engine, "notebook") == notebook] if notebook else []),
                            _label(engine, "kernel_notebook").in_(paths)))
    if q and q.strip():
        param = _PARAM_QUERY.match(q.strip())
        if param:  # "lr=0.1": runs whose parameter lr is 0.1 (Kubeflow filters runs by parameter value)
            where.append(_param_is(engine, param.group(1), param.group(2).strip()))
        else:
            pattern = "%" + q.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            cols = [db.runs.c.id, db.runs.c.name, db.runs.c.pipeline, db.runs.c.experiment, db.runs.c.labels]
            where.append(sa.or_(*(c.ilike(pattern, escape="\\") for c in cols)))
    return where


_PARAM_QUERY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


def _param_is(engine: sa.Engine, name: str, value: str) -> Any:
    """``params[name]`` equals ``value`` as typed: a number, true/false, null, or a string with or
    without quotes (``lr=0.1``, ``lr=.1``, ``model=rf``, ``model="rf"``)."""
    texts = {value}
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    if isinstance(parsed, str):
        texts.add(parsed)
    elif isinstance(parsed, bool) or parsed is None:
        texts.add(json.dumps(parsed))
    elif isinstance(parsed, (int, float)):
        texts |= {repr(parsed), str(parsed), repr(float(parsed))}
        if float(parsed).is_integer():
            texts.add(str(int(parsed)))
    try:
        number = float(value)
        texts |= {repr(number)} | ({str(int(number))} if number.is_integer() else set())
    except ValueError:
        pass
    if engine.dialect.name == "postgresql":
        doc = sa.cast(db.runs.c.params, sa.JSON)
        return sa.or_(doc[name].as_string().in_(sorted(texts)),
                      *([sa.func.json_typeof(doc[name]) == "null"] if "null" in texts else []))
    # SQLite: json_extract gives booleans as 1/0; json_type tells them apart from numbers
    got = sa.func.json_extract(db.runs.c.params, f"$.{name}")
    kind = sa.func.json_type(db.runs.c.params, f"$.{name}")
    booleans = {"true": "true", "false": "false"}
    flags = [booleans[t] for t in texts if t in booleans]
    return sa.or_(sa.and_(kind.in_(["integer", "real", "text"]), sa.cast(got, sa.Text).in_(sorted(texts))),
                  *([kind.in_(flags)] if flags else []), *([kind == "null"] if "null" in texts else []))


def query_runs(engine: sa.Engine, *, experiment: str | None = None, pipeline: str | None = None,
               state: str | None = None, notebook: str | None = None, q: str | None = None,
               limit: int = 50, offset: int = 0, facets: bool = False,
               kernel_notebook: list[str] | None = None, archived: bool = False) -> dict[str, Any]:
    """One page of runs (newest first) matching the filters, with ``total`` and optional facets.

    ``notebook`` matches the ``notebook`` label, or a ``kernel_notebook`` label equal to it or to
    one of ``kernel_notebook`` (absolute paths of the same notebook)."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    offset = max(0, int(offset))
    where = _conditions(engine, experiment, pipeline, state, notebook, q, kernel_notebook, archived)
    ids_q = sa.select(db.runs.c.id).where(*where).order_by(db.runs.c.created_at.desc()).limit(limit).offset(offset)
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(db.runs).where(*where)).scalar() or 0
        ids = [r[0] for r in conn.execute(ids_q)]
        last = conn.execute(sa.select(sa.func.max(db.events.c.id))).scalar() or 0
        out: dict[str, Any] = {"total": int(total), "limit": limit, "offset": offset, "last_event_id": int(last)}
        if facets:
            out["facets"] = _facets(engine, conn, archived)
    out["runs"] = _summaries(engine, ids)
    return out


def _summaries(engine: sa.Engine, ids: list[str]) -> list[dict[str, Any]]:
    """Run summaries for ``ids``, in that order (via views.list_runs' row shape)."""
    if not ids:
        return []
    rows = {r["id"]: r for r in list_runs_by_id(engine, ids)}
    return [rows[i] for i in ids if i in rows]


def list_runs_by_id(engine: sa.Engine, ids: list[str]) -> list[dict[str, Any]]:
    from .views import run_summary

    with engine.connect() as conn:
        out = [run_summary(r) for r in db.rows(conn.execute(sa.select(db.runs).where(db.runs.c.id.in_(ids))))]
        counts = conn.execute(
            sa.select(db.steps.c.run_id, db.steps.c.state, sa.func.count())
            .where(db.steps.c.run_id.in_(ids)).group_by(db.steps.c.run_id, db.steps.c.state)).all()
    by_run: dict[str, dict[str, int]] = {}
    for run_id, st, n in counts:
        by_run.setdefault(run_id, {})[st] = n
    for r in out:
        r["step_counts"] = by_run.get(r["id"], {})
    return out


def _facets(engine: sa.Engine, conn: sa.Connection, archived: bool = False) -> dict[str, Any]:
    def grouped(col: Any) -> list[dict[str, Any]]:
        mine = [*profiles.clauses(db.runs.c.profile), archived_clause(archived)]  # the caller's, (un)archived
        rows = conn.execute(sa.select(col, sa.func.count()).where(col.is_not(None), *mine).group_by(col)
                            .order_by(sa.func.count().desc(), col).limit(200)).all()
        return [{"value": str(v), "runs": int(n)} for v, n in rows if v not in (None, "")]

    states = {s: 0 for s in STATES}
    for v in grouped(db.runs.c.state):
        states[v["value"]] = v["runs"]
    return {"experiments": grouped(db.runs.c.experiment), "pipelines": grouped(db.runs.c.pipeline),
            "notebooks": grouped(_label(engine, "notebook")),
            "kernel_notebooks": grouped(_label(engine, "kernel_notebook")), "states": states}


def run_query_router(engine: Callable[[], sa.Engine], error: Callable[[int, Any], Any]) -> Any:
    """``GET /api/v1/dashboard/runs``, mounted by :mod:`.server`."""
    import asyncio

    from fastapi import APIRouter, Query

    from .api_models import RunPage, errors

    router = APIRouter()

    @router.get("/api/v1/dashboard/runs",
                description="A page of runs (newest first) with filters, search, the total, facets and the last "
                            "event id to follow /api/v1/events from.",
                responses={200: {"model": RunPage}, **errors(400)})
    async def dashboard_runs(experiment: str | None = None, pipeline: str | None = None,
                             state: str | None = Query(None, description="one state or several, comma-separated"),
                             notebook: str | None = None, q: str | None = Query(None, max_length=200),
                             limit: int = Query(50, ge=1, le=MAX_LIMIT), offset: int = Query(0, ge=0, le=2**53),
                             facets: bool = False,
                             kernel_notebook: list[str] = Query(
                                 [], max_length=4,
                                 description="absolute paths of the notebook: runs submitted from its kernel"),
                             archived: bool = Query(False, description="archived runs instead of the others")) -> Any:
        try:
            return await asyncio.to_thread(query_runs, engine(), experiment=experiment, pipeline=pipeline,
                                           state=state, notebook=notebook, q=q, limit=limit, offset=offset,
                                           facets=facets, kernel_notebook=kernel_notebook, archived=archived)
        except NbpipeError as exc:
            return error(400, exc)

    return router

