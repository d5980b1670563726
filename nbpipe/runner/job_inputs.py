"""A step's job inputs, and their identities for its cache key, from its bindings and its run.

A binding is a pipeline parameter, a constant, an upstream step's output (a value inline or by
store key, an artifact by key with its type and metadata) or control flow (a loop's collected
outputs, a placeholder such as ``RUN_ID``: see :mod:`.expand`). The identity of an upstream
output is its digest, so the cache key does not depend on where the output is stored.
Non-goals: reading outputs (the step's process does), cache lookups (see :mod:`.cache`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import expand

if TYPE_CHECKING:
    from .scheduler import RunCtx, Scheduler, StepCtx


def resolve(sched: "Scheduler", run: "RunCtx", st: "StepCtx") -> tuple[dict[str, Any], dict[str, Any]]:
    """Job inputs, and their identities for the cache key."""
    inputs: dict[str, Any] = {}
    ident: dict[str, Any] = {}
    specs = {i["name"]: i for i in st.component["inputs"]}
    for name, b in st.spec["inputs"].items():
        if "collect" in b or "placeholder" in b:  # control flow: Collected, RUN_ID, RUN_STATUS…
            inputs[name], ident[name] = expand.resolve_input(run, st, b, specs[name], sched)
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
