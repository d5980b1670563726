"""Static analysis of one notebook cell: its top-level statements, what each defines and uses.

Each top-level statement gets a *kind* — ``import``, ``definition`` (def/class, a constant, a
``component(...)``/``pipeline(...)`` call), ``compute`` (anything that runs work: calls,
loops, ``model.fit(...)``), ``magic`` (an IPython magic or ``!shell`` line) or ``noop`` — and
the global names it defines and uses, split into names used *now* (when the statement runs)
and *later* (inside function bodies, when they are called). Scoping comes from the stdlib
:mod:`symtable`, so locals, comprehension variables and parameters are never mistaken for globals.

Non-goals: type inference, following ``exec``/``globals()`` tricks, or deciding what is
expensive by running it; a call is compute unless it is one of the definition calls below.
"""

from __future__ import annotations

import ast
import builtins
import symtable
from dataclasses import dataclass

# Calls that only define things (nbpipe's own and typing's), so an assignment from them is a definition.
DEFINITION_CALLS = frozenset({"component", "pipeline", "Resources", "NamedTuple", "namedtuple", "TypeVar",
                              "NewType"})
KNOWN_NAMES = frozenset(dir(builtins)) | {"__name__", "__doc__", "__builtins__", "get_ipython"}
_IPY_CALLS = {"run_line_magic": "%", "run_cell_magic": "%%", "system": "!", "getoutput": "!"}
_NOOP = (ast.Pass,)
_LAZY_SCOPES = ("function",)  # function/lambda bodies run when called; comprehensions run now
_EAGER_FUNCTIONS = {"listcomp", "dictcomp", "setcomp", "genexpr"}


@dataclass(frozen=True)
class Statement:
    """One top-level statement of a cell.

    Attributes
    ----------
    cell : int
        1-based position of its cell in the notebook.
    index : int
        Position among the cell's top-level statements (what the builder keeps).
    kind : str
        ``import``, ``definition``, ``compute``, ``magic`` or ``noop``.
    role : str
        ``component``, ``pipeline`` or ``""``.
    defines, uses_now, uses_later : frozenset of str
        Global names bound; used while the statement runs; used inside function bodies.
    pipeline_names : tuple of str
        For a pipeline: names it may be selected by (variable, ``name=``, dashed form).
    star_import : bool
        ``from x import *`` (its names are unknown).
    line : int
        First line of the statement (decorators included) in the cell.
    text : str
        The statement's first line, for messages.
    """

    cell: int
    index: int
    kind: str
    role: str
    defines: frozenset[str]
    uses_now: frozenset[str]
    uses_later: frozenset[str]
    pipeline_names: tuple[str, ...]
    star_import: bool
    line: int
    text: str

    @property
    def position(self) -> tuple[int, int]:
        return (self.cell, self.index)


def _callee(func: ast.expr) -> str:
    """``component`` for ``component``, ``nbpipe.component``, ``component(...)`` and ``component(...)(f)``."""
    while isinstance(func, ast.Call):
        func = func.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def magic_of(node: ast.AST) -> str:
    """``%matplotlib`` / ``!pip`` if ``node`` is IPython's transformed form of a magic, else ``""``."""
    value = node.value if isinstance(node, (ast.Expr, ast.Assign, ast.AnnAssign)) else None
    if not isinstance(value, ast.Call) or not isinstance(value.func, ast.Attribute):
        return ""
    owner = value.func.value
    if not (isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "get_ipython"):
        return ""
    prefix = _IPY_CALLS.get(value.func.attr)
    if prefix is None:
        return ""
    first = value.args[0] if value.args else None
    word = first.value.split()[0] if isinstance(first, ast.Constant) and str(first.value).split() else ""
    return f"{prefix}{word}"


def _cheap(node: ast.AST | None) -> bool:
    """True for expressions that only name or build values (no calls but definition calls)."""
    if node is None:
        return True
    if isinstance(node, ast.Call):
        return (_callee(node.func) in DEFINITION_CALLS
                and all(_cheap(a) for a in node.args) and all(_cheap(k.value) for k in node.keywords)
                and (not isinstance(node.func, ast.Call) or _cheap(node.func)))
    if isinstance(node, (ast.Lambda, ast.Constant, ast.Name)):
        return True
    if isinstance(node, (ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr,
                         ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        return False
    return all(_cheap(child) for child in ast.iter_child_nodes(node)
               if isinstance(child, ast.expr) or isinstance(child, (ast.keyword, ast.comprehension)))


def _kind(node: ast.stmt) -> str:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return "import"
    if magic_of(node):
        return "magic"
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return "definition"
    if isinstance(node, _NOOP) or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
        return "noop"
    if isinstance(node, ast.Assign):
        return "definition" if _cheap(node.value) and all(_cheap(t) for t in node.targets) else "compute"
    if isinstance(node, ast.AnnAssign):
        return "definition" if _cheap(node.value) else "compute"
    if isinstance(node, (ast.If, ast.Try)) or type(node).__name__ == "TryStar":
        # `try: import x / except ImportError: x = None` and `if sys.version_info ...: def ...` only define.
        tests = [node.test] if isinstance(node, ast.If) else [h.type for h in getattr(node, "handlers", [])]
        bodies = [s for field in ("body", "orelse", "finalbody") for s in getattr(node, field, [])]
        bodies += [s for h in getattr(node, "handlers", []) for s in h.body]
        inner = {_kind(s) for s in bodies}
        return "definition" if inner <= {"import", "definition", "noop"} and all(_cheap(t) for t in tests) else "compute"
    return "compute"


def _role(node: ast.stmt) -> tuple[str, tuple[str, ...]]:
    """``("component"|"pipeline"|"", names)`` where names are a pipeline's selectable names."""
    calls: list[ast.expr] = []
    bound: list[str] = []
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        calls, bound = list(node.decorator_list), [node.name]
    elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
        calls, bound = [node.value], [t.id for t in node.targets if isinstance(t, ast.Name)]
    for call in calls:
        role = _callee(call)
        if role not in ("component", "pipeline"):
            continue
        names = list(bound)
        node_call = call
        while isinstance(node_call, ast.Call):
            for kw in node_call.keywords:
                if kw.arg == "name" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                    names.append(kw.value.value)
            node_call = node_call.func
        names += [n.replace("_", "-") for n in bound]
        return role, tuple(dict.fromkeys(names))
    return "", ()


def _scopes(table: symtable.SymbolTable, lazy: bool, now: set[str], later: set[str]) -> None:
    for child in table.get_children():
        child_lazy = lazy or (child.get_type() in _LAZY_SCOPES and child.get_name() not in _EAGER_FUNCTIONS)
        for sym in child.get_symbols():
            if sym.is_global() and sym.is_referenced():
                (later if child_lazy else now).add(sym.get_name())
        _scopes(child, child_lazy, now, later)


def analyze_statement(node: ast.stmt, cell: int, index: int, source: str) -> Statement:
    """Describe one top-level statement (see :class:`Statement`)."""
    text = ast.unparse(node)
    table = symtable.symtable(text, f"<cell {cell}>", "exec")
    defines = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}
    now = {s.get_name() for s in table.get_symbols() if s.is_referenced()}
    later: set[str] = set()
    _scopes(table, False, now, later)
    role, names = _role(node)
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    line_text = (ast.get_source_segment(source, node) or text).splitlines()[0].strip()
    star = isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)
    return Statement(
        cell=cell, index=index, kind=_kind(node), role=role,
        defines=frozenset(defines), uses_now=frozenset(now - KNOWN_NAMES), uses_later=frozenset(later - KNOWN_NAMES),
        pipeline_names=names if role == "pipeline" else (), star_import=star, line=first, text=line_text[:80],
    )


def analyze_code(code: str, cell: int) -> list[Statement]:
    """Analyze a cell's (magic-free) code; raises :class:`SyntaxError` as ``ast.parse`` does."""
    tree = ast.parse(code, f"<nbpipe-cell-{cell}>")
    return [analyze_statement(node, cell, i, code) for i, node in enumerate(tree.body)]


def analyze_magic_cell(raw: str, cell: int) -> Statement:
    """Describe a ``%%component`` / ``%%pipeline`` cell as one statement (run later by the magics).

    A ``%%component`` cell with a ``def`` defines NAME (or the function's name) and uses, later,
    what the function uses; a ``%%pipeline NAME`` cell uses now every name it reads. A plain
    ``%%component`` cell (code, no ``def``) has kind ``compute``: the magic would run its work.
    """
    first, _, body = raw.lstrip().partition("\n")
    words = first[2:].split()
    magic = words[0]
    name = words[1] if len(words) > 1 and not words[1].startswith("-") else ""
    inner = analyze_code(body, cell)
    funcs = [s.text.split("(")[0].split()[-1] for s in inner if s.text.startswith(("def ", "async def "))]
    defined = {n for s in inner for n in s.defines}
    now = {n for s in inner for n in s.uses_now} - defined
    later = {n for s in inner for n in s.uses_later}
    kind = "definition" if all(s.kind in ("import", "definition", "noop") for s in inner) else "compute"
    if magic == "pipeline":
        # a cell that only holds the pipeline's def is that pipeline, named by the def (as the magic names it)
        plain_def = kind == "definition" and len(funcs) == 1 and not any(s.role == "pipeline" for s in inner)
        name = name or (funcs[0] if plain_def else "notebook")
        now, later, kind = now | later, set(), "definition"
    elif not name:
        name = funcs[-1] if funcs else f"cell_{cell}"
    names = (name, name.replace("_", "-")) if magic == "pipeline" else ()
    role = magic
    pipes = [s for s in inner if s.role == "pipeline"]
    if magic == "component" and pipes:  # a @pipeline below the component's def, as the magic allows
        role, names = "pipeline", pipes[-1].pipeline_names
    return Statement(cell=cell, index=0, kind=kind, role=role, defines=frozenset(defined | {name}),
                     uses_now=frozenset(now - KNOWN_NAMES), uses_later=frozenset(later - KNOWN_NAMES),
                     pipeline_names=names, star_import=False, line=1, text=first.strip()[:80])
