"""The pipeline a notebook's plain ``%%component`` cells make, found without running them.

``%nbpipe run`` with no pipeline named infers one from the plain-cell components the kernel has
seen (:func:`kernel_magics.cell_component.infer_pipeline`). Export does the same from the saved
notebook, with the same cell analysis (:mod:`nbpipe.export.cells`) and, in the build process,
the same functions that make the components and the pipeline — but without running the cells:

* A plain cell is a ``%%component`` cell that is not just a ``def`` (see
  :attr:`~nbpipe.export.cells.CellFlow.is_function_cell`). Its step is named as in the magic
  (``%%component NAME``), or ``cell_N`` after its position in the notebook (the kernel, which
  has no positions, uses the execution count instead).
* Its inputs are the names it reads that earlier cells define as data: outputs of earlier plain
  cells (wired, step to step), constants such as ``n = 1000`` (pipeline parameters, default the
  constant; plain JSON only, as in the kernel), and values of cells tagged ``nbpipe:include``.
  Imports, functions, classes and components it reads are code: kept and captured.
* Its outputs are the names it assigns (not ``_private``) that a later cell reads — the export
  sees every cell, so it narrows what the kernel cannot. A cell no later cell reads from keeps
  all its outputs, so the last step's results stay visible. ``--inputs/--outputs`` override.
* A name that only a compute cell without ``%%component`` makes is an error naming both cells
  and the fix: mark that cell ``%%component`` (a step) or tag it ``nbpipe:include``.

Non-goals: running anything (the build process makes the components, see
:mod:`nbpipe.export.plain_build`); knowing output types (the kernel takes them from the values;
export records ``Any``).
"""

from __future__ import annotations

import argparse
import builtins
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .cells import CellFlow, analyze_cell
from .errors import ExportError

if TYPE_CHECKING:
    from .notebook import Cell, Notebook, _Selection

INFERRED = "notebook"  # the name `%nbpipe run` gives the pipeline it infers; export accepts it too


@dataclass(frozen=True)
class PlainCell:
    """A plain ``%%component`` cell: its step name, magic line, body and cell flow."""

    cell: Cell
    name: str
    line: str
    body_raw: str
    body: str
    flow: CellFlow
    inputs: tuple[str, ...] | None  # --inputs, if given
    outputs: tuple[str, ...]  # --outputs, or the defaults (narrowed later)
    explicit_outputs: bool

    def to_json(self, wired: list[str], outputs: list[str]) -> dict[str, Any]:
        return {"name": self.name, "line": self.line, "raw": self.body_raw, "wired": wired,
                "outputs": outputs, "inputs": None if self.inputs is None else list(self.inputs)}


def _names(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(n.strip() for n in value.replace(" ", ",").split(",") if n.strip())


def _magic_args(line: str) -> argparse.Namespace:
    """NAME, --inputs and --outputs of a ``%%component`` line (the build process checks the rest)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("name", nargs="?")
    parser.add_argument("--inputs")
    parser.add_argument("--outputs")
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    args, _rest = parser.parse_known_args(words)
    if args.name is not None and args.name.startswith("-"):
        args.name = None
    return args


def plain_cell(cell: Cell) -> PlainCell | None:
    """The plain cell ``cell`` is, or None (not ``%%component``, or a ``def`` cell)."""
    from .notebook import SKIP_TAGS, _transform

    if cell.cell_magic != "component" or cell.tags & SKIP_TAGS:
        return None
    first, _, body_raw = cell.raw.lstrip().partition("\n")
    body = _transform(body_raw)
    try:
        flow = analyze_cell(body)
    except SyntaxError as exc:  # read_notebook reports syntax errors first; this is a safety net
        raise ExportError(f"{cell.label.capitalize()} has a syntax error: {exc.msg}", cell=cell.number) from None
    if flow.is_function_cell:
        return None
    line = first.strip()[len("%%component"):].strip()
    args = _magic_args(line)
    outputs = _names(args.outputs)
    return PlainCell(cell, args.name or f"cell_{cell.number}", line, body_raw, body, flow, _names(args.inputs),
                     outputs if outputs is not None else flow.outputs, outputs is not None)


def plain_cells(nb: Notebook) -> list[PlainCell]:
    """The notebook's plain ``%%component`` cells, in cell order."""
    return [p for p in (plain_cell(c) for c in nb.cells) if p is not None]


def _reads_of(cell: Cell) -> set[str]:
    """What a cell reads (a ``%%component``/``%%pipeline`` cell: its body); unparsable cells read nothing."""
    from .notebook import MAGIC_CELLS, _transform

    code = cell.code
    if cell.cell_magic in MAGIC_CELLS:
        code = _transform(cell.raw.lstrip().partition("\n")[2])
    try:
        return set(analyze_cell(code).reads) if code else set()
    except SyntaxError:
        return set()


def _check(p: PlainCell) -> None:
    label = p.cell.label.capitalize()
    if not p.flow.functions and not p.flow.has_work:
        raise ExportError(f"{label} is a %%component cell that only imports or sets constants, so it makes no step",
                          hint="Write the def that is the component, or drop %%component (plain JSON constants "
                          "become pipeline parameters).", cell=p.cell.number)
    if p.flow.uses_ipython:
        raise ExportError(f"{label} is a %%component cell that uses magics or !commands, which only run in the "
                          "notebook, not in a step", hint="Move them to another cell.", cell=p.cell.number)
    if p.flow.has_await:
        raise ExportError(f"{label} is a %%component cell with top-level await, which a step cannot run",
                          hint="Call asyncio.run(...) inside the cell instead.", cell=p.cell.number)


def select_plain(nb: Notebook, sel: _Selection) -> dict[int, dict[str, Any]]:
    """Wire the plain cells and keep (in ``sel``) the definitions they use; the chunk data per cell.

    Raises
    ------
    ExportError
        A plain cell reads a name that only a compute cell makes, that nothing defines, or that is
        defined below it; a plain cell that makes no step or uses magics.
    """
    cells = plain_cells(nb)
    if not cells:
        raise ExportError(f"Notebook {nb.path.name} has no plain %%component cells", cell=None)
    made: dict[str, tuple[int, int]] = {}  # output name -> position of the latest plain cell making it
    kept_in: dict[str, PlainCell] = {}  # a name a plain cell assigns but does not output -> that cell
    result: dict[int, dict[str, Any]] = {}
    for p in cells:
        _check(p)
        number = p.cell.number
        here = (number, 0)
        user = p.cell.statements[0]
        wired: list[str] = []
        for name in p.inputs if p.inputs is not None else p.flow.reads:
            defs = [d for d in sel.defs.get(name, []) if d.position < here and not _is_plain(nb, d.cell)]
            if name in made and (not defs or made[name] > defs[-1].position):
                wired.append(name)
                continue
            if not defs and hasattr(builtins, name) or name == "get_ipython":
                continue
            hidden = kept_in.get(name)
            if hidden is not None and (not defs or defs[-1].position < (hidden.cell.number, 0)):
                raise _private_error(name, hidden, p)
            if defs and defs[-1].kind == "compute" and not sel.included(defs[-1]):
                raise _compute_error(nb, name, defs[-1], p)
            sel.visit(sel.resolve(name, user, here, False))
        later: set[str] = set()
        for c in nb.cells:
            if c.number > number:
                later |= _reads_of(c)
        outputs = list(p.outputs)
        if not p.explicit_outputs:
            outputs = [o for o in p.outputs if o in later] or list(p.outputs)
        for o in outputs:
            made[o] = here
            kept_in.pop(o, None)
        for o in p.flow.assigned:
            if o not in outputs:
                kept_in[o] = p
                made.pop(o, None)
        result[number] = p.to_json(wired, outputs)
    return result


def _is_plain(nb: Notebook, number: int) -> bool:
    return plain_cell(nb.cell(number)) is not None


def _compute_error(nb: Notebook, name: str, d: Any, p: PlainCell) -> ExportError:
    """A plain cell reads a value that only a compute cell (no ``%%component``) makes."""
    dl = nb.cell(d.cell).label
    return ExportError(
        f"{p.cell.label.capitalize()} (step '{p.name}') reads '{name}', which {dl} computes by running code "
        f"(`{d.text}`) without %%component",
        f"Export never runs such cells, so '{name}' would not exist when the pipeline runs.",
        f"Put %%component on {dl} so it becomes a step whose output '{name}' feeds '{p.name}', or tag {dl} "
        f"nbpipe:include to run it during export ('{name}' must then be a plain JSON value: it becomes a "
        "pipeline parameter).", cell=p.cell.number)


def _private_error(name: str, maker: PlainCell, p: PlainCell) -> ExportError:
    """A plain cell reads a name an earlier step assigns but keeps to itself."""
    ml = maker.cell.label
    why = "it starts with _" if name.startswith("_") else "--outputs leaves it out"
    return ExportError(
        f"{p.cell.label.capitalize()} (step '{p.name}') reads '{name}', which step '{maker.name}' ({ml}) assigns "
        f"but does not output ({why})",
        hint=f"Rename it without the leading underscore, or list it in --outputs of {ml}, so step "
        f"'{maker.name}' passes it on.", cell=p.cell.number)
