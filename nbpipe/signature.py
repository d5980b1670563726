"""Read a component function's signature into input and output specs, and check types.

Type names are short strings stored in the package (``int``, ``list[int]``, ``Optional[str]``,
``numpy.ndarray``, ``any``); :func:`compatible` decides if an upstream output may feed an
input at definition time. Non-goal: a full type system; unknown classes are compared by name.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from dataclasses import dataclass
from typing import Any

from .artifacts import artifact_annotation
from .errors import DefinitionError

JSON_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}


@dataclass(frozen=True)
class InputSpec:
    name: str
    type: str
    kind: str = "value"  # "value" | "artifact"
    artifact_type: str = ""
    has_default: bool = False
    default: Any = None  # JSON value, when has_default and it is JSON-able
    optional: bool = False

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "type": self.type, "kind": self.kind}
        if self.artifact_type:
            d["artifact_type"] = self.artifact_type
        if self.has_default:
            d["default"] = self.default
        if self.optional:
            d["optional"] = True
        return d


@dataclass(frozen=True)
class OutputSpec:
    name: str
    type: str
    kind: str = "value"  # "value" | "artifact"
    artifact_type: str = ""

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "type": self.type, "kind": self.kind}
        if self.artifact_type:
            d["artifact_type"] = self.artifact_type
        return d


def type_name(annotation: Any) -> str:
    """A short, stable name for a type annotation."""
    if annotation is inspect.Parameter.empty or annotation is Any or annotation is None:
        return "any"
    if isinstance(annotation, str):
        return annotation
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        inner = type_name(rest[0]) if len(rest) == 1 else "any"
        return f"Optional[{inner}]" if len(rest) < len(args) else "any"
    if origin in (list, tuple, set, frozenset) and origin is not tuple:
        return f"list[{type_name(args[0])}]" if args else "list"
    if origin is list:
        return "list"
    if origin is dict:
        return f"dict[{type_name(args[0])}, {type_name(args[1])}]" if len(args) == 2 else "dict"
    if origin is tuple:
        return "list"
    if origin is not None:
        return type_name(origin)
    if isinstance(annotation, type):
        if annotation.__name__ in JSON_TYPES and annotation.__module__ == "builtins":
            return annotation.__name__
        if annotation in (tuple, set, frozenset):
            return "list"
        return f"{annotation.__module__}.{annotation.__qualname__}"
    return "any"


def base_type(name: str) -> str:
    """``Optional[list[int]]`` → ``list``; ``numpy.ndarray`` → ``numpy.ndarray``."""
    if name.startswith("Optional[") and name.endswith("]"):
        name = name[len("Optional[") : -1]
    return name.split("[", 1)[0]


def compatible(source: str, target: str) -> bool:
    """May a value of type ``source`` feed an input of type ``target``?"""
    s, t = base_type(source), base_type(target)
    if "any" in (s, t) or s == t:
        return True
    if (s, t) in {("int", "float"), ("bool", "int"), ("bool", "float")}:
        return True
    if s in JSON_TYPES and t in JSON_TYPES:
        return False
    # A JSON type into a class (or the reverse), or two classes: compare leniently by name,
    # since subclasses (a DataFrame into "object") are common in notebooks.
    return not (s in JSON_TYPES or t in JSON_TYPES) or t == "builtins.object"


def value_matches(value: Any, type_str: str) -> bool:
    """Does a literal (JSON) value fit ``type_str``?"""
    if value is None:
        return type_str.startswith("Optional[") or type_str == "any"
    t = base_type(type_str)
    py = JSON_TYPES.get(t)
    if py is None:
        return True
    if py is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if py is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, py)


def is_json_value(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _hints(func: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception:  # unresolvable forward refs: fall back to raw annotations
        return dict(getattr(func, "__annotations__", {}))


def _is_namedtuple(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, tuple) and hasattr(tp, "_fields")


def source_of(func: Any) -> str:
    """A function's source, dedented: ``__nbpipe_source__`` for one made from a notebook cell (its
    code keeps the cell's line numbers, so ``inspect`` would find the cell), else ``inspect``'s.
    Raises OSError/TypeError when there is none."""
    generated = getattr(func, "__nbpipe_source__", None)
    if isinstance(generated, str):
        return generated
    import textwrap

    return textwrap.dedent(inspect.getsource(func))


def _returns_value(func: Any) -> bool:
    """Does an unannotated function ever ``return <value>``? (Unknown source: assume yes.)"""
    import ast

    try:
        tree = ast.parse(source_of(func))
    except (OSError, TypeError, SyntaxError):
        return True
    fn = next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), None)
    if fn is None:
        return True
    stack: list[ast.AST] = list(fn.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        stack.extend(ast.iter_child_nodes(node))
    return False


def analyze(func: Any, component: str) -> tuple[list[InputSpec], list[OutputSpec], str]:
    """Return (inputs, outputs, return_style) where return_style is none|single|namedtuple."""
    sig = inspect.signature(func)
    hints = _hints(func)
    inputs: list[InputSpec] = []
    outputs: list[OutputSpec] = []
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            star = "*" if p.kind == p.VAR_POSITIONAL else "**"
            raise DefinitionError(
                f"Component '{component}' takes {star}{p.name}",
                "A component's inputs must be named so a pipeline can connect them",
                f"List each input as a named argument instead of {star}{p.name} (a dict or list input works "
                "for a variable number of values).",
            )
        ann = hints.get(p.name, p.annotation)
        art = artifact_annotation(ann)
        if art is not None:
            direction, art_type = art
            if direction == "output":
                outputs.append(OutputSpec(p.name, art_type.__name__, "artifact", art_type.__name__))
                continue
            inputs.append(InputSpec(p.name, art_type.__name__, "artifact", art_type.__name__))
            continue
        tname = type_name(ann)
        has_default = p.default is not inspect.Parameter.empty
        default = p.default if has_default and is_json_value(p.default) else None
        optional = tname.startswith("Optional[") or (has_default and p.default is None)
        inputs.append(InputSpec(p.name, tname, "value", "", has_default, default, optional))
    ret = hints.get("return", sig.return_annotation)
    style = "single"
    if ret is inspect.Parameter.empty and not _returns_value(func):
        style = "none"
    elif ret is None or ret is type(None):
        style = "none"
    elif _is_namedtuple(ret):
        style = "namedtuple"
        field_types = getattr(ret, "__annotations__", {})
        for fname in ret._fields:
            outputs.append(OutputSpec(fname, type_name(field_types.get(fname, Any))))
    else:
        outputs.append(OutputSpec("output", type_name(ret)))
    names = [o.name for o in outputs]
    clash = {n for n in names if names.count(n) > 1} | ({o.name for o in outputs} & {i.name for i in inputs})
    if clash:
        raise DefinitionError(
            f"Component '{component}' has more than one input/output named {sorted(clash)}",
            hint="Rename the Output[...] argument or the NamedTuple field.",
        )
    return inputs, outputs, style
