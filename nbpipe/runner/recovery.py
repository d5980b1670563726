"""Reload unfinished runs when the runner starts again after a crash or a restart.

Attempts the executor can re-attach to (a pod that is still there) keep running and are
awaited; the others are retried, after killing any step process a previous runner left
behind. Non-goal: migrating state between nbpipe versions (see ``migrations``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .. import events as ev
from ..compiler import upstream_of
from ..executors.base import Handle
from . import db
from .rerun import recovered_spec

if TYPE_CHECKING:
    from .scheduler import Scheduler, StepCtx

log = logging.getLogger("nbpipe.runner")

# A running run's reason once a cancel was asked for and answered: a runner that restarts before the
# run ended cancels it again, instead of retrying its steps as if nobody had pressed Cancel.
CANCELLING = "cancelling: a user cancelled the run"


def record_cancel(self: Scheduler, run_id: str) -> None:
    """Mark ``run_id`` as being cancelled, in the database, so that :func:`recover` finishes the cancel."""
    with self._tx() as conn:
        db.set_run(conn, run_id, reason=CANCELLING)


async def recover(self: Scheduler) -> None:  # noqa: C901 - one pass over the open runs
    """Reload unfinished runs after a runner restart.

    Attempts the executor can re-attach to (a pod that is still there) keep running and are
    awaited; the others are retried.
    """
    from .scheduler import RunCtx, StepCtx

    reattach = getattr(self.executor, "reattach", None)
    with self.engine.connect() as conn:
        open_runs = db.rows(conn.execute(sa.select(db.runs).where(db.runs.c.state.in_(["queued", "running"]))))
    for r in open_runs:
        spec = self.package_spec(r["package"])
        if spec is None:
            continue
        spec = recovered_spec(self, r, spec)  # a re-run's steps that must execute again (see .rerun)
        with self.engine.connect() as conn:
            srows = {s["name"]: s for s in db.rows(conn.execute(sa.select(db.steps).where(db.steps.c.run_id == r["id"])))}
            stale = db.rows(conn.execute(sa.select(db.attempts).where(db.attempts.c.run_id == r["id"],
                                                                      db.attempts.c.state == "running")))
        followed: dict[str, tuple[dict[str, Any], Handle]] = {}
        for a in stale:
            handle = None
            if reattach is not None:
                try:
                    handle = await reattach(a)
                except Exception:  # noqa: BLE001 - cannot follow it: retry the step instead
                    log.exception("cannot re-attach to attempt %s", a["id"])
            if handle is not None:
                followed[a["step"]] = (a, handle)
            elif a["pid"]:
                _kill_stale(a["pid"])
        steps_ctx: dict[str, StepCtx] = {}
        for s in spec["steps"]:
            row = srows.get(s["name"], {})
            st = StepCtx(spec=s, component=spec["components"][s["component"]], upstream=upstream_of(s),
                         state=row.get("state", "pending"), attempt=row.get("attempt", 0),
                         outputs=db.loads(row.get("outputs")) or {}, started_at=row.get("started_at"))
            if st.state == "running" and s["name"] in followed:
                st.attempt = int(followed[s["name"]][0]["attempt"])
                st.started_at = float(followed[s["name"]][0]["started_at"])
                _reclaim(self, r["id"], st, row.get("cache_key"))
            elif st.state == "running":
                st.state, st.next_at = "retrying", 0.0
            steps_ctx[s["name"]] = st
        run = RunCtx(id=r["id"], spec=spec, params=db.loads(r["params"]) or {}, steps=steps_ctx,
                     state=r["state"], created_at=r["created_at"], started_at=r["started_at"],
                     profile=r.get("profile") or "default")
        run.cancelled = r.get("reason") == CANCELLING
        self.runs[run.id] = run
        kept = [a["id"] for a, _ in followed.values()]
        with db.write_tx(self.engine) as conn:
            conn.execute(db.attempts.update().where(db.attempts.c.run_id == run.id, db.attempts.c.state == "running",
                                                    db.attempts.c.id.not_in(kept))
                         .values(state="failed", reason="the runner restarted during this attempt", finished_at=db.now()))
            conn.execute(db.steps.update().where(db.steps.c.run_id == run.id, db.steps.c.state == "running",
                                                 db.steps.c.name.not_in(list(followed)))
                         .values(state="retrying", reason="the runner restarted during this attempt"))
            restarted = [{"run_id": run.id, "type": "StepRetrying", "ts": db.now(), "data": db.dumps(ev.encode(
                ev.StepRetrying(run_id=run.id, ts=db.now(), step=n, attempt=srows[n]["attempt"],
                                max_attempts=srows[n]["max_attempts"], delay=0.0,
                                reason="the runner restarted during this attempt")))}
                for n, st in steps_ctx.items() if st.state == "retrying" and srows.get(n, {}).get("state") == "running"]
            for e in restarted:
                json_data = db.loads(e["data"])
                json_data.pop("id", None)
                e["data"] = db.dumps(json_data)
            if restarted:  # the events replay to the states the database holds
                conn.execute(db.events.insert(), restarted)
        for name, (_, handle) in followed.items():
            st = steps_ctx[name]
            self.active += 1
            st.task = asyncio.create_task(self._execute(run, st, {}, reattached=handle))
        if run.cancelled:  # pending and retrying steps end now; re-attached ones are killed (.attempts)
            self.cancel(run.id)


def _reclaim(self: Scheduler, run_id: str, st: StepCtx, key: str | None) -> None:
    """A re-attached step computes its cache key's result again, as when it started (``Scheduler._start``):
    its key (from its row) is claimed, so an identical step submitted now waits for it instead of
    running twice, and its success is stored in the cache under the key. Its end releases the claim."""
    st.cache_key = key or None
    if st.cache_key and st.options.get("cache", True):
        self.cache.claim(st.cache_key, run_id, st.name)


def _kill_stale(pid: int) -> None:
    """Kill a step process group left behind by a previous runner, if it is still ours."""
    try:
        import psutil

        cmd = " ".join(psutil.Process(pid).cmdline())
    except Exception:  # noqa: BLE001 - gone already
        return
    if "nbpipe" in cmd:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
