"""A step identical to one running in another run waits for it, and says so.

Run A's step blocks on a gate file; run B's identical step (same code and inputs: the same cache
key) waits for it rather than doing the same work twice. Its pending reason names A's step, in the
snapshot the run graph, panel and ``%nbpipe`` show (before, it was empty for as long as A ran);
then it is ``cached`` from A, or runs itself if A is cancelled.
"""

from __future__ import annotations

from typing import Any

from nbpipe import component, pipeline
from nbpipe import events as ev


@component
def held(gate_path: str) -> dict:
    """Waits until ``gate_path`` exists: the test decides when this step may finish."""
    import os
    import time

    while not os.path.exists(gate_path):
        time.sleep(0.05)
    return {"run": os.environ["NBPIPE_RUN_ID"], "pid": os.getpid()}


@pipeline(name="inflight-gate")
def gated(gate_path: str = ""):
    held(gate_path=gate_path)


def _until(run: Any, what: type[ev.Event], step: str | None = None) -> None:
    for event in run.events():
        if isinstance(event, what) and (step is None or getattr(event, "step", None) == step):
            return


def _waiting_run(nb_client: Any, gate_path: str) -> tuple[Any, Any]:
    """Run A with its step running (blocked on the gate), and run B, started, its step waiting for A's."""
    first = nb_client.submit(gated, {"gate_path": gate_path})
    _until(first, ev.StepStarted, "held")
    second = nb_client.submit(gated, {"gate_path": gate_path})
    _until(second, ev.RunStarted)  # the tick that starts B looks at its step in the same commit
    step = second.snapshot()["steps"][0]
    assert step["state"] == "pending", step
    assert step["reason"] == (f"waiting for step 'held' of run {first.id}, running the same code and inputs; "
                              "its result will be reused"), step
    return first, second


def test_a_step_waiting_for_an_identical_running_step_says_so_then_reuses_it(nb_client, tmp_path) -> None:
    gate = tmp_path / "gate"
    first, second = _waiting_run(nb_client, str(gate))
    gate.touch()
    done = second.wait(timeout=120)
    step = done.steps["held"]
    assert step["state"] == "cached" and step["attempt"] == 0, step
    assert step["reason"] == f"reused from run {first.id} by the cache"
    assert done.output("held")["run"] == first.id
    assert first.wait(timeout=120).steps["held"]["state"] == "succeeded"


def test_a_waiting_step_runs_itself_when_the_run_it_waits_for_is_cancelled(nb_client, tmp_path) -> None:
    gate = tmp_path / "gate"
    first, second = _waiting_run(nb_client, str(gate))
    first.cancel()
    _until(second, ev.StepStarted, "held")  # A's step ended cancelled: B's runs itself
    assert second.snapshot()["steps"][0]["reason"] == ""
    gate.touch()
    done = second.wait(timeout=120)
    step = done.steps["held"]
    assert step["state"] == "succeeded" and step["attempt"] == 1 and step["reason"] == "", step
    assert done.output("held")["run"] == second.id
    assert first.wait(timeout=120, raise_on_failure=False).state == "cancelled"
