"""Static analysis of notebook cells: what a cell reads, what it assigns, what it defines.

These are pure functions over cell source (and, for :func:`classify_reads`, a namespace
mapping), so the ``%%component`` magic, the Lab panel and the notebook exporter can share them.

The rules, made for notebook cells rather than for Python in general:

* A cell *reads* a name when it loads it before the cell binds it (statement order; inside
  loops and branches too). Names read inside a function or class the cell defines count when
  the cell binds them nowhere, since those are looked up when the function is called.
* A cell *assigns* the names bound by assignments, ``for``/``with`` targets, walrus and
  ``except ... as`` at cell level. Imports and ``def``/``class`` are listed apart: they are
  code, not data a later cell would want passed as a value.
* The default *outputs* of a plain cell are the names it assigns that are not private
  (``_x``). The kernel cannot see later cells, so this errs on the side of more outputs;
  ``--outputs a,b`` narrows it. :func:`later_reads` narrows it when the notebook is known.

Non-goals: full Python scoping (``global``/``nonlocal`` games, ``exec``, star imports,
``del`` inside branches) or type inference. Nothing here runs user code.
"""

from __future__ import annotations

import ast
import builtins
import functools
import symtable
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CellFlow:
    """What one cell reads and binds, in first-seen order.

    Attributes
    ----------
    reads : names loaded before the cell binds them (candidate inputs).
    assigned : data names bound by assignments (candidate outputs).
    imported : names bound by ``import`` statements.
    functions : names of top-level ``def`` / ``async def`` statements.
    classes : names of top-level ``class`` statements.
    has_work : True if the cell does something besides imports, defs, classes and literal constants.
    uses_ipython : True if the (transformed) cell calls ``get_ipython()``, i.e. it holds magics or ``!cmd``.
    has_await : True if the cell uses top-level ``await`` / ``async for`` / ``async with``.
    """

    reads: tuple[str, ...] = ()
    assigned: tuple[str, ...] = ()
    imported: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    has_work: bool = False
    uses_ipython: bool = False
    has_await: bool = False

    @property
    def outputs(self) -> tuple[str, ...]:
        """Default outputs: the assigned names that are not private (``_x``)."""
        return tuple(n for n in self.assigned if not n.startswith("_"))

    @property
    def is_function_cell(self) -> bool:
        """A cell that only defines functions (plus imports, classes and constants)."""
        return bool(self.functions) and not self.has_work


@dataclass
class _Flow:
    bound: set[str] = field(default_factory=set)
    reads: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    assigned: list[str] = field(default_factory=list)
    imported: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)

    def load(self, names: Iterable[str]) -> None:
        for n in names:
            if n not in self.bound and n not in self.reads:
                self.reads.append(n)

    def store(self, names: Iterable[str], into: list[str] | None = None) -> None:
        target = self.assigned if into is None else into
        for n in names:
            self.bound.add(n)
            if n not in target:
                target.append(n)


def _symbols(source: str, mode: str) -> tuple[list[str], list[str], list[str]]:
    """(loads at this level, stores at this level, free loads of nested scopes) of ``source``."""
    table = symtable.symtable(source, "<cell>", mode)
    loads, stores = [], []
    for sym in table.get_symbols():
        if sym.is_referenced():
            loads.append(sym.get_name())
        if sym.is_assigned() or sym.is_imported() or sym.is_namespace():
            stores.append(sym.get_name())
    nested: list[str] = []
    stack = list(table.get_children())
    while stack:
        child = stack.pop()
        for sym in child.get_symbols():
            if sym.is_global() and sym.is_referenced() and sym.get_name() not in nested:
                nested.append(sym.get_name())
        stack.extend(child.get_children())
    return loads, stores, nested


def _expr(flow: _Flow, node: ast.AST | None) -> None:
    if node is None:
        return
    loads, stores, nested = _symbols(ast.unparse(node), "eval")
    flow.load(loads)
    flow.load(nested)
    flow.store(stores)  # walrus


def _target(flow: _Flow, node: ast.AST) -> None:
    """Bind an assignment target; subscripts and attributes read their base instead."""
    if isinstance(node, ast.Name):
        flow.store([node.id])
    elif isinstance(node, (ast.Tuple, ast.List)):
        for elt in node.elts:
            _target(flow, elt)
    elif isinstance(node, ast.Starred):
        _target(flow, node.value)
    else:  # x[i] = v, x.a = v: reads x (and i); x counts as assigned, a new version of it
        _expr(flow, node)
        base = node
        while isinstance(base, (ast.Subscript, ast.Attribute)):
            base = base.value
        if isinstance(base, ast.Name):
            flow.store([base.id])


def _body(flow: _Flow, stmts: list[ast.stmt]) -> None:
    for s in stmts:
        _stmt(flow, s)


def _stmt(flow: _Flow, s: ast.stmt) -> None:
    if isinstance(s, ast.Assign):
        _expr(flow, s.value)
        for t in s.targets:
            _target(flow, t)
    elif isinstance(s, ast.AugAssign):
        _expr(flow, s.value)
        _expr(flow, s.target)  # x += 1 reads x first
        _target(flow, s.target)
    elif isinstance(s, ast.AnnAssign):
        _expr(flow, s.value)
        if s.value is not None:
            _target(flow, s.target)
    elif isinstance(s, (ast.For, ast.AsyncFor)):
        _expr(flow, s.iter)
        _target(flow, s.target)
        _body(flow, s.body)
        _body(flow, s.orelse)
    elif isinstance(s, (ast.While, ast.If)):
        _expr(flow, s.test)
        _body(flow, s.body)
        _body(flow, s.orelse)
    elif isinstance(s, (ast.With, ast.AsyncWith)):
        for item in s.items:
            _expr(flow, item.context_expr)
            if item.optional_vars is not None:
                _target(flow, item.optional_vars)
        _body(flow, s.body)
    elif isinstance(s, (ast.Try, getattr(ast, "TryStar", ast.Try))):
        _body(flow, s.body)
        for h in s.handlers:
            _expr(flow, h.type)
            if h.name:
                flow.store([h.name])
            _body(flow, h.body)
        _body(flow, s.orelse)
        _body(flow, s.finalbody)
    elif isinstance(s, (ast.Import, ast.ImportFrom)):
        for alias in s.names:
            if alias.name != "*":
                flow.store([alias.asname or alias.name.split(".")[0]], into=flow.imported)
    elif isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        loads, _stores, nested = _symbols(ast.unparse(s), "exec")
        flow.load(n for n in loads if n != s.name)  # decorators, defaults, bases
        flow.deferred.extend(n for n in nested if n not in flow.deferred)  # looked up at call time
        flow.store([s.name], into=flow.classes if isinstance(s, ast.ClassDef) else flow.functions)
    elif isinstance(s, (ast.Global, ast.Nonlocal, ast.Pass, ast.Break, ast.Continue)):
        return
    else:  # Expr, Return, Raise, Assert, Delete, Match, ...
        loads, stores, nested = _symbols(ast.unparse(s), "exec")
        flow.load(loads)
        flow.load(nested)
        flow.store(stores)


def _is_constant_stmt(s: ast.stmt) -> bool:
    """Imports, defs, classes, docstrings, ``pass`` and ``NAME = <literal>`` do no work."""
    if isinstance(
        s, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Pass)
    ):
        return True
    if isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant):
        return True
    targets = s.targets if isinstance(s, ast.Assign) else [getattr(s, "target", None)]
    if (
        isinstance(s, (ast.Assign, ast.AnnAssign))
        and s.value is not None
        and all(isinstance(t, ast.Name) for t in targets)
    ):
        try:
            ast.literal_eval(s.value)
        except ValueError:
            return False
        return True
    return False


def _cell_level_nodes(tree: ast.AST) -> Iterable[ast.AST]:
    """Every node outside nested function bodies (where await would be the function's own)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                stack.append(child)


@functools.lru_cache(maxsize=256)
def analyze_cell(source: str) -> CellFlow:
    """Read a cell's flow of names.

    Parameters
    ----------
    source : str
        Python source of the cell, with IPython syntax already transformed
        (``shell.transform_cell``), so magics appear as ``get_ipython()`` calls.

    Returns
    -------
    CellFlow
        Reads, assignments, imports and definitions, in first-seen order.

    Raises
    ------
    SyntaxError
        If the cell is not valid Python.
    """
    tree = ast.parse(source, "<cell>")
    flow = _Flow()
    _body(flow, tree.body)
    flow.load(n for n in flow.deferred if n not in flow.bound)
    has_await = any(isinstance(n, (ast.Await, ast.AsyncFor, ast.AsyncWith)) for n in _cell_level_nodes(tree))
    code = set(flow.functions) | set(flow.classes) | set(flow.imported)
    return CellFlow(
        reads=tuple(flow.reads),
        assigned=tuple(n for n in flow.assigned if n not in code),
        imported=tuple(flow.imported),
        functions=tuple(flow.functions),
        classes=tuple(flow.classes),
        has_work=not all(_is_constant_stmt(s) for s in tree.body),
        uses_ipython="get_ipython" in flow.reads,
        has_await=has_await,
    )


# ---------------------------------------------------------------- reads against a namespace


@dataclass(frozen=True)
class Reads:
    """A cell's reads sorted against the notebook namespace.

    Attributes
    ----------
    data : names of values earlier cells made (the inputs of a plain-cell component).
    code : names of modules, functions, classes and components (captured with the function).
    missing : names defined nowhere: not in the namespace and not builtins.
    """

    data: tuple[str, ...]
    code: tuple[str, ...]
    missing: tuple[str, ...]


def is_code(value: Any) -> bool:
    """True for modules, functions, classes and other callables a component captures by value."""
    if isinstance(
        value,
        (
            types.ModuleType,
            type,
            types.FunctionType,
            types.BuiltinFunctionType,
            types.MethodType,
            functools.partial,
        ),
    ):
        return True
    # nbpipe Component / Pipeline objects, by duck type so this module needs no SDK import.
    return (hasattr(value, "trace") and hasattr(value, "spec")) or hasattr(value, "payload_digest")


def classify_reads(reads: Iterable[str], namespace: Mapping[str, Any], hidden: Iterable[str] = ()) -> Reads:
    """Sort ``reads`` into data inputs, captured code and missing names.

    Parameters
    ----------
    reads : names a cell reads (``CellFlow.reads``).
    namespace : the notebook's user namespace before the cell runs.
    hidden : names IPython put in the namespace itself (``In``, ``Out``, ``get_ipython``...);
        they count as builtins.
    """
    hidden = set(hidden)
    data, code, missing = [], [], []
    for name in reads:
        if name in namespace and name not in hidden:
            (code if is_code(namespace[name]) else data).append(name)
        elif name in hidden or hasattr(builtins, name):
            continue
        else:
            missing.append(name)
    return Reads(tuple(data), tuple(code), tuple(missing))


def later_reads(cells: Iterable[str]) -> set[str]:
    """Names that any of ``cells`` reads; intersect with a cell's outputs to keep only used ones.

    Cells that fail to parse (magics not yet transformed, half-typed code) are skipped.
    """
    used: set[str] = set()
    for source in cells:
        try:
            used.update(analyze_cell(source).reads)
        except SyntaxError:
            continue
    return used
