"""Kale-tagged notebooks: cells tagged ``step:NAME`` (with ``prev:NAME``) become a pipeline.

Tags read, as Kale defines them: ``imports`` and ``functions`` cells run once at module level
(their names are globals every step sees); ``pipeline-parameters`` cells hold ``NAME = literal``
assignments that become pipeline parameters; ``step:NAME`` (or the older ``block:NAME``) starts
a step and untagged cells after it join it; ``prev:NAME`` orders steps; ``skip`` leaves a cell
out. Each step becomes a component whose body is its cells' code. Like Kale's marshalling, a
step's inputs are the names it reads that an upstream step assigns (or a parameter), and its
outputs are the names it assigns that a downstream step reads; values travel as nbpipe
return values (cloudpickle unless a typed serializer fits).

Non-goals: Kale's ``pipeline-metrics`` cells, volume snapshots and Katib (noted, not mapped);
marshalling of names a step only deletes or mutates in place without assigning.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import ExportError
from .statements import KNOWN_NAMES

if TYPE_CHECKING:
    from .notebook import Cell, Notebook, Program

GLOBAL_TAGS = ("imports", "functions")
PARAMS_TAG = "pipeline-parameters"
STEP_PREFIXES = ("step:", "block:")
PIPELINE_VAR = "_kale_pipeline"
_IGNORED = ("pipeline-metrics",)


def _step_tag(cell: Cell) -> str:
    return next((t.split(":", 1)[1] for t in sorted(cell.tags) if t.startswith(STEP_PREFIXES)), "")


def _skipped(cell: Cell) -> bool:
    from .notebook import SKIP_TAGS

    return bool(cell.tags & SKIP_TAGS)


def kale_steps(nb: Notebook) -> list[Cell]:
    """Cells that start (or continue, when tagged with the same name) a Kale step."""
    return [c for c in nb.cells if _step_tag(c) and not _skipped(c)]


def kale_name(nb: Notebook) -> str:
    """Kale's ``kubeflow_notebook.pipeline_name`` metadata, else the notebook's file name."""
    meta = nb.metadata.get("kubeflow_notebook") or {}
    raw = str(meta.get("pipeline_name") or nb.name)
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "-", raw).strip("-._") or "notebook"
    return name if name[0].isalnum() else f"p{name}"


@dataclass
class _Step:
    name: str
    cells: list[Cell] = field(default_factory=list)
    prev: list[str] = field(default_factory=list)
    inputs: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> ("step", producer) | ("param", name)
    outputs: set[str] = field(default_factory=set)

    @property
    def reads(self) -> set[str]:
        return {n for c in self.cells for s in c.statements if s.kind != "magic" for n in s.uses_now | s.uses_later}

    @property
    def assigns(self) -> set[str]:
        return {n for c in self.cells for s in c.statements if s.kind not in ("magic", "import") for n in s.defines}

    @property
    def func(self) -> str:
        return "_kale_step_" + re.sub(r"\W", "_", self.name)


def _parameters(cell: Cell) -> dict[str, object]:
    params: dict[str, object] = {}
    for node in ast.parse(cell.code).body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        try:
            if not isinstance(target, ast.Name):
                raise ValueError
            params[target.id] = ast.literal_eval(node.value)  # type: ignore[union-attr]
        except ValueError:
            raise ExportError(f"{cell.label.capitalize()} (pipeline-parameters) has `{ast.unparse(node)[:60]}`",
                              "Kale parameter cells may only assign literal values to names.",
                              "Write NAME = value lines (numbers, strings, booleans, lists, dicts).",
                              cell=cell.number) from None
    return params


def _group(nb: Notebook) -> tuple[list[Cell], dict[str, object], dict[str, _Step], list[str]]:
    globals_cells: list[Cell] = []
    params: dict[str, object] = {}
    steps: dict[str, _Step] = {}
    notes: list[str] = []
    current: _Step | None = None
    for cell in nb.cells:
        if _skipped(cell):
            notes.append(f"{cell.label}: skipped (tagged skip)")
            continue
        if cell.tags & set(GLOBAL_TAGS):
            globals_cells.append(cell)
        elif PARAMS_TAG in cell.tags:
            params.update(_parameters(cell))
        elif _step_tag(cell):
            name = _step_tag(cell)
            current = steps.setdefault(name, _Step(name))
            current.cells.append(cell)
        elif cell.tags & set(_IGNORED):
            notes.append(f"{cell.label}: Kale pipeline-metrics cell not mapped (log metrics with Output[Metrics])")
            continue
        elif current is not None:
            current.cells.append(cell)
        else:
            notes.append(f"{cell.label}: skipped (untagged cell before the first Kale step)")
            continue
        if current is not None and cell in current.cells:
            for tag in sorted(cell.tags):
                if tag.startswith("prev:") and tag[5:] not in current.prev:
                    current.prev.append(tag[5:])
    return globals_cells, params, steps, notes


def _order(steps: dict[str, _Step]) -> list[_Step]:
    for s in steps.values():
        for p in s.prev:
            if p not in steps:
                raise ExportError(f"{s.cells[0].label.capitalize()} (step '{s.name}') has tag prev:{p}, but no "
                                  f"cell is tagged step:{p}", f"Steps are: {', '.join(steps)}.",
                                  "Fix the prev: tag or tag the producing cell step:NAME.", cell=s.cells[0].number)
    order: list[_Step] = []
    done: set[str] = set()
    while len(order) < len(steps):
        ready = [s for s in steps.values() if s.name not in done and set(s.prev) <= done]
        if not ready:
            left = [s.name for s in steps.values() if s.name not in done]
            raise ExportError(f"The Kale steps {', '.join(left)} wait on each other (a prev: cycle)",
                              hint="Remove one prev: tag that closes the loop.")
        order.append(ready[0])
        done.add(ready[0].name)
    return order


def _wire(order: list[_Step], params: dict[str, object], globals_cells: list[Cell]) -> None:
    """Find each step's inputs (from upstream steps or parameters) and outputs."""
    defined = {n for c in globals_cells for s in c.statements for n in s.defines}
    by_name = {s.name: s for s in order}
    position = {s.name: i for i, s in enumerate(order)}
    for step in order:
        ancestors: set[str] = set()
        todo = list(step.prev)
        while todo:
            a = todo.pop()
            if a not in ancestors:
                ancestors.add(a)
                todo.extend(by_name[a].prev)
        for name in sorted(step.reads - KNOWN_NAMES):
            producers = sorted((a for a in ancestors if name in by_name[a].assigns), key=position.__getitem__)
            if producers:
                step.inputs[name] = ("step", producers[-1])
                by_name[producers[-1]].outputs.add(name)
            elif name in params:
                step.inputs[name] = ("param", name)
            elif name not in defined and name not in step.assigns:
                user = next(c for c in step.cells for s in c.statements
                            if name in s.uses_now | s.uses_later)
                raise ExportError(
                    f"{user.label.capitalize()} (step '{step.name}') reads '{name}', but no upstream step, "
                    "pipeline-parameters, imports or functions cell defines it",
                    f"Upstream steps (via prev:) are: {', '.join(sorted(ancestors)) or 'none'}.",
                    f"Add prev:<step that assigns {name}> to the step, or define '{name}' in an imports/functions "
                    "cell.", cell=user.number)


def _step_source(step: _Step, params: dict[str, object]) -> str:
    args = [n if kind == "step" else f"{n}: {type(params[n]).__name__}"
            for n, (kind, _) in sorted(step.inputs.items())]
    outs = sorted(step.outputs)
    cls = f"_Kale_{step.func}_outputs"
    head = "import typing as _typing\nimport nbpipe as _nbpipe\n"
    if outs:
        head += f"class {cls}(_typing.NamedTuple):\n" + "".join(f"    {o}: _typing.Any\n" for o in outs)
    head += (f"@_nbpipe.component(name={step.name!r})\n"
             f"def {step.func}({', '.join(args)}) -> {cls if outs else 'None'}:\n    pass\n")
    module = ast.parse(head)
    func = module.body[-1]
    assert isinstance(func, ast.FunctionDef)
    body: list[ast.stmt] = []
    for cell in step.cells:
        nodes = ast.parse(cell.code).body
        body += [node for node, s in zip(nodes, cell.statements) if s.kind != "magic"]
    if outs:
        body += ast.parse(f"return {cls}({', '.join(outs)})").body
    func.body = body or [ast.Pass()]
    return ast.unparse(module) + "\n"


def _pipeline_source(name: str, order: list[_Step], params: dict[str, object]) -> str:
    sig = ", ".join(f"{n}: {type(v).__name__} = {v!r}" for n, v in params.items())
    lines = [f"@_nbpipe.pipeline(name={name!r})", f"def {PIPELINE_VAR}({sig}):"]
    for step in order:
        binds = []
        for n, (kind, src) in sorted(step.inputs.items()):
            binds.append(f"{n}=_s_{_ident(src)}.outputs[{n!r}]" if kind == "step" else f"{n}={src}")
        lines.append(f"    _s_{_ident(step.name)} = {step.func}({', '.join(binds)})")
        data = {src for kind, src in step.inputs.values() if kind == "step"}
        after = [f"_s_{_ident(p)}" for p in step.prev if p not in data]
        if after:
            lines.append(f"    _s_{_ident(step.name)}.after({', '.join(after)})")
    return "import nbpipe as _nbpipe\n" + "\n".join(lines) + "\n"


def _ident(name: str) -> str:
    return re.sub(r"\W", "_", name)


def kale_program(nb: Notebook) -> Program:
    """The program that builds the Kale pipeline of ``nb`` (see the module docstring)."""
    from .notebook import Chunk, Program

    globals_cells, params, steps, notes = _group(nb)
    order = _order(steps)
    _wire(order, params, globals_cells)
    chunks = []
    for cell in globals_cells:
        keep = tuple(s.index for s in cell.statements if s.kind != "magic")
        chunks.append(Chunk(cell.number, f"<nbpipe-cell-{cell.number}>", cell.code,
                            None if len(keep) == len(cell.statements) else keep))
    for step in order:
        chunks.append(Chunk(step.cells[0].number, f"<nbpipe-kale-step-{step.name}>", _step_source(step, params)))
    name = kale_name(nb)
    chunks.append(Chunk(order[-1].cells[-1].number, "<nbpipe-kale-pipeline>", _pipeline_source(name, order, params)))
    for cell in nb.cells:
        notes += [f"{cell.label}: dropped IPython magic `{s.text}`" for s in cell.statements if s.kind == "magic"]
    return Program(nb.path.name, PIPELINE_VAR, tuple(chunks), tuple(notes))
