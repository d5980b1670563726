"""A cancel the runner answered survives the runner's crash: after a restart the run ends cancelled.

The user pressed Cancel, the runner said "cancelling", then died (``kill -9``) before its steps
had ended. Before, the restarted runner knew nothing of the cancel: it retried the running step,
the run *succeeded*, and its cancelled downstream step was left in a succeeded run. Real runner
processes on one data dir; the step waits for a file the test creates only after the crash, so a
step run again would succeed.
"""

from __future__ import annotations

import signal
import time

from runner_process import RunnerProcess
from test_runner_crash import assert_consistent

from nbpipe import component, pipeline


@component(cache=False)
def waiter(flag: str) -> int:
    import os
    import time

    print("waiting for", flag, flush=True)
    while not os.path.exists(flag):
        time.sleep(0.02)
    return 1


@component(cache=False)
def after(x: int) -> int:
    return x + 1


@pipeline
def waits(flag: str = ""):
    after(x=waiter(flag=flag).output)


def _until_logged(run, step: str, text: str, bound: float = 120) -> None:
    deadline = time.monotonic() + bound  # only stops a hang
    while text not in (run.logs(step) or ""):
        assert time.monotonic() < deadline, f"{step} never logged {text!r}"
        time.sleep(0.05)


def test_a_cancel_the_runner_answered_survives_its_crash(tmp_path) -> None:
    data, flag = tmp_path / "data", tmp_path / "flag"
    r = RunnerProcess(data).start()
    c = r.client()
    run = c.submit(waits, {"flag": str(flag)})
    _until_logged(run, "waiter", "waiting for")
    answer = c.cancel(run.id)
    assert answer["cancelling"] is True
    c.close()
    r.stop(signal.SIGKILL)  # before the step's kill and the run's end were recorded
    flag.write_text("go")  # a step started again now would succeed
    assert_consistent(data / "nbpipe.db", "after the crash")

    r2 = RunnerProcess(data).start()
    try:
        c2 = r2.client()
        done = c2.run(run.id).wait(timeout=120, raise_on_failure=False)
        assert done.state == "cancelled", (done.state, done.snapshot()["reason"])
        assert {n: s["state"] for n, s in done.steps.items()} == {"waiter": "cancelled", "after": "cancelled"}
        events = list(done.events(after=0, follow=False))
        assert events[-1].type == "RunFinished" and events[-1].state == "cancelled"
        assert not [e for e in events if e.type == "StepFinished" and e.state == "succeeded"]
        c2.close()
    finally:
        r2.stop()
    assert_consistent(data / "nbpipe.db", "after the restart")
