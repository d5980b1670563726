"""The run graph's Cancel on a run that already ended says so, as ``%nbpipe cancel`` does (it said
"Cancelling run …" and nothing happened); a re-run whose pipeline variable now holds another value
names that value's type in plain English ("is now an int")."""

from __future__ import annotations

from typing import Any

import pytest
from IPython.testing.globalipapp import start_ipython

from nbpipe import component, pipeline
from nbpipe.errors import NbpipeError
from nbpipe.widgets.actions import perform


@component
def qa_one(n: int) -> int:
    return n + 1


@pipeline(name="qa-widget-cancel")
def qa_flow(n: int = 1):
    qa_one(n=n)


def test_cancel_on_an_ended_run_says_it_ended(nb_client: Any) -> None:
    run = nb_client.submit(qa_flow, {"n": 2}).wait(timeout=120)
    assert run.state == "succeeded"
    new, note = perform(run, "cancel", {}, None)
    assert new is None
    assert note == f"Run {run.id} already succeeded; nothing to cancel."
    assert run.snapshot()["state"] == "succeeded"


def test_rerun_of_a_pipeline_variable_that_now_holds_an_int(nb_client: Any) -> None:
    run = nb_client.submit(qa_flow, {"n": 3}).wait(timeout=120)
    shell = start_ipython() or __import__("IPython").get_ipython()
    shell.user_ns["qa_flow_var"] = 3
    try:
        with pytest.raises(NbpipeError, match=r"'qa_flow_var' is now an int, so the re-run"):
            perform(run, "rerun", {}, "qa_flow_var")
    finally:
        shell.user_ns.pop("qa_flow_var", None)
