"""Turn a traced pipeline into a package spec: a validated, topologically ordered DAG.

The spec is plain JSON (see ``nbpipe/schema/package-v2.json`` and ``docs/package-format.md``).
A pipeline without control flow compiles to a version-1 spec (same bytes as before, readable
by older runners); loops, conditions, exit handlers and run placeholders need version 2.
Checks here: dangling references, ``.after()`` cycles. Non-goal: I/O (see :mod:`nbpipe.package`).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .errors import DefinitionError

if TYPE_CHECKING:
    from .component import Capture, Component
    from .pipeline import Pipeline, Trace

PACKAGE_FORMAT = "nbpipe.package"
PACKAGE_VERSION = 2  # the newest version this nbpipe reads and writes
_V2_BINDINGS = ("loop", "collect", "placeholder")


def upstream_of(step: dict[str, Any]) -> list[str]:
    """Names of the steps a spec step depends on (data edges first, then ``after``)."""
    ups: list[str] = []
    for binding in step.get("inputs", {}).values():
        binding = binding.get("collect", binding)  # a Collected fan-in waits for the whole loop
        if "step" in binding and binding["step"] not in ups:
            ups.append(binding["step"])
    for name in step.get("after", []):
        if name not in ups:
            ups.append(name)
    return ups


def toposort(steps: list[dict[str, Any]], what: str = "pipeline") -> list[dict[str, Any]]:
    """Order steps so each comes after its upstream steps; raise on a cycle or a dangling name."""
    by_name = {s["name"]: s for s in steps}
    for s in steps:
        for up in upstream_of(s):
            if up not in by_name:
                raise DefinitionError(f"Step '{s['name']}' in {what} depends on unknown step '{up}'")
    order: list[dict[str, Any]] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    for root in steps:
        if state.get(root["name"]) == 2:
            continue
        stack: list[tuple[str, int]] = [(root["name"], 0)]
        path: list[str] = []
        while stack:
            name, i = stack.pop()
            ups = upstream_of(by_name[name])
            if i == 0:
                if state.get(name) == 2:
                    continue
                if state.get(name) == 1:
                    continue
                state[name] = 1
                path.append(name)
            if i < len(ups):
                stack.append((name, i + 1))
                up = ups[i]
                if state.get(up) == 1:
                    cycle = path[path.index(up):] + [up]
                    raise DefinitionError(
                        f"The {what} has a cycle: {' -> '.join(reversed(cycle))}",
                        hint="Remove one of the .after() calls that closes the loop.",
                    )
                if state.get(up) != 2:
                    stack.append((up, 0))
            else:
                state[name] = 2
                path.pop()
                order.append(by_name[name])
    return order


def compile_pipeline(p: "Pipeline", captures: "dict[int, Capture] | None" = None,
                     trace: "Trace | None" = None) -> dict[str, Any]:
    """Build the package spec of a traced pipeline (``p.trace`` unless ``trace`` is given).

    ``captures`` maps ``id(component)`` to the capture to package (default: each component's latest).
    """
    from . import __version__

    trace = trace if trace is not None else p.trace
    components: dict[str, dict[str, Any]] = {}
    keys: dict[int, str] = {}
    for step in trace.steps.values():
        comp: Component = step.component
        if id(comp) in keys:
            continue
        entry = comp.to_spec(captures.get(id(comp)) if captures else None)
        key = comp.name
        n = 2
        while key in components and components[key]["digest"] != entry["digest"]:
            key = f"{comp.name}-{n}"
            n += 1
        keys[id(comp)] = key
        components[key] = entry
    steps = []
    for step in trace.steps.values():
        entry: dict[str, Any] = {
            "name": step.name,
            "component": keys[id(step.component)],
            "inputs": {k: step.inputs[k] for k in sorted(step.inputs)},
            "after": list(step.after_steps),
            "options": step.options.to_json(),
        }
        if step.display_name:
            entry["display_name"] = step.display_name
        if step.group:
            entry["group"] = step.group
        steps.append(entry)
    groups = _groups(trace, steps)
    steps = toposort(steps, f"pipeline '{p.name}'")
    handlers = {g["handler"] for g in groups if g["kind"] == "exit"}
    needed = {u for s in steps for u in upstream_of(s)}
    last = [s for s in steps if s["name"] in handlers and s["name"] not in needed]  # exit handlers go last
    steps = [s for s in steps if s not in last] + last
    uses_v2 = bool(groups) or any(k in b for s in steps for b in s["inputs"].values() for k in _V2_BINDINGS)
    spec: dict[str, Any] = {
        "format": PACKAGE_FORMAT,
        "version": 2 if uses_v2 else 1,
        "pipeline": {"name": p.name, "description": p.description, "parameters": p.parameters},
        "components": {k: components[k] for k in sorted(components)},
        "steps": steps,
        "created_with": {"nbpipe": __version__, "python": "%d.%d.%d" % sys.version_info[:3]},
    }
    if groups:
        spec["groups"] = groups
    return spec


def group_chain(groups: dict[str, dict[str, Any]], group_id: str) -> list[dict[str, Any]]:
    """The groups enclosing ``group_id`` (itself included), outermost first."""
    chain: list[dict[str, Any]] = []
    while group_id:
        chain.append(groups[group_id])
        group_id = groups[group_id].get("parent", "")
    return list(reversed(chain))


def condition_steps(expr: dict[str, Any]) -> list[str]:
    """Steps whose outputs a condition expression reads."""
    if "args" in expr:
        return [n for a in expr["args"] for n in condition_steps(a)]
    return [side["step"] for side in (expr.get("left", {}), expr.get("right", {})) if "step" in side]


def _groups(trace: "Trace", steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trace's control-flow groups; steps also wait for what their groups read (loop items, conditions)."""
    groups = {gid: dict(g) for gid, g in trace.groups.items()}
    for entry in steps:
        for g in group_chain(groups, entry.get("group", "")):
            needs = condition_steps(g["condition"]) if g["kind"] == "condition" else \
                [g["items"]["step"]] if g["kind"] == "for" and "step" in g["items"] else []
            entry["after"] += [n for n in needs if n not in entry["after"] and n != entry["name"]]
    members: dict[str, set[str]] = {}
    for entry in steps:
        for g in group_chain(groups, entry.get("group", "")):
            members.setdefault(g["id"], set()).add(entry["name"])
    by_name = {s["name"]: s for s in steps}
    for g in groups.values():
        if g["kind"] == "exit":
            bad = [u for u in upstream_of(by_name[g["handler"]]) if u in members.get(g["id"], set())]
            if bad:
                raise DefinitionError(f"Exit handler '{g['handler']}' reads step '{bad[0]}' from inside its own "
                                      "ExitHandler block", "It must run even when that step fails.",
                                      "Pass it nbpipe.RUN_STATUS instead, or move the step out of the block.")
    return [groups[gid] for gid in trace.groups]


_PART_WHY = {
    "code": "its code changed",
    "globals": "a notebook global, helper or closure value it uses changed",
    "signature": "its inputs, outputs or Python version changed",
    "image": "its image changed",
    "packages": "its packages changed",
}


def why_digest_changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Why two package entries of a component have different digests, in words ("its code
    changed", "a notebook global … changed"), from their ``digest_parts``; empty if the digests
    are equal. Entries from packages older than ``digest_parts`` give one vague reason."""
    if before.get("digest") == after.get("digest"):
        return []
    old, new = before.get("digest_parts") or {}, after.get("digest_parts") or {}
    if not old or not new:
        return ["its code or options changed (the older package does not record which)"]
    return [_PART_WHY.get(k, f"its {k} changed") for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
