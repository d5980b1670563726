"""The pipeline being traced right now, and the loop-scope check every tracer piece shares.

A leaf of the SDK core: components (:mod:`nbpipe.component`) ask it whether a call places a
step, the tracer (:mod:`nbpipe.pipeline`) sets it, control flow (:mod:`nbpipe.control`) reads
it. It imports nothing of them, so imports point one way:
``component → pipeline → control`` with ``compiler``/``package`` beside.
Non-goal: the trace itself (see :class:`nbpipe.pipeline.Trace`).
"""

from __future__ import annotations

import contextvars
from typing import Any

from .errors import DefinitionError

_TRACE: contextvars.ContextVar[Any] = contextvars.ContextVar("nbpipe_trace", default=None)


def current_trace() -> Any:
    """The :class:`~nbpipe.pipeline.Trace` being recorded, or None outside ``@pipeline``."""
    return _TRACE.get()


def loops_of(trace: Any, group_id: str) -> list[str]:
    """Loop ids enclosing a group, outermost first."""
    out: list[str] = []
    while group_id:
        g = trace.groups[group_id]
        if g["kind"] == "for":
            out.append(g["id"])
        group_id = g["parent"]
    return list(reversed(out))


def check_reference(trace: Any, step_name: str, here: str, where: str) -> None:
    """A step (or group) at ``here`` may read step ``step_name`` only if it is inside all its loops."""
    src = trace.steps[step_name]
    need, have = loops_of(trace, src.group), loops_of(trace, here)
    if need != have[:len(need)]:
        raise DefinitionError(f"{where} reads '{step_name}', which runs once per item of loop "
                              f"'{need[-1]}', from outside that loop",
                              hint=f"Wrap it: nbpipe.Collected({step_name}.output) gives the list of all items' "
                                   "outputs.")
