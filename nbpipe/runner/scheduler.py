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
import hashlib
import json
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
from ..executors import envs
from ..executors.base import Executor, ExitStatus, Handle
from ..pipeline import resolve_params
from ..stores.base import Store, content_key
from . import db, expand, failpoints, failures, intake
from . import rerun as rerun_plan
from .eventlog import EventLog
from .failures import disk_full_note, internal_reason, remove_tree
from .logs import LogTail
from .recovery import recover
from .results import InvalidResult, backoff_delay, check_outputs, check_result

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


def _one_transaction(method: Any) -> Any:
    """Run a Scheduler method in one write transaction (its writes and events commit together)."""
    import functools

    @functools.wraps(method)
    def wrapper(self: "Scheduler", *args: Any, **kwargs: Any) -> Any:
        with self._tx():
            return method(self, *args, **kwargs)

    return wrapper


# The hot writes as statements built once (bound per call): building a SQLAlchemy expression per
# call cost ~3x the statement itself, ~1 ms per cached step.
_STEP_SET = db.steps.update().where(db.steps.c.run_id == sa.bindparam("w_run"), db.steps.c.name == sa.bindparam("w_step"))
_RUN_SET = db.runs.update().where(db.runs.c.id == sa.bindparam("w_id"))
_ATTEMPT_SET = db.attempts.update().where(db.attempts.c.id == sa.bindparam("w_id"))
_CACHE_ROW = sa.select(db.cache).where(db.cache.c.key == sa.bindparam("w_key"))
_ARTIFACT_ADD = db.artifacts.insert()
_ATTEMPT_ADD = db.attempts.insert()
_CACHE_ADD = db.cache.insert()
_CACHE_DROP = db.cache.delete().where(db.cache.c.key == sa.bindparam("w_key"))


def _set_step(conn: sa.Connection, run_id: str, step: str, **values: Any) -> None:
    conn.execute(_STEP_SET, {"w_run": run_id, "w_step": step, **values})


def _set_run(conn: sa.Connection, run_id: str, **values: Any) -> None:
    conn.execute(_RUN_SET, {"w_id": run_id, **values})


def _set_attempt(conn: sa.Connection, att_id: str, **values: Any) -> None:
    conn.execute(_ATTEMPT_SET, {"w_id": att_id, **values})


def new_run_id() -> str:
    return time.strftime("r%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(3)


class Scheduler:
    def __init__(self, engine: sa.Engine, store: Store, executor: Executor, data_dir: str | Path,
                 parallelism: int = 16):
        self.engine = engine
        self.store = store
        self.executor = executor
        self.data_dir = Path(data_dir)
        self.parallelism = max(1, parallelism)
        self.runs: dict[str, RunCtx] = {}
        self.active = 0
        self._wake = asyncio.Event()
        self.events = EventLog(engine)
        self._local = threading.local()  # the write transaction of this thread's call chain
        self._thread = threading.current_thread()  # the event loop's: the only one that emits events
        self._inflight: dict[str, tuple[str, str]] = {}  # cache key -> (run, step) computing it now
        self._loop_task: asyncio.Task[None] | None = None
        self._closing = False
        self.last_tick = time.time()
        self.loop_error = ""  # the last internal error the loop contained (for /health)

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
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(db.packages.c.spec).where(db.packages.c.digest == digest)).first()
        return db.loads(row[0]) if row else None

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
        with self._tx() as conn:
            conn.execute(db.runs.insert().values(
                id=run_id, name=name, pipeline=spec["pipeline"]["name"], experiment=experiment or "Default",
                package=package, params=db.dumps(resolved), state="queued", reason="",
                labels=db.dumps(labels or {}), created_at=created, profile=profile))
            conn.execute(db.steps.insert(), [
                {"run_id": run_id, "name": s.name, "component": s.spec["component"], "state": "pending", "attempt": 0,
                 "max_attempts": s.max_attempts, "reason": (s.spec.get("rerun") or {}).get("reason", ""),
                 "traceback": "", "outputs": "{}", "inputs": "{}"}
                for s in steps_ctx.values()])
        run = RunCtx(id=run_id, spec=spec, params=resolved, steps=steps_ctx, created_at=created, profile=profile)
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
                self._tick_run(run, time.time())
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
        expand.advance(self, run)
        for st in list(run.steps.values()):
            if self.active >= self.parallelism:
                break
            if st.state == "retrying":
                if st.next_at <= now and not run.cancelled:
                    self._start(run, st)
                else:
                    next_wake = min(next_wake, max(0.0, st.next_at - now))
            elif st.state == "pending" and (not run.cancelled or expand.runs_after_cancel(self, run, st)):
                ups = [run.steps[u] for u in st.upstream]
                bad = next((u for u in ups if u.state in ("failed", "cancelled", "skipped")), None)
                if bad is not None:
                    self._set_step_final(run, st, "skipped", reason=f"upstream step '{bad.name}' {bad.state}")
                elif all(u.state in ev.STEP_OK for u in ups) and not expand.hold(self, run, st):
                    self._start(run, st)
        if all(s.state in ev.STEP_FINAL for s in run.steps.values()):
            self._finish_run(run)
        return next_wake

    # ================================================================ a step
    def _resolve_inputs(self, run: RunCtx, st: StepCtx) -> tuple[dict[str, Any], dict[str, Any]]:
        """Job inputs, and their identities for the cache key."""
        inputs: dict[str, Any] = {}
        ident: dict[str, Any] = {}
        specs = {i["name"]: i for i in st.component["inputs"]}
        for name, b in st.spec["inputs"].items():
            if "collect" in b or "placeholder" in b:  # control flow: Collected, RUN_ID, RUN_STATUS…
                inputs[name], ident[name] = expand.resolve_input(run, st, b, specs[name], self)
            elif "parameter" in b:
                value = run.params.get(b["parameter"])
                inputs[name] = {"kind": "value", "value": value}
                ident[name] = {"value": value}
            elif "value" in b:
                inputs[name] = {"kind": "value", "value": b["value"]}
                ident[name] = {"value": b["value"]}
            else:
                out = run.steps[b["step"]].outputs[b["output"]]
                if specs[name]["kind"] == "artifact":
                    inputs[name] = {"kind": "artifact", "key": out["key"], "format": out["format"],
                                    "artifact_type": specs[name].get("artifact_type", "Artifact"),
                                    "metadata": out.get("metadata") or {}, "filename": out.get("filename", "")}
                elif "value" in out:
                    inputs[name] = {"kind": "value", "value": out["value"]}
                else:
                    inputs[name] = {"kind": "value", "key": out["key"], "format": out["format"]}
                ident[name] = {"digest": out["digest"]}
        return inputs, ident

    def _cache_key(self, st: StepCtx, ident: dict[str, Any], profile: str = "default") -> str:
        opts = st.options
        key = {"component": st.component["digest"], "inputs": ident,
               "image": st.component.get("image"), "packages": opts.get("packages", []), "env": opts.get("env", {})}
        if profile != "default":  # one profile's cached outputs are never another's (default: keys as before)
            key["profile"] = profile
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()

    def _cached(self, st: StepCtx, key: str) -> dict[str, Any] | None:
        opts = st.options
        if not opts.get("cache", True) or (st.spec.get("rerun") or {}).get("fresh"):
            return None  # ...or a re-run re-executes this step on purpose (see .rerun)
        conn = getattr(self._local, "conn", None)  # the tick's own transaction, if any: no second connection
        if conn is not None:
            row = conn.execute(_CACHE_ROW, {"w_key": key}).first()
        else:
            with self.engine.connect() as conn:
                row = conn.execute(_CACHE_ROW, {"w_key": key}).first()
        if row is None:
            return None
        staleness = opts.get("max_cache_staleness")
        if staleness is not None and time.time() - row.created_at > staleness:
            return None
        try:
            outputs = check_outputs(db.loads(row.outputs) or {}, st.component.get("outputs"))
            if not all(self.store.exists(o["key"]) for o in outputs.values()):
                return None
        except (InvalidResult, ValueError, OSError) as exc:  # a forged or stale entry: a miss, never a crash
            log.warning("ignoring an invalid cache entry %s: %s", key, exc)
            return None
        return dict(outputs)

    def _start(self, run: RunCtx, st: StepCtx) -> None:
        inputs, ident = self._resolve_inputs(run, st)
        first_look = st.cache_key is None
        st.cache_key = self._cache_key(st, ident, run.profile)
        cacheable = bool(st.options.get("cache", True))
        if st.attempt == 0:
            first = {"inputs": db.dumps(_input_summary(st.spec["inputs"], run.params)),
                     "cache_key": st.cache_key} if first_look else None
            hit = self._cached(st, st.cache_key)
            if hit is not None:
                st.first_values = first  # one step write for a hit, with its final state
                self._finish_success(run, st, hit, cached=True)
                return
            if first is not None:
                with self._tx() as conn:
                    _set_step(conn, run.id, st.name, **first)
            owner = self._inflight.get(st.cache_key) if cacheable else None
            if owner is not None and owner != (run.id, st.name):
                # An identical step (same code, inputs and options) is running right now, e.g. the
                # shared upstream step of parallel sweep trials: wait and take its result from the
                # cache rather than doing the same work twice. If it fails, this one runs itself.
                return
        if cacheable:
            self._inflight[st.cache_key] = (run.id, st.name)
        st.attempt += 1
        st.state = "running"
        st.started_at = time.time()
        self.active += 1
        st.task = asyncio.create_task(self._execute(run, st, inputs))

    def _job(self, run: RunCtx, st: StepCtx, inputs: dict[str, Any]) -> dict[str, Any]:
        comp = st.component
        return {
            "run_id": run.id, "step": st.name, "attempt": st.attempt, "component": st.spec["component"],
            "store": self.store.config(),
            "payload": {"key": content_key(comp["payload"]["digest"]), "serializer": comp["payload"]["serializer"]},
            "python": comp["python"], "inputs": inputs,
            "outputs": comp["outputs"], "return_style": comp["return_style"],
            "result_key": f"runs/{run.id}/{st.name}/{st.attempt}/result.json",
            "output_seed": f"{run.id}/{st.name}/{st.attempt}/{st.cache_key}",
            "env": {**st.options.get("env", {}), "NBPIPE_RUN_ID": run.id, "NBPIPE_STEP": st.name,
                    "NBPIPE_ATTEMPT": str(st.attempt), "NBPIPE_PROFILE": run.profile},
            "profile": run.profile,  # an executor may place the step by it (e.g. a namespace per profile)
            "image": comp.get("image"), "packages": st.options.get("packages", []),
            "resources": st.options.get("resources", {}), "timeout": st.options.get("timeout"),
        }

    def log_path(self, run_id: str, step: str, attempt: int) -> Path:
        return self.data_dir / "logs" / run_id / step / f"{attempt}.log"

    async def _execute(self, run: RunCtx, st: StepCtx, inputs: dict[str, Any],
                       reattached: Handle | None = None) -> None:
        if reattached is None and (self.runs.get(run.id) is not run or st.state != "running"):
            self.active -= 1  # an internal error ended the run before this attempt began: give the slot back
            return
        attempt = st.attempt
        att_id = f"{run.id}.{st.name}.{attempt}"
        log_path = self.log_path(run.id, st.name, attempt)
        workdir = str(self.data_dir / "work" / run.id / st.name / str(attempt))
        started = st.started_at or time.time()
        tail = LogTail(str(log_path), lambda text: self._emit(ev.StepLog(
            run_id=run.id, ts=time.time(), step=st.name, attempt=attempt, text=text)))
        status: ExitStatus
        timed_out = False
        job: dict[str, Any] = {"result_key": f"runs/{run.id}/{st.name}/{attempt}/result.json"}
        try:  # everything from here on releases the slot in `finally`
            job = self._job(run, st, inputs)
            if reattached is None:
                self._record_attempt(run, st, att_id, log_path, started)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            if reattached is not None:  # a previous runner started it (see _recover)
                st.handle = reattached
                tail.offset = tail.sent = log_path.stat().st_size if log_path.exists() else 0
            else:
                if job["packages"] and not getattr(self.executor, "installs_packages", False):
                    job = await asyncio.to_thread(envs.prepare, job, self.data_dir / "envs", str(log_path))
                st.handle = await self.executor.start(job, att_id, str(log_path), workdir)
                with self._tx() as conn:
                    _set_attempt(conn, att_id, pid=st.handle.pid, pod=st.handle.name or None)
                if run.cancelled and not expand.runs_after_cancel(self, run, st):
                    # the cancel came while the executor was still starting it (e.g. creating a pod)
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
        try:
            with self._tx():
                self._complete(run, st, job, att_id, status, timed_out, tail, workdir)
        except Exception as exc:  # noqa: BLE001 - e.g. the disk is full: contained to this attempt
            log.exception("could not record the end of %s", att_id)
            remove_tree(workdir)  # partial outputs first: that may be what fills the disk
            self._fail_attempt(run, st, att_id, internal_reason(exc, self.data_dir))

    def _fail_attempt(self, run: RunCtx, st: StepCtx, att_id: str, reason: str) -> None:
        failures.fail_attempt(self, run, st, att_id, reason)

    def _fail_run(self, run: RunCtx, reason: str) -> None:
        failures.fail_run(self, run, reason)

    def _record_attempt(self, run: RunCtx, st: StepCtx, att_id: str, log_path: Path, started: float) -> None:
        attempt = st.attempt
        with self._tx() as conn:
            conn.execute(_ATTEMPT_ADD, {"id": att_id, "run_id": run.id, "step": st.name, "attempt": attempt,
                                        "state": "running", "executor": self.executor.name, "log_key": str(log_path),
                                        "started_at": started, "reason": ""})
            values: dict[str, Any] = {"state": "running", "attempt": attempt, "reason": "", "traceback": ""}
            if attempt == 1:
                values["started_at"] = started
            _set_step(conn, run.id, st.name, **values)
            self._emit(ev.StepStarted(run_id=run.id, ts=started, step=st.name, attempt=attempt,
                                      max_attempts=st.max_attempts))

    def _complete(self, run: RunCtx, st: StepCtx, job: dict[str, Any], att_id: str, status: ExitStatus,
                  timed_out: bool, tail: LogTail, workdir: str = "") -> None:
        attempt = st.attempt
        result, invalid = self._read_result(job["result_key"]), ""
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
            _set_attempt(conn, att_id, state=state, finished_at=finished, exit_code=status.code if status.code is not None
                         else (-status.signal if status.signal else None), reason=reason)
        if state != "succeeded":
            remove_tree(workdir)  # a failed attempt's partial files
        if state == "succeeded":
            self._finish_success(run, st, result.get("outputs") or {}, cached=False)
        elif state == "failed" and attempt < st.max_attempts and not run.cancelled:
            delay = backoff_delay(st.options, attempt)
            st.state, st.next_at = "retrying", finished + delay
            with self._tx() as conn:
                conn.execute(db.steps.update().where(db.steps.c.run_id == run.id, db.steps.c.name == st.name)
                             .values(state="retrying", reason=reason, traceback=tb))
                self._emit(ev.StepRetrying(run_id=run.id, ts=finished, step=st.name, attempt=attempt,
                                           max_attempts=st.max_attempts, delay=delay, reason=reason))
        else:
            self._set_step_final(run, st, state, reason=reason, traceback=tb)
        if st.state != "retrying" and self._inflight.get(st.cache_key or "") == (run.id, st.name):
            del self._inflight[st.cache_key or ""]
        self.wake()

    def _read_result(self, key: str) -> Any:
        """The step's result JSON as written (checked by the caller); None when there is none."""
        try:
            data = self.store.get_bytes(key)
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

    def _finish_success(self, run: RunCtx, st: StepCtx, outputs: dict[str, Any], cached: bool, reason: str = "") -> None:
        with self._tx():
            now = time.time()
            st.outputs = outputs
            state = "cached" if cached else "succeeded"
            with self._tx() as conn:
                if outputs:
                    conn.execute(_ARTIFACT_ADD, [
                        {"run_id": run.id, "step": st.name, "name": n, "digest": o["digest"], "key": o["key"],
                         "kind": o["kind"], "format": o["format"], "size": o["size"], "created_at": now}
                        for n, o in outputs.items()])
                if not cached and st.options.get("cache", True) and st.cache_key:
                    conn.execute(_CACHE_DROP, {"w_key": st.cache_key})
                    conn.execute(_CACHE_ADD, {"key": st.cache_key, "outputs": db.dumps(outputs), "run_id": run.id,
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
                with self.engine.begin() as conn:
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


def _input_summary(bindings: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, b in bindings.items():
        if "parameter" in b:
            out[name] = {"parameter": b["parameter"], "value": params.get(b["parameter"])}
        else:
            out[name] = dict(b)
    return out


LOOP_STALL_S = 30.0
MAX_RESULT_BYTES = 64 * 1024 * 1024
