"""Standby pods (``NBPIPE_K8S_PREWARM``): steps taken by prewarmed pods, on the double and the real API server.

A standby pod is started for a step still to come, imports its packages and waits for its job in the
store; a step that starts takes it (labels and annotations patched: ``nbpipe.io/standby=bound``).
These tests check what a user sees (outputs, logs, no extra steps), and that no standby pod outlives
its use: run end, cancel, runner stop, runner killed (the pod exits by itself), and that a runner
killed while a standby pod runs its step re-attaches to it. See :mod:`nbpipe.executors.k8s_standby`.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from nbpipe import component, pipeline

from .cases import sleeper, wait_for
from .conftest import Cluster

STANDBY = "nbpipe.io/standby"


@component(cache=False)
def where(x: int) -> str:
    import os

    print(f"step {os.environ['NBPIPE_STEP']} attempt {os.environ['NBPIPE_ATTEMPT']} in {os.environ['NBPIPE_POD_NAME']}")
    return f"{x + 1}:{os.environ['NBPIPE_STEP']}:{os.environ['NBPIPE_RUN_ID']}"


@component(cache=False)
def plus(x: str) -> int:
    return int(x.split(":")[0]) + 1


@component(cache=False)
def then(x: float) -> int:
    return int(x)


@component(cache=False)
def fails(gate: str) -> int:
    import os
    import time

    while not os.path.exists(gate):  # (pods are processes of this machine, on the double and the rig)
        time.sleep(0.05)
    raise ValueError("no")


def _all_pods(c: Cluster, run_id: str) -> list[dict[str, Any]]:
    return c.pods(run_id)


def _standby(c: Cluster, run_id: str, state: str = "") -> list[dict[str, Any]]:
    """Standby pods started for the run (waiting ones carry no run label) or bound to one of its steps."""
    return [p for p in c.pods() if STANDBY in p["metadata"]["labels"]
            and run_id in (p["metadata"]["labels"].get("nbpipe.io/run"),
                           (p["metadata"].get("annotations") or {}).get("nbpipe.io/standby-for"))
            and (not state or p["metadata"]["labels"][STANDBY] == state)]


def _cleanup(c: Cluster, run_id: str) -> None:
    for p in c.pods(run_id) + _standby(c, run_id):
        try:
            c.api().delete_namespaced_pod(p["metadata"]["name"], c.namespace, grace_period_seconds=0)
        except Exception:  # noqa: BLE001 - gone already
            pass


def test_a_chain_runs_in_standby_pods(cluster: Cluster, data_dir: Path) -> None:
    """Each step after the first runs in a pod that was warming for it: right outputs, logs and env,
    pods labelled and annotated as any step pod; three steps, three attempts, nothing else."""

    @pipeline
    def chain():
        a = where(x=1)
        b = plus(x=a.output)
        where(x=b.output)

    r = cluster.runner(data_dir, NBPIPE_K8S_PREWARM="2", NBPIPE_K8S_DELETE_PODS="never")
    client = r.client()
    run = client.submit(chain).wait(timeout=180)
    again = None
    try:
        assert run.output("where-2").startswith(f"4:where-2:{run.id}"), run.output("where-2")
        assert run.output("plus") == 3
        assert sorted(run.steps) == ["plus", "where", "where-2"]
        assert all(s["attempt"] == 1 for s in run.steps.values()), run.steps
        pods = {p["metadata"]["annotations"].get("nbpipe.io/attempt-id", ""): p for p in _all_pods(cluster, run.id)}
        bound = {a.split(".")[-2] for a, p in pods.items() if p["metadata"]["labels"].get(STANDBY) == "bound"}
        assert bound == {"plus", "where-2"}, {a: p["metadata"]["labels"] for a, p in pods.items()}
        for att, p in pods.items():
            if att:
                step = att.split(".")[-2]
                assert p["metadata"]["labels"]["nbpipe.io/step"] == step and p["metadata"]["labels"]["nbpipe.io/attempt"] == "1"
                env = {e["name"]: e.get("value") for e in p["spec"]["containers"][0]["env"]}
                assert env["NBPIPE_PROFILE"] == "default", env  # as a normal pod's (the run's id comes with the job)
        log = run.logs("where-2")
        name = next(p["metadata"]["name"] for a, p in pods.items() if a.endswith(".where-2.1"))
        assert f"step where-2 attempt 1 in {name}" in log, log
        events = list(run.events(follow=False))  # (standby pods are never steps or attempts)
        assert {getattr(e, "step", None) for e in events} - {None} == {"where", "plus", "where-2"}

        # the run ended: the pool keeps as many pods as it wanted at once warm for the next run of these
        # steps (the notebook loop), which then starts warm from its first step on
        wait_for("pods kept for the next run", lambda: len([
            p for p in _standby(cluster, run.id, "waiting") if not p["metadata"].get("deletionTimestamp")]) == 2, 60)
        again = client.submit(chain).wait(timeout=180)
        assert again.output("where-2").startswith(f"4:where-2:{again.id}"), again.output("where-2")  # its own run id
        pods = {p["metadata"]["annotations"].get("nbpipe.io/attempt-id", ""): p for p in _all_pods(cluster, again.id)}
        bound = {a.split(".")[-2] for a, p in pods.items() if p["metadata"]["labels"].get(STANDBY) == "bound"}
        assert bound == {"where", "plus", "where-2"}, {a: p["metadata"]["labels"] for a, p in pods.items()}
        assert "step where attempt 1 in nbp-standby-" in again.logs("where")
    finally:
        _cleanup(cluster, run.id)
        if again is not None:
            _cleanup(cluster, again.id)


@pipeline
def pair():
    plus(x=where(x=1).output)


def test_prewarm_0_starts_a_new_pod_per_step(cluster: Cluster, data_dir: Path) -> None:
    run = cluster.runner(data_dir, NBPIPE_K8S_PREWARM="0", NBPIPE_K8S_DELETE_PODS="never").client().submit(pair)
    try:
        assert run.wait(timeout=120).output("plus") == 3
        pods = _all_pods(cluster, run.id)
        assert len(pods) == 2 and not [p for p in pods if STANDBY in p["metadata"]["labels"]], pods
    finally:
        _cleanup(cluster, run.id)


def test_unused_standby_pods_go_with_the_run_and_idle_out_without_a_runner(cluster: Cluster, data_dir: Path) -> None:
    # a failed first step skips the rest: their standby pods are deleted when the run ends, as they
    # mount the run's claim (without one, they would be kept for the next run: see the chain above)
    @pipeline
    def skipped():
        plus(x=where(x=fails(gate=str(data_dir / "gate")).output).output)

    r = cluster.runner(data_dir, NBPIPE_K8S_PREWARM="2", NBPIPE_K8S_RUN_VOLUME_SIZE="1Gi",
                       NBPIPE_K8S_VOLUME_MOUNT=str(data_dir / "mnt" / "run"))
    client = r.client()
    run = client.submit(skipped)
    wait_for("standby pods for the next steps", lambda: len(_standby(cluster, run.id)) >= 1, 60)
    (data_dir / "gate").touch()
    run.wait(timeout=120, raise_on_failure=False)
    assert run.state == "failed" and run.steps["plus"]["state"] == "skipped"
    wait_for("the run's standby pods to be deleted", lambda: _standby(cluster, run.id) == [], 60)

    # a runner killed (-9) cannot delete them: each exits 0 by itself after its idle time
    @pipeline
    def waits():
        then(x=sleeper(seconds=600.0).output)

    r2 = cluster.runner(data_dir.with_name(data_dir.name + "-2"), NBPIPE_K8S_PREWARM="1",
                        NBPIPE_K8S_STANDBY_IDLE="6")
    run = r2.client().submit(waits)
    try:
        wait_for("the step to print", lambda: "sleeping" in run.logs("sleeper"), 60)
        wait_for("a standby pod", lambda: _standby(cluster, run.id, "waiting"), 60)
        r2.stop(signal.SIGKILL)
        ended = wait_for("the standby pod to exit by itself", lambda: [
            p for p in _standby(cluster, run.id) if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")], 90)
        assert ended[0]["status"]["phase"] == "Succeeded", json.dumps(ended[0].get("status"))
        log = cluster.api().read_namespaced_pod_log(ended[0]["metadata"]["name"], cluster.namespace)
        assert "no step came within its idle time" in log, log
    finally:
        _cleanup(cluster, run.id)


def test_cancel_and_runner_stop_leave_no_standby_pod(cluster: Cluster, data_dir: Path) -> None:
    @pipeline
    def waits():
        then(x=sleeper(seconds=600.0).output)

    r = cluster.runner(data_dir, NBPIPE_K8S_PREWARM="2")
    client = r.client()
    run = client.submit(waits)
    wait_for("a standby pod", lambda: _standby(cluster, run.id, "waiting"), 60)
    run.cancel()
    run.wait(timeout=90, raise_on_failure=False)
    assert run.state == "cancelled" and run.steps["then"]["state"] == "cancelled", run.steps
    assert run.steps["then"]["attempt"] == 0  # a standby pod is no attempt
    wait_for("no pod of the cancelled run left", lambda: cluster.pods(run.id) == [] == _standby(cluster, run.id), 60)

    run = client.submit(waits)
    wait_for("a standby pod", lambda: _standby(cluster, run.id, "waiting"), 60)
    r.stop()  # SIGTERM: the runner closes its executor, which deletes its standby pods
    try:
        wait_for("the standby pods to be deleted", lambda: _standby(cluster, run.id) == [], 60)
    finally:
        _cleanup(cluster, run.id)


def test_a_runner_killed_while_a_standby_pod_runs_its_step_reattaches(cluster: Cluster, data_dir: Path) -> None:
    @pipeline
    def chain():
        a = where(x=1)
        sleeper(seconds=5.0).after(a)

    r = cluster.runner(data_dir, NBPIPE_K8S_PREWARM="1")
    run = r.client().submit(chain)
    wait_for("the step to print", lambda: "sleeping" in run.logs("sleeper"), 90)
    pod = next(x for x in cluster.pods(run.id) if x["metadata"]["labels"].get("nbpipe.io/step") == "sleeper")
    assert pod["metadata"]["labels"].get(STANDBY) == "bound", pod["metadata"]["labels"]
    r.stop(signal.SIGKILL)
    r.start()
    again = r.client().run(run.id).wait(timeout=90)
    step = again.steps["sleeper"]
    assert (step["state"], step["attempt"]) == ("succeeded", 1), step
    assert again.output("sleeper") == 5.0
    log = again.logs("sleeper")
    assert log.count("sleeping") == 1 and "woke up" in log, log


def test_pods_kept_for_a_next_run_that_does_not_come_idle_out_and_are_not_replaced(cluster: Cluster,
                                                                                 data_dir: Path) -> None:
    r = cluster.runner(data_dir, NBPIPE_K8S_PREWARM="1", NBPIPE_K8S_STANDBY_IDLE="8")
    run = r.client().submit(pair)
    try:
        assert run.wait(timeout=120).output("plus") == 3
        # one pod is kept for the next run; it exits by itself after its idle time and the runner deletes
        # it and starts no other: nothing is left (every pod it ever made for the run is gone)
        wait_for("the kept pods to idle out and go", lambda: _standby(cluster, run.id, "waiting") == [], 90)
        assert r.client().health()["status"] == "ok"
        assert not [p for p in _standby(cluster, run.id)], _standby(cluster, run.id)
    finally:
        _cleanup(cluster, run.id)
