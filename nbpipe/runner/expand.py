"""Control flow at run time: loop expansion, conditions, exit handlers and run placeholders.

The scheduler's ready-set loop asks :func:`hold` before starting a ready step; this module
decides whether control flow keeps it back:

- a step inside a ``ParallelFor`` whose loop is not bound yet is a *template*: when it is ready
  (the items are known), every template of that loop instance is copied once per item, as
  steps named ``<step>-it<i>`` (nested: ``<step>-it<i>-it<j>``) with the loop's group id, so the
  run graph groups them. The template stays in the graph as the loop's summary step and
  finishes when all its copies have (``failed`` if one failed); ``Collected`` reads its copies'
  outputs in item order. Loop ``parallelism`` caps the iterations in progress at once.
- a step inside ``If``/``Elif``/``Else`` is ``skipped`` when its condition is false; conditions
  and loop items are evaluated on the inline JSON ``value`` of step results, never pickles.
- an exit handler waits until every step of its block is final, whatever the outcome, and
  still runs after a cancel; ``RUN_STATUS`` tells it what happened.

Every expansion is recorded (``expansions`` table), so a restarted runner and the snapshot
replay them to the same steps. Non-goals: HTTP, executing steps, unpickling anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .. import events as ev
from ..compiler import group_chain, upstream_of
from . import db

if TYPE_CHECKING:
    from .scheduler import RunCtx, Scheduler, StepCtx

SUFFIX = "-it"


@dataclass
class Replay:
    """Pure expansion state of one run: what each step is a copy of, and every loop's items."""

    spec: dict[str, Any]
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    base: dict[str, dict[str, Any]] = field(default_factory=dict)  # spec steps by name
    info: dict[str, tuple[str, dict[str, int]]] = field(default_factory=dict)  # name -> (base name, bound loops)
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)  # every step's (rewritten) spec
    copies: dict[str, list[str]] = field(default_factory=dict)  # template -> its copies, in item order
    items: dict[tuple[Any, ...], list[Any]] = field(default_factory=dict)  # loop instance -> items

    def __post_init__(self) -> None:
        self.groups = {g["id"]: g for g in self.spec.get("groups", [])}
        for s in self.spec["steps"]:
            self.base[s["name"]] = s
            self.info[s["name"]] = (s["name"], {})
            self.specs[s["name"]] = s

    # ------------------------------------------------------------ names
    def chain(self, name: str) -> list[dict[str, Any]]:
        return group_chain(self.groups, self.base[self.info[name][0]].get("group", ""))

    def loops(self, base: str) -> list[str]:
        return [g["id"] for g in group_chain(self.groups, self.base[base].get("group", "")) if g["kind"] == "for"]

    def actual(self, base: str, bound: dict[str, int]) -> str:
        """The name of base step ``base`` in the iteration context ``bound``."""
        return base + "".join(f"{SUFFIX}{bound[lp]}" for lp in self.loops(base) if lp in bound)

    def instance(self, loop: str, bound: dict[str, int]) -> tuple[Any, ...]:
        outer = [g["id"] for g in group_chain(self.groups, self.groups[loop]["parent"]) if g["kind"] == "for"]
        return (loop,) + tuple((lp, bound[lp]) for lp in outer)

    def loop_value(self, loop: str, fieldpath: str, bound: dict[str, int]) -> Any:
        value = self.items[self.instance(loop, bound)][bound[loop]]
        for part in filter(None, fieldpath.split(".")):
            if not isinstance(value, dict) or part not in value:
                raise FlowError(f"loop '{loop}' item {bound[loop]} has no field '{fieldpath}' "
                                f"(item: {json.dumps(value)[:200]})")
            value = value[part]
        return value

    # ------------------------------------------------------------ copies
    def rewrite(self, base: str, bound: dict[str, int]) -> dict[str, Any]:
        """The spec of ``base``'s copy in context ``bound`` (references renamed, loop items filled in)."""
        src = self.base[base]
        inputs: dict[str, Any] = {}
        for arg, b in src["inputs"].items():
            if "step" in b:
                inputs[arg] = {"step": self.actual(b["step"], bound), "output": b["output"]}
            elif "collect" in b:
                inputs[arg] = {"collect": {"step": self.actual(b["collect"]["step"], bound),
                                           "output": b["collect"]["output"]}}
            elif "loop" in b and b["loop"] in bound:
                try:
                    inputs[arg] = {"value": self.loop_value(b["loop"], b.get("field", ""), bound)}
                except FlowError as exc:
                    inputs[arg] = {"error": str(exc)}
            else:
                inputs[arg] = dict(b)
        out = {**src, "name": self.actual(base, bound), "inputs": inputs,
               "after": [self.actual(a, bound) for a in src.get("after", [])]}
        if bound:
            idx = ", ".join(str(bound[lp]) for lp in self.loops(base) if lp in bound)
            out["display_name"] = f"{src.get('display_name') or base} [{idx}]"
        return out

    def expand(self, loop: str, templates: list[str], items: list[Any]) -> list[str]:
        """Copy ``templates`` (all of one loop instance) once per item; return the new names."""
        bound0 = self.info[templates[0]][1]
        self.items[self.instance(loop, bound0)] = list(items)
        made: list[str] = []
        for i in range(len(items)):
            for t in templates:
                base, bound = self.info[t]
                nb = {**bound, loop: i}
                spec = self.rewrite(base, nb)
                self.info[spec["name"]] = (base, nb)
                self.specs[spec["name"]] = spec
                self.copies.setdefault(t, []).append(spec["name"])
                made.append(spec["name"])
        for t in templates:
            self.copies.setdefault(t, [])
        return made

    def first_open_loop(self, name: str) -> str | None:
        bound = self.info[name][1]
        return next((g["id"] for g in self.chain(name) if g["kind"] == "for" and g["id"] not in bound), None)

    def replay(self, rows: list[dict[str, Any]]) -> "Replay":
        for r in rows:
            self.expand(r["loop"], db.loads(r["templates"]), db.loads(r["items"]))
        return self


class FlowError(Exception):
    """A control-flow value is wrong at run time (not a list, missing field, bad comparison)."""


def load_replay(conn: sa.Connection, run_id: str, spec: dict[str, Any]) -> Replay:
    rows = db.rows(conn.execute(sa.select(db.expansions).where(db.expansions.c.run_id == run_id)
                                .order_by(db.expansions.c.id)))
    return Replay(spec).replay(rows)


def graph_step(spec: dict[str, Any]) -> dict[str, Any]:
    return {"name": spec["name"], "component": spec["component"], "display_name": spec.get("display_name", ""),
            "upstream": upstream_of(spec), "group": spec.get("group", "")}


# ==================================================================== live state of a run
@dataclass
class Flow:
    replay: Replay
    run_name: str = ""
    handlers: dict[str, str] = field(default_factory=dict)  # handler step -> exit group id
    reuse: dict[str, dict[str, Any]] = field(default_factory=dict)  # copies to reuse (re-run from a step)
    reuse_reason: str = ""  # what their reason says (see .rerun)
    active: dict[tuple[Any, ...], set[int]] = field(default_factory=dict)  # loop instance -> iterations in progress


def flow_of(sched: "Scheduler", run: "RunCtx") -> Flow:
    """The run's control-flow state, built on first use (and after a restart, from the database)."""
    if run.flow is not None:
        return run.flow  # type: ignore[no-any-return]
    from .scheduler import StepCtx

    with sched._tx() as conn:  # inside a tick: see the tick's own uncommitted writes
        replay = load_replay(conn, run.id, run.spec)
        name = conn.execute(sa.select(db.runs.c.name).where(db.runs.c.id == run.id)).scalar() or ""
        srows = {s["name"]: s for s in db.rows(conn.execute(sa.select(db.steps).where(db.steps.c.run_id == run.id)))}
    flow = Flow(replay=replay, run_name=name)
    flow.handlers = {g["handler"]: g["id"] for g in replay.groups.values() if g["kind"] == "exit"}
    run.flow = flow
    for n, spec in replay.specs.items():  # a restarted runner: copies come back with their states
        if n in run.steps:
            continue
        row = srows.get(n, {})
        st = StepCtx(spec=spec, component=run.spec["components"][spec["component"]], upstream=upstream_of(spec),
                     state=row.get("state", "pending"), attempt=row.get("attempt", 0),
                     outputs=db.loads(row.get("outputs")) or {}, started_at=row.get("started_at"))
        if st.state == "running":
            st.state, st.next_at = "retrying", 0.0
        run.steps[n] = st
    for t in replay.copies:
        st = run.steps[t]
        if st.state not in ev.STEP_FINAL:
            st.state = "running"
    return flow


def runs_after_cancel(sched: "Scheduler", run: "RunCtx", st: "StepCtx") -> bool:
    """Exit handlers still run (and are not killed) when their run is cancelled."""
    return "groups" in run.spec and st.name in flow_of(sched, run).handlers


def remember_reuse(sched: "Scheduler", run: "RunCtx", reuse: dict[str, dict[str, Any]], reason: str = "") -> None:
    if reuse:
        flow = flow_of(sched, run)
        flow.reuse.update(reuse)
        flow.reuse_reason = reason


# ==================================================================== each tick
def advance(sched: "Scheduler", run: "RunCtx") -> None:
    """Finish loop templates whose copies are all final; count loop iterations in progress."""
    if "groups" not in run.spec:
        return
    flow = flow_of(sched, run)
    rp = flow.replay
    for t, copies in reversed(list(rp.copies.items())):  # inner loops' templates first: outer ones wait on them
        st = run.steps[t]
        if st.state != "running" or not all(run.steps[c].state in ev.STEP_FINAL for c in copies):
            continue
        states = [run.steps[c].state for c in copies]
        bad = next((s for s in ("failed", "cancelled") if s in states), None)
        done = sum(s in ev.STEP_OK for s in states)
        if bad:
            first = copies[states.index(bad)]
            sched._set_step_final(run, st, bad, reason=f"iteration step '{first}' {bad} "
                                  f"({done} of {len(copies)} iterations succeeded)")
        else:
            sched._set_step_final(run, st, "succeeded", outputs={},
                                  reason=f"{done} of {len(copies)} iterations ran"
                                  + (f", {len(copies) - done} skipped" if done < len(copies) else ""))
    started: set[tuple[Any, ...]] = set()
    unfinished: set[tuple[Any, ...]] = set()
    for name, st in run.steps.items():
        _, bound = rp.info.get(name, (name, {}))
        for lp, i in bound.items():
            if not rp.groups[lp].get("parallelism"):
                continue
            key = rp.instance(lp, bound) + (i,)
            if st.state != "pending":
                started.add(key)
            if st.state not in ev.STEP_FINAL:
                unfinished.add(key)
    flow.active = {}
    for key in started & unfinished:
        flow.active.setdefault(key[:-1], set()).add(key[-1])


def hold(sched: "Scheduler", run: "RunCtx", st: "StepCtx") -> bool:
    """Called for a pending step whose upstream steps all succeeded: True keeps it from starting."""
    if "groups" not in run.spec:
        return False
    flow = flow_of(sched, run)
    rp = flow.replay
    base, bound = rp.info[st.name]
    if st.name in flow.reuse:
        sched._finish_success(run, st, flow.reuse.pop(st.name), cached=True, reason=flow.reuse_reason or "reused from the earlier run")
        sched.wake()  # a state changed mid-tick: look again at once rather than at the next timeout
        return True
    gid = flow.handlers.get(st.name)
    if gid is not None and not all(s.state in ev.STEP_FINAL for n, s in run.steps.items()
                                   if n != st.name and any(g["id"] == gid for g in rp.chain(n))):
        return True
    try:
        for g in rp.chain(st.name):
            if g["kind"] == "for" and g["id"] not in bound:
                _expand(sched, run, flow, st, g)
                return True
            if g["kind"] == "condition" and not _truthy(evaluate(g["condition"], run, flow, bound)):
                branch = g.get("branch", "if")
                sched._set_step_final(run, st, "skipped", reason=f"the {branch} condition of group '{g['id']}' "
                                      f"is false ({describe(g['condition'], run, flow, bound)})")
                sched.wake()
                return True
        bad = next((b["error"] for b in st.spec["inputs"].values() if "error" in b), None)
        if bad:
            raise FlowError(bad)
    except FlowError as exc:
        sched._set_step_final(run, st, "failed", reason=str(exc))
        sched.wake()
        return True
    for lp, i in bound.items():
        limit = rp.groups[lp].get("parallelism") or 0
        if limit:
            active = flow.active.setdefault(rp.instance(lp, bound), set())
            if i not in active:
                if len(active) >= limit:
                    return True
                active.add(i)
    return False


def _expand(sched: "Scheduler", run: "RunCtx", flow: Flow, st: "StepCtx", g: dict[str, Any]) -> None:
    from .scheduler import StepCtx

    rp = flow.replay
    bound = rp.info[st.name][1]
    items = resolve_operand(g["items"], run, flow, bound)
    inst = rp.instance(g["id"], bound)
    templates = [n for n, s in run.steps.items() if s.state == "pending" and rp.first_open_loop(n) == g["id"]
                 and rp.instance(g["id"], rp.info[n][1]) == inst]
    if not isinstance(items, list):
        raise FlowError(f"loop '{g['id']}' needs a JSON list of items, got {type(items).__name__} "
                        f"{json.dumps(items, default=str)[:100]}")
    made = rp.expand(g["id"], templates, items)
    now = db.now()
    with sched._tx() as conn:
        conn.execute(db.expansions.insert().values(run_id=run.id, loop=g["id"], templates=db.dumps(templates),
                                                   items=db.dumps(items), created_at=now))
        if made:
            conn.execute(db.steps.insert(), [
                {"run_id": run.id, "name": n, "component": rp.specs[n]["component"], "state": "pending",
                 "attempt": 0, "max_attempts": int(rp.specs[n]["options"].get("retries", 0)) + 1, "reason": "",
                 "traceback": "", "outputs": "{}", "inputs": "{}"} for n in made])
    for n in made:
        spec = rp.specs[n]
        run.steps[n] = StepCtx(spec=spec, component=run.spec["components"][spec["component"]],
                               upstream=upstream_of(spec))
    sched._emit(ev.StepsAdded(run_id=run.id, ts=now, loop=g["id"], items=len(items),
                              steps=[graph_step(rp.specs[n]) for n in made]))
    for t in templates:
        ts = run.steps[t]
        ts.state, ts.started_at = "running", now
        with sched._tx() as conn:
            conn.execute(db.steps.update().where(db.steps.c.run_id == run.id, db.steps.c.name == t)
                         .values(state="running", started_at=now, attempt=1))
        sched._emit(ev.StepStarted(run_id=run.id, ts=now, step=t, attempt=1, max_attempts=1))
    sched.wake()


# ==================================================================== values
def run_status(run: "RunCtx", flow: Flow) -> dict[str, Any]:
    """What an exit handler sees: the state of the run's other steps (like KFP's PipelineTaskFinalStatus)."""
    others = [s for n, s in run.steps.items() if n not in flow.handlers]
    failed = [s.name for s in others if s.state == "failed"]
    state = "cancelled" if run.cancelled else "failed" if failed else "succeeded"
    return {"state": state, "run_id": run.id, "run_name": flow.run_name, "failed_steps": failed,
            "cancelled": run.cancelled,
            "steps": {s.name: s.state for s in others}}


def resolve_operand(b: dict[str, Any], run: "RunCtx", flow: Flow, bound: dict[str, int]) -> Any:
    """The JSON value of a binding in iteration context ``bound`` (no unpickling, ever)."""
    if "value" in b:
        return b["value"]
    if "parameter" in b:
        return run.params.get(b["parameter"])
    if "loop" in b:
        return flow.replay.loop_value(b["loop"], b.get("field", ""), bound)
    if "placeholder" in b:
        return {"run_id": run.id, "run_name": flow.run_name}.get(b["placeholder"]) \
            if b["placeholder"] != "run_status" else run_status(run, flow)
    name = flow.replay.actual(b["step"], bound) if b["step"] in flow.replay.base else b["step"]
    out = run.steps[name].outputs.get(b["output"])
    if out is None or "value" not in out:
        raise FlowError(f"output '{name}.{b['output']}' is not a JSON value the runner can read "
                        f"(it is {'missing' if out is None else out.get('format')}); return a plain JSON value "
                        "(under 64 KiB) to use it in a condition or as loop items")
    return out["value"]


def _truthy(value: Any) -> bool:
    return bool(value)


_CMP = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
        "in": lambda a, b: a in b}


def evaluate(expr: dict[str, Any], run: "RunCtx", flow: Flow, bound: dict[str, int]) -> bool:
    """Evaluate a condition expression (see :mod:`nbpipe.condition`) on JSON values."""
    op = expr["op"]
    if op == "and":
        return all(evaluate(a, run, flow, bound) for a in expr["args"])
    if op == "or":
        return any(evaluate(a, run, flow, bound) for a in expr["args"])
    if op == "not":
        return not evaluate(expr["args"][0], run, flow, bound)
    left = resolve_operand(expr["left"], run, flow, bound)
    right = resolve_operand(expr["right"], run, flow, bound)
    try:
        return bool(_CMP[op](left, right))
    except TypeError:
        raise FlowError(f"the condition cannot compare {json.dumps(left, default=str)[:60]} {op} "
                        f"{json.dumps(right, default=str)[:60]} (different types); compare like with like") from None


def describe(expr: dict[str, Any], run: "RunCtx", flow: Flow, bound: dict[str, int]) -> str:
    op = expr["op"]
    if op in ("and", "or"):
        return f" {op} ".join(f"({describe(a, run, flow, bound)})" for a in expr["args"]) or "true"
    if op == "not":
        return f"not ({describe(expr['args'][0], run, flow, bound)})"

    def side(b: dict[str, Any]) -> str:
        step = flow.replay.actual(b["step"], bound) if "step" in b and b["step"] in flow.replay.base else b.get("step")
        name = b.get("parameter") or (f"{step}.{b['output']}" if step else "") or \
            (f"item of {b['loop']}" if "loop" in b else "")
        val = json.dumps(resolve_operand(b, run, flow, bound), default=str)[:60]
        return f"{name}={val}" if name else val

    return f"{side(expr['left'])} {op} {side(expr['right'])}"


def resolve_input(run: "RunCtx", st: "StepCtx", b: dict[str, Any], spec: dict[str, Any],
                  sched: "Scheduler") -> tuple[dict[str, Any], dict[str, Any]]:
    """Job input and cache identity of a control-flow binding (placeholder or Collected)."""
    flow = flow_of(sched, run)
    if "collect" not in b:
        value = resolve_operand(b, run, flow, flow.replay.info.get(st.name, ("", {}))[1])
        return {"kind": "value", "value": value}, {"value": value}
    c = b["collect"]

    def gather(name: str) -> tuple[list[Any], list[Any]]:
        items, ids = [], []
        for copy in flow.replay.copies.get(name, []):
            cs = run.steps[copy]
            if copy in flow.replay.copies:
                if cs.state in ev.STEP_OK:
                    sub, sub_ids = gather(copy)
                    items.append({"kind": "collected", "items": sub})
                    ids.append(sub_ids)
            elif cs.state in ev.STEP_OK:
                out = cs.outputs[c["output"]]
                items.append(job_input(out, spec))
                ids.append(out["digest"])
        return items, ids

    items, ids = gather(c["step"])
    return {"kind": "collected", "items": items}, {"collect": ids}


def job_input(out: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The job input for one stored output (the same shapes the scheduler builds)."""
    if out["kind"] == "artifact":
        return {"kind": "artifact", "key": out["key"], "format": out["format"],
                "artifact_type": out.get("artifact_type", "Artifact"), "metadata": out.get("metadata") or {},
                "filename": out.get("filename", "")}
    if "value" in out:
        return {"kind": "value", "value": out["value"]}
    return {"kind": "value", "key": out["key"], "format": out["format"]}


def reusable(engine: sa.Engine, run_id: str, spec: dict[str, Any], step_rows: list[dict[str, Any]],
             downstream: set[str]) -> dict[str, dict[str, Any]]:
    """Outputs a re-run may reuse: succeeded steps (and loop copies) not downstream of the re-run step."""
    with engine.connect() as conn:
        rp = load_replay(conn, run_id, spec)
    reuse: dict[str, dict[str, Any]] = {}
    for sr in step_rows:
        base = rp.info.get(sr["name"], (sr["name"], {}))[0]
        if base in downstream or sr["state"] not in ev.STEP_OK or sr["name"] in rp.copies:
            continue  # loop templates expand again (their copies are reused instead)
        reuse[sr["name"]] = db.loads(sr["outputs"]) or {}
    return reuse
