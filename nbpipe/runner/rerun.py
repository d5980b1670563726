"""What a re-run executes again and what it reuses, and why (Kubeflow's "Retry"/"Clone" semantics).

*Rerun* is a new run of the same package with the same parameters (the content cache applies).
*Rerun from STEP* re-executes STEP and everything downstream of it — never from the cache — and
reuses the earlier run's outputs for every other step that succeeded. With a *new package* (the
user fixed a cell: "rerun from failed with my fix"), a step upstream of STEP is reused only if it
is unchanged between the two packages (component digest, input bindings and options) and so is
everything upstream of it; otherwise it executes again (cache lookups allowed, the code changed).

Every step gets a reason that the run graph shows: "reused from run …" or "re-executed: …".
Non-goals: HTTP, touching the database (the scheduler does both), unpickling anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..compiler import upstream_of
from ..errors import NbpipeError


@dataclass
class RerunPlan:
    """``again``: step name → (reason, fresh). ``fresh`` steps never take a cache hit."""

    again: dict[str, tuple[str, bool]] = field(default_factory=dict)
    reuse_reason: str = ""


def _step_identity(spec: dict[str, Any], step: dict[str, Any]) -> tuple[Any, ...]:
    comp = spec["components"].get(step["component"], {})
    return (comp.get("digest"), comp.get("image"), step.get("inputs"), step.get("options"),
            sorted(step.get("after") or []))


def plan(run_id: str, old_spec: dict[str, Any], new_spec: dict[str, Any], from_step: str | None,
         same_package: bool) -> RerunPlan:
    """Decide which steps of ``new_spec`` execute again when re-running ``run_id``."""
    result = RerunPlan(reuse_reason=f"reused from run {run_id}")
    if from_step is None:
        return result
    steps = new_spec["steps"]
    names = {s["name"] for s in steps}
    if from_step not in names:
        where = "Its" if same_package else "The new package's"
        raise NbpipeError(f"Run {run_id} has no step '{from_step}'" if same_package
                          else f"The pipeline has no step '{from_step}' any more",
                          f"{where} steps are: {', '.join(sorted(names))}.")
    old_steps = {s["name"]: s for s in old_spec.get("steps", [])}
    result.reuse_reason = f"reused from run {run_id} (upstream of '{from_step}', unchanged)"
    for s in steps:  # topological order
        name = s["name"]
        ups = upstream_of(s)
        moved = next((u for u in ups if u in result.again and result.again[u][1]), None)
        if name == from_step:
            result.again[name] = (f"re-executed: re-run from '{from_step}'", True)
        elif moved is not None:
            result.again[name] = (f"re-executed: downstream of '{from_step}'", True)
        elif not same_package:
            old = old_steps.get(name)
            changed_up = next((u for u in ups if u in result.again), None)
            if old is None:
                result.again[name] = ("executed: a new step since run " + run_id, False)
            elif old_spec["components"].get(old["component"], {}).get("digest") != \
                    new_spec["components"].get(s["component"], {}).get("digest"):
                result.again[name] = (f"re-executed: its code changed since run {run_id}", False)
            elif _step_identity(old_spec, old) != _step_identity(new_spec, s):
                result.again[name] = (f"re-executed: its inputs or options changed since run {run_id}", False)
            elif changed_up is not None:
                result.again[name] = (f"re-executed: upstream step '{changed_up}' changed", False)
    return result


def marked(spec: dict[str, Any], again: dict[str, tuple[str, bool]]) -> dict[str, Any]:
    """``spec`` with each step a re-run executes again marked ``rerun: {reason, fresh}``.

    The scheduler reads the mark (no cache hit for a fresh step, its reason once it succeeded);
    loop copies are made from the run's spec, so they inherit it.
    """
    if not again:
        return spec
    return {**spec, "steps": [{**s, "rerun": {"reason": again[s["name"]][0], "fresh": again[s["name"]][1]}}
                              if s["name"] in again else s for s in spec["steps"]]}


def recovered_spec(sched: Any, run: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The marked spec of an unfinished re-run that a restarted runner loads again.

    The plan is computed again from what the database keeps: the labels ``rerun_of`` and
    ``rerun_from`` and both runs' packages, so a step downstream of the re-run step still never
    takes a cache hit after a restart.
    """
    import sqlalchemy as sa

    from . import db

    labels = db.loads(run.get("labels")) or {}
    old_id, start = labels.get("rerun_of"), labels.get("rerun_from")
    if not old_id or not start:
        return spec
    with sched.engine.connect() as conn:
        row = conn.execute(sa.select(db.runs.c.package).where(db.runs.c.id == old_id)).first()
    old_spec = sched.package_spec(row[0]) if row is not None else None
    if old_spec is None:
        return spec
    try:
        return marked(spec, plan(old_id, old_spec, spec, start, same_package=row[0] == run["package"]).again)
    except NbpipeError:
        return spec
