"""``nbpipe.debug`` against a cluster-style runner: its store is S3 (a moto server), so the failed
step's inputs — a value and a file artifact — and the package come through the runner's API (S3
redirects), never from a local folder or the database. Plus its errors: unknown run, unknown
step, a step still running, a runner that is down.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import pytest
from runner_process import RunnerProcess
from test_store_s3 import ACCESS, SECRET, start_moto, stop

import nbpipe
from nbpipe.debugging import load_step
from nbpipe import Dataset, Input, Output, component, pipeline
from nbpipe.errors import NbpipeError, RunnerError


@component
def rows(n: int, data: Output[Dataset]) -> int:
    with open(data.path, "w") as fh:
        fh.write("\n".join(str(i) for i in range(n)))
    return n


@component
def mean(data: Input[Dataset], count: int, skip: int) -> float:
    values = [int(x) for x in open(data.path).read().split()][skip:]
    return sum(values) / (count - skip)


@pipeline(name="debug-s3")
def averaged(n: int = 4, skip: int = 4):
    r = rows(n=n)
    mean(data=r.outputs["data"], count=r.outputs["output"], skip=skip)


@pytest.fixture(scope="module")
def s3_runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    proc, url = start_moto()
    from minio import Minio

    Minio(url.removeprefix("http://"), access_key=ACCESS, secret_key=SECRET, secure=False).make_bucket("nbpipe-dbg")
    runner = RunnerProcess(tmp_path_factory.mktemp("s3runner"), extra_env={
        "NBPIPE_STORE": "s3", "NBPIPE_S3_ENDPOINT": url, "NBPIPE_S3_BUCKET": "nbpipe-dbg",
        "NBPIPE_S3_PREFIX": uuid.uuid4().hex[:8], "NBPIPE_S3_ACCESS_KEY": ACCESS, "NBPIPE_S3_SECRET_KEY": SECRET})
    try:
        yield runner.start()
    finally:
        runner.stop()
        stop(proc)


def test_debug_a_failed_step_of_a_run_whose_store_is_s3(s3_runner: RunnerProcess) -> None:
    client = s3_runner.client()
    run = client.submit(averaged, {"n": 4}).wait(timeout=120, raise_on_failure=False)
    assert [s["state"] for s in run.snapshot()["steps"]] == ["succeeded", "failed"]
    # the runner hands out artifacts (and the package) as redirects to S3, as in a cluster
    assert client._http.get(f"/api/v1/artifacts/{run.snapshot()['package']}").status_code == 307

    call = load_step(run, "mean")
    assert call.state == "failed" and "ZeroDivisionError" in call.reason
    assert isinstance(call.inputs["data"], Dataset) and open(call.inputs["data"].path).read() == "0\n1\n2\n3"
    assert (call.inputs["count"], call.inputs["skip"]) == (4, 4)
    with pytest.raises(ZeroDivisionError) as info:
        nbpipe.debug(run, "mean", post_mortem=False)
    tb = info.tb
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert tb.tb_frame.f_code.co_name == "mean"  # the exact function that ran, failing in its own frame

    # a step that succeeded may be debugged too: it runs here and returns its value
    assert nbpipe.debug(run, "rows", post_mortem=False) == 4


def test_debug_errors_say_what_happened(s3_runner: RunnerProcess, tmp_path: Path) -> None:
    client = s3_runner.client()
    run = client.submit(averaged, {"n": 3, "skip": 0}).wait(timeout=120)
    with pytest.raises(NbpipeError, match=f"Run {run.id} has no step 'meen'.*Its steps are: rows, mean"):
        nbpipe.debug(run, "meen")
    with pytest.raises(RunnerError, match="No run r-missing"):
        nbpipe.debug(client.run("r-missing"), "mean")
    dead = RunnerProcess(tmp_path / "dead").start()
    gone = dead.client()
    dead.stop()
    with pytest.raises(RunnerError, match="No runner at"):
        nbpipe.debug(gone.run(run.id), "mean")


@component
def numbers(n: int) -> list:
    return list(range(n))


@component
def square(x: int) -> int:
    return x * x


@component
def picky(xs: list, run_id: str) -> int:
    if len(xs) < 10:
        raise ValueError(f"only {len(xs)} squares in {run_id}")
    return sum(xs)


@pipeline(name="debug-loop")
def looped(n: int = 3):
    with nbpipe.ParallelFor(numbers(n=n).output) as x:
        sq = square(x=x)
    picky(xs=nbpipe.Collected(sq.output), run_id=nbpipe.RUN_ID)


def test_debug_a_step_fed_by_a_loop_gets_the_collected_outputs_and_the_run_id(nb_client) -> None:
    run = nb_client.submit(looped, {"n": 4}).wait(timeout=120, raise_on_failure=False)
    assert run.steps["picky"]["state"] == "failed"
    call = load_step(run, "picky")
    assert call.inputs == {"xs": [0, 1, 4, 9], "run_id": run.id}
    with pytest.raises(ValueError, match=f"only 4 squares in {run.id}"):
        call.call()
    assert load_step(run, "square-it2").inputs == {"x": 2}  # one loop iteration, as it ran
