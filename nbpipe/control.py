"""Pipeline control flow, recorded while a pipeline is traced: loops, conditions, exit handlers.

``ParallelFor``, ``If``/``Elif``/``Else`` and ``ExitHandler`` are context managers (like KFP's
``dsl.ParallelFor``, ``dsl.If``, ``dsl.ExitHandler``). Entering one pushes a *group* on the
trace; steps created inside carry the innermost group's id, and the compiler writes the groups
into the package spec (version 2). Comparisons of pipeline parameters, step outputs and loop
items (``param > 3``, ``step.output == "ok"``) build :class:`Condition` expressions: plain JSON
the runner evaluates without unpickling anything. ``Collected`` fans a loop's outputs in, and
``RUN_ID``/``RUN_NAME``/``RUN_STATUS`` are inputs the runner fills in.

Non-goals: running anything (see :mod:`nbpipe.runner.expand`), Python-side evaluation of
conditions, and ``while`` loops or recursion (KFP has neither either).
"""

from __future__ import annotations

from typing import Any

from .condition import Comparable, Condition, as_condition, operand  # noqa: F401 - Condition is public
from .errors import DefinitionError
from .pipeline import PipelineParam, Step, StepOutput
from .signature import is_json_value
from .tracing import check_reference, current_trace, loops_of

__all__ = ["Collected", "Condition", "Elif", "Else", "ExitHandler", "If", "LoopItem", "ParallelFor",
           "RUN_ID", "RUN_NAME", "RUN_STATUS"]

# ==================================================================== groups
def _trace(what: str) -> Any:
    trace = current_trace()
    if trace is None:
        raise DefinitionError(f"nbpipe.{what} is used outside a pipeline",
                              hint=f"Use `with nbpipe.{what}(...)` inside an @nbpipe.pipeline function.")
    return trace


def _new_group(trace: Any, kind: str, **fields: Any) -> dict[str, Any]:
    n = sum(1 for g in trace.groups.values() if g["kind"] == kind) + 1
    prefix = {"for": "for", "condition": "condition", "exit": "exit"}[kind]
    gid = f"{prefix}-{n}"
    group = {"id": gid, "kind": kind, "parent": trace.group_stack[-1] if trace.group_stack else "", **fields}
    trace.groups[gid] = group
    return group


class LoopItem(Comparable):
    """The loop variable of a :class:`ParallelFor` (``x`` in ``as x``); ``x.field`` for dict items."""

    def __init__(self, loop: str, field: str = "", type: str = "Any"):
        self._loop, self._field, self._type = loop, field, type

    def __getattr__(self, name: str) -> "LoopItem":
        if name.startswith("_"):
            raise AttributeError(name)
        return LoopItem(self._loop, f"{self._field}.{name}" if self._field else name)

    def __getitem__(self, name: str) -> "LoopItem":
        return self.__getattr__(str(name))

    def __nbpipe_operand__(self, where: str = "") -> dict[str, Any]:
        return {"loop": self._loop, **({"field": self._field} if self._field else {})}

    def __nbpipe_binding__(self, trace: Any, where: str, spec: Any) -> dict[str, Any]:
        if self._loop not in loops_of(trace, trace.group_stack[-1] if trace.group_stack else ""):
            raise DefinitionError(f"{where} uses the item of loop '{self._loop}' outside that loop",
                                  hint="Use the loop variable only inside its `with nbpipe.ParallelFor(...)` block.")
        if spec.kind == "artifact":
            raise DefinitionError(f"{where} is an artifact; a loop item is a plain value",
                                  hint="Loop over values and load the data inside the component.")
        return self.__nbpipe_operand__()

    def __bool__(self) -> bool:
        raise DefinitionError("A loop item has no value while the pipeline is being defined",
                              hint="Pass it to a component, or use nbpipe.If(item == ...).")

    def __repr__(self) -> str:
        return f"<loop item {self._loop}{'.' + self._field if self._field else ''}>"


def _item_type(items: list[Any]) -> str:
    kinds = {type(v).__name__ for v in items}
    return kinds.pop() if len(kinds) == 1 and next(iter(kinds), "") in ("str", "int", "float", "bool", "dict", "list") \
        else "Any"


class ParallelFor:
    """Run the steps inside the block once per item, at most ``parallelism`` iterations at once.

    Parameters
    ----------
    items
        A literal list of JSON values, a pipeline parameter, an upstream step output (a JSON
        list, expanded by the runner when the step finishes) or an outer loop's item.
    parallelism
        Iterations running at once; 0 means no limit beyond the runner's.

    Examples
    --------
    >>> with nbpipe.ParallelFor([0.1, 1.0], parallelism=2) as lr:   # doctest: +SKIP
    ...     train(lr=lr)
    """

    def __init__(self, items: Any, parallelism: int = 0):
        if isinstance(parallelism, bool) or not isinstance(parallelism, int) or parallelism < 0:
            raise DefinitionError(f"ParallelFor(parallelism={parallelism!r}) is not a count",
                                  hint="Pass a whole number ≥ 1, or 0 for no limit.")
        self.items, self.parallelism = items, parallelism

    def _items_binding(self, trace: Any) -> tuple[dict[str, Any], str]:
        items = self.items
        if isinstance(items, (list, tuple)):
            items = list(items)
            if not is_json_value(items):
                raise DefinitionError("ParallelFor items must be plain JSON values",
                                      hint="Loop over names or numbers and build objects inside the component.")
            return {"value": items}, _item_type(items)
        if isinstance(items, Step):
            items = items.output
        if isinstance(items, (PipelineParam, StepOutput, LoopItem)):
            b = operand(items, "ParallelFor items")
            if "step" in b:
                here = trace.group_stack[-1] if trace.group_stack else ""
                check_reference(trace, b["step"], here, "ParallelFor items")
            return b, "Any"
        raise DefinitionError(f"ParallelFor cannot loop over a {type(items).__name__}",
                              hint="Pass a list, a pipeline parameter or a step output holding a JSON list.")

    def __enter__(self) -> LoopItem:
        trace = _trace("ParallelFor")
        binding, item_type = self._items_binding(trace)
        group = _new_group(trace, "for", items=binding, parallelism=self.parallelism)
        trace.group_stack.append(group["id"])
        return LoopItem(group["id"], type=item_type)

    def __exit__(self, *exc: Any) -> None:
        current_trace().group_stack.pop()  # type: ignore[union-attr]


class Collected:
    """Fan in: the outputs of a step inside a loop, as a list in item order (nested for nested loops).

    Iterations whose step was skipped (a false condition) leave no entry.
    """

    def __init__(self, output: Any):
        if isinstance(output, Step):
            output = output.output
        if not isinstance(output, StepOutput):
            raise DefinitionError(f"nbpipe.Collected takes a step output, got {type(output).__name__}",
                                  hint="Pass a step (or step.outputs['name']) created inside a ParallelFor.")
        self.output = output

    def __nbpipe_binding__(self, trace: Any, where: str, spec: Any) -> dict[str, Any]:
        o = self.output
        here = trace.group_stack[-1] if trace.group_stack else ""
        inner, outer = loops_of(trace, o.step.group), loops_of(trace, here)
        if not (len(inner) > len(outer) and inner[:len(outer)] == outer):
            raise DefinitionError(f"{where} collects '{o.step.name}.{o.name}', which is not inside a loop "
                                  "that this step is outside of",
                                  hint="Use nbpipe.Collected(...) in a step after the `with nbpipe.ParallelFor` "
                                       "block, on a step created inside it.")
        if spec.kind == "artifact":
            raise DefinitionError(f"{where} is a single artifact, but Collected gives a list",
                                  hint=f"Annotate '{spec.name}' as list (of Artifact objects).")
        return {"collect": {"step": o.step.name, "output": o.name}}


class _Branch:
    kind_name = "If"

    def __init__(self, condition: Any = None):
        self.condition = condition

    def _expr(self, trace: Any) -> dict[str, Any]:
        raise NotImplementedError

    def __enter__(self) -> None:
        trace = _trace(self.kind_name)
        expr = self._expr(trace)
        for ref in _step_refs(expr):
            check_reference(trace, ref, trace.group_stack[-1] if trace.group_stack else "", self.kind_name)
        group = _new_group(trace, "condition", condition=expr, branch=self.kind_name.lower())
        trace.group_stack.append(group["id"])
        trace.last_branch = None

    def __exit__(self, *exc: Any) -> None:
        trace = current_trace()
        assert trace is not None
        gid = trace.group_stack.pop()
        trace.last_branch = (gid, trace.group_stack[-1] if trace.group_stack else "", self._chain)


class If(_Branch):
    """Run the steps inside only when ``condition`` holds; otherwise they are ``skipped``.

    Steps that depend on a skipped step are skipped too (KFP semantics), except through
    :class:`Collected`. ``Elif``/``Else`` may follow directly.
    """

    kind_name = "If"

    def _expr(self, trace: Any) -> dict[str, Any]:
        self._chain = [as_condition(self.condition).expr]
        return self._chain[0]


class Elif(_Branch):
    """Runs when all earlier branches of the ``If`` were false and ``condition`` holds."""

    kind_name = "Elif"

    def _previous(self, trace: Any) -> list[dict[str, Any]]:
        last = getattr(trace, "last_branch", None)
        here = trace.group_stack[-1] if trace.group_stack else ""
        if not last or last[1] != here:
            raise DefinitionError(f"nbpipe.{self.kind_name} must come right after an nbpipe.If/Elif block",
                                  hint="Put the `with nbpipe.Elif(...)`/`Else()` block directly after `with nbpipe.If(...)`.")
        return list(last[2])

    def _expr(self, trace: Any) -> dict[str, Any]:
        prev = self._previous(trace)
        cond = as_condition(self.condition).expr
        self._chain = prev + [cond]
        return {"op": "and", "args": [{"op": "not", "args": [p]} for p in prev] + [cond]}


class Else(Elif):
    """Runs when every earlier branch of the ``If`` was false."""

    kind_name = "Else"

    def __init__(self) -> None:
        super().__init__(None)

    def _expr(self, trace: Any) -> dict[str, Any]:
        prev = self._previous(trace)
        self._chain = prev
        return {"op": "and", "args": [{"op": "not", "args": [p]} for p in prev]}

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        current_trace().last_branch = None  # type: ignore[union-attr]


class ExitHandler:
    """Run ``handler`` (a step created before the block) after every step inside has finished.

    It runs whether they succeeded, failed or were cancelled; give it ``nbpipe.RUN_STATUS`` to
    learn which (``{"state": "failed", "failed_steps": [...], ...}``).
    """

    def __init__(self, handler: Step):
        if not isinstance(handler, Step):
            raise DefinitionError(f"nbpipe.ExitHandler takes a step, got {type(handler).__name__}",
                                  hint="Create the cleanup step first: `c = cleanup(...)`, then "
                                       "`with nbpipe.ExitHandler(c):`.")
        self.handler = handler

    def __enter__(self) -> None:
        trace = _trace("ExitHandler")
        if trace.group_stack or self.handler.group:
            raise DefinitionError("nbpipe.ExitHandler must be at the top level of the pipeline",
                                  hint="Move the `with nbpipe.ExitHandler(...)` block (and its handler step) "
                                       "out of loops and conditions.")
        if any(g["kind"] == "exit" and g["handler"] == self.handler.name for g in trace.groups.values()):
            raise DefinitionError(f"Step '{self.handler.name}' already is an exit handler")
        group = _new_group(trace, "exit", handler=self.handler.name)
        self._before = set(trace.steps)
        trace.group_stack.append(group["id"])

    def __exit__(self, *exc: Any) -> None:
        trace = current_trace()
        assert trace is not None
        gid = trace.group_stack.pop()
        if exc[0] is None and not (set(trace.steps) - self._before):
            raise DefinitionError(f"The nbpipe.ExitHandler block '{gid}' has no steps",
                                  hint="Call the components it should guard inside the block.")


class _Placeholder:
    def __init__(self, name: str, type: str):
        self.name, self.type = name, type

    def __nbpipe_binding__(self, trace: Any, where: str, spec: Any) -> dict[str, Any]:
        if spec.kind == "artifact":
            raise DefinitionError(f"{where} is an artifact; nbpipe.{self.name.upper()} is a value")
        return {"placeholder": self.name}

    def __nbpipe_operand__(self, where: str = "") -> dict[str, Any]:
        return {"placeholder": self.name}

    def __repr__(self) -> str:
        return f"nbpipe.{self.name.upper()}"


RUN_ID = _Placeholder("run_id", "str")
RUN_NAME = _Placeholder("run_name", "str")
RUN_STATUS = _Placeholder("run_status", "dict")


# ==================================================================== checks
def _step_refs(expr: dict[str, Any]) -> list[str]:
    if "args" in expr:
        return [r for a in expr["args"] for r in _step_refs(a)]
    return [side["step"] for side in (expr.get("left", {}), expr.get("right", {})) if "step" in side]
