"""The live graph never goes quietly stale: a runner that stops scheduling, or goes away, is said in
the widget's header (its synced ``notice``), with what to do. Real runner processes, the real widget."""

from __future__ import annotations

import signal
import time
from typing import Any, Callable

from runner_process import RunnerProcess

from nbpipe import component, pipeline
from nbpipe.widgets import RunView


@component(cache=False)
def gate(flag: str) -> str:
    import os
    import time

    while not os.path.exists(flag):
        time.sleep(0.05)
    return "open"


@pipeline
def gated(flag: str = ""):
    gate(flag=flag)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120.0) -> Any:
    """Poll a state the widget's threads set (no timing margin: the deadline only bounds a hang)."""
    end = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def test_a_runner_that_stops_scheduling_is_said_in_the_header(tmp_path: Any) -> None:
    # the loop dies at start: a submitted run stays queued; keep-alives every 0.3 s make the check quick
    r = RunnerProcess(tmp_path / "data", extra_env={"NBPIPE_FAILPOINT": "loop-crash",
                                                    "NBPIPE_SSE_KEEPALIVE": "0.3"}).start()
    try:
        run = r.client().submit(gated, {"flag": str(tmp_path / "never")})
        view = RunView(run)
        try:
            notice = wait_for("the stalled notice", lambda: view.notice.get("text"))
            assert view.notice["kind"] == "error"
            assert f"Run {run.id} cannot go on" in notice and "scheduling loop stopped" in notice, notice
            assert "Restart the runner" in notice  # what to do
            assert view.snapshot["state"] in ("queued", "running")  # the graph still shows what the runner has
        finally:
            view.close()
        # a stop ends the runner itself even while a follower's event stream is open (it used to
        # wait on the stream forever, until SIGKILL)
        follower = RunView(run)
        try:
            r.proc.send_signal(signal.SIGTERM)
            assert r.proc.wait(timeout=120) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
        finally:
            follower.close()
    finally:
        r.stop()


def test_a_runner_that_goes_away_is_said_in_the_header(tmp_path: Any) -> None:
    r = RunnerProcess(tmp_path / "data").start()
    flag = tmp_path / "flag"
    try:
        run = r.client().submit(gated, {"flag": str(flag)})
        view = RunView(run)
        try:
            wait_for("the step running", lambda: [s for s in view.snapshot.get("steps", []) if s["state"] == "running"])
            assert not view.notice
            r.stop()
            notice = wait_for("the runner-gone notice", lambda: view.notice.get("text"))
            assert view.notice["kind"] == "error"
            assert notice.startswith(f"Stopped following run {run.id}: "), notice
            assert f"nbpipe.attach({run.id!r}) shows it live again" in notice, notice
        finally:
            view.close()
    finally:
        flag.touch()
        r.stop()
