"""When the runner itself fails: contain it to the attempt or run it belongs to, and say why.

An internal error (a database write failing on a full disk, a bug) ends that attempt or run
``failed`` with a reason the user can act on; the scheduling loop and the other runs go on.
If even writing the failure down fails, the run is marked ``broken`` and failed again on a
later tick (once there is space). Non-goal: a step's own errors (see ``Scheduler._complete``).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .. import events as ev
from . import db

if TYPE_CHECKING:
    from .scheduler import RunCtx, Scheduler, StepCtx

log = logging.getLogger("nbpipe.runner")


def fail_attempt(self: Scheduler, run: RunCtx, st: StepCtx, att_id: str, reason: str) -> None:
    """Record an attempt the runner itself could not complete as failed (no retry), then its run."""
    try:
        with self._tx() as conn:
            conn.execute(db.attempts.update().where(db.attempts.c.id == att_id).values(
                state="failed", finished_at=time.time(), reason=reason))
            if st.state not in ev.STEP_FINAL:
                self._set_step_final(run, st, "failed", reason=reason)
    except Exception:  # noqa: BLE001 - still cannot write: fail the run on a later tick
        log.exception("could not record the failure of %s", att_id)
        st.state = "running"  # not written: the run's failure plan still covers this step
        run.broken = reason
    self.cache.release(st.cache_key, run.id, st.name)
    self.wake()


def fail_run(self: Scheduler, run: RunCtx, reason: str) -> None:
    """An internal error hit this run: end it ``failed`` with the reason (other runs go on)."""
    run.broken = reason
    if not run.fail_plan:
        run.fail_plan = {st.name: "skipped" if st.state == "pending" else "failed"
                         for st in run.steps.values() if st.state not in ev.STEP_FINAL}
    for st in run.steps.values():
        if st.handle is not None:
            asyncio.create_task(self.executor.kill(st.handle))
    try:
        with self._tx() as conn:
            for name, state in run.fail_plan.items():
                self._set_step_final(run, run.steps[name], state, reason=reason)
            if run.state == "queued":
                conn.execute(db.runs.update().where(db.runs.c.id == run.id).values(state="running"))
            self._finish_run(run, reason=reason)
    except Exception:  # noqa: BLE001 - e.g. the disk is still full: try again next tick
        log.exception("could not fail run %s", run.id)
        self.runs[run.id] = run
        return
    run.broken = ""
    self.cache.release_run(run.id)


def internal_reason(exc: BaseException, data_dir: Path) -> str:
    """A user-facing reason for an internal error (a full disk says so, with what to do)."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
    if _disk_full(exc, data_dir):
        return (f"the runner's disk is full ({_free(data_dir)} free in {data_dir}): {text} — "
                "free some space, then re-run")
    return f"the runner hit an internal error: {text}"


def disk_full_note(reason: str, data_dir: Path) -> str:
    if "No space left" in reason or _free_bytes(data_dir) < DISK_LOW_BYTES:
        return f"{reason} — the runner's disk is full ({_free(data_dir)} free in {data_dir}); free some space, then re-run"
    return reason


DISK_LOW_BYTES = 1 << 20


def _free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 1 << 62


def _free(path: Path) -> str:
    return f"{_free_bytes(path) / 1e6:.1f} MB"


def _disk_full(exc: BaseException, data_dir: Path) -> bool:
    text = str(exc).lower()
    return (getattr(exc, "errno", None) == 28 or "disk is full" in text or "no space left" in text
            or _free_bytes(data_dir) < DISK_LOW_BYTES)


def remove_tree(path: str) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)
