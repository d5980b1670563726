"""Read a notebook and choose the code that defines its pipeline: the cell selection of export.

:func:`read_notebook` parses every code cell (IPython magics turned into Python first, as the
kernel does). :func:`select_program` starts from the chosen pipeline (plus cells tagged
``nbpipe:include``) and follows the names each kept statement uses back to the statements that
define them: imports, components, helper functions and classes, constants. Everything else —
``model.fit(...)``, loops, data loading, plots, other pipelines — stays out, statement by
statement, so a cell that mixes a helper ``def`` with heavy work keeps only the ``def``.

Tags: ``nbpipe:skip`` (or Kale's ``skip``) leaves a cell out unread; ``nbpipe:include`` keeps a
whole cell and runs it during export. A notebook with Kale ``step:NAME`` tags also offers a
Kale pipeline (see :mod:`nbpipe.export.kale`).

Non-goals: running anything (see :mod:`nbpipe.export.builder`); deciding what is expensive by
measuring it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ExportError, where
from .plain_cells import INFERRED, plain_cells, select_plain
from .statements import Statement, analyze_code, analyze_magic_cell

NO_PIPELINE_DETAIL = ("Export packages one pipeline, and no cell defines one (no %%component plain cells, "
                      "@nbpipe.pipeline function, %%pipeline cell or Kale step:NAME tags).")
NO_PIPELINE_HINT = ("Put %%component on the cells that are steps (inputs and outputs come from the variables "
                    "they share), or add a cell with `@nbpipe.pipeline` on a function that calls your components.")
SKIP_TAGS = frozenset({"nbpipe:skip", "skip"})
INCLUDE_TAG = "nbpipe:include"
MAGIC_CELLS = ("component", "pipeline")


@dataclass(frozen=True)
class Cell:
    """A code cell: ``number`` is its 1-based position in the notebook (markdown cells count)."""

    number: int
    execution_count: int | None
    raw: str
    code: str
    tags: frozenset[str]
    cell_magic: str
    statements: tuple[Statement, ...]

    @property
    def label(self) -> str:
        return where(self.number, self.execution_count)


@dataclass(frozen=True)
class Notebook:
    """The code cells of a notebook file, analyzed."""

    path: Path
    cells: tuple[Cell, ...]
    metadata: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.stem

    def cell(self, number: int) -> Cell:
        return next(c for c in self.cells if c.number == number)


@dataclass(frozen=True)
class Chunk:
    """Code the builder runs: a cell's code (``keep``: which top-level statements; None = all)."""

    cell: int
    filename: str
    source: str
    keep: tuple[int, ...] | None = None
    magic: bool = False  # a %%component/%%pipeline cell, run through IPython with nbpipe's magics
    plain: dict[str, Any] | None = None  # a plain %%component cell: made into a component, never run

    def to_json(self) -> dict[str, Any]:
        data = {"cell": self.cell, "filename": self.filename, "source": self.source, "magic": self.magic,
                "keep": None if self.keep is None else list(self.keep)}
        if self.plain is not None:
            data["plain"] = self.plain
        return data


@dataclass(frozen=True)
class Program:
    """What the fresh process runs: chunks in order, then packages the variable ``pipeline``."""

    notebook: str
    pipeline: str
    chunks: tuple[Chunk, ...]
    notes: tuple[str, ...] = ()
    magics: bool = False  # needs an IPython shell with nbpipe's magics loaded
    inferred: bool = False  # the pipeline is inferred from the plain %%component cells

    def to_json(self) -> dict[str, Any]:
        data = {"notebook": self.notebook, "pipeline": self.pipeline, "magics": self.magics,
                "chunks": [c.to_json() for c in self.chunks], "notes": list(self.notes)}
        if self.inferred:
            data["inferred"] = True
        return data


# Lines IPython would rewrite: magics, shell escapes, help queries. Others skip the (slow) import.
_IPYTHON_SYNTAX = re.compile(r"^\s*[%!]|=\s*[%!]|\?\s*$", re.MULTILINE)


def _transform(raw: str) -> str:
    """The cell as the kernel runs it: IPython syntax turned into Python calls."""
    if not _IPYTHON_SYNTAX.search(raw):
        return raw
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(raw)


def read_notebook(path: str | os.PathLike[str], content: dict[str, Any] | None = None) -> Notebook:
    """Read and analyze a notebook file with nbformat.

    ``content`` (the notebook's JSON, e.g. the Lab editor's unsaved model) is analyzed instead
    of the file, which then need not exist: ``path`` only names it and its folder.

    Raises
    ------
    ExportError
        The file is missing or not a notebook, or a cell has a syntax error.
    """
    import nbformat

    p = Path(path)
    try:
        if content is not None:
            nb = nbformat.reads(json.dumps(content), as_version=4)
        else:
            nb = nbformat.read(os.fspath(p), as_version=4)
    except FileNotFoundError:
        raise ExportError(f"No notebook at {p}", hint="Check the path.") from None
    except (OSError, ValueError, json.JSONDecodeError) as exc:  # nbformat raises NotJSONError (a ValueError)
        raise ExportError(f"{p} is not a readable notebook", str(exc),
                          "Open and save it in Jupyter, or check it is a .ipynb file.") from None
    cells = []
    for number, nbcell in enumerate(nb.cells, start=1):
        if nbcell.cell_type != "code":
            continue
        tags = frozenset(str(t) for t in nbcell.get("metadata", {}).get("tags", []))
        raw = nbcell.source
        count = nbcell.get("execution_count")
        first = raw.lstrip().split("\n", 1)[0]
        cell_magic = first[2:].split()[0] if first.startswith("%%") and first[2:].split() else ""
        code = "" if tags & SKIP_TAGS else _transform(raw)
        statements: tuple[Statement, ...] = ()
        if code:
            try:
                statements = ((analyze_magic_cell(raw, number),) if cell_magic in MAGIC_CELLS
                              else tuple(analyze_code(code, number)))
            except SyntaxError as exc:
                # a cell magic's body starts after its %%line; the editor counts that line
                line = (exc.lineno or 0) + (raw[: raw.index(first)].count("\n") + 1 if cell_magic in MAGIC_CELLS else 0)
                raise ExportError(
                    f"{where(number, count)} has a syntax error: {exc.msg} (line {line})",
                    hint=f"Fix the code in {where(number, count)}, or tag the cell nbpipe:skip if export "
                    "should ignore it.", cell=number) from None
        cells.append(Cell(number, count, raw, code, tags, cell_magic, statements))
    return Notebook(p, tuple(cells), dict(nb.metadata))


# ---------------------------------------------------------------- pipelines


@dataclass(frozen=True)
class Candidate:
    """A pipeline the notebook defines: ``names`` select it; ``statement`` is None for Kale and for
    the pipeline inferred from plain ``%%component`` cells (``kind`` says which)."""

    names: tuple[str, ...]
    cell: int
    statement: Statement | None = None
    kind: str = "pipeline"  # "pipeline" (@pipeline, %%pipeline), "kale", "cells" (inferred)

    @property
    def title(self) -> str:
        return self.names[0]


def pipelines_of(nb: Notebook) -> list[Candidate]:
    """The pipelines a notebook defines (the last definition of each name wins)."""
    from .kale import kale_name, kale_steps

    found: dict[str, Candidate] = {}
    for cell in nb.cells:
        for s in cell.statements:
            if s.role == "pipeline":
                found[s.pipeline_names[0]] = Candidate(s.pipeline_names, cell.number, s)
    result = list(found.values())
    if kale_steps(nb):
        result.append(Candidate((kale_name(nb),), kale_steps(nb)[0].number, kind="kale"))
    plain = plain_cells(nb)
    if plain:
        names = tuple(dict.fromkeys((nb.name, INFERRED)))
        result.append(Candidate(names, plain[0].cell.number, kind="cells"))
    return result


def choose_pipeline(nb: Notebook, pipeline: str | None) -> Candidate:
    """The candidate named ``pipeline``, or the only one; else an :class:`ExportError` listing them."""
    found = pipelines_of(nb)
    listing = ", ".join(f"'{c.title}' ({where(c.cell)})" for c in found)
    if not found:
        raise ExportError(
            f"No pipeline in notebook {nb.path.name}",
            NO_PIPELINE_DETAIL, NO_PIPELINE_HINT)
    if pipeline is None:
        cells = [c for c in found if c.kind == "cells"]
        if cells:  # as `%nbpipe run` with no name: the plain %%component cells make the pipeline
            return cells[0]
        if len(found) > 1:
            raise ExportError(f"Notebook {nb.path.name} defines {len(found)} pipelines: {listing}",
                              hint=f"Choose one with --pipeline NAME (or pipeline='{found[0].title}').")
        return found[0]
    for c in reversed(found):
        if pipeline in c.names:
            return c
    raise ExportError(f"Notebook {nb.path.name} has no pipeline named '{pipeline}'",
                      f"It defines: {listing or 'none'}.", "Pass one of those names.")


# ---------------------------------------------------------------- selection


@dataclass
class _Selection:
    nb: Notebook
    keep: dict[int, set[int]] = field(default_factory=dict)
    seen: set[tuple[tuple[int, int], tuple[int, int]]] = field(default_factory=set)
    defs: dict[str, list[Statement]] = field(default_factory=dict)
    stars: list[Statement] = field(default_factory=list)

    def __post_init__(self) -> None:
        for cell in self.nb.cells:
            for s in cell.statements:
                for name in s.defines:
                    self.defs.setdefault(name, []).append(s)
                if s.star_import:
                    self.stars.append(s)

    def included(self, s: Statement) -> bool:
        return INCLUDE_TAG in self.nb.cell(s.cell).tags

    def resolve(self, name: str, user: Statement, before: tuple[int, int], inclusive: bool) -> Statement:
        """The statement whose definition of ``name`` is live at ``before``."""
        cands = [d for d in self.defs.get(name, []) if d.position < before or (inclusive and d.position == before)]
        label = self.nb.cell(user.cell).label
        if not cands:
            stars = [s for s in self.stars if s.position < before]
            if stars:
                return stars[-1]
            later = self.defs.get(name)
            if later:
                first = self.nb.cell(later[0].cell).label
                raise ExportError(
                    f"{label.capitalize()} uses '{name}', but it is first defined in {first}, below it",
                    f"(in `{user.text}`)", f"Move {first} above {label}: export runs the kept cells top "
                    "to bottom, like Run All.", cell=user.cell)
            raise ExportError(
                f"{label.capitalize()} uses '{name}', but no cell of the notebook defines it",
                f"(in `{user.text}`)", f"Define '{name}' in a cell above (an import, a function or a "
                "constant), or pass it to the component as an input.", cell=user.cell)
        d = cands[-1]
        if d.kind == "magic":
            raise ExportError(f"{label.capitalize()} uses '{name}', which {self.nb.cell(d.cell).label} gets from "
                              f"an IPython magic (`{d.text}`)", "Export does not run magics.",
                              f"Compute '{name}' inside the component instead.", cell=user.cell)
        if d.kind == "compute" and not self.included(d):
            dl = self.nb.cell(d.cell).label
            raise ExportError(
                f"{label.capitalize()} uses '{name}', which {dl} computes by running code (`{d.text}`)",
                f"Export never runs compute cells, so '{name}' would not exist in the package.",
                f"Create '{name}' inside the component (or pass it in as an input), make it a plain constant, "
                f"or tag {dl} with nbpipe:include to run that cell during export.", cell=user.cell)
        return d

    def visit(self, start: Statement) -> None:
        stack = [(start, start.position)]
        while stack:
            s, horizon = stack.pop()
            if (s.position, horizon) in self.seen:
                continue
            self.seen.add((s.position, horizon))
            self.keep.setdefault(s.cell, set()).add(s.index)
            # A component is pickled, and a pipeline traced, when its statement runs: that fixes
            # which definitions the names inside its functions see.
            own = s.position if s.role else horizon
            for name in sorted(s.uses_now):
                stack.append((self.resolve(name, s, s.position, False), own))
            for name in sorted(s.uses_later):
                stack.append((self.resolve(name, s, max(own, s.position), True), own))


def select_program(nb: Notebook, pipeline: str | None = None) -> Program:
    """Choose the code that defines ``pipeline`` (see the module docstring).

    Raises
    ------
    ExportError
        No or several pipelines, a name nothing defines, a needed value that only compute makes.
    """
    chosen = choose_pipeline(nb, pipeline)
    if chosen.kind == "kale":
        from .kale import kale_program

        return kale_program(nb)
    sel = _Selection(nb)
    roots = [s for c in nb.cells if INCLUDE_TAG in c.tags for s in c.statements if s.kind != "magic"]
    if chosen.statement is not None:
        roots.insert(0, chosen.statement)
    for root in roots:
        sel.visit(root)
    plain = select_plain(nb, sel) if chosen.kind == "cells" else {}
    chunks = []
    for cell in nb.cells:
        if cell.number in plain:
            body = _transform(cell.raw.lstrip().partition("\n")[2])
            chunks.append(Chunk(cell.number, f"<nbpipe-cell-{cell.number}>", body, plain=plain[cell.number]))
            continue
        kept = sel.keep.get(cell.number)
        if not kept:
            continue
        wanted = {s.index for s in cell.statements if s.kind != "magic"} if INCLUDE_TAG in cell.tags else kept
        everything = wanted == {s.index for s in cell.statements}
        if cell.cell_magic in MAGIC_CELLS:
            chunks.append(Chunk(cell.number, f"<nbpipe-cell-{cell.number}>", cell.raw, magic=True))
            continue
        chunks.append(Chunk(cell.number, f"<nbpipe-cell-{cell.number}>", cell.code,
                            None if everything else tuple(sorted(wanted))))
    name = chosen.title if chosen.statement is None else chosen.statement.pipeline_names[0]
    return Program(nb.path.name, name, tuple(chunks), tuple(_notes(nb, sel.keep, set(plain))),
                   magics=any(c.magic for c in chunks), inferred=chosen.kind == "cells")


def _notes(nb: Notebook, keep: dict[int, set[int]], steps: frozenset[int] | set[int] = frozenset()) -> list[str]:
    notes = []
    for cell in nb.cells:
        if cell.number in steps:
            notes.append(f"{cell.label}: a step (plain %%component cell; its code runs only in the step)")
            continue
        if cell.tags & SKIP_TAGS:
            notes.append(f"{cell.label}: skipped (tagged {sorted(cell.tags & SKIP_TAGS)[0]})")
            continue
        for s in cell.statements:
            if s.kind == "magic":
                notes.append(f"{cell.label}: dropped IPython magic `{s.text}` (not run during export)")
        kept = keep.get(cell.number, set())
        left = [s for s in cell.statements if s.index not in kept and s.kind == "compute"]
        if left and INCLUDE_TAG not in cell.tags:
            what = "skipped" if not kept else "kept its definitions, skipped"
            notes.append(f"{cell.label}: {what} compute `{left[0].text}`" + (f" and {len(left) - 1} more"
                                                                                if len(left) > 1 else ""))
    return notes
