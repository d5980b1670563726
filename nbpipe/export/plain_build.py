"""Build process side of plain ``%%component`` cells: components made from cell code, never run.

:mod:`nbpipe.export.plain_cells` (parent side) decides which cells are steps, which names come
from earlier steps (``wired``) and the narrowed outputs. Here, in the fresh build process, the
magic's own code turns each cell into a component as ``%%component`` does in a kernel
(:func:`kernel_magics.cell_component.build_function`, the magic's option parser), except that
the cell body is compiled into the step function and not executed; then
:func:`kernel_magics.cell_component.infer_pipeline` wires them exactly as ``%nbpipe run`` does.

Non-goals: output types (the kernel reads them off the values; here they are ``Any``).
"""

from __future__ import annotations

from collections import ChainMap
from typing import Any

from ..sourcemap import name_cell
from .cells import analyze_cell, classify_reads
from .errors import where


class _StepOutput:
    """Stands in for a value an earlier step makes, so the cell's reads sort as in the kernel."""


def _failed(cell: int, message: str, hint: str = "") -> Exception:
    from .builder import _Failed

    return _Failed(f"{where(cell).capitalize()}: {message}", hint=hint, cell=cell)


def make_component(chunk: dict[str, Any], namespace: dict[str, Any]) -> Any:
    """The :class:`~kernel_magics.cell_component.CellComponent` of a plain cell chunk (see module doc)."""
    from IPython.core.error import UsageError
    from IPython.core.magic_arguments import parse_argstring

    from kernel_magics.cell_component import CellComponent, build_function, identifier, input_params
    from kernel_magics.magics import NbpipeMagics

    from ..component import Component
    from ..errors import NbpipeError

    cell, plain, source = chunk["cell"], chunk["plain"], chunk["source"]
    try:
        args = parse_argstring(NbpipeMagics.component, plain["line"])
        options = NbpipeMagics._options(args)
    except (UsageError, SystemExit) as exc:
        raise _failed(cell, f"%%component {plain['line']}: {exc}", "Fix the magic's options.") from None
    name = plain["name"]
    if not name.isidentifier():
        raise _failed(cell, f"component name {name!r} is not a Python identifier",
                      f"Try %%component {name.replace('-', '_')}.")
    flow = analyze_cell(source)
    view = ChainMap({n: _StepOutput() for n in plain["wired"]}, namespace)
    reads = classify_reads(flow.reads, view, hidden=("get_ipython",))
    if reads.missing:
        raise _failed(cell, f"the cell reads '{reads.missing[0]}', which no earlier cell defines",
                      "Define it in a cell above, or in this cell.")
    inputs = list(plain["inputs"]) if plain["inputs"] is not None else list(reads.data)
    for n in inputs:
        if n not in flow.reads:
            raise _failed(cell, f"--inputs lists '{n}', which the cell never reads before assigning it",
                          "List only the notebook variables the cell uses.")
    outputs = list(plain["outputs"])
    for n in outputs:
        if n not in flow.assigned:
            raise _failed(cell, f"--outputs lists '{n}', which the cell never assigns",
                          f"List names the cell assigns ({', '.join(flow.assigned) or 'none'}).")
    if name in flow.assigned or name in inputs:
        raise _failed(cell, f"component name '{name}' is also a variable of the cell",
                      f"Pick another name, e.g. %%component make_{name}.")
    params = input_params(inputs, outputs)
    try:
        func = build_function(identifier(name), source, list(params.values()), outputs, namespace,
                              rename={p: v for v, p in params.items()})
        name_cell(func.__code__.co_filename, cell)  # its steps' tracebacks say Cell In[<cell>]
        comp = Component(func, name=name, options=options, source=plain["raw"])
    except NbpipeError as exc:
        raise _failed(cell, exc.headline, exc.hint) from None
    namespace[name] = comp  # as the magic pushes it: later cells may use the component
    return CellComponent(f"cell:{cell}", comp, tuple(inputs), tuple(outputs))


def infer(name: str, cells: list[tuple[int, Any]], namespace: dict[str, Any]) -> Any:
    """The pipeline of the plain cells ``[(cell number, CellComponent)]``, as ``%nbpipe run`` infers it."""
    from kernel_magics.cell_component import infer_pipeline

    from ..errors import NbpipeError

    try:
        return infer_pipeline(name, [c for _, c in cells], namespace,
                              description="Inferred from the notebook's plain %%component cells.")
    except NbpipeError as exc:
        culprit = next((n for n, c in cells if f"'{c.component.name}'" in exc.headline), None)
        if culprit is None:
            raise
        raise _failed(culprit, exc.headline, exc.hint) from None
