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


def retry_makes_a_new_pod(c: Cluster, client: Any) -> None:
    @pipeline
    def p():
        flaky(x=40)

    run = client.submit(p).wait(timeout=120)
    assert run.output("flaky") == 42 and run.steps["flaky"]["attempt"] == 2
    assert "transient failure on attempt 1" in run.logs("flaky", attempt=1)
    pods = c.pods(run.id)  # the failed first attempt's pod is kept for `kubectl describe`
    assert [(p["metadata"]["labels"]["nbpipe.io/attempt"], p["status"]["phase"]) for p in pods] == [("1", "Failed")]
    assert pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1


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

