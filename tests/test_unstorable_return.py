"""A component that returns what cannot be stored (a lock, a generator) fails with a message that
says which component, which output, what it returned and what to return instead — no traceback of
nbpipe's or cloudpickle's frames (it used to be ``TypeError: cannot pickle '_thread.lock' object``
and serializers.py's frames). Real runner, real step processes."""

from __future__ import annotations

from typing import Any

import pytest

from nbpipe import component, pipeline
from nbpipe.errors import StepFailed


@component(cache=False)
def hands_back_a_lock() -> int:
    import threading

    return threading.Lock()  # type: ignore[return-value]


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
