"""After a runner restart, the local executor's step is run again and holds its cache key again.

The local executor does not re-attach to step processes (a restarted runner kills what a previous
one left and retries the step; see ``nbpipe.runner.recovery``). The retried attempt claims the
step's cache key as any start does: a run submitted after the restart with the identical step
waits for it and reuses its result, which is stored in the cache. The Kubernetes executor's
re-attached steps are covered in ``tests/k8s/test_reattach_cache_claim.py``.

Real runner processes on one data dir (``kill -9``, then started again) and real step processes;
the step blocks on a gate file the test writes after the restart, so nothing depends on timing.
"""

from __future__ import annotations

import signal
from typing import Any

from runner_process import RunnerProcess

from nbpipe import component, pipeline
from nbpipe import events as ev


@component
def held(gate: str) -> dict:
    """Waits until ``gate`` exists, then returns which run and attempt computed the result."""
    import os
    import time

    print("holding", flush=True)
    while not os.path.exists(gate):
        time.sleep(0.05)
    return {"run": os.environ["NBPIPE_RUN_ID"], "attempt": int(os.environ["NBPIPE_ATTEMPT"])}


@pipeline(name="recovery-claim")
def gated(gate: str = ""):
    held(gate=gate)


def _until(run: Any, what: type[ev.Event], step: str | None = None, attempt: int | None = None) -> None:
    for event in run.events():
        if (isinstance(event, what) and (step is None or getattr(event, "step", None) == step)
                and (attempt is None or getattr(event, "attempt", None) == attempt)):
            return
    raise AssertionError(f"run {run.id} ended without {what.__name__}")


def test_a_step_retried_after_a_restart_is_waited_for_by_an_identical_new_step(tmp_path) -> None:
    data, gate = tmp_path / "data", tmp_path / "gate"
    r = RunnerProcess(data).start()
    try:
        first = r.client().submit(gated, {"gate": str(gate)})
        _until(first, ev.StepLog, "held")  # "holding": the step process runs
        r.stop(signal.SIGKILL)
        r.start()
        first = r.client().run(first.id)
        _until(first, ev.StepStarted, "held", attempt=2)  # the previous runner's attempt was killed
        second = r.client().submit(gated, {"gate": str(gate)})
        _until(second, ev.RunStarted)  # the tick that starts B looks at its step in the same commit
        step = second.snapshot()["steps"][0]
        assert (step["state"], step["reason"]) == (
            "pending", f"waiting for step 'held' of run {first.id}, running the same code and inputs; "
                       "its result will be reused"), step
        gate.touch()
        done = second.wait(timeout=120)
        reused = done.steps["held"]
        assert (reused["state"], reused["attempt"]) == ("cached", 0), reused
        assert done.output("held") == {"run": first.id, "attempt": 2}
        assert first.wait(timeout=120).steps["held"]["attempt"] == 2
    finally:
        gate.touch()
        r.stop()
