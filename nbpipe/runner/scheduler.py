"""The scheduler: the DAG state machine of every run, persisted in the metadata database.

A ready-set loop starts steps whose upstream steps succeeded, up to ``parallelism`` at once,
across runs. Each attempt is resolved (inputs → job), looked up in the cache (component
digest + input digests + options, with max staleness), or launched on the executor; its
result JSON is read back from the store (never a pickle). Failures retry with exponential
backoff; timeouts and cancel kill the attempt's whole process tree. Every change is an event.

Non-goals: HTTP (see :mod:`.server`) and unpickling anything (the runner never does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa

from .. import events as ev
from ..compiler import upstream_of
from ..errors import NbpipeError, PackageError
from ..executors.base import Executor, Handle
from ..pipeline import resolve_params
from ..stores.base import Store
from . import attempts, cache, db, expand, failpoints, failures, intake, job_inputs
from . import rerun as rerun_plan
from .eventlog import EventLog
from .failures import internal_reason
from .profiles import Placements, ProfileStores
from .ready import ReadySet
from .recovery import record_cancel, recover

log = logging.getLogger("nbpipe.runner")


@dataclass
class StepCtx:
    spec: dict[str, Any]
    component: dict[str, Any]
    upstream: list[str]
    state: str = "pending"
    attempt: int = 0
    outputs: dict[str, Any] = field(default_factory=dict)
    next_at: float = 0.0
    started_at: float | None = None
    handle: Handle | None = None
    task: asyncio.Task[None] | None = None
    cache_key: str | None = None
    first_values: dict[str, Any] | None = None  # a cache hit's inputs summary, written with its final state
    cache_reason: str = ""  # a hit of the fully cached fast path: which run the result came from
    waiting_for: tuple[str, str] | None = None  # (run, step) of the identical step it waits for (see cache.wait_for)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.spec["options"])

    @property
    def max_attempts(self) -> int:
        return int(self.options.get("retries", 0)) + 1


@dataclass
class RunCtx:
    id: str
    spec: dict[str, Any]
    params: dict[str, Any]
    steps: dict[str, StepCtx]
    state: str = "queued"
    profile: str = "default"  # cache hits never cross profiles (see _cache_key)
    created_at: float = 0.0
    started_at: float | None = None
    cancelled: bool = False
    broken: str = ""  # an internal error failed this run, but writing that down failed too: retried
    fail_plan: dict[str, str] = field(default_factory=dict)  # step -> final state when failing it
    flow: Any = None  # control-flow state (loops, conditions, exit handlers): see .expand
    ready: ReadySet | None = None  # a run without control flow: which steps may start (see .ready)


def _one_transaction(method: Any) -> Any:
    """Run a Scheduler method in one write transaction (its writes and events commit together)."""
    import functools

    @functools.wraps(method)
    def wrapper(self: "Scheduler", *args: Any, **kwargs: Any) -> Any:
        with self._tx():
            return method(self, *args, **kwargs)

    return wrapper


_set_step, _set_run, _set_attempt = db.set_step, db.set_run, db.set_attempt  # the hot writes (see .db)
_CACHE_DROP = db.cache.delete().where(db.cache.c.key == sa.bindparam("w_key"))
_SPEC_OF = sa.select(db.packages.c.spec).where(db.packages.c.digest == sa.bindparam("w_digest"))


def new_run_id() -> str:
    return time.strftime("r%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(3)


class Scheduler:
    def __init__(self, engine: sa.Engine, store: Store, executor: Executor, data_dir: str | Path,
                 parallelism: int = 16):
        self.engine = engine
        self.store = store  # the root; a run's objects go to its profile's view (self.stores.of)
        self.stores = ProfileStores(store, Placements.from_env())
        self.executor = executor
        self.data_dir = Path(data_dir)
        self.parallelism = max(1, parallelism)
        self.runs: dict[str, RunCtx] = {}
        self.active = 0
        self._wake = asyncio.Event()
        self.events = EventLog(engine)
        self._local = threading.local()  # the write transaction of this thread's call chain
        self._thread = threading.current_thread()  # the event loop's: the only one that emits events
        self.cache = cache.StepCache(engine, self.stores)
        self._specs: dict[str, dict[str, Any]] = {}  # package digest -> parsed spec (see package_spec)
        self._loop_task: asyncio.Task[None] | None = None
        self._closing = False
        self.last_tick = time.time()
        self.loop_error = ""  # the last internal error the loop contained (for /health)
        self.fresh_snapshot: tuple[str, Any] | None = None  # (run id, builder): see cached_snapshot

    # ================================================================ lifecycle
    async def start(self) -> None:
        warm = getattr(self.executor, "warm", None)
        if warm is not None:
            asyncio.create_task(warm())
        await self._recover()
        self._loop_task = asyncio.create_task(self._loop())

    def loop_health(self) -> dict[str, Any]:
        """Is the scheduling loop alive and ticking? (``/health`` reports it.)"""
        age = time.time() - self.last_tick
        task = self._loop_task
        alive = task is not None and not task.done()
        why = ""
        if not alive:
            exc = task.exception() if task is not None and task.done() and not task.cancelled() else None
            why = f"the scheduling loop stopped ({type(exc).__name__}: {exc})" if exc else "the scheduling loop stopped"
        elif age > LOOP_STALL_S:
            why = f"the scheduling loop has not ticked for {age:.0f} s"
        return {"ticking": not why, "last_tick_age": round(age, 3), "problem": why, "last_error": self.loop_error}

    async def close(self) -> None:
        self._closing = True
        self.events.flush()
        if self._loop_task:
            self._loop_task.cancel()
        tasks = [s.task for r in self.runs.values() for s in r.steps.values() if s.task and not s.task.done()]
        for r in self.runs.values():
            for s in r.steps.values():
                if s.handle is not None:
                    await self.executor.kill(s.handle, grace=1.0)
        for t in tasks:
            t.cancel()
        await self.executor.close()

    def wake(self) -> None:
        self._wake.set()

    # ================================================================ packages and runs
    def add_package(self, data: bytes) -> dict[str, Any]:
        """Validate a package (without unpickling), store its payloads, remember it."""
        return intake.add_package(self, data)

    def upload_dir(self) -> str:
        return intake.upload_dir(self)

    def add_package_file(self, path: str, digest: str) -> dict[str, Any]:
        """Like :meth:`add_package` for an uploaded file (consumed): streamed, never held whole in memory."""
        return intake.add_package_file(self, path, digest)

    def package_spec(self, digest: str) -> dict[str, Any] | None:
        """A package's spec (parsed once: packages are immutable per digest). Shared: do not change it."""
        spec = self._specs.get(digest)
        if spec is None:
            with self.engine.connect() as conn:
                row = conn.execute(_SPEC_OF, {"w_digest": digest}).first()
            if row is None:
                return None
            spec = self._specs[digest] = db.loads(row[0])
            while len(self._specs) > 64:
                with contextlib.suppress(KeyError, RuntimeError, StopIteration):  # another thread trimmed it
                    self._specs.pop(next(iter(self._specs)))
        return spec

    @_one_transaction  # the run's rows, its RunCreated event and any reused steps commit together
    def create_run(self, package: str, params: dict[str, Any] | None = None, experiment: str = "Default",
                   name: str | None = None, labels: dict[str, str] | None = None,
                   reuse: dict[str, dict[str, Any]] | None = None,
                   again: dict[str, tuple[str, bool]] | None = None, reuse_reason: str = "",
                   profile: str = "default") -> str:
        """Start a run of an uploaded package.

        ``reuse``: step → outputs taken from an earlier run (see :meth:`rerun`); ``again``: step →
        (reason, fresh) for steps a re-run executes again, shown as the step's reason; a *fresh*
        step (and its loop copies) never takes a cache hit.
        """
        spec = self.package_spec(package)
        if spec is None:
            raise PackageError(f"No package {package[:12]}… on this runner", hint="Upload it first (PUT /api/v1/packages).")
        resolved = resolve_params(spec["pipeline"]["name"], spec["pipeline"]["parameters"], params or {})
        spec = rerun_plan.marked(spec, again or {})
        run_id = new_run_id()
        created = db.now()
        name = name or f"{spec['pipeline']['name']} {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(created))}"
        steps_ctx: dict[str, StepCtx] = {}
        for s in spec["steps"]:
            steps_ctx[s["name"]] = StepCtx(spec=s, component=spec["components"][s["component"]], upstream=upstream_of(s))
        graph = {"steps": [{"name": s.name, "component": s.spec["component"], "display_name": s.spec.get("display_name", ""),
                            "upstream": s.upstream, "group": s.spec.get("group", "")} for s in steps_ctx.values()]}
        run = RunCtx(id=run_id, spec=spec, params=resolved, steps=steps_ctx, created_at=created, profile=profile)
        with self._tx() as conn:
            if not reuse and not again and cache.resolve_run(self, run, conn):
                cache.write_cached_run(self, conn, run, name, experiment or "Default", package, labels or {}, graph)
                return run_id
            db.insert(conn, db.runs, {
                "id": run_id, "name": name, "pipeline": spec["pipeline"]["name"], "experiment": experiment or "Default",
                "package": package, "params": db.dumps(resolved), "state": "queued", "reason": "",
                "labels": db.dumps(labels or {}), "created_at": created, "profile": profile})
            db.insert(conn, db.steps, [
                {"run_id": run_id, "name": s.name, "component": s.spec["component"], "state": "pending", "attempt": 0,
                 "max_attempts": s.max_attempts, "reason": (s.spec.get("rerun") or {}).get("reason", ""),
                 "traceback": "", "outputs": "{}", "inputs": "{}"}
                for s in steps_ctx.values()])
        self.runs[run_id] = run
        self._emit(ev.RunCreated(run_id=run_id, ts=created, name=name, pipeline=spec["pipeline"]["name"],
                                 experiment=experiment or "Default", params=resolved, graph=graph))
        for step_name, outputs in (reuse or {}).items():
            st = steps_ctx.get(step_name)
            if st is not None:
                self._finish_success(run, st, outputs, cached=True, reason=reuse_reason or "reused from the earlier run")
        expand.remember_reuse(self, run, {k: v for k, v in (reuse or {}).items() if k not in steps_ctx}, reuse_reason)
        self.wake()
        return run_id

    def cached_snapshot(self, run_id: str) -> dict[str, Any] | None:
        """The snapshot of ``run_id`` if :meth:`create_run` just wrote it fully cached and committed it
        (built from memory, see ``cache.snapshot_of``); else None (read it from the database)."""
        fresh, self.fresh_snapshot = self.fresh_snapshot, None
        newest = self.events.newest()
        if fresh is None or fresh[0] != run_id or newest is None or newest[0] != run_id \
                or newest[1].get("type") != "RunFinished":
            return None
        snap = fresh[1]()
        snap["last_event_id"] = newest[1]["id"]
        return snap

    def rerun(self, run_id: str, from_step: str | None = None, package: str | None = None) -> str:
        """Run a run again with its parameters (see :mod:`.rerun` for what is reused and why).

        ``from_step``: re-execute it and everything downstream, reuse the other steps' outputs.
        ``package``: run this (newer) package instead, reusing only steps unchanged since the run.
        """
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(db.runs).where(db.runs.c.id == run_id)).first()
            if row is None:
                raise KeyError(run_id)
            step_rows = db.rows(conn.execute(sa.select(db.steps).where(db.steps.c.run_id == run_id)))
        r = dict(row._mapping)
        old_spec = self.package_spec(r["package"]) or {"steps": [], "components": {}}
        new_package = package or r["package"]
        new_spec = self.package_spec(new_package)
        if new_spec is None:
            raise PackageError(f"No package {new_package[:12]}… on this runner", hint="Upload it first (PUT /api/v1/packages).")
        if new_spec["pipeline"]["name"] != old_spec.get("pipeline", {}).get("name", new_spec["pipeline"]["name"]):
            raise NbpipeError(f"Run {run_id} ran pipeline '{old_spec['pipeline']['name']}', not "
                              f"'{new_spec['pipeline']['name']}'",
                              hint="Re-run it with a package of the same pipeline, or start a new run.")
        plan = rerun_plan.plan(run_id, old_spec, new_spec, from_step, same_package=new_package == r["package"])
        reuse: dict[str, dict[str, Any]] = {}
        if from_step is not None:
            reuse = expand.reusable(self.engine, run_id, old_spec, step_rows, set(plan.again))
        what = " from " + from_step if from_step else ""
        what += " with a new package" if new_package != r["package"] else ""
        base_name = re.sub(r" \(re-run[^)]*\)$", "", r["name"])
        labels = {**(db.loads(r["labels"]) or {}), "rerun_of": run_id}
        labels.pop("rerun_from", None)  # that of the run re-run here, if it was a re-run itself
        if from_step:
            labels["rerun_from"] = from_step
        return self.create_run(new_package, db.loads(r["params"]), r["experiment"],
                               name=f"{base_name} (re-run{what})", labels=labels, reuse=reuse,
                               again=plan.again, reuse_reason=plan.reuse_reason, profile=r.get("profile") or "default")

    def cancel(self, run_id: str) -> bool:
        run = self.runs.get(run_id)
        if run is None:
            return False
        run.cancelled = True
        record_cancel(self, run_id)  # durable before the answer: a restarted runner finishes it
        for st in list(run.steps.values()):
            if expand.runs_after_cancel(self, run, st):
                continue
            if st.state in ("pending", "retrying"):
                self._set_step_final(run, st, "cancelled", reason="the run was cancelled")
            elif st.state == "running" and st.handle is not None:
                asyncio.create_task(self.executor.kill(st.handle))
        self.wake()
        return True

    # ================================================================ the loop
    async def _loop(self) -> None:
        while not self._closing:
            self.last_tick = time.time()
            if failpoints.armed("loop-crash"):
                raise RuntimeError("failpoint loop-crash")
            try:
                timeout = self._tick()
            except Exception as exc:  # noqa: BLE001 - the loop must survive anything one tick hits
                log.exception("scheduler tick failed")
                self.loop_error = f"{type(exc).__name__}: {exc}"
                timeout = 1.0
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    def _tick(self) -> float:
        now = time.time()
        next_wake = 5.0
        for run in list(self.runs.values()):
            if run.broken:
                self._fail_run(run, run.broken)
                next_wake = min(next_wake, 1.0)
                continue
            if run.state == "running" and run.ready is not None and "groups" not in run.spec \
                    and run.ready.idle(len(run.steps)):
                continue  # see ReadySet.idle: no transaction
            try:
                with self._tx():
                    next_wake = min(next_wake, self._tick_run(run, now))
            except Exception as exc:  # noqa: BLE001 - contained to this run
                log.exception("run %s hit an internal error", run.id)
                self._fail_run(run, internal_reason(exc, self.data_dir))
        return next_wake

    def advance(self, run_id: str) -> None:
        """Take a just-created run as far as it goes now, as a tick would (its own transaction).

        A fully cached run finishes here, so ``POST /runs`` answers it final in one response instead
        of the client waiting for the loop's next tick and the event stream."""
        run = self.runs.get(run_id)
        if run is None or run.broken:
            return
        try:
            with self._tx():
                if self._tick_run(run, time.time()) <= 0.0:
                    self.wake()  # e.g. it skipped a step: the loop takes the next one now
        except Exception as exc:  # noqa: BLE001 - contained to this run, as in _tick
            log.exception("run %s hit an internal error", run.id)
            self._fail_run(run, internal_reason(exc, self.data_dir))

    def _tick_run(self, run: RunCtx, now: float) -> float:
        next_wake = 5.0
        failpoints.error("tick-error")
        if run.state == "queued":
            run.state, run.started_at = "running", now
            with self._tx() as conn:
                _set_run(conn, run.id, state="running", started_at=now)
                self._emit(ev.RunStarted(run_id=run.id, ts=now))
        idx = None
        again = True
        while again:  # until no step ended at once (a cache hit): the ones after it may start now too
            again = False
            if "groups" in run.spec:
                expand.advance(self, run)
                todo = list(run.steps.values())
            else:  # only the steps that may start: a tick of a 10,000-step run stays O(what changed)
                idx = run.ready
                if idx is None or idx.size != len(run.steps):
                    idx = run.ready = ReadySet(run.steps)
                todo = [run.steps[n] for n in list(idx.candidates)]
            for st in todo:
                if self.active >= self.parallelism:
                    break
                if st.state == "retrying":
                    if st.next_at <= now and not run.cancelled:
                        self._start(run, st)
                        again = again or st.state in ev.STEP_FINAL
                    else:
                        next_wake = min(next_wake, max(0.0, st.next_at - now))
                elif st.state == "pending" and (not run.cancelled or expand.runs_after_cancel(self, run, st)):
                    ups = [run.steps[u] for u in st.upstream]
                    bad = next((u for u in ups if u.state in ("failed", "cancelled", "skipped")), None)
                    if bad is not None:
                        self._set_step_final(run, st, "skipped", reason=f"upstream step '{bad.name}' {bad.state}")
                        again = True  # its downstream steps are candidates now: now, not in the next tick
                    elif all(u.state in ev.STEP_OK for u in ups) and not expand.hold(self, run, st):
                        self._start(run, st)
                        again = again or st.state in ev.STEP_FINAL  # a cache hit ends it in _start
                if idx is not None:
                    idx.settle(st)
        if idx.done if idx is not None else all(s.state in ev.STEP_FINAL for s in run.steps.values()):
            self._finish_run(run)
        return next_wake

    # ================================================================ a step
    def _resolve_inputs(self, run: RunCtx, st: StepCtx) -> tuple[dict[str, Any], dict[str, Any]]:
        """Job inputs, and their identities for the cache key (see .job_inputs)."""
        return job_inputs.resolve(self, run, st)

    def _start(self, run: RunCtx, st: StepCtx) -> None:
        inputs, ident = self._resolve_inputs(run, st)
        first_look = st.cache_key is None
        st.cache_key = cache.cache_key(st, ident, run.profile)
        cacheable = bool(st.options.get("cache", True))
        first = {"inputs": db.dumps(cache.input_summary(st.spec["inputs"], run.params)),
                 "cache_key": st.cache_key} if first_look and st.attempt == 0 else None
        # Any attempt, a retry too: a result an identical step stored is reused, and while an identical
        # step (same code, inputs and options) computes it, e.g. the shared upstream step of parallel
        # sweep trials, this one waits and takes its result from the cache rather than doing the same
        # work twice (a retry that claimed the key anyway ran a duplicate). If it fails, this one runs.
        hit = self.cache.lookup(st, st.cache_key, getattr(self._local, "conn", None), run.profile)
        if hit is not None:
            st.first_values = first  # one step write for a hit, with its final state
            self._finish_success(run, st, hit.outputs, cached=True, reason=hit.reason(st.name))
            return
        # (a step re-run on purpose, e.g. Rerun from here on a running step, never takes that result: it
        # does not wait for it either)
        owner = self.cache.owner(st.cache_key) if cacheable and cache.may_hit(st) else None
        if owner is not None and owner != (run.id, st.name):
            cache.wait_for(self, run, st, owner, first)  # the step's reason says so
            return
        st.waiting_for = None  # a later wait (a retry's) says so again
        if cacheable:
            self.cache.claim(st.cache_key, run.id, st.name)
        st.attempt += 1
        st.state = "running"
        st.started_at = time.time()
        # the attempt's row, the step's running state and StepStarted commit with this tick
        attempts.record_attempt(self, run, st, f"{run.id}.{st.name}.{st.attempt}",
                                self.log_path(run.id, st.name, st.attempt), st.started_at, first)
        self.active += 1
        st.task = asyncio.create_task(self._execute(run, st, inputs))

    def log_path(self, run_id: str, step: str, attempt: int) -> Path:
        return self.data_dir / "logs" / run_id / step / f"{attempt}.log"

    async def _execute(self, run: RunCtx, st: StepCtx, inputs: dict[str, Any],
                       reattached: Handle | None = None) -> None:
        await attempts.execute(self, run, st, inputs, reattached)  # see .attempts

    def _fail_attempt(self, run: RunCtx, st: StepCtx, att_id: str, reason: str) -> None:
        failures.fail_attempt(self, run, st, att_id, reason)

    def _fail_run(self, run: RunCtx, reason: str) -> None:
        failures.fail_run(self, run, reason)

    def _finish_success(self, run: RunCtx, st: StepCtx, outputs: dict[str, Any], cached: bool, reason: str = "") -> None:
        with self._tx():
            now = time.time()
            st.outputs = outputs
            state = "cached" if cached else "succeeded"
            with self._tx() as conn:
                if outputs:
                    rows = [{"run_id": run.id, "step": st.name, "name": n, "digest": o["digest"], "key": o["key"],
                             "kind": o["kind"], "format": o["format"], "size": o["size"], "created_at": now}
                            for n, o in outputs.items()]
                    if len(rows) == 1 and conn.dialect.name == "postgresql":
                        # one row as a VALUES list: no implicit RETURNING id, which would make the
                        # pipelined transaction wait for it (see db.begin_batched)
                        conn.execute(db.artifacts.insert().values(rows))
                    else:
                        db.insert(conn, db.artifacts, rows)
                if not cached and st.options.get("cache", True) and st.cache_key:
                    self.cache.forget(st.cache_key)  # its in-memory copy (see StepCache.lookup)
                    conn.execute(_CACHE_DROP, {"w_key": st.cache_key})
                    db.insert(conn, db.cache, {"key": st.cache_key, "outputs": db.dumps(outputs), "run_id": run.id,
                                              "step": st.name, "created_at": now})
            for n, o in outputs.items():
                self._emit(ev.ArtifactSaved(run_id=run.id, ts=now, step=st.name, name=n, digest=o["digest"],
                                            kind=o["kind"], format=o["format"], size=o["size"], preview=o.get("preview")))
            self._set_step_final(run, st, state, reason=reason or ("result reused from the cache" if cached else
                                                                 (st.spec.get("rerun") or {}).get("reason", "")),
                                 outputs=outputs)

    def _set_step_final(self, run: RunCtx, st: StepCtx, state: str, reason: str = "", traceback: str = "",
                        outputs: dict[str, Any] | None = None) -> None:
        now = time.time()
        if run.ready is not None and st.state not in ev.STEP_FINAL and state in ev.STEP_FINAL:
            run.ready.finished(st.name)
        if state in ev.STEP_FINAL:  # e.g. cancelled while waiting for its retry: it computes nothing now
            self.cache.release(st.cache_key, run.id, st.name)
        st.state = state
        duration = (now - st.started_at) if st.started_at else 0.0
        values: dict[str, Any] = {"state": state, "finished_at": now, "reason": reason, "traceback": traceback}
        if outputs is not None:
            values["outputs"] = db.dumps(outputs)
        if st.first_values:
            values.update(st.first_values)
            st.first_values = None
        with self._tx() as conn:
            _set_step(conn, run.id, st.name, **values)
            self._emit(ev.StepFinished(run_id=run.id, ts=now, step=st.name, state=state, attempt=st.attempt,
                                       duration=duration, reason=reason, traceback=traceback))

    def _finish_run(self, run: RunCtx, reason: str = "") -> None:
        now = time.time()
        failed = [s for s in run.steps.values() if s.state == "failed"]
        if reason:
            state = "failed"
        elif run.cancelled:
            state, reason = "cancelled", "cancelled by a user"
        elif failed:
            state = "failed"
            reason = "; ".join(f"step '{s.name}' failed" for s in failed[:3]) + (" …" if len(failed) > 3 else "")
        else:
            state, reason = "succeeded", ""
        run.state = state
        with self._tx() as conn:
            _set_run(conn, run.id, state=state, reason=reason, finished_at=now)
            self._emit(ev.RunFinished(run_id=run.id, ts=now, state=state, reason=reason,
                                      duration=now - (run.started_at or run.created_at)))
        self.runs.pop(run.id, None)
        run_finished = getattr(self.executor, "run_finished", None)  # e.g. delete a per-run volume
        if run_finished is not None:
            asyncio.create_task(run_finished(run.id, state))

    # ================================================================ events and writes
    def _emit(self, event: ev.Event) -> None:
        """Record an event in the transaction of the state change it describes (one commit for both)."""
        with self._tx():
            self.events.add(event)

    @property
    def event_seq(self) -> int:
        return self.events.seq

    async def wait_for_events(self, seq: int, timeout: float) -> bool:
        return await self.events.wait(seq, timeout)

    def transaction(self) -> contextlib.AbstractContextManager[sa.Connection]:
        """Group scheduler calls (e.g. creating a run and its events) into one commit."""
        return self._tx()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        """One write transaction per synchronous call chain (a tick's run, a step completion).

        Nested helpers share the outer connection, and the events they emit are inserted in the
        same transaction just before it commits: a state change and its event are never apart.
        Each thread has its own transaction (package uploads write from worker threads).
        """
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        wrote = False
        with db.write_lock(self.engine):
            try:
                with db.begin_batched(self.engine) as conn:  # one round trip on PostgreSQL (see there)
                    self._local.conn = conn
                    try:
                        yield conn
                        wrote = self.events.write(conn) if threading.current_thread() is self._thread else False
                    finally:
                        self._local.conn = None
            except BaseException:
                if threading.current_thread() is self._thread:
                    self.events.discard()
                raise
        failpoints.hit("commit")
        if wrote:
            self.events.committed()

    async def _recover(self) -> None:
        await recover(self)


LOOP_STALL_S = 30.0
