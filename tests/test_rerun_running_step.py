"""*Rerun from here* on a step that is still running starts the step again at once.

A step re-run on purpose never takes a cached result (README: "From STEP re-executes STEP ... never
from the cache"), so it must not wait for the identical step still running in the original run
either: it waited (StepWaiting, "its result will be reused") and then ran anyway, after the other one
ended (58 s instead of 30 in a user's notebook). Real runner, real step processes; the step blocks
on a gate file the test writes, so nothing depends on timing.
"""

from __future__ import annotations

from typing import Any

from nbpipe import component, pipeline
from nbpipe import events as ev


@component(name="rr_held")
def held(gate_path: str) -> dict:
    """Waits until ``gate_path`` exists, then says which run it ran in."""
    import os
    import time

    while not os.path.exists(gate_path):
        time.sleep(0.05)
    return {"run": os.environ["NBPIPE_RUN_ID"]}


@pipeline(name="rerun-running")
def gated(gate_path: str = ""):
    held(gate_path=gate_path)


def _first(run: Any, *types: type[ev.Event], step: str) -> ev.Event:
    for event in run.events():
        if isinstance(event, types) and getattr(event, "step", None) == step:
            return event
    raise AssertionError(f"run {run.id} ended before any of {[t.__name__ for t in types]} for {step}")


def test_rerun_from_a_running_step_starts_it_now_instead_of_waiting_for_the_running_one(nb_client, tmp_path) -> None:
    gate = tmp_path / "gate"
    first = nb_client.submit(gated, {"gate_path": str(gate)})
    _first(first, ev.StepStarted, step="rr_held")
    again = nb_client.rerun(first.id, from_step="rr_held")
    try:
        got = _first(again, ev.StepStarted, ev.StepWaiting, step="rr_held")
        assert isinstance(got, ev.StepStarted), got  # not "waiting for step 'rr_held' of run ..."
        assert first.snapshot()["steps"][0]["state"] == "running"  # both run at once
    finally:
        gate.touch()
    done = again.wait(timeout=120)
    assert done.steps["rr_held"]["state"] == "succeeded" and done.output("rr_held")["run"] == again.id
    assert first.wait(timeout=120).steps["rr_held"]["state"] == "succeeded"
