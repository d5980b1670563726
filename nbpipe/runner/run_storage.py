"""Archive, restore and delete runs, as Kubeflow Pipelines does (its run "storage state").

A notebook loop makes many runs: every edit and re-run is one. Kubeflow's answer is to *archive*
the ones you are done with (they leave the run list, stay whole, and come back with *restore*) and
to *delete* what you never want again. The same here:

- ``POST /api/v1/runs/{run_id}/archive`` and ``.../unarchive``: set or clear ``runs.archived_at``.
  Archived runs are left out of ``GET /api/v1/runs``, the dashboard's list and the experiments'
  counts unless asked for (``archived=true``); a run's own page, its events, logs, lineage and
  outputs do not change. Archiving an archived run (or restoring a restored one) is not an error.
- ``DELETE /api/v1/runs/{run_id}``: the run's rows (steps, attempts, artifact records, events, loop
  expansions) and its step logs are removed for good. What is *not* removed: the artifacts
  themselves (content-addressed, they may be another run's outputs or the step cache's: a cached
  step keeps hitting), cache entries, served model versions (they hold their own copy of the
  model's address) and the audit trail.
- Each change is a ``RunStorage`` event (``archived``, ``available``, ``deleted``) on the event stream, so
  open run lists (the Lab's, a notebook's) update whoever made it; a deleted run keeps only that event.
- A run still queued or running is neither archived nor deleted (409, saying to cancel it first):
  its steps are writing to what would be hidden or removed.

A user reaches only their own profiles' runs: the gate answers another profile's run as a run
that does not exist (see :mod:`.profiles`), and every change is audited. Non-goals: deleting
artifacts no run refers to any more (a store-wide garbage collection), bulk endpoints (a client
loops; each call is one small transaction).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import sqlalchemy as sa

from .. import events as ev
from ..errors import NbpipeError
from . import db

ACTIVE = ("queued", "running")


def _row(conn: sa.Connection, run_id: str) -> Any:
    return conn.execute(sa.select(db.runs.c.state, db.runs.c.archived_at).where(db.runs.c.id == run_id)).first()


def _refuse_active(run_id: str, state: str, verb: str) -> NbpipeError:
    return NbpipeError(f"Run {run_id} is {state}: it cannot be {verb}d while its steps may still run",
                       hint=f"Cancel it first (nbpipe cancel {run_id}, or Cancel on its page), "
                            f"or wait until it ends, then {verb} it.")


def set_archived(sched: Any, run_id: str, archived: bool) -> dict[str, Any] | None:
    """Archive (or restore) a run; None if there is no such run. Raises NbpipeError for an active one."""
    with sched.transaction() as conn:
        row = _row(conn, run_id)
        if row is None:
            return None
        state, was = row
        if archived and (state in ACTIVE or run_id in sched.runs):
            raise _refuse_active(run_id, state, "archive")
        at = (was or time.time()) if archived else None
        if at != was:
            conn.execute(db.runs.update().where(db.runs.c.id == run_id).values(archived_at=at))
            sched._emit(ev.RunStorage(run_id=run_id, ts=time.time(), storage="archived" if archived else "available"))
    return {"id": run_id, "archived": archived, "archived_at": at, "state": state}


def delete_run(sched: Any, run_id: str) -> dict[str, Any] | None:
    """Delete a run's records and logs (see the module's docstring); None if there is no such run."""
    with sched.transaction() as conn:
        row = _row(conn, run_id)
        if row is None:
            return None
        if row[0] in ACTIVE or run_id in sched.runs:
            raise _refuse_active(run_id, row[0], "delete")
        for table in (db.artifacts, db.attempts, db.steps, db.expansions):
            conn.execute(table.delete().where(table.c.run_id == run_id))
        conn.execute(db.runs.delete().where(db.runs.c.id == run_id))
        sched._emit(ev.RunStorage(run_id=run_id, ts=time.time(), storage="deleted"))  # the lists' last word
    # Its other events go once that one is stored as the newest: SQLite gives a new row the highest id
    # left plus one, so deleting the newest events first would hand their ids out again, and a stream
    # resumed after them would never see what came next. (A crash in between leaves old events of a run
    # that is gone: harmless, every reader starts from the run.)
    with sched.transaction() as conn:
        newest = sa.select(sa.func.max(db.events.c.id)).where(db.events.c.run_id == run_id).scalar_subquery()
        conn.execute(db.events.delete().where(db.events.c.run_id == run_id, db.events.c.id < newest))
    return {"id": run_id, "deleted": True, "state": row[0]}


def remove_logs(data_dir: Path, run_id: str) -> None:
    """A deleted run's step logs (a folder per run; a run id is one path segment: checked, not assumed)."""
    logs = Path(data_dir) / "logs" / run_id
    if logs.parent == Path(data_dir) / "logs" and logs.is_dir():
        shutil.rmtree(logs, ignore_errors=True)


def run_storage_router(sched: Callable[[], Any], error: Callable[[int, Any], Any]) -> Any:
    """The archive/unarchive/delete routes, mounted by :mod:`.server`."""
    from fastapi import APIRouter

    from .api_models import RunStorage, errors

    router = APIRouter()

    def answer(result: dict[str, Any] | None, run_id: str) -> Any:
        return error(404, f"No run {run_id}") if result is None else result

    def call(fn: Callable[..., Any], *args: Any) -> Any:
        try:  # on the loop's thread, like the scheduler's own writes: its events are written with them
            return fn(*args)
        except NbpipeError as exc:
            return error(409, exc)

    @router.post("/api/v1/runs/{run_id}/archive", responses={200: {"model": RunStorage}, **errors(404, 409)},
                 description="Archive a finished run: it leaves the run lists (ask for archived=true to see it) "
                             "and stays whole; /unarchive restores it.")
    async def archive(run_id: str) -> Any:
        return answer(call(set_archived, sched(), run_id, True), run_id)

    @router.post("/api/v1/runs/{run_id}/unarchive", responses={200: {"model": RunStorage}, **errors(404)},
                 description="Restore an archived run to the run lists.")
    async def unarchive(run_id: str) -> Any:
        return answer(call(set_archived, sched(), run_id, False), run_id)

    @router.delete("/api/v1/runs/{run_id}", responses={200: {"model": RunStorage}, **errors(404, 409)},
                   description="Delete a finished run's records and step logs for good. Its artifacts, the "
                               "step cache and served model versions stay.")
    async def delete(run_id: str) -> Any:
        got = call(delete_run, sched(), run_id)
        if isinstance(got, dict):
            await asyncio.to_thread(remove_logs, sched().data_dir, run_id)
        return answer(got, run_id)

    return router
