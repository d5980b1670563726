"""One runner per data dir, whatever the load.

Seen on a loaded CI machine (load 17): a kernel's health check of the session's embedded runner
took over 2 s, so ``ensure_local_runner`` thought it dead and started a second runner on the same
data dir; both then scheduled and recovered the same runs for the rest of the session. Here a
runner that cannot answer is a *stopped* process (SIGSTOP), so nothing depends on timing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nbpipe._embedded import ensure_local_runner, nbpipe_home, stop_local_runner
from nbpipe.errors import RunnerError
from runner_process import RunnerProcess


def test_a_second_runner_on_the_same_data_dir_refuses_to_start(tmp_path):
    first = RunnerProcess(tmp_path / "data").start()
    try:
        second = subprocess.run(
            [sys.executable, "-m", "nbpipe.runner", "--port", "0", "--data-dir", str(tmp_path / "data")],
            capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert f"Another nbpipe runner (pid {first.proc.pid}) is already serving the data dir" in second.stderr
        assert "another --data-dir" in second.stderr
        assert first.client().health()["status"] == "ok"
        first.stop(signal.SIGKILL)  # the kernel drops the lock with the process, however it ends
        first.start()
        assert first.client().health()["status"] == "ok"
    finally:
        first.stop()


def test_a_runner_that_does_not_answer_is_waited_for_never_doubled(nb_home):
    url = ensure_local_runner()
    info = (nbpipe_home() / "runner.json").read_text()
    pid = int(__import__("json").loads(info)["pid"])
    os.kill(pid, signal.SIGSTOP)  # alive, holding its data dir, answering nothing
    try:
        with pytest.raises(RunnerError, match=rf"is running but has not answered for 3 s") as exc:
            ensure_local_runner(timeout=3)
        assert "nbpipe runner stop" in str(exc.value.hint)
        assert (nbpipe_home() / "runner.json").read_text() == info  # no second runner took its place
        assert sorted(p.name for p in (nbpipe_home() / "runtime").glob("runner-*.json")) == [f"runner-{pid}.json"]
    finally:
        os.kill(pid, signal.SIGCONT)
    assert ensure_local_runner() == url  # the same runner, answering again


def test_a_runner_that_stopped_is_replaced(nb_home):
    ensure_local_runner()
    assert stop_local_runner()
    url = ensure_local_runner()
    assert (Path(nbpipe_home()) / "runner.json").exists()
    assert url.startswith("http://127.0.0.1:")


def test_a_runner_stops_when_the_session_it_belongs_to_is_killed(tmp_path):
    session = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    r = RunnerProcess(tmp_path / "data", extra_env={"NBPIPE_EXIT_WITH_PID": str(session.pid)}).start()
    try:
        assert r.client().health()["status"] == "ok"
        session.kill()
        session.wait()
        assert r.proc is not None
        pid = r.proc.pid
        assert r.proc.wait(timeout=120) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM once shut down
        assert not (nbpipe_home() / "runtime" / f"runner-{pid}.json").exists()  # it shut down cleanly
        assert "NBPIPE_EXIT_WITH_PID) is gone; stopping" in (tmp_path / "data" / "runner.log").read_text()
    finally:
        session.kill()
        r.stop()
