"""Re-runs on the real runner: Rerun, Rerun from STEP, Rerun from failed with a new package.

Steps return the pid, attempt and run id of the process that computed them, so the tests tell a
re-executed step (a new process of the new run) from a reused one (the old run's process) by
their outputs, not only by their states.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest

from nbpipe import component, pipeline
from nbpipe.errors import RunnerError


@component
def prep(n: int) -> dict:
    import os

    return {"n": n, "pid": os.getpid(), "run": os.environ["NBPIPE_RUN_ID"]}


@component
def train(data: dict) -> dict:
    import os

    return {"model": data["n"] * 2, "pid": os.getpid(), "run": os.environ["NBPIPE_RUN_ID"]}


@component
def evaluate(model: dict) -> dict:
    import os

    return {"score": model["model"] + 1, "pid": os.getpid(), "run": os.environ["NBPIPE_RUN_ID"]}


@component
def side(n: int) -> dict:
    import os

    return {"side": n, "pid": os.getpid(), "run": os.environ["NBPIPE_RUN_ID"]}


@pipeline(name="rerun-chain")
def chain(n: int = 3):
    d = prep(n=n)
    side(n=n)
    m = train(data=d.output)
    evaluate(model=m.output)


def test_rerun_from_a_step_re_executes_it_and_downstream_and_reuses_upstream(nb_client) -> None:
    first = nb_client.submit(chain, {"n": 7}).wait(timeout=120)
    again = first.rerun(from_step="train").wait(timeout=120)
    assert again.id != first.id
    steps = again.steps
    # upstream and the side branch: reused from the first run, not computed again
    for name in ("prep", "side"):
        assert steps[name]["state"] == "cached" and steps[name]["attempt"] == 0, steps[name]
        assert steps[name]["reason"] == f"reused from run {first.id} (upstream of 'train', unchanged)"
        assert again.output(name)["run"] == first.id and again.output(name)["pid"] == first.output(name)["pid"]
    # STEP and downstream: new processes of the new run, although the content cache has them
    for name, why in (("train", "re-executed: re-run from 'train'"), ("evaluate", "re-executed: downstream of 'train'")):
        assert steps[name]["state"] == "succeeded" and steps[name]["attempt"] == 1, steps[name]
        assert steps[name]["reason"] == why
        out = again.output(name)
        assert out["run"] == again.id and out["pid"] != first.output(name)["pid"]
    assert again.output("evaluate")["score"] == 15
    assert again.last_snapshot["labels"]["rerun_of"] == first.id
    assert again.last_snapshot["labels"]["rerun_from"] == "train"


def test_plain_rerun_is_a_new_run_with_the_same_parameters(nb_client) -> None:
    first = nb_client.submit(chain, {"n": 11}).wait(timeout=120)
    again = first.rerun().wait(timeout=120)
    assert again.id != first.id and again.snapshot()["params"] == {"n": 11}
    assert again.output("evaluate")["score"] == 23
    assert "(re-run)" in again.name and "(re-run) (re-run)" not in again.rerun().name


def fix_pipeline(safe: bool, offset: int = 0) -> Any:
    """The pipeline 'rerun-fix' as a notebook has it after an edit: ``safe`` fixes 'divide',
    ``offset`` changes 'fprep'. Defined afresh each time, like a re-run cell."""

    @component
    def fprep(n: int) -> dict:
        import os

        return {"n": n + offset, "pid": os.getpid(), "run": os.environ["NBPIPE_RUN_ID"]}

    @component
    def divide(data: dict, by: int) -> float:
        return data["n"] / (by or 1) if safe else data["n"] / by

    @pipeline(name="rerun-fix")
    def fixable(n: int = 3, by: int = 0):
        r = divide(data=fprep(n=n).output, by=by)
        evaluate(model={"model": 1}).after(r)

    return fixable


def test_rerun_from_failed_with_a_new_package_reuses_only_unchanged_steps(nb_client) -> None:
    first = nb_client.submit(fix_pipeline(safe=False), {"n": 4}).wait(timeout=120, raise_on_failure=False)
    assert [s["state"] for s in first.snapshot()["steps"]] == ["succeeded", "failed", "skipped"]

    again = first.rerun(from_failed=True, pipeline=fix_pipeline(safe=True))
    # the answer already has the reused step resolved: the runner took the new run as far as it goes and
    # started 'divide' at once (it waited for the scheduler's next idle tick, 5 s, after a fix)
    assert {s["name"]: s["state"] for s in again.last_snapshot["steps"]}["fprep"] == "cached"
    again.wait(timeout=120)
    steps = again.steps
    assert steps["fprep"]["state"] == "cached" and again.output("fprep")["pid"] == first.output("fprep")["pid"]
    assert steps["fprep"]["reason"] == f"reused from run {first.id} (upstream of 'divide', unchanged)"
    assert steps["divide"]["state"] == "succeeded" and again.output("divide") == 4.0
    assert steps["divide"]["reason"] == "re-executed: re-run from 'divide'"
    assert steps["evaluate"]["state"] == "succeeded" and again.output("evaluate")["run"] == again.id
    assert again.snapshot()["package"] != first.snapshot()["package"]

    # a changed upstream step is not reused, even though the re-run starts below it
    third = again.rerun(from_step="evaluate", pipeline=fix_pipeline(safe=True, offset=1)).wait(timeout=120)
    steps = third.steps
    assert steps["fprep"]["reason"] == f"re-executed: its code changed since run {again.id}"
    assert steps["divide"]["reason"] == "re-executed: upstream step 'fprep' changed"
    assert third.output("divide") == 5.0 and third.output("fprep")["run"] == third.id


def test_rerun_errors_name_the_problem(nb_client) -> None:
    first = nb_client.submit(chain, {"n": 2}).wait(timeout=120)
    with pytest.raises(RunnerError, match="has no step 'nope'.*Its steps are: evaluate, prep, side, train"):
        first.rerun(from_step="nope")
    with pytest.raises(RunnerError, match="No run r-unknown"):
        nb_client.rerun("r-unknown")
    from nbpipe.errors import NbpipeError

    with pytest.raises(NbpipeError, match=f"Run {first.id} has no failed step"):
        first.rerun(from_failed=True)
    with pytest.raises(RunnerError, match="ran pipeline 'rerun-chain', not 'rerun-fix'"):
        first.rerun(pipeline=fix_pipeline(safe=True))


@component
def gate(d: dict, gate_path: str) -> dict:
    """Waits until ``gate_path`` exists: the test decides when this step may finish."""
    import os
    import time

    while not os.path.exists(gate_path):
        time.sleep(0.05)
    return {"model": d["n"]}  # the same output every time: only the re-run's marks keep 'evaluate' fresh


@pipeline(name="rerun-restart")
def gated(n: int = 2, gate_path: str = ""):
    m = gate(d=prep(n=n).output, gate_path=gate_path)
    evaluate(model=m.output)


def test_a_runner_restart_during_a_rerun_from_a_step_keeps_downstream_fresh(nb_runner_factory, tmp_path) -> None:
    from nbpipe import events as ev

    runner = nb_runner_factory("restart")
    client = runner.client()
    open_gate = tmp_path / "gate"
    open_gate.touch()
    first = client.submit(gated, {"gate_path": str(open_gate)}).wait(timeout=120)
    open_gate.unlink()
    again = first.rerun(from_step="gate")
    for event in again.events():  # the re-run's gate step is running (and blocked on the gate)
        if isinstance(event, ev.StepStarted) and event.step == "gate":
            break
    runner.stop(signal.SIGKILL)
    runner.start()
    client = runner.client()
    open_gate.touch()
    done = client.run(again.id).wait(timeout=120)
    steps = done.steps
    assert steps["prep"]["state"] == "cached" and done.output("prep")["run"] == first.id
    # still executed again after the restart (gate: a new attempt), never from the cache
    assert steps["gate"]["state"] == "succeeded" and steps["gate"]["attempt"] >= 2, steps["gate"]
    assert steps["evaluate"]["state"] == "succeeded" and done.output("evaluate")["run"] == again.id
    assert steps["evaluate"]["reason"] == "re-executed: downstream of 'gate'"
