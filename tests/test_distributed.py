"""Distributed steps (``workers=N``) on the embedded runner, with a real collective library:
``torch.distributed`` (gloo on CPU), as users run it. Real runner, real worker processes.

A data-parallel model trained on 2 and 4 workers equals the single-process one; every worker
gets the PyTorch environment contract; rank 0's return value is the step's; every worker's log
lines stream prefixed by rank; a worker crash stops the rest (processes gone) and the step
fails and retries as a unit; cancel and timeout stop every worker.
"""

from __future__ import annotations

import re
import time

import psutil
import pytest
import torch

import nbpipe
from nbpipe import component, pipeline
from nbpipe.events import RunFinished, StepLog, StepWorkers

# ------------------------------------------------------------------ a small data-parallel model


def make_data(n: int = 96):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 5, generator=g, dtype=torch.float64)
    y = X @ torch.tensor([1.5, -2.0, 0.5, 3.0, -1.0], dtype=torch.float64) + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    return X, y


def make_model():
    torch.manual_seed(42)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()


def train_single(epochs: int) -> list[float]:
    X, y = make_data()
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X).squeeze(-1), y)
        loss.backward()
        opt.step()
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).tolist()


def ddp_train(epochs: int) -> list:
    import os

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo")  # MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK from the gang
    rank, world = dist.get_rank(), dist.get_world_size()
    X, y = make_data()
    shard = slice(rank * len(X) // world, (rank + 1) * len(X) // world)  # equal shards
    model = DDP(make_model())
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X[shard]).squeeze(-1), y[shard])
        loss.backward()  # DDP averages the gradients over the workers (allreduce)
        opt.step()
    print(f"rank {rank}/{world} local_rank {os.environ['LOCAL_RANK']} loss {loss.item():.6f}")
    params = torch.cat([p.detach().reshape(-1) for p in model.module.parameters()]).tolist()
    del model, opt  # DDP's reducer goes before its process group (else its teardown may hang)
    dist.destroy_process_group()
    return params


@component(workers=2, cache=False)
def train_ddp(epochs: int) -> list:
    return ddp_train(epochs)


@component(workers=4, cache=False)
def train_ddp4(epochs: int) -> list:
    return ddp_train(epochs)


@pipeline
def ddp_pipeline(epochs: int = 30):
    train_ddp(epochs=epochs)


@pipeline
def ddp4_pipeline(epochs: int = 30):
    train_ddp4(epochs=epochs)


def _events(client, run_id: str) -> list:
    out = []
    for e in client.events(run_id):
        out.append(e)
        if isinstance(e, RunFinished):
            break
    return out


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("pipe,workers", [(ddp_pipeline, 2), (ddp4_pipeline, 4)])
def test_data_parallel_training_equals_single_process(nb_client, pipe, workers):
    run = nb_client.submit(pipe, {"epochs": 30}).wait(timeout=600)
    step = "train_ddp" if workers == 2 else "train_ddp4"
    got = run.output(step)
    assert got == pytest.approx(train_single(30), rel=1e-9, abs=1e-12)
    log = run.logs(step)
    for r in range(workers):
        assert f"[rank {r}] rank {r}/{workers} local_rank {r} loss" in log
    evs = _events(nb_client, run.id)
    last = [e for e in evs if isinstance(e, StepWorkers)][-1]
    assert [w["state"] for w in last.workers] == ["succeeded"] * workers
    assert [w["rank"] for w in last.workers] == list(range(workers))


@component(workers=3, cache=False)
def contract() -> dict:
    import os

    names = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK")
    print("env", " ".join(f"{n}={os.environ[n]}" for n in names))
    return {n: os.environ[n] for n in names}


@pipeline
def contract_pipeline():
    contract()


def test_every_worker_gets_the_pytorch_contract_and_rank0_result_is_the_steps(nb_client):
    run = nb_client.submit(contract_pipeline).wait(timeout=300)
    out = run.output("contract")
    assert [(w["rank"], w["state"]) for w in run.steps["contract"]["workers"]] == [
        (0, "succeeded"), (1, "succeeded"), (2, "succeeded")]  # the run snapshot shows the gang
    assert out["RANK"] == "0" and out["LOCAL_RANK"] == "0" and out["WORLD_SIZE"] == "3"
    assert out["MASTER_ADDR"] == "127.0.0.1" and 0 < int(out["MASTER_PORT"]) < 65536
    log = run.logs("contract")
    for r in range(3):
        assert (f"[rank {r}] env MASTER_ADDR=127.0.0.1 MASTER_PORT={out['MASTER_PORT']} WORLD_SIZE=3 "
                f"RANK={r} LOCAL_RANK={r}") in log


@component(workers=3, retries=1, backoff=0, cache=False)
def crashes() -> int:
    import os

    import torch.distributed as dist

    dist.init_process_group("gloo")
    if dist.get_rank() == 1:
        import atexit
        import time

        # The hard case: rank 1's sockets close (its peers fail at once, and are reaped first) well
        # before rank 1 itself exits. Its error still came first, so it is still the cause.
        atexit.register(time.sleep, 1.5)
        atexit.register(dist.destroy_process_group)
        raise RuntimeError("rank 1 ran out of data")
    print("waiting in the barrier", flush=True)
    dist.barrier()  # never completes: rank 1 is gone
    return int(os.environ["RANK"])


@pipeline
def crash_pipeline():
    crashes()


def test_a_worker_crash_stops_the_others_and_the_step_retries_as_a_unit(nb_client):
    run = nb_client.submit(crash_pipeline).wait(timeout=600, raise_on_failure=False)
    assert run.state == "failed"
    st = run.steps["crashes"]
    assert st["state"] == "failed" and st["attempt"] == 2
    assert st["reason"] == ("RuntimeError: rank 1 ran out of data (worker rank 1 of 3; "
                            "the other workers were stopped)")
    evs = _events(nb_client, run.id)
    final = {}
    for e in evs:
        if isinstance(e, StepWorkers):
            final[e.attempt] = e.workers
    assert set(final) == {1, 2}  # two attempts, each a whole gang
    for attempt, workers in final.items():
        states = {w["rank"]: w["state"] for w in workers}
        assert states[1] == "failed", (attempt, states)
        assert states[0] == "stopped" and states[2] == "stopped", (attempt, states)
        for w in workers:
            assert _gone(w["pid"]), (attempt, w)
    log = "".join(e.text for e in evs if isinstance(e, StepLog) and e.attempt == 1)
    assert "[rank 1] " in log and "RuntimeError: rank 1 ran out of data" in log
    assert re.search(r"\[gang\] worker rank 1 (exited with code 1|failed); stopping (ranks|rank 2|nothing)", log), log


@component(workers=2, cache=False)
def forever(tag: str) -> int:
    import time

    print("ready", flush=True)
    while True:
        time.sleep(0.05)


@pipeline
def forever_pipeline(tag: str = "x"):
    forever(tag=tag)


@pipeline
def timeout_pipeline(tag: str = "t"):
    forever(tag=tag).set_timeout(2)


def _wait_running(client, run_id: str, workers: int) -> list[dict]:
    seen_ready: set[str] = set()
    pids: list[dict] = []
    for e in client.events(run_id):
        if isinstance(e, StepWorkers) and all(w["state"] == "running" for w in e.workers):
            pids = e.workers
        if isinstance(e, StepLog):
            seen_ready |= {line.split("]")[0] for line in e.text.splitlines() if line.endswith("ready")}
        if pids and len(seen_ready) == workers:
            return pids
        if isinstance(e, RunFinished):
            raise AssertionError(f"the run ended first: {e}")
    raise AssertionError("event stream ended")


def test_cancel_and_timeout_stop_every_worker(nb_client):
    run = nb_client.submit(forever_pipeline, {"tag": "cancel"})
    workers = _wait_running(nb_client, run.id, 2)
    run.cancel()
    run.wait(timeout=120, raise_on_failure=False)
    assert run.state == "cancelled" and run.steps["forever"]["state"] == "cancelled"
    deadline = time.monotonic() + 30
    while not all(_gone(w["pid"]) for w in workers):
        assert time.monotonic() < deadline, workers
        time.sleep(0.05)

    run = nb_client.submit(timeout_pipeline, {"tag": "timeout"}).wait(timeout=120, raise_on_failure=False)
    assert run.steps["forever"]["state"] == "failed" and "timed out after 2 s" in run.steps["forever"]["reason"]
    last = [e for e in _events(nb_client, run.id) if isinstance(e, StepWorkers)][-1]
    assert all(_gone(w["pid"]) for w in last.workers)


def test_workers_option_is_checked_at_definition():
    with pytest.raises(nbpipe.NbpipeError, match="workers=0 must be a whole number from 1 to 64"):
        component(workers=0, name="zero")(lambda: 1)
    assert contract.to_spec()["options"]["workers"] == 3
    assert "workers" not in component(name="one")(lambda: 1).to_spec()["options"]  # ordinary steps' specs unchanged


def test_a_runner_crash_leaves_no_worker_behind(nb_runner_factory):
    import signal

    r = nb_runner_factory("crash")
    client = r.client()
    run = client.submit(forever_pipeline, {"tag": "runner-crash"})
    workers = _wait_running(client, run.id, 2)
    r.stop(signal.SIGKILL)  # no shutdown: the restarted runner must clean up the whole gang
    r.start()
    client = r.client()
    deadline = time.monotonic() + 60
    while not all(_gone(w["pid"]) for w in workers):
        assert time.monotonic() < deadline, workers
        time.sleep(0.05)
    client.cancel(run.id)  # its retry starts a new gang: stop it
    run = client.run(run.id).wait(timeout=120, raise_on_failure=False)
    assert run.state == "cancelled"
    last = [e for e in _events(client, run.id) if isinstance(e, StepWorkers)][-1]
    assert all(_gone(w["pid"]) for w in last.workers)


@component(workers=2, cache=False)
def lingering() -> int:
    import os
    import time

    if os.environ["RANK"] != "0":
        print("rank 1 keeps going", flush=True)
        while True:  # e.g. hung in a collective's teardown
            time.sleep(0.05)
    return 7


@pipeline
def lingering_pipeline():
    lingering()


def test_workers_left_after_rank0_succeeded_are_stopped_after_a_grace(tmp_path):
    from runner_process import RunnerProcess

    r = RunnerProcess(tmp_path / "grace", extra_env={"NBPIPE_GANG_EXIT_GRACE": "1"}).start()
    try:
        client = r.client()
        run = client.submit(lingering_pipeline).wait(timeout=120)
        assert run.output("lingering") == 7
        assert "[gang] rank 0 finished 1 s ago; stopping rank 1, which did not exit" in run.logs("lingering")
        workers = run.steps["lingering"]["workers"]
        assert [(w["rank"], w["state"]) for w in workers] == [(0, "succeeded"), (1, "stopped")]
        assert _gone(workers[1]["pid"])
    finally:
        r.stop()
