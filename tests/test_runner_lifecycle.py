"""Runner lifecycle: restart on the same data dir, token auth, the embedded default, binding."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

import nbpipe
from nbpipe import component, pipeline
from nbpipe.errors import NbpipeError, RunnerError
from nbpipe.runner.config import RunnerConfig



@component(cache=False)
def slow_inc(x: int, seconds: float = 0.0) -> int:
    import time

    time.sleep(seconds)
    return x + 1


@pipeline
def inc_twice(x: int = 1, seconds: float = 0.0):
    slow_inc(x=slow_inc(x=x, seconds=seconds).output)


def test_restart_keeps_finished_runs_and_finishes_interrupted_ones(nb_runner_factory) -> None:
    r = nb_runner_factory()
    c = r.client()
    done = c.submit(inc_twice, {"x": 1}).wait(timeout=60)
    interrupted = c.submit(inc_twice, {"x": 10, "seconds": 3.0})
    deadline = time.time() + 30
    while interrupted.steps["slow_inc"]["state"] != "running" and time.time() < deadline:
        time.sleep(0.05)
    r.stop(signal.SIGKILL)  # a crash, not a clean shutdown
    r.start()
    c = r.client()
    runs = {x["id"]: x for x in c.runs()}
    assert runs[done.id]["state"] == "succeeded"
    again = c.run(interrupted.id).wait(timeout=60)
    assert again.state == "succeeded" and again.output("slow_inc-2") == 12
    assert again.steps["slow_inc"]["attempt"] == 2  # the interrupted attempt was retried


def test_a_clean_stop_leaves_a_running_step_to_the_next_runner_as_a_crash_does(nb_runner_factory, tmp_path) -> None:
    """`nbpipe runner stop` (SIGTERM) with a step running failed the run ("killed by SIGTERM without
    reporting a result") while a crash (SIGKILL) let the restarted runner run the step again: stopping
    the runner cleanly was worse than killing it. Now both leave the step to the next runner."""
    r = nb_runner_factory()
    c = r.client()
    running = c.submit(inc_twice, {"x": 20, "seconds": 3.0})
    deadline = time.time() + 60
    while running.snapshot()["steps"][0]["state"] != "running":
        assert time.time() < deadline, running.last_snapshot
        time.sleep(0.05)
    r.stop(signal.SIGTERM)  # a clean shutdown
    r.start()
    c = r.client()
    again = c.run(running.id).wait(timeout=120)
    assert again.state == "succeeded" and again.output("slow_inc-2") == 22, again.steps
    assert again.steps["slow_inc"]["attempt"] == 2  # run again by the new runner, not failed by the old one
    assert "SIGTERM" not in again.steps["slow_inc"]["reason"]


def test_token_is_required_when_set(nb_runner_factory) -> None:
    r = nb_runner_factory(token="s3cret-token")
    assert httpx.get(f"{r.url}/api/v1/health").status_code == 200  # probes stay open
    assert httpx.get(f"{r.url}/api/v1/runs").status_code == 401
    with pytest.raises(RunnerError, match="needs a token.*Pass its token") as err:
        nbpipe.Client(r.url, token="a-wrong-token").runs()
    assert "in a notebook `%nbpipe config runner=URL token=...`" in err.value.hint, err.value.hint
    assert nbpipe.Client(r.url).runs() == []  # a local runner's token is found in its 0600 runtime file
    assert nbpipe.Client(r.url, token="s3cret-token").runs() == []
    assert httpx.get(f"{r.url}/api/v1/runs", params={"token": "s3cret-token"}).status_code == 200


def test_refuses_to_listen_beyond_loopback_without_a_token() -> None:
    with pytest.raises(NbpipeError, match="Refusing to listen on 0.0.0.0 without a token"):
        RunnerConfig(host="0.0.0.0").check()
    RunnerConfig(host="0.0.0.0", token="x").check()
    RunnerConfig(host="127.0.0.1").check()


def test_runner_that_is_down_gives_a_clear_error() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(RunnerError, match=f"No runner at http://127.0.0.1:{port}.*nbpipe runner start"):
        nbpipe.Client(f"http://127.0.0.1:{port}").runs()


def test_embedded_runner_is_started_once_and_reused() -> None:
    from nbpipe.client import Client, configure

    configure(None)
    run = nbpipe.run(inc_twice, x=5, wait=True)
    assert run.output("slow_inc-2") == 7
    first = run.client.health()["pid"]
    assert Client().health()["pid"] == first and Client().embedded
    assert run.client.url.startswith("http://127.0.0.1:")
    assert nbpipe.attach(run.id).output("slow_inc") == 6
