"""The step cache: cache keys, lookups, identical steps in flight, and fully cached runs.

A step's cache key is the SHA-256 of its component digest, its inputs' identities (values, or
the digests of upstream outputs), image, packages, env, and — outside the default profile — the
profile: one profile's cached outputs are never another's. A hit is a cache row younger than the
step's ``max_cache_staleness`` whose outputs still pass the component's output check and still
exist in the store (a forged or stale row is a miss, never a crash).

:func:`resolve_run` is the fast path for a run whose every step hits: the scheduler then writes
the run already finished (one insert per table, one event batch) instead of ticking it step by
step. Non-goals: writing cache rows (the scheduler does, with a step's success) and HTTP.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .. import events as ev
from . import db
from .results import InvalidResult, check_outputs

if TYPE_CHECKING:
    from ..stores.base import Store
    from .profiles import ProfileStores
    from .scheduler import RunCtx, Scheduler, StepCtx

log = logging.getLogger("nbpipe.runner")
SEEN_MAX = 4096  # cache rows kept in memory (see StepCache.forget)

_ROW = sa.select(db.cache.c.outputs, db.cache.c.created_at, db.cache.c.run_id, db.cache.c.step).where(
    db.cache.c.key == sa.bindparam("w_key"))


@dataclass
class Hit:
    """A cache hit: the outputs, and the run and step that computed them."""

    outputs: dict[str, Any]
    run_id: str
    step: str

    def reason(self, step: str) -> str:
        """What the run graph says of the step: where its result came from, like a re-run says it."""
        where = f" (step {self.step})" if self.step and self.step != step else ""
        return f"reused from run {self.run_id}{where} by the cache"


def cache_key(st: "StepCtx", ident: dict[str, Any], profile: str = "default") -> str:
    opts = st.spec["options"]
    key = {"component": st.component["digest"], "inputs": ident,
           "image": st.component.get("image"), "packages": opts.get("packages", []), "env": opts.get("env", {})}
    if profile != "default":  # one profile's cached outputs are never another's (default: keys as before)
        key["profile"] = profile
    imports = st.component.get("imports")
    if imports:  # the kernel's versions of what the code imports: a result made with another is not reused
        key["imports"] = imports  # (absent for code that imports nothing installed: keys as before)
    return hashlib.sha256(db.dumps(key).encode()).hexdigest()  # the same text as json.dumps(key, sort_keys=True, default=str)


def may_hit(st: "StepCtx") -> bool:
    """Caching is on for the step, and no re-run re-executes it on purpose (see .rerun)."""
    return bool(st.spec["options"].get("cache", True)) and not (st.spec.get("rerun") or {}).get("fresh")


class StepCache:
    def __init__(self, engine: sa.Engine, store: "Store | ProfileStores"):
        from .profiles import ProfileStores

        self.engine = engine
        self.stores = store if isinstance(store, ProfileStores) else ProfileStores(store)
        self.inflight: dict[str, tuple[str, str]] = {}  # cache key -> (run, step) computing it now
        # Rows already read and checked, by key: a re-run looks its steps up without a query each.
        # The runner is the table's only writer and forgets a key whenever it writes it (see forget);
        # the store is still asked whether the outputs exist on every hit.
        self._seen: dict[str, tuple[dict[str, Any], float, str, str]] = {}

    def forget(self, key: str | None) -> None:
        """The runner is about to write (or drop) ``key``'s row: read it again next time."""
        if key:
            self._seen.pop(key, None)

    def lookup(self, st: "StepCtx", key: str, conn: sa.Connection | None = None,
               profile: str | None = None) -> Hit | None:
        """The cached outputs for ``key`` and their origin, or None (a miss, or caching is off for the step).

        The outputs must still exist in ``profile``'s view of the store (the run's own objects).
        """
        if not may_hit(st):
            return None
        seen = self._seen.get(key)
        if seen is None:
            if conn is not None:  # the caller's transaction: sees its own writes, no second connection
                row = conn.execute(_ROW, {"w_key": key}).first()
            else:
                with self.engine.connect() as c:
                    row = c.execute(_ROW, {"w_key": key}).first()
            if row is None:
                return None
            try:
                checked = check_outputs(db.loads(row.outputs) or {}, st.component.get("outputs"))
            except (InvalidResult, ValueError) as exc:  # a forged or stale entry: a miss, never a crash
                log.warning("ignoring an invalid cache entry %s: %s", key, exc)
                return None
            seen = (checked, float(row.created_at), str(row.run_id), str(row.step))
        outputs, created_at, origin_run, origin_step = seen
        staleness = st.spec["options"].get("max_cache_staleness")
        if staleness is not None and time.time() - created_at > staleness:
            return None
        try:
            store = self.stores.of(profile)
            if not all(store.exists(o["key"]) for o in outputs.values()):
                return None
        except (InvalidResult, ValueError, OSError) as exc:
            log.warning("ignoring an invalid cache entry %s: %s", key, exc)
            return None
        if key not in self._seen:
            while len(self._seen) >= SEEN_MAX:
                self._seen.pop(next(iter(self._seen)))
            self._seen[key] = seen
        return Hit({n: dict(o) for n, o in outputs.items()}, origin_run, origin_step)

    # ------------------------------------------------------------ identical steps in flight
    def owner(self, key: str) -> tuple[str, str] | None:
        return self.inflight.get(key)

    def claim(self, key: str, run_id: str, step: str) -> None:
        self.inflight[key] = (run_id, step)

    def release(self, key: str | None, run_id: str, step: str) -> None:
        if key and self.inflight.get(key) == (run_id, step):
            del self.inflight[key]

    def release_run(self, run_id: str) -> None:
        for key, owner in list(self.inflight.items()):
            if owner[0] == run_id:
                del self.inflight[key]


def wait_for(sched: "Scheduler", run: "RunCtx", st: "StepCtx", owner: tuple[str, str],
             first: dict[str, Any] | None) -> None:
    """``st`` waits for the identical step ``owner`` (run, step) running now: its reason says which and
    that its result will be reused, in its row (a reload shows it) and in a ``StepWaiting`` event of
    the same commit (the live views show it at once). Written once per owner; the step's start or
    final state replaces it."""
    if first is None and st.waiting_for == owner:
        return
    st.waiting_for = owner
    reason = (f"waiting for step '{owner[1]}' of run {owner[0]}, running the same code and inputs; "
              "its result will be reused")
    with sched._tx() as conn:
        db.set_step(conn, run.id, st.name, **(first or {}), reason=reason)
        sched._emit(ev.StepWaiting(run_id=run.id, ts=time.time(), step=st.name, reason=reason,
                                   waiting_for_run=owner[0], waiting_for_step=owner[1]))


def resolve_run(sched: "Scheduler", run: "RunCtx", conn: sa.Connection) -> bool:
    """Resolve every step of a new plain run from the cache, in dependency order.

    True when all hit: each step then has its outputs and ``cache_key`` set (the caller writes the
    run finished). False at the first step that cannot be a hit (control flow,
    a run placeholder, caching off, a miss): the steps are left untouched and the run is ticked
    as usual.
    """
    if "groups" in run.spec or not run.steps:
        return False
    for st in run.steps.values():
        if not may_hit(st) or any("collect" in b or "placeholder" in b for b in st.spec["inputs"].values()):
            return False
    done: set[str] = set()
    order = list(run.steps.values())
    while len(done) < len(order):
        progressed = False
        for st in order:
            if st.name in done or not all(u in done for u in st.upstream):
                continue
            _, ident = sched._resolve_inputs(run, st)
            key = cache_key(st, ident, run.profile)
            hit = sched.cache.lookup(st, key, conn, run.profile)
            if hit is None:
                for s in order:  # leave the run as created
                    s.outputs, s.cache_key, s.cache_reason = {}, None, ""
                return False
            st.outputs, st.cache_key, st.cache_reason = hit.outputs, key, hit.reason(st.name)
            done.add(st.name)
            progressed = True
        if not progressed:  # an upstream name that is not a step: the normal path reports it
            for s in order:
                s.outputs, s.cache_key, s.cache_reason = {}, None, ""
            return False
    return True


def write_cached_run(self: "Scheduler", conn: sa.Connection, run: "RunCtx", name: str, experiment: str, package: str,
                      labels: dict[str, str], graph: dict[str, Any]) -> None:
    """Write a run whose every step was a cache hit (see :func:`.cache.resolve_run`) already
    finished: one insert per table and the events a ticked run would have emitted, in order."""
    now = time.time()
    pipeline = run.spec["pipeline"]["name"]
    params = db.dumps(run.params)
    db.insert(conn, db.runs, {
        "id": run.id, "name": name, "pipeline": pipeline, "experiment": experiment, "package": package,
        "params": params, "state": "succeeded", "reason": "", "labels": db.dumps(labels),
        "created_at": run.created_at, "started_at": now, "finished_at": now, "profile": run.profile})
    db.insert(conn, db.steps, [
        {"run_id": run.id, "name": st.name, "component": st.spec["component"], "state": "cached", "attempt": 0,
         "max_attempts": st.max_attempts, "reason": st.cache_reason, "traceback": "", "outputs": db.dumps(st.outputs),
         "inputs": _inputs_json(package, st, params, run.params), "cache_key": st.cache_key,
         "finished_at": now} for st in run.steps.values()])
    arts = [{"run_id": run.id, "step": st.name, "name": n, "digest": o["digest"], "key": o["key"], "kind": o["kind"],
             "format": o["format"], "size": o["size"], "created_at": now}
            for st in run.steps.values() for n, o in st.outputs.items()]
    if arts:
        db.insert(conn, db.artifacts, arts)
    emit = self.events.add  # inside the caller's transaction (what Scheduler._emit does, without re-entering it)
    emit(ev.RunCreated(run_id=run.id, ts=run.created_at, name=name, pipeline=pipeline,
                       experiment=experiment, params=run.params, graph=graph))
    emit(ev.RunStarted(run_id=run.id, ts=now))
    for st in run.steps.values():
        st.state = "cached"
        for n, o in st.outputs.items():
            emit(ev.ArtifactSaved(run_id=run.id, ts=now, step=st.name, name=n, digest=o["digest"],
                                  kind=o["kind"], format=o["format"], size=o["size"], preview=o.get("preview")))
        emit(ev.StepFinished(run_id=run.id, ts=now, step=st.name, state="cached", attempt=0,
                             duration=0.0, reason=st.cache_reason, traceback=""))
    run.state = "succeeded"
    emit(ev.RunFinished(run_id=run.id, ts=now, state="succeeded", reason="", duration=0.0))
    self.fresh_snapshot = (run.id, lambda: snapshot_of(run, name, experiment, package, labels, now))
    run_finished = getattr(self.executor, "run_finished", None)  # as _finish_run does for every run
    if run_finished is not None:
        asyncio.get_running_loop().create_task(run_finished(run.id, "succeeded"))


def snapshot_of(run: "RunCtx", name: str, experiment: str, package: str, labels: dict[str, str],
                now: float) -> dict[str, Any]:
    """The snapshot ``views.snapshot`` reads back for a run :func:`write_cached_run` wrote, built from
    memory (``last_event_id`` is the caller's to set): ``POST /runs`` answers it without a query."""
    from .views import _bindings

    steps = []
    for st in run.steps.values():
        s = st.spec
        outputs = {n: {k: v for k, v in o.items() if k != "value" or _small(v) or len(db.dumps(v)) <= 4096}
                   for n, o in st.outputs.items()}
        steps.append({
            "name": s["name"], "component": s["component"], "display_name": s.get("display_name", ""),
            "upstream": st.upstream, "group": s.get("group", ""), "state": "cached", "attempt": 0,
            "max_attempts": st.max_attempts, "started_at": None, "finished_at": now, "duration": None,
            "reason": st.cache_reason, "traceback": "", "cached": True,
            "inputs": input_summary(s["inputs"], run.params) or _bindings(s), "outputs": outputs})
    return {"id": run.id, "name": name, "pipeline": run.spec["pipeline"]["name"], "experiment": experiment,
            "state": "succeeded", "reason": "", "params": run.params, "labels": labels, "package": package,
            "created_at": run.created_at, "started_at": now, "finished_at": now, "duration": 0.0,
            "archived_at": None, "last_event_id": 0, "steps": steps}


_INPUTS: dict[tuple[str, str, str], str] = {}  # (package, step, params JSON) -> the step's inputs summary JSON


def _inputs_json(package: str, st: "StepCtx", params_json: str, params: dict[str, Any]) -> str:
    """A step's inputs summary as JSON: fixed by the (immutable) package's step and the run's parameters,
    so a re-run of the same run reuses it instead of dumping it again."""
    key = (package, st.name, params_json)
    text = _INPUTS.get(key)
    if text is None:
        text = db.dumps(input_summary(st.spec["inputs"], params))
        while len(_INPUTS) >= SEEN_MAX:
            _INPUTS.pop(next(iter(_INPUTS)))
        _INPUTS[key] = text
    return text


def _small(value: Any) -> bool:
    """A value whose JSON is surely under views' 4096-character cut (no need to dump it to know)."""
    return value is None or type(value) in (bool, float) or (type(value) is int and -10**100 < value < 10**100) \
        or (type(value) is str and len(value) <= 340)  # at most 12 JSON characters each (a surrogate pair)


def input_summary(bindings: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, b in bindings.items():
        if "parameter" in b:
            out[name] = {"parameter": b["parameter"], "value": params.get(b["parameter"])}
        else:
            out[name] = dict(b)
    return out
