"""The real runner as a process on loopback, with real step processes.

Covers: artifact hand-off, retry-then-succeed, timeout, crashes (exception, os._exit,
segfault, SIGKILL), cancel (whole process tree), cache hit/miss/staleness, parallel
fan-out, live logs, resumable events, rejected packages, auth, the embedded default.
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple

import httpx
import psutil
import pytest

import nbpipe
from nbpipe import Dataset, Input, Metrics, Output, component, pipeline
from nbpipe import events as ev
from nbpipe.errors import RunnerError, StepFailed


@component(cache=False)
def make_rows(n: int, data: Output[Dataset], stats: Output[Metrics]) -> int:
    with open(data.path, "w") as fh:
        fh.write("\n".join(str(i) for i in range(n)))
    stats.log_metric("rows", n)
    print(f"wrote {n} rows")
    return n


class Totals(NamedTuple):
    total: int
    lines: int


@component(cache=False)
def sum_rows(data: Input[Dataset]) -> Totals:
    vals = [int(x) for x in open(data.path).read().split()]
    return Totals(sum(vals), len(vals))


@pipeline
def handoff(n: int = 10):
    rows = make_rows(n=n)
    sum_rows(data=rows.outputs["data"])


def test_artifact_handoff_values_and_previews(nb_client) -> None:
    run = nb_client.submit(handoff, {"n": 5}).wait(timeout=120)
    assert run.state == "succeeded"
    assert run.outputs("sum_rows") == {"total": 10, "lines": 5}
    outs = run.outputs("make_rows")
    assert outs["output"] == 5 and open(outs["data"].path).read().split() == ["0", "1", "2", "3", "4"]
    assert outs["stats"].metadata == {"rows": 5}
    step = run.steps["make_rows"]
    assert step["outputs"]["stats"]["preview"] == {"type": "metrics", "metrics": {"rows": 5}}
    types = [e.type for e in run.events(follow=False)]
    assert types[0] == "RunCreated" and types[-1] == "RunFinished" and types.count("ArtifactSaved") == 5
    assert "wrote 5 rows" in run.logs("make_rows")


@component(retries=2, backoff=0.1, cache=False)
def flaky(x: int) -> int:
    attempt = int(os.environ["NBPIPE_ATTEMPT"])
    if attempt < 2:
        raise ConnectionError(f"transient failure on attempt {attempt}")
    return x + attempt


def test_retry_then_succeed(nb_client) -> None:
    @pipeline
    def p():
        flaky(x=40)

    run = nb_client.submit(p).wait(timeout=60)
    s = run.steps["flaky"]
    assert (s["state"], s["attempt"], s["max_attempts"]) == ("succeeded", 2, 3)
    assert run.output("flaky") == 42
    retry = [e for e in run.events(follow=False) if isinstance(e, ev.StepRetrying)]
    assert len(retry) == 1 and "transient failure on attempt 1" in retry[0].reason
    assert "transient failure on attempt 1" in run.logs("flaky", attempt=1)


@component(cache=False, timeout=1.5)
def hang(pidfile: str) -> int:
    import subprocess
    import time

    child = subprocess.Popen(["sleep", "300"])
    open(pidfile, "w").write(str(child.pid))
    time.sleep(300)
    return 0


def _wait_gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_timeout_kills_the_whole_process_tree(nb_client, tmp_path) -> None:
    pidfile = tmp_path / "child.pid"

    @pipeline
    def p():
        hang(pidfile=str(pidfile))

    run = nb_client.submit(p).wait(timeout=60, raise_on_failure=False)
    s = run.steps["hang"]
    assert s["state"] == "failed" and "timed out after 1.5 s" in s["reason"]
    assert _wait_gone(int(pidfile.read_text())), "the step's grandchild survived the timeout"


@component(cache=False)
def crash(how: str) -> int:
    import ctypes
    import os
    import signal

    print("about to crash:", how, flush=True)
    if how == "exit":
        os._exit(3)
    if how == "segfault":
        ctypes.string_at(0)
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    return 0


@component(cache=False)
def fine() -> str:
    return "still fine"


@pytest.mark.parametrize("how,reason", [
    ("exit", "exited with code 3 without reporting a result"),
    ("segfault", "killed by SIGSEGV (segmentation fault)"),
    ("kill", "killed by SIGKILL"),
])
def test_crashing_step_fails_with_reason_and_runner_keeps_going(nb_client, how: str, reason: str) -> None:
    @pipeline
    def p(how: str = "exit"):
        crash(how=how)
        fine()

    run = nb_client.submit(p, {"how": how}).wait(timeout=60, raise_on_failure=False)
    s = run.steps["crash"]
    assert run.state == "failed" and s["state"] == "failed" and reason in s["reason"]
    assert "about to crash" in s["traceback"]
    if how == "segfault":
        assert "Fatal Python error: Segmentation fault" in s["traceback"]
    assert run.steps["fine"]["state"] == "succeeded"
    assert nb_client.health()["status"] == "ok"


def _helper_that_fails(values: list) -> float:
    return sum(values) / len(values)


@component(cache=False)
def average(values: list) -> float:
    return _helper_that_fails(values)


@component(cache=False)
def after_average(x: float) -> float:
    return x


def test_python_error_traceback_reaches_the_client(nb_client) -> None:
    @pipeline
    def p(values: list = []):  # noqa: B006
        after_average(x=average(values=values).output)

    run = nb_client.submit(p)
    with pytest.raises(StepFailed) as info:
        run.wait(timeout=60)
    text = str(info.value)
    assert "Step 'average' failed: ZeroDivisionError: division by zero" in text
    assert "_helper_that_fails" in text and "return sum(values) / len(values)" in text
    assert "nbpipe/executors" not in text
    assert run.steps["after_average"]["state"] == "skipped"
    assert "upstream step 'average' failed" in run.steps["after_average"]["reason"]


@component(cache=False)
def sleeper(pidfile: str, seconds: float = 300) -> int:
    import subprocess
    import time

    child = subprocess.Popen(["sleep", "300"])
    open(pidfile, "w").write(str(child.pid))
    print("sleeping", flush=True)
    time.sleep(seconds)
    return 1


def test_cancel_kills_steps_and_cancels_the_rest(nb_client, tmp_path) -> None:
    pidfile = tmp_path / "child.pid"

    @pipeline
    def p(pidfile: str = ""):
        s = sleeper(pidfile=pidfile)
        after_average(x=s.output)

    run = nb_client.submit(p, {"pidfile": str(pidfile)})
    deadline = time.time() + 30
    while not pidfile.exists() and time.time() < deadline:
        time.sleep(0.05)
    run.cancel()
    run.wait(timeout=30)
    steps = run.steps
    assert run.state == "cancelled"
    assert steps["sleeper"]["state"] == "cancelled" and steps["after_average"]["state"] == "cancelled"
    assert _wait_gone(int(pidfile.read_text())), "the cancelled step's grandchild survived"


@component
def square(x: int) -> int:
    return x * x


@component(max_cache_staleness=0)
def never_stale_enough(x: int) -> int:
    return x


@component(cache=False)
def uncached(x: int) -> int:
    return x


def test_cache_hit_miss_and_staleness(nb_client) -> None:
    token = time.time_ns()  # unique inputs: earlier test runs must not pre-fill the cache

    @pipeline
    def p(x: int = 1):
        a = square(x=x)
        never_stale_enough(x=a.output)
        uncached(x=a.output)

    first = nb_client.submit(p, {"x": token}).wait(timeout=60)
    assert {n: s["state"] for n, s in first.steps.items()} == {
        "square": "succeeded", "never_stale_enough": "succeeded", "uncached": "succeeded"}
    second = nb_client.submit(p, {"x": token}).wait(timeout=60)
    assert {n: s["state"] for n, s in second.steps.items()} == {
        "square": "cached", "never_stale_enough": "succeeded", "uncached": "succeeded"}
    assert second.output("square") == token * token
    third = nb_client.submit(p, {"x": token + 1}).wait(timeout=60)
    assert third.steps["square"]["state"] == "succeeded"


@component(cache=False)
def rendezvous(i: int, folder: str, n: int) -> list:
    """Check in, then wait until all ``n`` steps have: only steps running at the same time get past."""
    import os
    import time

    start = time.time()
    open(os.path.join(folder, str(i)), "w").close()
    while len(os.listdir(folder)) < n:
        time.sleep(0.01)
    return [start, time.time()]


def test_independent_steps_run_in_parallel(nb_client, tmp_path) -> None:
    # A rendezvous, not a stopwatch: steps run one by one would wait forever (the step timeout
    # below ends that), however loaded the machine is.
    @pipeline
    def p(folder: str):
        for i in range(8):
            rendezvous(i=i, folder=folder, n=8).set_timeout(300)

    run = nb_client.submit(p, {"folder": str(tmp_path)}).wait(timeout=600)
    spans = [run.output(n) for n in run.steps]
    peak = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert peak == 8, f"only {peak} of 8 steps were running at once"


@component(cache=False)
def chatty(seconds: float = 4.0) -> str:
    import time

    print("hello-live", flush=True)
    time.sleep(seconds)
    return "done"


def test_logs_are_readable_while_the_step_runs(nb_client) -> None:
    @pipeline
    def p():
        chatty()

    run = nb_client.submit(p)
    deadline = time.time() + 30
    text = ""
    while "hello-live" not in text and time.time() < deadline:
        text = run.logs("chatty")
        time.sleep(0.1)
    assert "hello-live" in text
    assert run.steps["chatty"]["state"] == "running"
    logs = [e for e in run.events() if isinstance(e, ev.StepLog)]
    assert any("hello-live" in e.text for e in logs)
    assert run.wait(timeout=30).state == "succeeded"


def test_events_resume_from_an_event_id(nb_client) -> None:
    run = nb_client.submit(handoff, {"n": 3}).wait(timeout=60)
    all_events = list(run.events())
    mid = all_events[len(all_events) // 2].id
    rest = list(run.events(after=mid))
    assert [e.id for e in rest] == [e.id for e in all_events if e.id > mid]
    resp = httpx.get(f"{nb_client.url}/api/v1/runs/{run.id}/events",
                     headers={"Last-Event-ID": str(mid), "Authorization": f"Bearer {nb_client.token}"})
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.text.count("\nevent: ") + resp.text.startswith("event: ") >= 1
    assert f"id: {rest[0].id}\n" in resp.text and f"id: {mid}\n" not in resp.text


def test_rejected_packages_get_clear_errors(nb_client) -> None:
    with pytest.raises(RunnerError, match="not an nbpipe package"):
        nb_client.submit(b"definitely not a zip")
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("nbpipe.json", "{}")
        zf.writestr("../../escape", "x")
    with pytest.raises(RunnerError, match="path-traversal entry '../../escape'"):
        nb_client.submit(buf.getvalue())
    with pytest.raises(RunnerError, match="does not match its digest"):
        nb_client._request("PUT", "/api/v1/packages/" + "0" * 64, content=b"abc")


def test_openapi_spec_lists_the_api(nb_client) -> None:
    spec = httpx.get(f"{nb_client.url}/openapi.json").json()
    for path in ("/api/v1/runs", "/api/v1/runs/{run_id}", "/api/v1/runs/{run_id}/events",
                 "/api/v1/runs/{run_id}/cancel", "/api/v1/runs/{run_id}/steps/{step}/logs",
                 "/api/v1/packages/{digest}", "/api/v1/artifacts/{digest}", "/api/v1/health"):
        assert path in spec["paths"], path


def test_rerun_from_a_failed_step_reuses_upstream(nb_client) -> None:
    @pipeline
    def p(values: list = []):  # noqa: B006
        a = make_rows(n=3)
        average(values=values).after(a)

    run = nb_client.submit(p).wait(timeout=60, raise_on_failure=False)
    assert run.steps["average"]["state"] == "failed"
    again = run.rerun(from_step="average").wait(timeout=60, raise_on_failure=False)
    assert again.steps["make_rows"]["state"] == "cached"
    assert again.steps["average"]["state"] == "failed" and again.steps["average"]["attempt"] == 1


@component
def slow_shared(x: int, seconds: float = 1.5) -> int:
    import os
    import time

    time.sleep(seconds)
    return os.getpid()


def test_identical_steps_running_at_once_are_computed_once(nb_client) -> None:
    token = time.time_ns()

    @pipeline
    def p(x: int = 0, tag: str = ""):
        fine().after(slow_shared(x=x))

    runs = [nb_client.submit(p, {"x": token, "tag": t}) for t in ("a", "b", "c")]
    done = [r.wait(timeout=60) for r in runs]
    assert len({r.output("slow_shared") for r in done}) == 1
    states = sorted(r.steps["slow_shared"]["state"] for r in done)
    assert states == ["cached", "cached", "succeeded"]
