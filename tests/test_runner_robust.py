"""The runner never dies silently: failures stay inside the attempt or run they belong to.

Forged and malformed step results, an overflowing retry backoff, a full disk (a real tmpfs
the test mounts), a scheduling loop that stopped (reported by /health and the CLI), and
``Run.wait(timeout)`` on a silent step. Each of these left a run ``running`` forever, or
stopped scheduling for every run, before.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from runner_process import RunnerProcess

from nbpipe import Output, Dataset, component, pipeline
from nbpipe.errors import RunnerError, StepFailed


@component(cache=True)
def forge(store_root: str, mode: str) -> int:
    """Write a hostile result.json for this very attempt, then exit 0 before nbpipe writes the real one."""
    import json
    import os

    key = f"runs/{os.environ['NBPIPE_RUN_ID']}/{os.environ['NBPIPE_STEP']}/{os.environ['NBPIPE_ATTEMPT']}/result.json"
    path = os.path.join(store_root, key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    forged = {
        "traversal": {"status": "succeeded", "outputs": {"output": {
            "kind": "value", "key": "../../etc/passwd", "digest": "0" * 64, "size": 1, "format": "json"}}},
        "missing": {"status": "succeeded"},
        "garbage": ["not", "an", "object"],
        "huge": {"status": "succeeded", "outputs": {"output": {
            "kind": "value", "key": "sha256/00/" + "0" * 64, "digest": "0" * 64, "size": 10**30, "format": "json"}}},
    }[mode]
    with open(path, "w") as fh:
        json.dump(forged, fh)
    os._exit(0)


@pipeline
def forged(store_root: str = "", mode: str = "traversal"):
    forge(store_root=store_root, mode=mode)


@component(cache=True)
def plus_one(x: int) -> int:
    return x + 1


@pipeline
def simple(x: int = 1):
    plus_one(x=x)


@component(cache=False, retries=3, backoff=0.0)
def always_fails() -> int:
    raise ValueError("nope")


@pipeline
def overflowing():
    always_fails()


@component(cache=False)
def fill_disk(mb: int, data: Output[Dataset]) -> None:
    with open(data.path, "wb") as fh:
        for _ in range(mb):
            fh.write(b"x" * (1 << 20))


@pipeline
def filler(mb: int = 50):
    fill_disk(mb=mb)


@component(cache=False, retries=1, backoff=0.0)
def half_done(data: Output[Dataset]) -> None:
    with open(data.path, "wb") as fh:
        fh.write(b"partial output" * 10_000)
    raise RuntimeError("half done")


@pipeline
def half():
    half_done()


@component(cache=False)
def nul_error(how: str) -> int:
    """A user error holding a NUL character, raised (message) or printed before dying (log tail)."""
    import os
    import sys

    if how == "raise":
        raise ValueError("bad byte \x00 here" + "x" * (2 << 20))  # over the 1 MiB kept: cut, not "invalid"
    sys.stdout.write("dying with \x00 in my output\n")
    sys.stdout.flush()
    os._exit(3)


@pipeline
def nul_pipe(how: str = "raise"):
    nul_error(how=how)


@component(cache=False)
def silent(seconds: float) -> None:
    import time

    time.sleep(seconds)


@pipeline
def quiet(seconds: float = 120.0):
    silent(seconds=seconds)


@pytest.mark.parametrize("mode", ["traversal", "missing", "garbage", "huge"])
def test_a_forged_or_malformed_result_fails_that_step_and_the_runner_goes_on(nb_runner, nb_client, mode) -> None:
    root = str(nb_runner.data_dir / "store")
    for _ in range(2):  # the second identical run used to crash the loop on its cache lookup
        run = nb_client.submit(forged, {"store_root": root, "mode": mode})
        with pytest.raises(StepFailed, match="invalid result from the step"):
            run.wait(timeout=60)
        assert run.snapshot()["state"] == "failed"
    assert nb_client.submit(simple, {"x": 41}).wait(timeout=60).outputs("plus_one")["output"] == 42
    assert nb_client.health()["loop"]["ticking"]


def test_a_forged_cache_entry_is_a_miss_not_a_crash(nb_runner, nb_client) -> None:
    first = nb_client.submit(simple, {"x": 7}).wait(timeout=60)
    key = first.steps["plus_one"]["outputs"]  # the real entry, then forge its key in the database
    con = sqlite3.connect(nb_runner.data_dir / "nbpipe.db", timeout=30)
    with con:
        rows = con.execute("SELECT key, outputs FROM cache WHERE run_id = ?", (first.id,)).fetchall()
        assert rows and key
        outputs = json.loads(rows[0][1])
        outputs["output"]["key"] = "../../etc/passwd"
        con.execute("UPDATE cache SET outputs = ? WHERE key = ?", (json.dumps(outputs), rows[0][0]))
    con.close()
    again = nb_client.submit(simple, {"x": 7}).wait(timeout=60)
    assert again.steps["plus_one"]["state"] == "succeeded"  # ran again instead of trusting the entry
    assert again.outputs("plus_one")["output"] == 8


def _patched(pipe, mutate) -> bytes:
    """The pipeline's package with its spec changed the way a hand-made (hostile) package could be."""
    import io
    import zipfile

    from nbpipe.package import build_package

    zin = zipfile.ZipFile(io.BytesIO(build_package(pipe)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            blob = zin.read(info)
            if info.filename == "nbpipe.json":
                spec = json.loads(blob)
                mutate(spec)
                blob = json.dumps(spec).encode()
            zout.writestr(info.filename, blob)
    return out.getvalue()


def test_an_overflowing_backoff_retries_and_fails_the_step(nb_client) -> None:
    def hostile(spec) -> None:
        for step in spec["steps"]:
            step["options"].update(backoff_factor=1e308, max_backoff=0.05)

    run = nb_client.submit(_patched(overflowing, hostile))
    with pytest.raises(StepFailed, match="ValueError: nope"):
        run.wait(timeout=60)
    step = run.steps["always_fails"]
    assert step["state"] == "failed" and step["attempt"] == 4


def test_failed_attempts_leave_no_partial_files_in_work(nb_runner, nb_client) -> None:
    run = nb_client.submit(half)
    with pytest.raises(StepFailed, match="RuntimeError: half done"):
        run.wait(timeout=60)
    assert run.steps["half_done"]["attempt"] == 2  # both attempts wrote a partial output, then failed
    work = nb_runner.data_dir / "work" / run.id  # each attempt's job.json and outputs were here
    assert [p for p in work.rglob("*") if p.is_file()] == []


def check_nul_errors(c) -> None:
    """The user's own error is shown (a NUL as \\x00), not "invalid result from the step"."""
    run = c.submit(nul_pipe, {"how": "raise"})
    with pytest.raises(StepFailed, match=r"ValueError: bad byte \\x00 here"):
        run.wait(timeout=60)
    step = run.steps["nul_error"]
    assert "invalid result" not in step["reason"]
    assert step["traceback"].endswith("characters cut)") and "bad byte \\x00 here" in step["traceback"]
    run = c.submit(nul_pipe, {"how": "exit"})
    with pytest.raises(StepFailed, match="exited with code 3"):
        run.wait(timeout=60)
    assert "dying with \\x00 in my output" in run.steps["nul_error"]["traceback"]
    assert c.health()["loop"]["ticking"] and c.health()["running_steps"] == 0


def test_a_nul_in_a_user_error_keeps_the_error(nb_client) -> None:
    check_nul_errors(nb_client)


def test_wait_honours_its_timeout_on_a_silent_step(nb_client) -> None:
    run = nb_client.submit(quiet, {"seconds": 300.0})
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="still"):
        run.wait(timeout=2)
    elapsed = time.monotonic() - t0
    run.cancel()
    assert run.wait(timeout=60, raise_on_failure=False).snapshot()["state"] == "cancelled"
    assert elapsed < 15, f"wait(timeout=2) returned after {elapsed:.1f} s"


@pytest.mark.parametrize("stuck", ["loop stopped", "runner stopped answering"])
def test_wait_honours_its_timeout_on_a_stuck_run(tmp_path, stuck) -> None:
    """A run that never moves (its runner no longer schedules), or a runner that accepts connections
    but never answers (SIGSTOP: stopped, swapped out, wedged): wait(timeout) still ends at its deadline."""
    import signal

    env = {"NBPIPE_FAILPOINT": "loop-crash"} if stuck == "loop stopped" else {}
    r = RunnerProcess(tmp_path / "data", extra_env=env).start()
    c = r.client()
    run = c.submit(quiet, {"seconds": 300.0})
    if stuck != "loop stopped":
        os.kill(r.pid, signal.SIGSTOP)
    # a runner that says it is not scheduling: wait says why the run cannot go on (with or without a
    # timeout, where it used to hang); one that does not answer: the timeout
    expected = ((RunnerError, "cannot go on: This nbpipe runner is not scheduling runs") if stuck == "loop stopped"
                else (TimeoutError, r"still (queued|running) after 2 s"))
    try:
        t0 = time.monotonic()
        with pytest.raises(expected[0], match=expected[1]):
            run.wait(timeout=2)
        elapsed = time.monotonic() - t0
        if stuck == "loop stopped":
            with pytest.raises(RunnerError, match=expected[1]):
                run.wait()
    finally:
        os.kill(r.pid, signal.SIGCONT)
        r.stop()
    assert elapsed < 15, f"wait(timeout=2) returned after {elapsed:.1f} s"


def test_health_and_cli_report_a_scheduling_loop_that_stopped(tmp_path, monkeypatch) -> None:
    r = RunnerProcess(tmp_path / "data", extra_env={"NBPIPE_FAILPOINT": "loop-crash"}).start()
    try:
        resp = httpx.get(f"{r.url}/api/v1/health", headers=r.headers(), timeout=10)
        assert resp.status_code == 503
        body = resp.json()
        assert body["status"] == "stalled" and not body["loop"]["ticking"]
        assert "scheduling loop stopped" in body["loop"]["problem"]
        with pytest.raises(RunnerError, match="not scheduling runs"):
            r.client().health()
        nbpipe_cli = str(Path(sys.executable).parent / "nbpipe")
        cli = subprocess.run([nbpipe_cli, "--runner", r.url, "runner", "status"],
                             capture_output=True, text=True, timeout=60, env={**os.environ, **r.client_env()})
        assert cli.returncode != 0 and "not scheduling runs" in cli.stdout + cli.stderr
        # the Lab panel's status: the runner answers, but says it is not scheduling (not "stopped")
        from nbpipe.lab.connection import RunnerConnection

        monkeypatch.setenv("NBPIPE_RUNNER_URL", r.url)
        monkeypatch.setenv("NBPIPE_TOKEN", r.token)
        status = RunnerConnection().status()
        assert status["stalled"] and status["reachable"] and not status["health"]["loop"]["ticking"]
        assert "not scheduling runs" in status["error"] and "scheduling loop stopped" in status["error"]
    finally:
        r.stop()


def test_an_internal_error_fails_only_its_run_and_the_loop_goes_on(tmp_path) -> None:
    r = RunnerProcess(tmp_path / "data", extra_env={"NBPIPE_FAILPOINT": "tick-error:1"}).start()
    try:
        c = r.client()
        hit = c.submit(simple, {"x": 1})  # its first pass through the loop raises
        with pytest.raises(RunnerError, match="internal error: RuntimeError: failpoint tick-error"):
            hit.wait(timeout=60)
        snap = hit.snapshot()
        assert snap["state"] == "failed" and "failpoint tick-error" in snap["reason"]
        assert c.submit(simple, {"x": 2}).wait(timeout=60).outputs("plus_one")["output"] == 3
        health = c.health()
        assert health["loop"]["ticking"] and health["running_steps"] == 0 and health["active_runs"] == 0
    finally:
        r.stop()


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_fails_the_attempt_cleans_up_and_the_next_run_works(small_disk) -> None:
    r = RunnerProcess(small_disk / "data").start()
    try:
        c = r.client()
        run = c.submit(filler, {"mb": 50})
        with pytest.raises(StepFailed) as info:
            run.wait(timeout=120)
        assert "disk is full" in str(info.value) or "No space left" in str(info.value)
        assert run.snapshot()["state"] == "failed"
        leftovers = [p for p in (small_disk / "data" / "work").rglob("*") if p.is_file()]
        assert leftovers == [], leftovers
        tmp = [p for p in (small_disk / "data" / "store" / ".tmp").iterdir()]
        assert tmp == []
        assert c.submit(simple, {"x": 1}).wait(timeout=60).outputs("plus_one")["output"] == 2
        assert c.health()["running_steps"] == 0
    finally:
        r.stop()
