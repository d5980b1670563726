"""Condition expressions: comparisons of pipeline placeholders with constants, as plain JSON.

``param > 3`` on a pipeline parameter, step output or loop item builds a :class:`Condition`
(``{"op": ">", "left": {"parameter": "n"}, "right": {"value": 3}}``); ``&``, ``|`` and ``~``
combine them. :mod:`nbpipe.control` uses them for ``nbpipe.If``; the runner evaluates them on
JSON values (:mod:`nbpipe.runner.expand`). Placeholders take part through two duck-typed hooks,
``__nbpipe_operand__(where)`` and ``__nbpipe_binding__(trace, where, spec)``, so this module
imports nothing of the tracer.

Non-goals: evaluating conditions in Python while tracing (they have no value yet).
"""

from __future__ import annotations

from typing import Any

from .errors import DefinitionError
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
    def _no_arithmetic(self, expr: str) -> Any:
        what = getattr(self, "_nbpipe_what", lambda: repr(self))()
        raise DefinitionError(
            f"{what} has no value while the pipeline is being defined, so `{expr}` cannot be computed here",
            "It is a placeholder: its value exists only when the run executes; the pipeline function "
            "only wires steps together",
            "Do the arithmetic inside a component (pass the value to a step and compute there), or pass "
            "the computed value when you run the pipeline.",
        )


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
        return self._no_arithmetic(template.format(_ref(self)))

    return op


for _sym, _name in (("+", "add"), ("-", "sub"), ("*", "mul"), ("/", "truediv"), ("//", "floordiv"),
                    ("%", "mod"), ("**", "pow"), ("@", "matmul"), ("<<", "lshift"), (">>", "rshift"),
                    ("^", "xor")):
    setattr(Comparable, f"__{_name}__", _binary(_sym))
    setattr(Comparable, f"__r{_name}__", _binary(_sym, reflected=True))
for _name, _template in (("neg", "-{}"), ("pos", "+{}"), ("abs", "abs({})"), ("int", "int({})"),
                         ("float", "float({})"), ("index", "{} as an index"), ("round", "round({})"),
                         ("len", "len({})")):
    setattr(Comparable, f"__{_name}__", _unary(_template))
