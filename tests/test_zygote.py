"""The local executor's warm zygote and its pre-forked spare: every attempt is still a fresh process
of its own (own pid, own session, stdin not the zygote's pipe), a spare that dies before it gets a job
is replaced, and a preload reaches the steps forked after it. Real zygote, real step processes."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import cloudpickle
import psutil
import pytest

from nbpipe.executors.local import LocalExecutor
from nbpipe.stores.local import LocalStore


def _who(tag: str) -> dict:
    import os
    import sys

    return {"tag": tag, "pid": os.getpid(), "sid": os.getsid(0), "stdin": os.readlink("/proc/self/fd/0"),
            "idna_loaded_before_call": "idna" in sys.modules}


def _job(store: LocalStore, n: int, packages: list[str] | None = None) -> dict:
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the step process cannot import this test module
    func = cloudpickle.dumps(lambda: _who(f"step-{n}"))
    info = store.put_bytes(func)
    return {"run_id": "r", "step": f"s{n}", "attempt": 1, "component": "who", "store": store.config(),
            "payload": {"key": info.key, "serializer": "cloudpickle"}, "python": "", "inputs": {},
            "outputs": [{"name": "Output", "kind": "value"}], "return_style": "single",
            "result_key": f"runs/r/s{n}/1/result.json", "env": {}, "packages": packages or [], "imports": []}


def _value(store: LocalStore, job: dict) -> dict:
    result = json.loads(store.get_bytes(job["result_key"]))
    assert result["status"] == "succeeded", result
    out = result["outputs"]["Output"]
    return out["value"] if "value" in out else json.loads(store.get_bytes(out["key"]))


async def _step(ex: LocalExecutor, store: LocalStore, tmp_path, n: int, packages: list[str] | None = None) -> tuple[dict, int]:
    job = _job(store, n, packages)
    handle = await ex.start(job, f"a{n}", str(tmp_path / "logs" / f"{n}.log"), str(tmp_path / "work" / str(n)))
    status = await asyncio.wait_for(handle.done, 60)
    assert status.ok, (status, (tmp_path / "logs" / f"{n}.log").read_text())
    assert handle.pid is not None
    return _value(store, job), handle.pid


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def _spares(ex: LocalExecutor) -> list[psutil.Process]:
    """The zygote's children once no step runs: its one spare (forked when the last step exited)."""
    assert ex._zygote is not None
    for _ in range(3000):  # waits for the state, not for a time: the fork follows the exit report
        kids = [p for p in psutil.Process(ex._zygote.pid).children() if _alive(p)]
        if kids:
            return kids
        await asyncio.sleep(0.01)
    raise AssertionError("the zygote forked no spare after the last step exited")


def test_each_attempt_is_a_fresh_session_leader_and_a_killed_spare_is_replaced(tmp_path):
    store = LocalStore(tmp_path / "store")

    async def main() -> None:
        ex = LocalExecutor()
        try:
            seen = []
            for n in range(3):
                value, pid = await _step(ex, store, tmp_path, n)
                assert value["tag"] == f"step-{n}"
                assert value["pid"] == pid and value["sid"] == pid  # the handle's pid, a session of its own
                assert value["stdin"] == "/dev/null"  # not the runner's pipe to the zygote
                seen.append(pid)
            assert len(set(seen)) == 3  # never a process reused across attempts
            # The zygote forked the next step's spare when the last one exited.
            spares = await _spares(ex)
            assert len(spares) == 1 and spares[0].pid not in seen
            spares[0].send_signal(signal.SIGKILL)  # dies before it gets a job
            spares[0].wait(30)
            value, pid = await _step(ex, store, tmp_path, 3)
            assert value["pid"] == pid != spares[0].pid
        finally:
            await ex.close()

    asyncio.run(main())


def test_a_preload_reaches_the_steps_forked_after_it(tmp_path):
    store = LocalStore(tmp_path / "store")

    async def main() -> None:
        ex = LocalExecutor()
        try:
            value, _ = await _step(ex, store, tmp_path, 0)  # the spare now exists, forked before any preload
            assert not value["idna_loaded_before_call"], "the zygote itself must not import idna for this test"
            value, _ = await _step(ex, store, tmp_path, 1, packages=["idna"])
            assert value["idna_loaded_before_call"]  # the step ran in a process forked after the preload
        finally:
            await ex.close()

    asyncio.run(main())


def test_steps_forked_with_the_zygotes_open_store_write_to_their_own_store(tmp_path):
    """The zygote keeps a local store it saw open for later forks: a step on another store (another
    profile's view, another runner's data) still writes there, and never to the kept one."""
    a, b = LocalStore(tmp_path / "a"), LocalStore(tmp_path / "b")

    async def main() -> None:
        ex = LocalExecutor()
        try:
            for n, store in enumerate([a, a, a, b, a]):  # from the third on, forks that inherited a's store
                value, _ = await _step(ex, store, tmp_path, n)
                assert value["tag"] == f"step-{n}"
            assert not a.exists("runs/r/s3/1/result.json") and b.exists("runs/r/s3/1/result.json")
            assert not b.exists("runs/r/s4/1/result.json")
        finally:
            await ex.close()

    asyncio.run(main())


def test_closing_the_executor_leaves_no_zygote_and_no_spare(tmp_path):
    store = LocalStore(tmp_path / "store")

    async def main() -> tuple[int, int]:
        ex = LocalExecutor()
        await _step(ex, store, tmp_path, 0)
        (spare,) = await _spares(ex)
        zygote = ex._zygote.pid  # type: ignore[union-attr]
        await ex.close()
        return zygote, spare.pid

    zygote, spare = asyncio.run(main())
    # close() reaped the zygote, and the zygote reaped its spare before exiting (none left to init)
    assert not psutil.pid_exists(zygote)
    assert not psutil.pid_exists(spare)


from nbpipe import component, pipeline  # noqa: E402


@component(cache=False)
def registers_exit_handlers(marker: str) -> str:
    import atexit
    from pathlib import Path

    def broken() -> None:
        raise RuntimeError("a broken exit handler")

    # as W&B's finish or MLflow's end_run: registered by the step's code, run when the process ends
    atexit.register(Path(marker).write_text, "flushed")
    atexit.register(broken)
    return "done"


@pipeline
def exit_handlers(marker: str = ""):
    registers_exit_handlers(marker=marker)


def test_the_steps_own_exit_handlers_run(nb_client, tmp_path):
    """Step processes end with os._exit (no slow interpreter teardown), yet the atexit handlers the
    step registered run, as at a normal exit; one that raises is logged and changes nothing."""
    marker = tmp_path / "marker"
    run = nb_client.submit(exit_handlers, {"marker": str(marker)}).wait(timeout=120)
    assert run.steps["registers_exit_handlers"]["state"] == "succeeded"
    assert run.output("registers_exit_handlers") == "done"
    assert marker.read_text() == "flushed"  # the process has exited: the runner saw its exit code
    assert "RuntimeError: a broken exit handler" in run.logs("registers_exit_handlers")


def _exits_with_a_handler(marker: str) -> str:
    import atexit
    from pathlib import Path

    atexit.register(Path(marker).write_text, "flushed")
    atexit.register(print, "the exit handler ran", flush=True)
    return "done"


@pytest.mark.parametrize("own_log", [True, False], ids=["log-to-store", "no-log"])
def test_a_pod_step_runs_its_exit_handlers_too(tmp_path, own_log):
    """The pod entrypoint ends with os._exit too (after its result and log are stored): the step's
    own atexit handlers still run first, and what they print is in the step's log. The real
    entrypoint as a pod runs it, as a subprocess."""
    import os
    import subprocess

    from nbpipe.executors.k8s_pod import encode_job

    store = LocalStore(str(tmp_path / "store"))
    marker = tmp_path / "marker"
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    job = _job(store, 1)
    job["payload"]["key"] = store.put_bytes(cloudpickle.dumps(lambda: _exits_with_a_handler(str(marker)))).key
    if own_log:  # as the Kubernetes executor's jobs: the log is teed to the store, then an end line
        job |= {"log_key": "runs/r/s1/1/log.txt", "log_end": "0123456789abcdef"}
    env = {**os.environ, "NBPIPE_JOB": encode_job(job)}
    proc = subprocess.run([sys.executable, "-m", "nbpipe.executors.entry", "env:NBPIPE_JOB"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert _value(store, job) == "done"
    assert marker.read_text() == "flushed"
    if own_log:
        assert "the exit handler ran" in store.get_bytes("runs/r/s1/1/log.txt").decode()
        assert proc.stdout.endswith("nbpipe: end of step log 0123456789abcdef\n"), proc.stdout  # nothing after it
