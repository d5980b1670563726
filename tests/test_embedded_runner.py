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
import threading
from pathlib import Path
from typing import Any

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
    pid = int(__import__("json").loads((nbpipe_home() / "runner.json").read_text())["pid"])
    assert stop_local_runner()
    # This process started it: stop reaped it (a zombie child looked alive, and stop waited 5 s for it)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
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


def _kill_embedded_runner() -> None:
    info = __import__("json").loads((nbpipe_home() / "runner.json").read_text())
    pid = int(info["pid"])
    os.kill(pid, signal.SIGKILL)
    while True:  # reaped by nobody here: gone once kill(0) fails or it is a zombie
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ", 1)[1].startswith("Z"):
                    break
        except (ProcessLookupError, FileNotFoundError):
            break
        os.sched_yield()


def test_a_killed_embedded_runner_comes_back_for_the_client_and_its_runs(nb_home, tmp_path):
    """The embedded runner is killed (OOM killer, kill -9): the kernel's client, and the Run objects it
    made, start it again on their next call and go on; they used to say 'No runner at ...' for ever,
    with a hint to switch to the embedded runner the user was already on."""
    from nbpipe import component, pipeline
    from nbpipe import events as ev
    from nbpipe.client import Client

    gate = tmp_path / "gate"

    @component
    def first(n: int) -> int:
        return n + 1

    @component
    def second(x: int, gate: str) -> int:
        import os
        import time

        while not os.path.exists(gate):
            time.sleep(0.05)
        return x * 10

    @pipeline(name="come-back")
    def pipe(n: int = 1, gate: str = ""):
        second(x=first(n=n).output, gate=gate)

    client = Client()
    assert client.embedded
    done = client.submit(pipe, {"n": 1, "gate": str(gate)})
    gate.touch()
    assert done.wait(timeout=120).output("second") == 20
    gate.unlink()
    going = client.submit(pipe, {"n": 2, "gate": str(gate)})
    next(e for e in going.events() if isinstance(e, ev.StepStarted) and e.step == "second")
    old_url = client.url
    waited: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: waited.update(out=going.wait(timeout=180).output("second")))
    waiter.start()  # a cell blocked in run.wait() when the runner dies
    _kill_embedded_runner()

    assert done.snapshot()["state"] == "succeeded"  # a Run made before the kill: the runner came back
    assert client.url != old_url and client.health()["status"] == "ok"
    gate.touch()
    waiter.join(timeout=240)
    assert waited == {"out": 30}  # the run resumed in the new runner, and the wait followed it there
    again = client.submit(pipe, {"n": 3, "gate": str(gate)})  # a submit goes to the new runner too
    assert again.wait(timeout=120).output("second") == 40
    assert {r["id"] for r in client.runs()} >= {done.id, going.id, again.id}


def _term_pending(pid: int) -> bool:
    """SIGTERM sent to ``pid`` and not yet handled (it is stopped)."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("ShdPnd:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def test_stop_keeps_the_record_of_a_runner_started_while_it_waited(nb_home):
    """``nbpipe runner stop`` while a client (the Lab's status poll, a kernel) found the runner going and
    started the next one: runner.json names the new runner by the time the old one has exited. Stop
    removed it anyway, and the unrecorded runner held the data dir: every later start said another
    runner served it. (The old runner is held with SIGSTOP so the new record is written while it waits.)"""
    import json
    import time

    ensure_local_runner()
    path = nbpipe_home() / "runner.json"
    old = json.loads(path.read_text())
    os.kill(old["pid"], signal.SIGSTOP)
    try:
        stopper = threading.Thread(target=stop_local_runner)
        stopper.start()
        deadline = time.monotonic() + 60
        while not _term_pending(old["pid"]):  # stop has read the record and sent SIGTERM
            assert time.monotonic() < deadline
            time.sleep(0.01)
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        path.write_text(json.dumps({**old, "pid": other.pid, "url": "http://127.0.0.1:9"}))  # the next runner's
    finally:
        os.kill(old["pid"], signal.SIGCONT)
    try:
        stopper.join(60)
        assert not stopper.is_alive()
        assert json.loads(path.read_text())["pid"] == other.pid  # kept: it names a runner that is not the stopped one
    finally:
        other.kill()
        other.wait()
        path.unlink(missing_ok=True)
