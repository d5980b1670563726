"""What a component returned, against what it declared: said in the user's terms, before it is stored.

Like Kubeflow's executor, a value output is checked against its annotation (``-> int``) when the
step ends, so the mistake shows at the step that made it, not at a later step that reads it (or
never). Lenient where Python is: an ``int`` fits ``float``, NumPy scalars fit their kinds, any
sequence fits ``list``. Only the JSON types are checked (a class annotation is the user's own
business), and ``None`` only fits ``Optional[...]``: the usual cause is a missing ``return``.
A value that cannot be serialized at all (a lock, a generator) gets its own message (:func:`unstorable`).
Both are ``JobError`` messages: the step fails with no traceback of nbpipe's frames.
"""

from __future__ import annotations

import numbers
from typing import Any


def _kind(value: Any) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _fits(base: str, value: Any) -> bool:
    if base == "int":
        return isinstance(value, numbers.Integral)
    if base == "float":
        return isinstance(value, numbers.Real)
    if base == "bool":
        return isinstance(value, bool) or (type(value).__module__ == "numpy" and "bool" in type(value).__name__)
    if base == "str":
        return isinstance(value, str)
    if base == "list":
        return not isinstance(value, (str, bytes, dict, numbers.Number))
    return not isinstance(value, (str, bytes, list, tuple, numbers.Number))  # dict


def mismatch(component: str, name: str, declared: str, value: Any) -> str:
    """The message for a value that does not fit its declared type, or ``""`` when it fits."""
    optional = declared.startswith("Optional[") and declared.endswith("]")
    base = (declared[len("Optional["):-1] if optional else declared).split("[", 1)[0]
    if base not in ("int", "float", "bool", "str", "list", "dict") or (value is None and optional):
        return ""
    if value is None:
        return (f"Component '{component}' is declared to return {declared} (output '{name}') but returned None. "
                "Does every path of the function reach a `return`? Return the value, or declare it "
                f"Optional[{declared}].")
    if _fits(base, value):
        return ""
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return (f"Component '{component}' is declared to return {declared} (output '{name}') but returned "
            f"{_a(_kind(value))}: {shown}. Return {_a(base)}, or change the annotation.")


def unstorable(component: str, name: str, value: Any, exc: Exception) -> str:
    """What to tell the user when the value a component returned cannot be serialized."""
    kind = type(value)
    fix = ("Return list(...) of it instead of a generator" if kind.__name__ in ("generator", "async_generator")
           else "Return plain data (numbers, strings, lists, dicts, NumPy arrays, DataFrames, picklable objects), "
                "or write files into an Output[...] artifact")
    return (f"Component '{component}' returned {_a(_kind(value))} as its output '{name}', which cannot be stored "
            f"({type(exc).__name__}: {str(exc)[:300]}). {fix}.")


def _a(word: str) -> str:
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"
