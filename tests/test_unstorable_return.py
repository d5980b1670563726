"""A component that returns what cannot be stored (a lock, a generator) fails with a message that
says which component, which output, what it returned and what to return instead — no traceback of
nbpipe's or cloudpickle's frames (it used to be ``TypeError: cannot pickle '_thread.lock' object``
and serializers.py's frames). Real runner, real step processes."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import pytest

from nbpipe import component, pipeline
from nbpipe.errors import StepFailed


@component(cache=False)
def hands_back_a_lock() -> object:
    import threading

    return threading.Lock()


@component(cache=False)
def hands_back_a_generator(n: int) -> list:
    return (i * 2 for i in range(n))  # type: ignore[return-value]


@pipeline(name="unstorable-returns")
def unstorable():
    hands_back_a_lock()
    hands_back_a_generator(n=3)


def test_an_unstorable_return_value_fails_the_step_saying_what_to_return(nb_client: Any) -> None:
    run = nb_client.submit(unstorable).wait(timeout=120, raise_on_failure=False)
    lock, gen = run.steps["hands_back_a_lock"], run.steps["hands_back_a_generator"]
    assert lock["state"] == gen["state"] == "failed", run.steps
    assert lock["reason"].startswith("Component 'hands_back_a_lock' returned a _thread.lock as its output 'output', "
                                     "which cannot be stored"), lock["reason"]
    assert "Return plain data" in lock["reason"] and "Output[...]" in lock["reason"], lock["reason"]
    assert gen["reason"].startswith("Component 'hands_back_a_generator' returned a generator"), gen["reason"]
    assert "Return list(...)" in gen["reason"], gen["reason"]
    assert lock["traceback"] == gen["traceback"] == ""  # nothing of nbpipe's or cloudpickle's
    with pytest.raises(StepFailed) as err:
        run.raise_for_failure()
    assert "cannot be stored" in str(err.value) and "serializers.py" not in str(err.value)


@component(cache=False)
def says_int_gives_str() -> int:
    return "abc"  # type: ignore[return-value]


@component(cache=False)
def forgot_to_return(x: float) -> float:
    if x > 10:
        return x  # (and nothing for smaller x)


@component(cache=False)
def says_dict_gives_list() -> dict:
    return []  # type: ignore[return-value]


@component(cache=False)
def fits_leniently() -> NamedTuple("Out", [("n", int), ("f", float), ("maybe", Optional[int]), ("seq", list),
                                            ("flag", bool)]):
    import numpy as np

    return np.int64(3), 2, None, (1, 2), np.bool_(True)  # type: ignore[return-value]


@pipeline(name="declared-returns")
def declared():
    says_int_gives_str()
    forgot_to_return(x=1.0)
    says_dict_gives_list()
    fits_leniently()


def test_a_return_value_that_does_not_fit_its_annotation_fails_that_step(nb_client: Any) -> None:
    """As Kubeflow's executor does: the step that returned the wrong type fails, saying so (not a later
    step that reads it); NumPy scalars, an int for a float, a tuple for a list and None for Optional fit."""
    run = nb_client.submit(declared).wait(timeout=120, raise_on_failure=False)
    s = run.steps
    assert s["says_int_gives_str"]["reason"] == ("Component 'says_int_gives_str' is declared to return int (output "
                                                 "'output') but returned a str: 'abc'. Return an int, or change the "
                                                 "annotation."), s["says_int_gives_str"]
    assert s["forgot_to_return"]["reason"].startswith(
        "Component 'forgot_to_return' is declared to return float (output 'output') but returned None. Does every "
        "path of the function reach a `return`?"), s["forgot_to_return"]
    assert "returned a list: []. Return a dict" in s["says_dict_gives_list"]["reason"], s["says_dict_gives_list"]
    assert all(s[n]["traceback"] == "" for n in ("says_int_gives_str", "forgot_to_return", "says_dict_gives_list"))
    assert s["fits_leniently"]["state"] == "succeeded", s["fits_leniently"]
    assert run.output("fits_leniently", "n") == 3 and run.output("fits_leniently", "maybe") is None
