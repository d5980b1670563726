"""A runner killed at any write leaves a database whose events replay to its states.

``NBPIPE_FAILPOINT=write:N`` kills the runner (``os._exit``, as abrupt as ``kill -9``) after
its Nth INSERT/UPDATE/DELETE, before that transaction commits; ``commit:N`` right after its
Nth commit. The test walks N over every write and every commit of a two-step run, checks the
database after each crash, restarts the runner on it and checks that the run finishes and its
event stream (resumed from 0) shows every step's end. Before, a step's ``succeeded`` state
could be committed while its ``StepFinished`` event was not.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pytest
from runner_process import RunnerProcess

from nbpipe import component, pipeline

RUN_STATE = {"RunCreated": "queued", "RunStarted": "running"}
STEP_STATE = {"StepStarted": "running", "StepRetrying": "retrying"}


@component(cache=False)
def produce(x: int) -> int:
    return x + 1


@component(cache=False)
def consume(y: int) -> int:
    return y * 10


@pipeline
def two_steps(x: int = 1):
    consume(y=produce(x=x).output)


@component(cache=False, retries=2, backoff=0.0)
def flaky(x: int) -> int:
    import os

    if os.environ["NBPIPE_ATTEMPT"] == "1":
        raise RuntimeError("the first attempt fails")
    return x + 1


@pipeline
def retried(x: int = 1):
    consume(y=flaky(x=x).output)


PIPELINES = {"two_steps": (two_steps, "produce"), "retried": (retried, "flaky")}


def replayed_states(db: Path) -> tuple[dict, dict, dict, dict]:
    con = sqlite3.connect(db, timeout=30)
    try:
        runs = dict(con.execute("SELECT id, state FROM runs").fetchall())
        steps = {(r, n): s for r, n, s in con.execute("SELECT run_id, name, state FROM steps")}
        ev_runs: dict[str, str] = {}
        ev_steps: dict[tuple[str, str], str] = {}
        for typ, data in con.execute("SELECT type, data FROM events ORDER BY id"):
            d = json.loads(data)
            if typ in RUN_STATE:
                ev_runs[d["run_id"]] = RUN_STATE[typ]
            elif typ == "RunFinished":
                ev_runs[d["run_id"]] = d["state"]
            elif typ in STEP_STATE:
                ev_steps[(d["run_id"], d["step"])] = STEP_STATE[typ]
            elif typ == "StepFinished":
                ev_steps[(d["run_id"], d["step"])] = d["state"]
    finally:
        con.close()
    return runs, ev_runs, steps, {k: ev_steps.get(k, "pending") for k in steps}


def assert_consistent(db: Path, where: str) -> None:
    runs, ev_runs, steps, ev_steps = replayed_states(db)
    assert ev_runs == runs, f"{where}: run states {runs} but events replay to {ev_runs}"
    assert ev_steps == steps, f"{where}: step states {steps} but events replay to {ev_steps}"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with a migrated database and the package uploaded: crashes then hit run writes only."""
    d = tmp_path_factory.mktemp("template") / "data"
    r = RunnerProcess(d).start()
    c = r.client()
    try:
        for name in PIPELINES:
            c.upload(_package(name))
    finally:
        c.close()  # (left to the garbage collector, its sockets' warning could land in a walk's thread)
        r.stop()
    for ready in d.glob("ready-*.json"):
        ready.unlink()
    return d


@cache
def _package(name: str = "two_steps") -> bytes:
    from nbpipe.package import build_package

    return build_package(PIPELINES[name][0])


def _crash_at(template: Path, tmp: Path, point: str, name: str = "two_steps") -> bool:
    """Run two_steps under a failpoint; check the database after the crash and after a restart.

    Returns False once the failpoint is beyond the whole run (the runner never crashed).
    """
    data = tmp / f"{name}-{point.replace(':', '-')}"
    shutil.copytree(template, data)
    r = RunnerProcess(data, extra_env={"NBPIPE_FAILPOINT": point}).start()
    c = r.client()
    run_id = None
    try:
        run_id = c.submit(_package(name), {"x": 4}).id
    except Exception:  # noqa: BLE001 - the runner died while answering: the run may or may not exist
        pass
    assert r.proc is not None
    crashed = False
    if run_id is not None:
        try:
            c.run(run_id).wait(timeout=120)
        except Exception:  # noqa: BLE001 - the runner died under us
            pass
    try:
        r.proc.wait(timeout=1 if run_id is not None else 60)
        crashed = r.proc.returncode == 137
    except Exception:  # noqa: BLE001 - still alive: the failpoint is beyond this run
        crashed = False
    c.close()
    r.stop()
    assert_consistent(data / "nbpipe.db", f"after a crash at {point}")
    r2 = RunnerProcess(data).start()  # no failpoint: recover and finish
    try:
        c2 = r2.client()
        for summary in c2.runs():
            run = c2.run(summary["id"]).wait(timeout=120)
            snap = run.snapshot()
            assert snap["state"] == "succeeded", f"{point}: {snap['state']} {snap['reason']}"
            assert run.outputs("consume")["output"] == 50
            events = list(run.events(after=0, follow=False))
            ends = {e.step: e.state for e in events if e.type == "StepFinished"}
            assert ends == {PIPELINES[name][1]: "succeeded", "consume": "succeeded"}, f"{point}: {ends}"
            assert events[-1].type == "RunFinished"
        c2.close()
    finally:
        r2.stop()
    assert_consistent(data / "nbpipe.db", f"after recovering from a crash at {point}")
    return crashed


def _walk(template: Path, tmp: Path, kind: str, name: str, width: int = 3) -> int:
    """Crash at ``kind:1``, ``kind:2``, ... until a point is beyond the run; returns the crash count.

    Each point has its own data dir, runner and port, so ``width`` points run at once (a point
    mostly waits on its runners starting). The points run after the first one beyond the run
    are beyond it too; their checks still count.
    """
    for pipe in PIPELINES:
        _package(pipe)  # built once, in this thread
    crashes, n = 0, 0
    with ThreadPoolExecutor(width) as pool:

        def submit() -> None:
            nonlocal n
            n += 1
            pending.append(pool.submit(_crash_at, template, tmp, f"{kind}:{n}", name))

        pending: deque = deque()
        for _ in range(width):
            submit()
        while n < 200 and pending.popleft().result():
            crashes += 1
            submit()
        for rest in pending:
            rest.result()  # raises what such a point found
    return crashes


@pytest.mark.timeout(1800)  # ~25 crash points, two runner starts each: minutes on a loaded 2-core machine
@pytest.mark.parametrize("name,kind", [("two_steps", "write"), ("two_steps", "commit"), ("retried", "write")])
def test_a_crash_at_any_write_leaves_events_that_replay_to_the_states(template, tmp_path, name, kind) -> None:
    """``retried``: a step whose first attempt fails, so the retry's writes (StepRetrying, the
    attempt rows, the step's ``retrying`` state) are walked too."""
    crashes = _walk(template, tmp_path, kind, name)
    print(f"\n{name} {kind}: crashed at each of {crashes} points, all consistent")
    assert crashes >= 8  # the run's writes were really walked
