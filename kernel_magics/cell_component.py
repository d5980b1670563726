"""Build SDK objects from notebook cells: components from plain cells, pipelines from ``%%pipeline``
cells and from the notebook's data flow.

A plain cell becomes a real function: its statements are the body, its inputs the parameters,
and it returns a NamedTuple of its outputs. The function's code keeps the cell's line numbers
and the cell's text is registered in :mod:`linecache` (as IPython does for cells), so
tracebacks show the cell's lines; the generated function source rides along as
``__nbpipe_source__``, so the component's cache key follows the code. Everything raises :class:`~nbpipe.errors.DefinitionError`; the magics turn that into
a one-line ``UsageError``.

Non-goals: running cells (the magics do that in the kernel) and deciding what a cell reads
(:mod:`kernel_magics.cells`).
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import linecache
import re
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import cloudpickle

from nbpipe.capture import unsafe_error, unsafe_kind
from nbpipe.component import Component, Options
from nbpipe.errors import DefinitionError
from nbpipe.pipeline import Pipeline
from nbpipe.signature import is_json_value

_OUTPUTS = "_nbpipe_Outputs"


def identifier(name: str) -> str:
    """A Python identifier for a component or pipeline name (``make-data`` → ``make_data``)."""
    ident = re.sub(r"\W", "_", name)
    return ident if ident.isidentifier() else f"_{ident}"


def _register_source(kind: str, name: str, source: str) -> str:
    """Put generated source in linecache under a stable, content-addressed file name."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    filename = f"<nbpipe-{kind}-{name}-{digest}>"
    lines = [line if line.endswith("\n") else line + "\n" for line in source.splitlines(True)]
    linecache.cache[filename] = (len(source), None, lines, filename)
    return filename


def input_params(inputs: Sequence[str], outputs: Sequence[str]) -> dict[str, str]:
    """Parameter name per input variable: ``x`` unless the cell also outputs ``x`` (``df = df.dropna()``),
    then ``x_in``, since a component's inputs and outputs need distinct names."""
    taken = set(inputs) | set(outputs)
    params: dict[str, str] = {}
    for n in inputs:
        p = n
        if n in outputs:
            p = f"{n}_in"
            while p in taken:
                p += "_"
            taken.add(p)
        params[n] = p
    return params


def build_function(
    name: str,
    body_source: str,
    params: Sequence[str],
    outputs: Sequence[str],
    namespace: dict[str, Any],
    output_types: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
    rename: Mapping[str, str] | None = None,
) -> Callable[..., Any]:
    """Compile a cell body into a function ``name(*params) -> NamedTuple(outputs)``.

    Parameters
    ----------
    name : str
        Function name (an identifier).
    body_source : str
        The cell's Python source (IPython syntax already transformed).
    params : names that become the function's parameters, in order.
    outputs : names the function returns, as fields of a NamedTuple; none returns ``None``.
    namespace : dict
        The globals the function sees (the notebook's user namespace), so helpers,
        imports and constants of earlier cells resolve and get captured by value.
    output_types : optional annotation per output (the type of the value in the kernel).
    defaults : optional JSON default per parameter.
    rename : optional variable name per parameter; the body starts with ``variable = parameter``.
    """
    defaults = dict(defaults or {})
    args = ", ".join(f"{p}={defaults[p]!r}" if p in defaults else p for p in params)
    skeleton = ast.parse(
        f"def _nbpipe_make({_OUTPUTS}):\n    def {name}({args}):\n        pass\n    return {name}\n"
    )
    outer = skeleton.body[0]
    inner = outer.body[0]  # type: ignore[attr-defined]
    body = ast.parse(body_source).body or [ast.Pass()]
    prologue = "".join(f"{var} = {param}\n" for param, var in (rename or {}).items() if var != param)
    body = ast.parse(prologue).body + body
    if outputs:
        ret = ast.parse(f"return {_OUTPUTS}({', '.join(f'{o}={o}' for o in outputs)})").body
        for node in ret:  # the return goes after the cell's last line
            ast.increment_lineno(node, max(getattr(n, "end_lineno", 1) or 1 for n in body))
        body = body + ret
    inner.body = body
    for node in (outer, inner):  # the function starts at the cell's first line
        node.lineno = node.end_lineno = 1
    source = ast.unparse(ast.fix_missing_locations(skeleton)) + "\n"
    # The code keeps the cell's own line numbers and the file holds the cell's text, so
    # tracebacks and the debugger show the cell's lines; the generated source (what the
    # cache key hashes) rides along as __nbpipe_source__.
    filename = _register_source("cell", name, body_source)
    try:
        code = compile(skeleton, filename, "exec")
    except SyntaxError as exc:  # await/yield at cell level, a global that is also an input, ...
        raise DefinitionError(
            f"Cell component '{name}' cannot become a function: {exc.msg}",
            hint="Move that statement into a function the cell calls, or out of the component cell.",
        ) from None
    scope: dict[str, Any] = {}
    exec(code, namespace, scope)  # noqa: S102 - defines the function, runs no cell code
    types_ = dict(output_types or {})
    result_type: Any = None
    if outputs:
        result_type = typing.NamedTuple(f"{name}_outputs", [(o, types_.get(o, Any)) for o in outputs])
        result_type.__module__ = namespace.get("__name__", "__main__")
    func = scope["_nbpipe_make"](result_type)
    func.__qualname__ = name
    func.__nbpipe_source__ = ast.unparse(inner) + "\n"
    func.__annotations__ = {p: Any for p in params} | {"return": result_type}
    return func


class BindAfterDef(ast.NodeTransformer):
    """Rewrites a cell so ``target = hook(function)`` runs right after the cell's top-level
    ``def function``: the component exists before the rest of the cell (a ``@pipeline`` there
    traces the component's step instead of calling the plain function in the kernel). The added
    statement takes the def's last line number, so the cell's other lines keep theirs."""

    def __init__(self, function: str, target: str, hook: str):
        self.function, self.target, self.hook = function, target, hook

    def visit_Module(self, node: ast.Module) -> ast.Module:  # noqa: N802 - ast.NodeTransformer API
        defs = [i for i, n in enumerate(node.body)
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == self.function]
        if defs:
            at = defs[-1]
            bind = ast.parse(f"{self.target} = {self.hook}({self.function})").body[0]
            line = node.body[at].end_lineno or node.body[at].lineno
            for sub in ast.walk(bind):
                if isinstance(sub, (ast.expr, ast.stmt)):
                    sub.lineno = sub.end_lineno = line
                    sub.col_offset = sub.end_col_offset = 0
            node.body.insert(at + 1, bind)
        return node


class DefRefused(Exception):
    """Stops a ``%%component`` cell whose def cannot be a component before its ``@pipeline`` traces the
    plain function. It shows nothing (see :func:`quiet_refusal`): the magic says why, once."""


@contextmanager
def quiet_refusal(shell: Any) -> Iterator[None]:
    """While the magic runs its cell, a :class:`DefRefused` stops the cell without a traceback (the
    message would show twice: the cell's error, then the magic's). Other custom exception handlers
    (nbpipe's interrupt handler, the user's own) still get their exceptions."""
    types, handler = tuple(shell.custom_exceptions), shell.CustomTB

    def on_exception(_shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None) -> Any:
        if issubclass(etype, DefRefused):
            return None
        return handler(etype, value, tb, tb_offset=tb_offset)

    shell.set_custom_exc((*types, DefRefused), on_exception)
    try:
        yield
    finally:
        shell.custom_exceptions, shell.CustomTB = types, handler


def param_annotation(value: Any) -> Any:
    """The annotation a pipeline parameter gets from its notebook value (``Any`` for ``None``)."""
    return type(value) if isinstance(value, (bool, int, float, str, list, dict)) else Any


def unpicklable(value: Any) -> str:
    """Why ``value`` cannot be pickled (empty if it can). Streams to a sink: no full copy in memory."""

    class _Sink:
        def write(self, data: bytes) -> int:
            return len(data)

    try:
        cloudpickle.CloudPickler(_Sink(), protocol=4).dump(value)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - any failure means a step could not receive it
        return f"{type(exc).__name__}: {exc}"
    return ""


def unsafe_read(name: str, var: str, value: Any) -> DefinitionError | None:
    """The error for a cell component ``name`` reading ``var``, a live resource (an open file, a
    lock, a connection…) no step can receive, or None."""
    kind = unsafe_kind(value)
    return unsafe_error(f"Cell component '{name}' reads", var, value, kind, "the cell") if kind else None


@dataclass(frozen=True)
class CellComponent:
    """A component made from a plain cell, with the names it takes and gives.

    Attributes
    ----------
    key : what identifies the cell across re-runs (cell id, component name or source digest).
    component : the :class:`~nbpipe.component.Component`.
    inputs : notebook variable names the cell reads (the function's parameters; see :func:`input_params`).
    outputs : notebook variable names the cell assigns (the returned fields).
    """

    key: str
    component: Component
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def component_from_cell(
    name: str,
    source: str,
    cell_source: str,
    inputs: Sequence[str],
    outputs: Sequence[str],
    namespace: dict[str, Any],
    options: Options | None = None,
) -> Component:
    """Make a :class:`Component` from a plain cell whose inputs and outputs are known.

    ``namespace`` must already hold the cell's results (the cell ran), so each output is checked
    to be picklable. Outputs are typed ``Any``, as the export of the saved notebook types them.
    """
    for out in outputs:
        if out not in namespace:
            raise DefinitionError(
                f"Output '{out}' of cell component '{name}' was not set when the cell ran",
                hint="Assign it on every path through the cell, or leave it out of --outputs.",
            )
        why = unpicklable(namespace[out])
        if why:
            raise DefinitionError(
                f"Output '{out}' of cell component '{name}' ({type(namespace[out]).__name__}) cannot be "
                f"pickled, so no later step could receive it ({why})",
                hint=f"Rename it to _{out} to keep it private to the cell, or list the outputs with "
                "--outputs.",
            )
    params = input_params(inputs, outputs)
    func = build_function(
        identifier(name),
        source,
        list(params.values()),
        outputs,
        namespace,
        # no output types from the kernel's values: the same cell exported from the saved notebook
        # (the Lab panel, nbpipe export) cannot know them, and its step must be the same component
        # (same digest), so re-runs and the cache reuse a kernel run's steps and vice versa
        rename={p: v for v, p in params.items()},
    )
    return Component(func, name=name, options=options, source=cell_source, variable=name)


def pipeline_from_cell(
    name: str, source: str, params: Mapping[str, Any], namespace: dict[str, Any]
) -> Pipeline:
    """Trace a ``%%pipeline`` cell: its body calls components; ``params`` (name → JSON default)
    become the pipeline's parameters."""
    func = build_function(identifier(name), source, list(params), (), namespace, defaults=params)
    func.__annotations__ = {p: param_annotation(v) for p, v in params.items()} | {"return": None}
    return Pipeline(func, name=name, description="")


def infer_pipeline(
    name: str, cells: Sequence[CellComponent], namespace: Mapping[str, Any], description: str = ""
) -> Pipeline:
    """The pipeline a notebook's plain-cell components make, in cell order.

    Each input is wired to the latest earlier cell component that outputs that name; an input
    no component produces becomes a pipeline parameter whose default is the notebook's current
    value, which must be plain JSON.
    """
    if not cells:
        raise DefinitionError(
            "This notebook has no %%component plain cells to make a pipeline from",
            hint="Mark cells with %%component, or name a pipeline: %nbpipe run PIPELINE.",
        )
    params: dict[str, Any] = {}
    made: set[str] = set()
    for cell in cells:
        for inp in cell.inputs:
            if inp in made or inp in params:
                continue
            value = namespace.get(inp)
            unsafe = unsafe_read(cell.component.name, inp, value)
            if unsafe is not None:
                raise unsafe
            if inp not in namespace or not is_json_value(value):
                raise DefinitionError(
                    f"Cell component '{cell.component.name}' reads '{inp}', which no earlier %%component "
                    f"cell outputs, and its value ({type(value).__name__}) is not a plain JSON parameter",
                    hint=f"Add %%component to the cell that makes '{inp}', or compute it inside "
                    f"'{cell.component.name}'.",
                )
            params[inp] = value
        made.update(cell.outputs)

    def body(**kwargs: Any) -> None:
        latest: dict[str, Any] = {}
        for cell in cells:
            names = input_params(cell.inputs, cell.outputs)
            args = {names[inp]: latest[inp] if inp in latest else kwargs[inp] for inp in cell.inputs}
            step = cell.component(**args)
            for out in cell.outputs:
                latest[out] = step.outputs[out]

    body.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY, default=v, annotation=param_annotation(v))
            for p, v in params.items()
        ]
    )
    body.__name__ = body.__qualname__ = identifier(name)
    return Pipeline(
        body, name=name, description=description or "Inferred from the notebook's %%component cells."
    )
