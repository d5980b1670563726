"""End-to-end cases for the Kubernetes executor, run against the API double and a real cluster.

Each case takes a :class:`~tests.k8s.conftest.Cluster` and a runner process using it:
runner → Kubernetes API → pod → ``nbpipe.executors.entry`` → S3 store → events.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

from nbpipe import Dataset, Input, Output, component, pipeline
from nbpipe import events as ev

from .conftest import ACCESS, Cluster


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@component(cache=False)
def make_rows(n: int, data: Output[Dataset]) -> int:
    import os

    with open(data.path, "w") as fh:
        fh.write("\n".join(str(i) for i in range(n)))
    print(f"wrote {n} rows in pod {os.environ.get('NBPIPE_POD_NAME')}")
    return n


class Totals(NamedTuple):
    total: int
    secret_ok: bool


@component(cache=False)
def sum_rows(data: Input[Dataset], expect_key: str) -> Totals:
    import os

    vals = [int(x) for x in open(data.path).read().split()]
    return Totals(sum(vals), os.environ.get("NBPIPE_S3_ACCESS_KEY") == expect_key)


@pipeline
def handoff(n: int = 10):
    rows = make_rows(n=n)
    sum_rows(data=rows.outputs["data"], expect_key=ACCESS)


def end_to_end(c: Cluster, client: Any) -> dict[str, float]:
    """A two-step pipeline with an artifact hand-off; successful pods are deleted; logs are in the store."""
    t0 = time.monotonic()
    run = client.submit(handoff, {"n": 5}).wait(timeout=120)
    wall = time.monotonic() - t0
    assert run.state == "succeeded"
    assert run.outputs("sum_rows") == {"total": 10, "secret_ok": True}
    assert "wrote 5 rows in pod nbp-" in run.logs("make_rows")
    started = {e.step: e.ts for e in run.events(follow=False) if isinstance(e, ev.StepStarted)}
    finished = {e.step: e.ts for e in run.events(follow=False) if isinstance(e, ev.StepFinished)}
    wait_for("successful pods to be deleted", lambda: c.pods(run.id) == [])
    return {"run_wall_s": wall, "step_latency_s": max(finished[s] - started[s] for s in started)}


@component(retries=1, backoff=0.1, cache=False)
def flaky(x: int) -> int:
    import os

    attempt = int(os.environ["NBPIPE_ATTEMPT"])
    if attempt < 2:
        raise ConnectionError(f"transient failure on attempt {attempt}")
    return x + attempt


def claims(c: Cluster) -> dict[str, dict[str, Any]]:
    """The namespace's volume claims by name (a Terminating one is still listed)."""
    import json

    resp = c.api().list_namespaced_persistent_volume_claim(c.namespace, _preload_content=False)
    return {x["metadata"]["name"]: x for x in json.loads(resp.data)["items"]}


def store_object(c: Cluster, run_id: str, suffix: str) -> bytes:
    """An object the run wrote to the test's S3 store, found by run id and key suffix."""
    from minio import Minio

    from .conftest import SECRET

    s3 = Minio(c.s3_endpoint.split("//")[1], access_key=ACCESS, secret_key=SECRET, secure=False)
    names = [o.object_name for o in s3.list_objects("nbpipe-k8s", recursive=True)
             if f"runs/{run_id}/" in o.object_name and o.object_name.endswith(suffix)]
    assert len(names) == 1, (suffix, names)
    return bytes(s3.get_object("nbpipe-k8s", names[0]).read())


def retry_makes_a_new_pod(c: Cluster, client: Any) -> None:
    """A retry is a new pod; the failed attempt's kept pod goes with the run's claim (see below)."""
    import json

    from nbpipe.executors.k8s_pod import claim_name

    @pipeline
    def p():
        flaky(x=40)

    run = client.submit(p).wait(timeout=120)
    assert run.output("flaky") == 42 and run.steps["flaky"]["attempt"] == 2
    assert "transient failure on attempt 1" in run.logs("flaky", attempt=1)
    # The runner uses a per-run claim: the failed first attempt's pod (kept by on-success) names it,
    # so it is deleted when the run ends; its final status stays in the store, its log in nbpipe.
    wait_for("the run's claim to be gone (not Terminating)", lambda: claim_name(run.id) not in claims(c), 60)
    wait_for("the kept pod to be deleted", lambda: c.pods(run.id) == [])
    pod = json.loads(store_object(c, run.id, "flaky/1/pod.json"))
    assert (pod["metadata"]["labels"]["nbpipe.io/attempt"], pod["status"]["phase"]) == ("1", "Failed")
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
    assert "transient failure on attempt 1" in run.logs("flaky", attempt=1)


@component(cache=False)
def count_rows(n: int) -> int:
    print(f"counted {n} rows")
    return n


@component(cache=False)
def always_fails(x: int) -> int:
    raise ValueError(f"bad input {x}")


def claims_released_under_every_policy(c: Cluster, data_dir: Path) -> None:
    """Whatever NBPIPE_K8S_DELETE_PODS keeps, a finished run's claim is gone, not Terminating.

    Each policy runs a pipeline whose second step fails after the first succeeded: pods that the
    policy keeps name the claim, and pvc-protection keeps a claim while any scheduled pod names it,
    even a Failed one. With NBPIPE_K8S_RUN_VOLUME_DELETE=never the claim and the kept pod stay.
    """
    import json

    from nbpipe.executors.k8s_pod import claim_name

    @pipeline
    def p():
        always_fails(x=count_rows(n=3).output)

    mount = data_dir / "mnt"
    mount.mkdir(parents=True)
    base = {"NBPIPE_K8S_RUN_VOLUME_SIZE": "1Gi", "NBPIPE_K8S_VOLUME_MOUNT": str(mount / "run")}
    for policy, volume_delete, kept in (("on-success", "on-run-finish", ["always_fails"]),
                                        ("never", "on-run-finish", ["always_fails", "count_rows"]),
                                        ("always", "on-run-finish", []),
                                        ("on-success", "never", ["always_fails"])):
        r = c.runner(data_dir / f"{policy}-{volume_delete}", NBPIPE_K8S_DELETE_PODS=policy,
                     NBPIPE_K8S_RUN_VOLUME_DELETE=volume_delete, **base)
        run = r.client().submit(p).wait(timeout=120, raise_on_failure=False)
        assert run.state == "failed" and "bad input 3" in run.logs("always_fails"), (policy, run.steps)
        claim = claim_name(run.id)
        if volume_delete == "never":
            wait_for("the failed pod to end", lambda: [x["status"].get("phase") for x in c.pods(run.id)] == ["Failed"])
            assert claim in claims(c) and not claims(c)[claim]["metadata"].get("deletionTimestamp")
            c.api().delete_namespaced_pod(c.pods(run.id)[0]["metadata"]["name"], c.namespace, grace_period_seconds=0)
            c.api().delete_namespaced_persistent_volume_claim(claim, c.namespace)
        wait_for(f"the claim to be gone ({policy}, {volume_delete})", lambda: claim not in claims(c), 60)
        wait_for("the run's pods to be gone", lambda: c.pods(run.id) == [])
        if volume_delete == "on-run-finish":
            for step in kept:  # what the policy kept stays inspectable: final status in the store
                pod = json.loads(store_object(c, run.id, f"{step}/1/pod.json"))
                assert pod["metadata"]["annotations"]["nbpipe.io/attempt-id"] == f"{run.id}.{step}.1"
            assert "counted 3 rows" in run.logs("count_rows")
        r.stop()


def failed_pods_are_kept_without_a_run_volume(c: Cluster, data_dir: Path) -> None:
    """With no per-run claim, on-success keeps a failed attempt's pod (for `kubectl describe`) after the run."""
    r = c.runner(data_dir / "plain")

    @pipeline
    def p():
        always_fails(x=1)

    run = r.client().submit(p).wait(timeout=120, raise_on_failure=False)
    assert run.state == "failed"
    pods = c.pods(run.id)
    assert [(x["metadata"]["labels"]["nbpipe.io/attempt"], x["status"]["phase"]) for x in pods] == [("1", "Failed")]
    assert pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
    c.api().delete_namespaced_pod(pods[0]["metadata"]["name"], c.namespace, grace_period_seconds=0)
    r.stop()


@component(cache=False)
def sleeper(seconds: float) -> float:
    import time

    print("sleeping", flush=True)
    time.sleep(seconds)
    print("woke up", flush=True)
    return seconds


@component(cache=False, timeout=2)
def too_slow() -> int:
    import time

    time.sleep(120)
    return 0


def cancel_and_timeout_delete_pods(c: Cluster, client: Any) -> None:
    @pipeline
    def long():
        sleeper(seconds=120)

    run = client.submit(long)
    wait_for("the step pod to run", lambda: any(p["status"].get("phase") == "Running" for p in c.pods(run.id)))
    run.cancel()
    run.wait(timeout=60, raise_on_failure=False)
    assert run.state == "cancelled" and run.steps["sleeper"]["state"] == "cancelled"
    wait_for("the cancelled pod to be deleted", lambda: c.pods(run.id) == [])

    @pipeline
    def slow():
        too_slow()

    run = client.submit(slow).wait(timeout=60, raise_on_failure=False)
    assert "timed out after 2 s" in run.steps["too_slow"]["reason"]
    wait_for("the timed-out pod to be deleted", lambda: c.pods(run.id) == [])


@component(cache=False, base_image="nbpipe/does-not-exist:missing")
def needs_missing_image() -> int:
    return 1


def image_pull_error_fails_fast(c: Cluster, client: Any) -> None:
    @pipeline
    def p():
        needs_missing_image()

    t0 = time.monotonic()
    run = client.submit(p).wait(timeout=120, raise_on_failure=False)
    step = run.steps["needs_missing_image"]
    assert step["state"] == "failed", step
    assert "cannot pull image 'nbpipe/does-not-exist:missing'" in step["reason"]
    assert "NBPIPE_K8S_IMAGE_PULL_SECRETS" in step["reason"]  # says what to do
    assert time.monotonic() - t0 < 60
    wait_for("the pod that cannot pull to be deleted", lambda: c.pods(run.id) == [])


@component(cache=False, resources={"memory": "100Mi"})
def hog(mb: int) -> int:
    import time

    block = bytearray(mb * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(30)
    return len(block)


def oom_is_reported(c: Cluster, client: Any) -> None:
    @pipeline
    def p():
        hog(mb=400)

    run = client.submit(p).wait(timeout=90, raise_on_failure=False)
    reason = run.steps["hog"]["reason"]
    assert "ran out of memory" in reason and "OOMKilled" in reason and "100Mi" in reason, reason


def restart_reattaches(c: Cluster, data_dir: Path) -> None:
    """A runner killed mid-step comes back, finds the pod by its labels and awaits it: no retry."""

    @pipeline
    def p():
        sleeper(seconds=4.0)

    r = c.runner(data_dir)
    run = r.client().submit(p)
    wait_for("the step to print", lambda: "sleeping" in run.logs("sleeper"))
    pods_before = [x["metadata"]["name"] for x in c.pods(run.id)]
    r.stop(signal.SIGKILL)
    assert [x["metadata"]["name"] for x in c.pods(run.id)] == pods_before  # the pod outlives the runner
    r.start()
    again = r.client().run(run.id).wait(timeout=60)
    step = again.steps["sleeper"]
    assert (step["state"], step["attempt"]) == ("succeeded", 1), step
    assert again.output("sleeper") == 4.0
    log = again.logs("sleeper")
    assert log.count("sleeping") == 1 and "woke up" in log


def cancel_survives_a_restart(c: Cluster, data_dir: Path) -> None:
    """Cancel answered, runner killed at once, runner back: the run ends cancelled and no pod of it
    runs on. Whether the pod was deleted before the crash or the restarted runner re-attaches to it
    and deletes it then, the step must not run its 10 minutes (nor be retried)."""

    @pipeline
    def p():
        sleeper(seconds=600.0)

    r = c.runner(data_dir)
    client = r.client()
    run = client.submit(p)
    wait_for("the step to print", lambda: "sleeping" in run.logs("sleeper"))
    assert client.cancel(run.id)["cancelling"] is True
    r.stop(signal.SIGKILL)
    r.start()
    done = r.client().run(run.id).wait(timeout=120, raise_on_failure=False)
    assert done.state == "cancelled", (done.state, done.snapshot()["reason"])
    assert done.steps["sleeper"]["state"] == "cancelled", done.steps["sleeper"]
    assert done.steps["sleeper"]["attempt"] == 1  # not retried after the restart

    def stopped() -> bool:
        return all(x["metadata"].get("deletionTimestamp") or (x.get("status") or {}).get("phase") in
                   ("Succeeded", "Failed") for x in c.pods(run.id))
    wait_for("the run's pod to be stopped", stopped, timeout=60)


@component(cache=False)
def write_volume(text: str) -> str:
    import os

    path = os.path.join(os.environ["NBPIPE_VOLUME"], "shared.txt")
    with open(path, "w") as fh:
        fh.write(text)
    return path


@component(cache=False)
def read_volume(path: str) -> str:
    return open(path).read()


def run_volume_is_shared_and_deleted(c: Cluster, client: Any) -> None:
    """With NBPIPE_K8S_RUN_VOLUME_SIZE, the first step creates the run's claim; all steps mount it."""

    @pipeline
    def p():
        read_volume(path=write_volume(text="from the first step").output)

    run = client.submit(p).wait(timeout=120)
    assert run.output("read_volume") == "from the first step"
    from nbpipe.executors.k8s_pod import claim_name

    api = c.api()
    claim = claim_name(run.id)

    def claim_gone() -> bool:
        return claim not in [x.metadata.name for x in api.list_namespaced_persistent_volume_claim(c.namespace).items]

    wait_for("the run's volume claim to be deleted", claim_gone)
    if c.double is not None:  # one claim for the run, created once and reused by the second step
        made = [p for m, p in c.double.requests if m == "POST" and p.endswith("/persistentvolumeclaims")]
        deleted = [p for m, p in c.double.requests if m == "DELETE" and p.endswith(f"/persistentvolumeclaims/{claim}")]
        assert len(deleted) == 1 and made


def installed_packages(c: Cluster, client: Any, wheel: Path) -> None:
    """``packages`` are pip-installed in the pod before the entrypoint runs."""
    name = wheel.name.split("-")[0]

    @component(cache=False, packages=[f"{name} @ {wheel.as_uri()}"], env={"PIP_NO_INDEX": "1"})
    def use_package() -> int:
        import importlib

        return int(importlib.import_module(name).VALUE)

    @pipeline
    def p():
        use_package()

    run = client.submit(p).wait(timeout=120)
    assert run.output("use_package") == 42
    assert "installing 1 package(s)" in run.logs("use_package")

