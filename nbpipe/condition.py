"""Condition expressions: comparisons of pipeline placeholders with constants, as plain JSON.

``param > 3`` on a pipeline parameter, step output or loop item builds a :class:`Condition`
(``{"op": ">", "left": {"parameter": "n"}, "right": {"value": 3}}``); ``&``, ``|`` and ``~``
combine them. :mod:`nbpipe.control` uses them for ``nbpipe.If``; the runner evaluates them on
JSON values (:mod:`nbpipe.runner.expand`). Placeholders take part through two duck-typed hooks,
``__nbpipe_operand__(where)`` and ``__nbpipe_binding__(trace, where, spec)``, so this module
imports nothing of the tracer.

Placeholders have no value while tracing, so :class:`Comparable` also turns arithmetic, attributes,
items and f-strings on them into errors that say so, and :func:`check_constant` refuses a constant
input holding a placeholder or its text (``"a" + str(param)``), which would run with the wrong value.

Non-goals: evaluating conditions in Python while tracing (they have no value yet).
"""

from __future__ import annotations

import re
from typing import Any

from .errors import DefinitionAttributeError, DefinitionError
from .signature import is_json_value

OPS = ("==", "!=", "<", "<=", ">", ">=", "in")


def operand(value: Any, where: str) -> dict[str, Any]:
    """The JSON binding of a condition operand (parameter, step output, loop item or constant)."""
    binding = getattr(value, "__nbpipe_operand__", None)
    if binding is not None:
        return dict(binding(where))
    if not is_json_value(value):
        raise DefinitionError(f"{where}: {type(value).__name__} is not a plain JSON constant",
                              hint="Compare with str, int, float, bool, None, list or dict constants.")
    return {"value": value}


class Condition:
    """A JSON condition expression: ``{"op": "<", "left": …, "right": …}``, ``and``/``or``/``not``.

    Combine with ``&``, ``|`` and ``~``. Python's ``and``/``or``/``if`` cannot work on it while
    a pipeline is traced, so ``bool()`` raises.
    """

    def __init__(self, expr: dict[str, Any]):
        self.expr = expr

    def __and__(self, other: "Condition") -> "Condition":
        return Condition({"op": "and", "args": [self.expr, as_condition(other).expr]})

    def __or__(self, other: "Condition") -> "Condition":
        return Condition({"op": "or", "args": [self.expr, as_condition(other).expr]})

    def __invert__(self) -> "Condition":
        return Condition({"op": "not", "args": [self.expr]})

    def __bool__(self) -> bool:
        raise DefinitionError("A pipeline condition has no value while the pipeline is being defined",
                              "Python 'if'/'and'/'or' cannot decide it yet.",
                              "Use `with nbpipe.If(cond):` and combine conditions with &, | and ~.")

    def __repr__(self) -> str:
        return f"<condition {self.expr}>"


def as_condition(value: Any) -> Condition:
    if isinstance(value, Condition):
        return value
    raise DefinitionError(f"Expected a condition (e.g. param > 3), got {type(value).__name__}",
                          hint="Compare a pipeline parameter or step output with a constant.")


def compare(left: Any, op: str, right: Any) -> Condition:
    """``left <op> right`` as a :class:`Condition` (the comparison operators call this)."""
    where = f"Condition '{op}'"
    return Condition({"op": op, "left": operand(left, where), "right": operand(right, where)})


class Comparable:
    """Mixin giving pipeline placeholders comparison operators that build conditions.

    ``__hash__`` stays identity-based so placeholders still work as dict keys and in sets.
    """

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> Any:  # type: ignore[override]
        return compare(self, "==", other)

    def __ne__(self, other: object) -> Any:  # type: ignore[override]
        return compare(self, "!=", other)

    def __lt__(self, other: Any) -> Condition:
        return compare(self, "<", other)

    def __le__(self, other: Any) -> Condition:
        return compare(self, "<=", other)

    def __gt__(self, other: Any) -> Condition:
        return compare(self, ">", other)

    def __ge__(self, other: Any) -> Condition:
        return compare(self, ">=", other)

    def is_in(self, values: Any) -> Condition:
        """``value in values`` (Python's ``in`` cannot be overloaded from the left side)."""
        return compare(self, "in", values)

    # Arithmetic has no value to work on while the pipeline is traced: say so, and what to do.
    def _no_arithmetic(self, expr: str, hint: str = "", error: type[DefinitionError] = DefinitionError) -> Any:
        what = getattr(self, "_nbpipe_what", lambda: repr(self))()
        raise error(
            f"{what} has no value while the pipeline is being defined, so `{expr}` cannot be computed here",
            "It is a placeholder: its value exists only when the run executes; the pipeline function "
            "only wires steps together",
            hint or "Do the arithmetic inside a component (pass the value to a step and compute there), or pass "
            "the computed value when you run the pipeline.",
        )

    # Attributes, items and formatting have no value either (``name.upper()``, ``cfg['lr']``,
    # ``f"{name}"``; the last would otherwise pass the placeholder's repr on as a constant).
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        expr = f"{_ref(self)}.{name}"
        return self._no_arithmetic(expr, _use_inside(self, expr), DefinitionAttributeError)

    def __getitem__(self, key: Any) -> Any:
        expr = f"{_ref(self)}[{key!r}]"
        return self._no_arithmetic(expr, _use_inside(self, expr))

    def __format__(self, spec: str) -> str:
        expr = f"f'{{{_ref(self)}{':' + spec if spec else ''}}}'"
        return self._no_arithmetic(expr, _use_inside(self, expr))  # type: ignore[no-any-return]


def _use_inside(value: Any, expr: str) -> str:
    return f"Pass {_ref(value)} to a component and write `{expr}` inside it, where it has its value."


def _ref(value: Any) -> str:
    ref = getattr(value, "_nbpipe_ref", None)
    return ref() if callable(ref) else str(getattr(value, "name", "value"))


def _binary(symbol: str, reflected: bool = False) -> Any:
    def op(self: Comparable, other: Any) -> Any:
        me = _ref(self)
        return self._no_arithmetic(f"{other!r} {symbol} {me}" if reflected else f"{me} {symbol} {other!r}")

    return op


def _unary(template: str) -> Any:
    def op(self: Comparable, *args: Any) -> Any:
        expr = template.format(_ref(self))
        if template == "{} as an index":  # range(x), [..][x]: most often a loop over a count or a list
            return self._no_arithmetic(expr, "To run steps once per item, loop with `with nbpipe.ParallelFor(items) "
                                             "as item:` over a list (a pipeline parameter or a step's output); "
                                             "range() needs a number known when the pipeline is defined.")
        return self._no_arithmetic(expr)

    return op


def no_step_arithmetic(step_cls: type) -> type:
    """Operators on a step itself (``step + 1``, ``range(step)``): a step is not a value; say which is."""

    def make(template: str) -> Any:
        def op(self: Any, *args: Any) -> Any:
            expr = template.format(self.name, *(repr(a) for a in args))
            raise DefinitionError(
                f"Step '{self.name}' is a step of the pipeline, not a value, so `{expr}` cannot be computed "
                "while the pipeline is being defined",
                "Its outputs are placeholders whose values exist only when the run executes",
                f"Pass {self.name}.output (or {self.name}.outputs['<name>']) to another component and compute "
                "there.")

        return op

    for sym, name in _BINARY:
        setattr(step_cls, f"__{name}__", make("{0} %s {1}" % sym))
        setattr(step_cls, f"__r{name}__", make("{1} %s {0}" % sym))
    for name, template in _UNARY:
        setattr(step_cls, f"__{name}__", make(template.replace("{}", "{0}")))
    return step_cls


_BINARY = (("+", "add"), ("-", "sub"), ("*", "mul"), ("/", "truediv"), ("//", "floordiv"), ("%", "mod"),
           ("**", "pow"), ("@", "matmul"), ("<<", "lshift"), (">>", "rshift"), ("^", "xor"))
_UNARY = (("neg", "-{}"), ("pos", "+{}"), ("abs", "abs({})"), ("int", "int({})"), ("float", "float({})"),
          ("index", "{} as an index"), ("round", "round({})"))
for _sym, _name in _BINARY:
    setattr(Comparable, f"__{_name}__", _binary(_sym))
    setattr(Comparable, f"__r{_name}__", _binary(_sym, reflected=True))
for _name, _template in (*_UNARY, ("len", "len({})")):
    setattr(Comparable, f"__{_name}__", _unary(_template))


# The reprs of placeholders, as str(), "%s" % p or "..." + str(p) would paste them into a constant.
_PLACEHOLDER_TEXT = re.compile(r"<pipeline parameter [\w-]+: [^<>]*>|<output [\w.-]+\.\w+: [^<>]*>|<loop item [\w.-]+>")


def check_constant(where: str, value: Any, path: str = "", outer: str = "") -> None:
    """A constant input must not hold a placeholder (inside a list or dict) or its text (``str(p)``)."""
    if isinstance(value, str):
        m = _PLACEHOLDER_TEXT.search(value)
        if m:
            raise DefinitionError(
                f"{where} got the text {m.group(0)!r}: a placeholder turned into a string while the pipeline "
                "is being defined (str(), % or + on it)",
                "It has no value yet, so the step would get that text, not the value",
                "Pass the parameter or output itself and build the string inside the component.",
            )
    elif len(path) < 200 and isinstance(value, (list, tuple, dict)):
        outer = outer or type(value).__name__
        for key, item in (value.items() if isinstance(value, dict) else enumerate(value)):
            at = f"{path}[{key!r}]"
            if hasattr(item, "__nbpipe_operand__"):  # a parameter, step, step output or loop item
                what = getattr(item, "_nbpipe_what", lambda: repr(item))()
                raise DefinitionError(
                    f"{where} got a {outer} holding {what} (at {at})",
                    "A step input takes a placeholder only directly, not inside a list or dict",
                    "Give the component one input per value (or fan in a loop's outputs with "
                    "nbpipe.Collected(step.output)).",
                )
            check_constant(where, item, at, outer)
