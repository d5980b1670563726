"""A retried step waits for an identical step that holds its cache key, as a first attempt does.

A retry (attempt 2 and later) used to claim the step's cache key without looking: it took the
claim from the identical step running in another run and ran the same work a second time. Here
run B's step was waiting for run A's identical step when the runner was killed; the restarted
runner looks at B first (it is the older run), finds nobody computing the key and starts B's step;
A's step, whose attempt the restart ended, is retried and must now wait for B's step (it says so,
live) and reuse its result instead of running again. And a step cancelled while it waits for its
retry lets go of the key it held since its first attempt (an identical step waited for it forever).

Real runner processes on one data dir (``kill -9``, then started again) and real step processes;
the steps block on gate files the test writes, so nothing depends on timing.
"""

from __future__ import annotations

import signal
from typing import Any

from runner_process import RunnerProcess

from nbpipe import component, pipeline
from nbpipe import events as ev


@component
def prep(tag: str, gate: str) -> str:
    """Waits for ``gate``; the same output for every ``tag``, so the steps after it are identical."""
    import os
    import time

    while not os.path.exists(gate):
        time.sleep(0.05)
    return "same input"


@component
def held(x: str, gate: str) -> dict:
    """Waits until ``gate`` exists, then returns which run and attempt computed the result."""
    import os
    import time

    print("holding", flush=True)
    while not os.path.exists(gate):
        time.sleep(0.05)
    return {"run": os.environ["NBPIPE_RUN_ID"], "attempt": int(os.environ["NBPIPE_ATTEMPT"])}


@pipeline(name="retry-claim")
def twins(tag: str = "", gate_prep: str = "", gate_held: str = ""):
    held(x=prep(tag=tag, gate=gate_prep), gate=gate_held)


def _until(run: Any, after: int, match: Any) -> Any:
    for event in run.events(after=after):
        if match(event):
            return event
    raise AssertionError(f"run {run.id} ended without the event")


def _held(what: type[ev.Event]) -> Any:
    return lambda e: isinstance(e, what) and getattr(e, "step", "") == "held"


def test_a_retry_waits_for_the_identical_step_holding_its_cache_key_and_reuses_its_result(tmp_path) -> None:
    data, gate_a, gate_b, gate_held = tmp_path / "data", tmp_path / "a", tmp_path / "b", tmp_path / "held"
    gate_a.touch()
    r = RunnerProcess(data).start()
    try:
        b = r.client().submit(twins, {"tag": "B", "gate_prep": str(gate_b), "gate_held": str(gate_held)})
        a = r.client().submit(twins, {"tag": "A", "gate_prep": str(gate_a), "gate_held": str(gate_held)})
        _until(a, 0, lambda e: isinstance(e, ev.StepLog) and e.step == "held")  # A's step process runs
        gate_b.touch()
        _until(b, 0, _held(ev.StepWaiting))  # B's identical step waits for A's
        before = a.snapshot()["last_event_id"]
        r.stop(signal.SIGKILL)
        r.start()
        a, b = r.client().run(a.id), r.client().run(b.id)
        started = _until(b, 0, _held(ev.StepStarted))  # nobody holds the key after the restart: B's step runs
        assert started.attempt == 1
        # A's step, retried after the restart: it waits for B's instead of starting attempt 2
        seen = _until(a, before, lambda e: _held(ev.StepWaiting)(e) or _held(ev.StepStarted)(e))
        assert isinstance(seen, ev.StepWaiting), f"A's step ran again: attempt {getattr(seen, 'attempt', '?')}"
        reason = (f"waiting for step 'held' of run {b.id}, running the same code and inputs; "
                  "its result will be reused")
        assert (seen.waiting_for_run, seen.waiting_for_step, seen.reason) == (b.id, "held", reason)
        step = a.snapshot()["steps"][1]
        assert (step["name"], step["state"], step["reason"]) == ("held", "retrying", reason), step
        gate_held.touch()
        done_b = b.wait(timeout=120)
        assert done_b.output("held") == {"run": b.id, "attempt": 1}
        done_a = a.wait(timeout=120)
        reused = done_a.steps["held"]
        assert (reused["state"], reused["attempt"]) == ("cached", 1), reused  # no attempt 2 ran
        assert reused["reason"] == f"reused from run {b.id} by the cache"
        assert done_a.output("held") == {"run": b.id, "attempt": 1}
    finally:
        gate_b.touch()
        gate_held.touch()
        r.stop()


@component(retries=1, backoff=300.0)
def fails_once(marker: str) -> str:
    """Fails the first time (it leaves ``marker``), succeeds after; its retry waits 300 s."""
    import os

    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first time")
    return os.environ["NBPIPE_RUN_ID"]


@pipeline(name="retry-cancelled")
def once(marker: str = ""):
    fails_once(marker=marker)


def test_a_cancelled_retrying_step_lets_go_of_its_cache_key(nb_client, tmp_path) -> None:
    """A step cancelled while it waits for its retry no longer holds its cache key: an identical step
    submitted later runs (it waited forever for the cancelled step, which never ran again)."""
    marker = str(tmp_path / "marker")
    first = nb_client.submit(once, {"marker": marker})
    _until(first, 0, lambda e: isinstance(e, ev.StepRetrying) and e.step == "fails_once")
    first.cancel()
    assert first.wait(timeout=120, raise_on_failure=False).steps["fails_once"]["state"] == "cancelled"
    second = nb_client.submit(once, {"marker": marker})
    seen = _until(second, 0, lambda e: isinstance(e, (ev.StepWaiting, ev.StepStarted)) and e.step == "fails_once")
    assert isinstance(seen, ev.StepStarted), seen.reason
    assert second.wait(timeout=120).output("fails_once") == second.id
