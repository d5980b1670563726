"""One attempt of a step: its job, launching it on the executor, following it to its end, reading
its result JSON back from the store (checked, never unpickled) and recording how it ended.

The scheduler decides *which* steps start (see :mod:`.scheduler`); this module runs one started
attempt: timeouts and cancel kill its whole process tree, a failed attempt is retried with
backoff while attempts are left, and the attempt's log is tailed into ``StepLog`` events.
Non-goals: cache lookups (see :mod:`.cache`), HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import events as ev
from ..executors import envs
from ..executors.base import ExitStatus, Handle
from ..stores.base import content_key
from . import db, expand
from .failures import disk_full_note, internal_reason, remove_tree
from .logs import LogTail
from .results import InvalidResult, backoff_delay, check_result

if TYPE_CHECKING:
    from .scheduler import RunCtx, Scheduler, StepCtx

log = logging.getLogger("nbpipe.runner")

MAX_RESULT_BYTES = 64 * 1024 * 1024



def job_of(self: "Scheduler", run: "RunCtx", st: "StepCtx", inputs: dict[str, Any]) -> dict[str, Any]:
    comp = st.component
    return {
        "run_id": run.id, "step": st.name, "attempt": st.attempt, "component": st.spec["component"],
        "store": self.stores.of(run.profile).config(),  # the profile's view only (see profiles.ProfileStores)
        "payload": {"key": content_key(comp["payload"]["digest"]), "serializer": comp["payload"]["serializer"]},
        "python": comp["python"], "inputs": inputs,
        "outputs": comp["outputs"], "return_style": comp["return_style"],
        "result_key": f"runs/{run.id}/{st.name}/{st.attempt}/result.json",
        "output_seed": f"{run.id}/{st.name}/{st.attempt}/{st.cache_key}",
        "env": {**st.options.get("env", {}), "NBPIPE_RUN_ID": run.id, "NBPIPE_STEP": st.name,
                "NBPIPE_ATTEMPT": str(st.attempt), "NBPIPE_PROFILE": run.profile},
        "profile": run.profile,  # an executor may place the step by it (e.g. a namespace per profile)
        "image": comp.get("image"), "packages": st.options.get("packages", []),
        "imports": comp.get("imports", []),  # the kernel's versions of what it imports (nbpipe.pins)
        "resources": st.options.get("resources", {}), "timeout": st.options.get("timeout"),
    }


def announce(self: "Scheduler", run: "RunCtx", ahead: int = 32) -> None:
    """Tell an executor that prepares for steps (the Kubernetes executor's standby pods) which of the
    run's steps start next: up to ``ahead`` of them, as jobs without inputs. A no-op elsewhere."""
    upcoming = getattr(self.executor, "upcoming", None)
    if upcoming is not None:
        soon = [s for s in run.steps.values() if s.state in ("pending", "retrying")][:ahead]
        with contextlib.suppress(Exception):  # an optimisation: never in the way of the step
            upcoming(run.id, [job_of(self, run, s, {}) for s in soon])


async def execute(self: "Scheduler", run: "RunCtx", st: "StepCtx", inputs: dict[str, Any],
                   reattached: Handle | None = None) -> None:
    attempt = st.attempt
    att_id = f"{run.id}.{st.name}.{attempt}"
    if reattached is None and (self.runs.get(run.id) is not run or st.state != "running"):
        self.active -= 1  # an internal error ended the run before this attempt began: give the slot back
        with contextlib.suppress(Exception):
            with self._tx() as conn:  # its row was written when it was started (see Scheduler._start)
                db.set_attempt(conn, att_id, state="failed", finished_at=time.time(),
                               reason=run.broken or "the run had already ended")
        return
    log_path = self.log_path(run.id, st.name, attempt)
    workdir = str(self.data_dir / "work" / run.id / st.name / str(attempt))
    started = st.started_at or time.time()
    tail = LogTail(str(log_path), lambda text: self._emit(ev.StepLog(
        run_id=run.id, ts=time.time(), step=st.name, attempt=attempt, text=text)))
    status: ExitStatus
    timed_out = False
    job: dict[str, Any] = {"result_key": f"runs/{run.id}/{st.name}/{attempt}/result.json"}
    try:  # everything from here on releases the slot in `finally`
        job = job_of(self, run, st, inputs)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if reattached is not None:  # a previous runner started it (see _recover)
            st.handle = reattached
            tail.offset = tail.sent = log_path.stat().st_size if log_path.exists() else 0
        else:
            if self.stores.prefix(run.profile):  # the default profile's view is the root: nothing to copy
                await asyncio.to_thread(self.stores.stage, run.profile, job["payload"]["key"])  # into the profile's view
            if job["packages"] and not getattr(self.executor, "installs_packages", False):
                job = await asyncio.to_thread(envs.prepare, job, self.data_dir / "envs", str(log_path))
            announce(self, run)  # (before start: the steps still to come, not this one)
            st.handle = await self.executor.start(job, att_id, str(log_path), workdir)
            with self._tx() as conn:
                db.set_attempt(conn, att_id, pid=st.handle.pid, pod=st.handle.name or None)
        if run.cancelled and not expand.runs_after_cancel(self, run, st):
            # the cancel came while the executor was still starting it (e.g. creating a pod), or
            # before a restarted runner re-attached to it
            await self.executor.kill(st.handle)
        tail.start()
        timeout = st.options.get("timeout")
        if timeout is not None and reattached is not None:
            timeout = max(0.0, timeout - (time.time() - started))
        try:
            status = await asyncio.wait_for(asyncio.shield(st.handle.done), timeout)
        except asyncio.TimeoutError:
            timed_out = True
            await self.executor.kill(st.handle)
            status = await st.handle.done
    except envs.PackagesMissing as exc:
        status = ExitStatus(reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - the executor could not start the attempt
        log.exception("executor failed for %s", att_id)
        status = ExitStatus(reason=f"the {self.executor.name} executor could not start the step: "
                                   f"{internal_reason(exc, self.data_dir)}")
    finally:
        with contextlib.suppress(Exception):
            await tail.stop()
        self.active -= 1
        st.handle = None
    if self._closing and not status.ok and not timed_out:
        # The runner is stopping (`nbpipe runner stop`, the Lab's shutdown) and stopped this step with it:
        # left as a crash leaves it, running in the database, so the next runner runs it again (see
        # .recovery) instead of failing the run with "killed by SIGTERM", a kill that was the runner's own.
        return
    try:
        with self._tx():
            complete(self, run, st, job, att_id, status, timed_out, tail, workdir)
    except Exception as exc:  # noqa: BLE001 - e.g. the disk is full: contained to this attempt
        log.exception("could not record the end of %s", att_id)
        remove_tree(workdir)  # partial outputs first: that may be what fills the disk
        self._fail_attempt(run, st, att_id, internal_reason(exc, self.data_dir))
        return
    # Start what this end made ready now, as a tick would (a chain's next step without waiting for
    # the loop to wake); the loop still ticks for other runs waiting for the freed slot.
    self.advance(run.id)


def record_attempt(self: "Scheduler", run: "RunCtx", st: "StepCtx", att_id: str, log_path: Path, started: float,
                   first: dict[str, Any] | None = None) -> None:
    """The attempt's row, its step ``running`` and ``StepStarted``: in the starting tick's transaction.
    ``first``: the step's inputs summary and cache key, written in the same update on its first look."""
    attempt = st.attempt
    with self._tx() as conn:
        conn.execute(db.ATTEMPT_ADD, {"id": att_id, "run_id": run.id, "step": st.name, "attempt": attempt,
                                    "state": "running", "executor": self.executor.name, "log_key": str(log_path),
                                    "started_at": started, "reason": ""})
        values: dict[str, Any] = {"state": "running", "attempt": attempt, "reason": "", "traceback": ""}
        if attempt == 1:
            values["started_at"] = started
        if first:
            values.update(first)
        db.set_step(conn, run.id, st.name, **values)
        self._emit(ev.StepStarted(run_id=run.id, ts=started, step=st.name, attempt=attempt,
                                  max_attempts=st.max_attempts))


def complete(self: "Scheduler", run: "RunCtx", st: "StepCtx", job: dict[str, Any], att_id: str, status: ExitStatus,
              timed_out: bool, tail: LogTail, workdir: str = "") -> None:
    attempt = st.attempt
    result, invalid = read_result(self, job["result_key"], run.profile), ""
    finished = time.time()
    if result is not None:
        try:
            check_result(result, st.component.get("outputs") or [])
        except InvalidResult as exc:
            invalid, result = f"invalid result from the step: {exc}", {}
    result = result or {}
    if self.runs.get(run.id) is not run or st.state in ev.STEP_FINAL:
        # the run was already ended (an internal error failed it): only close the attempt
        with self._tx() as conn:
            conn.execute(db.attempts.update().where(db.attempts.c.id == att_id).values(
                state="failed", finished_at=finished, reason=run.broken or "the run had already ended"))
        remove_tree(workdir)
        return
    if run.cancelled and not expand.runs_after_cancel(self, run, st):
        state, reason, tb = "cancelled", "the run was cancelled", ""
    elif timed_out:
        state, reason, tb = "failed", f"timed out after {st.options.get('timeout'):g} s and was killed", ""
    elif invalid:
        state, reason, tb = "failed", invalid, tail.last_lines(40)
    elif result.get("status") == "succeeded" and status.ok:
        state, reason, tb = "succeeded", "", ""
    else:
        err = result.get("error") or {}
        tb = err.get("traceback") or ""
        if err:
            reason = f"{err.get('type')}: {err.get('message')}" if err.get("type") != "JobError" else err.get("message", "")
        else:
            reason = status.describe() + (" without reporting a result" if not status.reason else "")
            tb = tail.last_lines(40)
        reason = disk_full_note(reason, self.data_dir)
        state = "failed"
    with self._tx() as conn:
        db.set_attempt(conn, att_id, state=state, finished_at=finished, exit_code=status.code if status.code is not None
                     else (-status.signal if status.signal else None), reason=reason)
    if state != "succeeded":
        remove_tree(workdir)  # a failed attempt's partial files
    if state == "succeeded":
        self._finish_success(run, st, result.get("outputs") or {}, cached=False)
    elif state == "failed" and attempt < st.max_attempts and not run.cancelled:
        delay = backoff_delay(st.options, attempt)
        st.state, st.next_at = "retrying", finished + delay
        if run.ready is not None:
            run.ready.retrying(st.name)
        with self._tx() as conn:
            conn.execute(db.steps.update().where(db.steps.c.run_id == run.id, db.steps.c.name == st.name)
                         .values(state="retrying", reason=reason, traceback=tb))
            self._emit(ev.StepRetrying(run_id=run.id, ts=finished, step=st.name, attempt=attempt,
                                       max_attempts=st.max_attempts, delay=delay, reason=reason))
    else:
        self._set_step_final(run, st, state, reason=reason, traceback=tb)
    if st.state != "retrying":
        self.cache.release(st.cache_key, run.id, st.name)
    self.wake()


def read_result(self: "Scheduler", key: str, profile: str | None = None) -> Any:
    """The step's result JSON as written (checked by the caller) in ``profile``'s view; None when there is none."""
    try:
        data = self.stores.of(profile).get_bytes(key)
    except (KeyError, OSError):
        return None
    except Exception:  # noqa: BLE001 - a remote store may raise its own errors
        log.exception("cannot read step result %s", key)
        return None
    if len(data) > MAX_RESULT_BYTES:
        return ["over the size limit"]  # fails check_result: not an object
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return ["not valid JSON"]
