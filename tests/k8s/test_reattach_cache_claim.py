"""A step a restarted runner re-attaches to (its pod ran on) is still the one computing its result.

The runner de-duplicates identical steps in flight: a step whose cache key another run's running
step holds waits for it and reuses its result (see ``tests/test_cache_inflight.py``). A runner
killed with ``kill -9`` and started again on the same data dir re-attaches to the pods still
running; before, it did not claim their cache keys again nor remember them, so

- a run submitted after the restart with the identical step started a duplicate pod, and
- the re-attached step's result was not stored in the cache (a later identical step ran again).

A re-attached step that fails gives its claim back: the waiting identical step runs itself.

Real runner processes, the Kubernetes API double (``tests/k8s/apiserver.py``: pods are processes
of this machine) and moto S3. Each step blocks on a gate file the test writes, so nothing depends
on timing; the gate's text names a run whose step fails instead of returning.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from nbpipe import component, pipeline
from nbpipe import events as ev

from .cases import wait_for
from .conftest import Cluster


@component
def held(gate: str) -> dict:
    """Waits for ``gate``; fails if the gate's text is this run's id, else returns where it ran."""
    import os
    import time

    print("holding", flush=True)
    while not os.path.exists(gate):
        time.sleep(0.05)
    if open(gate).read() == os.environ["NBPIPE_RUN_ID"]:
        raise RuntimeError("the gate says this run's step fails")
    return {"run": os.environ["NBPIPE_RUN_ID"], "pod": os.environ.get("NBPIPE_POD_NAME", "")}


@pipeline(name="reattach-claim")
def gated(gate: str = ""):
    held(gate=gate)


def _open(gate: Path, text: str = "") -> None:
    """Write the gate in one step (a step never reads it half written)."""
    tmp = gate.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, gate)


def _until(run: Any, what: type[ev.Event], step: str | None = None) -> ev.Event:
    for event in run.events():
        if isinstance(event, what) and (step is None or getattr(event, "step", None) == step):
            return event
    raise AssertionError(f"run {run.id} ended without {what.__name__}")


def _reattached_run(c: Cluster, data_dir: Path, gate: Path, fail_while_down: bool = False) -> tuple[Any, Any]:
    """A runner, killed with SIGKILL while run A's step pod runs (held at the gate), then started
    again: returns (runner, run A) with A's step re-attached, its pod the one from before.
    ``fail_while_down``: A's step fails (its pod ends) before the runner is started again."""
    if not c.shares_host:
        pytest.skip("the gate file must be visible to the step pods (the double, the k8s-rig)")
    r = c.runner(data_dir)
    first = r.client().submit(gated, {"gate": str(gate)})
    _until(first, ev.StepLog, "held")  # "holding": the pod runs the step
    pods = [p["metadata"]["name"] for p in c.pods(first.id)]
    r.stop(signal.SIGKILL)
    if fail_while_down:
        _open(gate, first.id)
        wait_for("A's pod to end", lambda: all(p["status"].get("phase") in ("Succeeded", "Failed")
                                               for p in c.pods(first.id)), timeout=60)
    r.start()
    first = r.client().run(first.id)
    if fail_while_down:
        return r, first
    step = first.snapshot()["steps"][0]
    assert (step["state"], step["attempt"]) == ("running", 1), step  # re-attached, not retried
    assert [p["metadata"]["name"] for p in c.pods(first.id)] == pods
    return r, first


def _waiting(r: Any, first: Any, gate: Path) -> Any:
    """Run B, submitted after the restart: its identical step waits for A's re-attached one."""
    second = r.client().submit(gated, {"gate": str(gate)})
    _until(second, ev.RunStarted)  # the tick that starts B looks at its step in the same commit
    step = second.snapshot()["steps"][0]
    assert (step["state"], step["reason"]) == (
        "pending", f"waiting for step 'held' of run {first.id}, running the same code and inputs; "
                   "its result will be reused"), step
    return second


def test_a_new_identical_step_waits_for_the_reattached_one_whose_result_is_cached(cluster: Cluster,
                                                                                  data_dir: Path) -> None:
    gate = data_dir.parent / "gate"
    r, first = _reattached_run(cluster, data_dir, gate)
    try:
        second = _waiting(r, first, gate)
    finally:
        _open(gate)
    done = second.wait(timeout=120)
    assert done.steps["held"]["state"] == "cached", done.steps["held"]
    assert done.steps["held"]["reason"] == f"reused from run {first.id} by the cache"
    assert done.output("held")["run"] == first.id
    assert cluster.pods(second.id) == []  # no duplicate pod
    assert first.wait(timeout=120).steps["held"]["state"] == "succeeded"
    # The re-attached step stored its result in the cache: a later identical step is a hit.
    later = r.client().submit(gated, {"gate": str(gate)}).wait(timeout=120)
    assert (later.steps["held"]["state"], later.steps["held"]["attempt"]) == ("cached", 0), later.steps["held"]
    assert later.output("held")["run"] == first.id


def test_a_reattached_step_that_fails_releases_its_claim(cluster: Cluster, data_dir: Path) -> None:
    gate = data_dir.parent / "gate"
    r, first = _reattached_run(cluster, data_dir, gate)
    try:
        second = _waiting(r, first, gate)
    finally:
        _open(gate, first.id)  # A's step fails, B's would succeed
    assert first.wait(timeout=120, raise_on_failure=False).steps["held"]["state"] == "failed"
    done = second.wait(timeout=120)  # before: it waited forever when the claim was never released
    step = done.steps["held"]
    assert (step["state"], step["attempt"], step["reason"]) == ("succeeded", 1, ""), step
    assert done.output("held")["run"] == second.id


def test_a_step_whose_pod_failed_while_the_runner_was_down_releases_its_claim(cluster: Cluster,
                                                                               data_dir: Path) -> None:
    gate = data_dir.parent / "gate"
    r, first = _reattached_run(cluster, data_dir, gate, fail_while_down=True)
    second = r.client().submit(gated, {"gate": str(gate)})  # waits for A's step at most until its end is read
    failed = first.wait(timeout=120, raise_on_failure=False).steps["held"]
    assert (failed["state"], failed["attempt"]) == ("failed", 1), failed  # re-attached: its own error
    assert "the gate says this run's step fails" in failed["reason"], failed
    done = second.wait(timeout=120)
    step = done.steps["held"]
    assert (step["state"], step["attempt"]) == ("succeeded", 1), step
    assert done.output("held")["run"] == second.id
