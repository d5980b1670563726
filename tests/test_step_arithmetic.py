"""Definition-time mistakes on steps say what is wrong and what to do, as placeholders already did:
``step + 1`` (was Python's "unsupported operand type(s) for +: 'Step' and 'int'" with no hint),
``range(param)`` points to ParallelFor, and the messages say "an int"."""

from __future__ import annotations

import numpy as np
import pytest

from nbpipe import component, pipeline
from nbpipe.errors import DefinitionError


@component
def plus_one(x: int) -> int:
    return x + 1


@pytest.mark.parametrize("expr, shown", [
    (lambda s: s + 1, "`plus_one + 1`"),
    (lambda s: 2 * s, "`2 * plus_one`"),
    (lambda s: -s, "`-plus_one`"),
    (lambda s: range(s), "`plus_one as an index`"),
    (lambda s: float(s), "`float(plus_one)`"),
])
def test_arithmetic_on_a_step_says_it_is_a_step_not_a_value(expr, shown) -> None:
    def p():
        expr(plus_one(x=1))

    with pytest.raises(DefinitionError) as err:
        pipeline(p)
    msg = str(err.value)
    assert f"Step 'plus_one' is a step of the pipeline, not a value, so {shown} cannot be computed" in msg, msg
    assert err.value.hint == ("Pass plus_one.output (or plus_one.outputs['<name>']) to another component and "
                              "compute there."), err.value.hint


def test_a_step_stays_usable_as_a_step() -> None:
    def p():
        a = plus_one(x=1)
        plus_one(x=a.output).after(a)
        assert {a: 1}[a] == 1 and a == a and len(list(a)) == 1  # hashable, comparable, iterable as before

    assert [s for s in pipeline(p).steps] == ["plus_one", "plus_one-2"]


def test_range_over_a_parameter_points_to_parallelfor() -> None:
    def p(n: int = 3):
        for i in range(n):
            plus_one(x=i)

    with pytest.raises(DefinitionError) as err:
        pipeline(p)
    assert "nbpipe.ParallelFor(items)" in err.value.hint, err.value.hint


def test_type_messages_say_an_int() -> None:
    def wrong_type():
        plus_one(x="abc")

    def numpy_constant():
        plus_one(x=np.int64(3))

    with pytest.raises(DefinitionError) as err:
        pipeline(wrong_type)
    assert err.value.hint == "Pass an int value."
    with pytest.raises(DefinitionError) as err:
        pipeline(numpy_constant)
    assert "got an int64 constant" in str(err.value)


def test_star_parameters_are_named_as_written() -> None:
    def spread(a: int, *rest: int) -> int:
        return a

    def options(a: int, **opts: int) -> int:
        return a

    for func, shown in ((spread, "*rest"), (options, "**opts")):
        with pytest.raises(DefinitionError) as err:
            component(func)
        assert str(err.value).startswith(f"Component '{func.__name__}' takes {shown}. A component's inputs must be named"), str(err.value)
        assert f"instead of {shown}" in err.value.hint
