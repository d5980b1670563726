"""Distributed steps (``workers=N``) on the Kubernetes executor, against the real API server (k8s-rig).

runner (the ``nbpipe-runner`` ServiceAccount, least privilege) → N worker pods + a headless Service
→ ``torch.distributed`` (gloo, CPU) between the pods → rank 0's result. The rig runs pods as
processes of this machine on loopback and has no cluster DNS, so the runner is set up as for a
cluster without pod DNS whose pods share its network: ``NBPIPE_K8S_GANG_ADDRESS=pod-ip`` (rank 0's
pod IP, read from the watch, is ``MASTER_ADDR``) and ``NBPIPE_K8S_GANG_PORT=0`` (a free port of this
host; on a real cluster every pod has its own network and the default 29500 is used). The DNS
mode's Service and pod ``hostname``/``subdomain`` are created here too, and checked.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from nbpipe import component, pipeline
from nbpipe import events as ev

from .cases import wait_for
from .conftest import Cluster



def make_data(n: int = 96) -> Any:
    import torch

    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 5, generator=g, dtype=torch.float64)
    w = torch.tensor([1.5, -2.0, 0.5, 3.0, -1.0], dtype=torch.float64)
    return X, X @ w + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)


def make_model() -> Any:
    import torch

    torch.manual_seed(42)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()


def train_single(epochs: int) -> list[float]:
    import torch

    X, y = make_data()
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(epochs):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(X).squeeze(-1), y).backward()
        opt.step()
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).tolist()


@component(workers=2, cache=False)
def train_ddp(epochs: int) -> list:
    import os

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo")  # MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK from the gang's pods
    rank, world = dist.get_rank(), dist.get_world_size()
    X, y = make_data()
    shard = slice(rank * len(X) // world, (rank + 1) * len(X) // world)
    model = DDP(make_model())
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X[shard]).squeeze(-1), y[shard])
        loss.backward()  # allreduce of the gradients between the pods
        opt.step()
    print(f"rank {rank}/{world} in pod {os.environ['NBPIPE_POD_NAME']} master {os.environ['MASTER_ADDR']} "
          f"loss {loss.item():.6f}")
    params = torch.cat([p.detach().reshape(-1) for p in model.module.parameters()]).tolist()
    del model, opt
    dist.destroy_process_group()
    return params


@pipeline
def ddp_k8s(epochs: int = 20):
    train_ddp(epochs=epochs)


@component(workers=2, retries=1, backoff=0.1, cache=False)
def shaky_gang() -> str:
    import os
    import time

    rank, attempt = int(os.environ["RANK"]), int(os.environ["NBPIPE_ATTEMPT"])
    if attempt == 1 and rank == 1:
        raise RuntimeError("worker 1 lost its shard")
    if attempt == 1:
        time.sleep(300)  # rank 0 would wait for its peer forever: the gang must delete it
    return f"rank {rank} done on attempt {attempt}"


@pipeline
def shaky():
    shaky_gang()


@component(workers=2, cache=False)
def long_gang(seconds: int) -> int:
    import time

    time.sleep(seconds)
    return seconds


@pipeline
def long_pipe():
    long_gang(seconds=300)


@component(workers=2, cache=False)
def slow_gang(seconds: float) -> str:
    import os
    import time

    print(f"rank {os.environ['RANK']} started", flush=True)
    time.sleep(seconds)
    print(f"rank {os.environ['RANK']} finished", flush=True)
    return f"rank {os.environ['RANK']}"


@pipeline
def slow_pipe():
    slow_gang(seconds=8)


def test_gang_pods_and_service_are_valid_kubernetes(tmp_path: Path) -> None:
    """Offline (make test): the objects a gang creates pass the API's schemas, strictly."""
    import asyncio
    from types import SimpleNamespace

    import kubernetes_validate

    from nbpipe.executors.k8s_gang import K8sGang, worker_pod_name
    from nbpipe.executors.k8s_pod import PodSettings

    async def build() -> list[dict[str, Any]]:
        settings = PodSettings(namespace="ml", service_account="nbpipe-step")
        ex = SimpleNamespace(settings=settings)
        job = {"run_id": "r20261130-000000-abcdef", "step": "Train Model", "attempt": 2, "component": "t",
               "store": {"type": "local", "root": "/x"}, "env": {"NBPIPE_WORKERS": "3"}, "image": "",
               "packages": [], "resources": {}, "result_key": "runs/r/t/2/result.json", "log_key": "runs/r/t/2/log.txt"}
        gang = K8sGang(ex, job, "r20261130-000000-abcdef.Train Model.2", str(tmp_path / "log"), 3, settings)
        owner = {"apiVersion": "v1", "kind": "Pod", "name": gang.workers[0].pod, "uid": "u-1",
                 "blockOwnerDeletion": False}
        pods = [gang._pod(r, {**job, "env": {"RANK": str(r)}}, None, "dns", owner if r else None, "m") for r in range(3)]
        return [*pods, gang._service(29500, owner)]

    objects = asyncio.run(build())
    for obj in objects:
        for version in ("1.30", kubernetes_validate.latest_version()):
            kubernetes_validate.validate(obj, version, strict=True)
    names = [o["metadata"]["name"] for o in objects[:3]]
    assert names == [worker_pod_name("r20261130-000000-abcdef.Train Model.2", r) for r in range(3)]
    assert all(len(n) <= 63 and n.endswith(f"-r{r}") for r, n in enumerate(names))
    assert len(set(names)) == 3 and objects[3]["metadata"]["name"].startswith("nbp-gang-")


@pytest.fixture(scope="module")
def client(real: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    env = {"NBPIPE_K8S_GANG_ADDRESS": "pod-ip", "NBPIPE_K8S_GANG_PORT": "0"}
    yield real.runner(tmp_path_factory.mktemp("k8s-gang-runner"), **env).client()


def services(c: Cluster, run_id: str) -> list[dict[str, Any]]:
    resp = c.api().list_namespaced_service(c.namespace, label_selector=f"nbpipe.io/run={run_id}",
                                           _preload_content=False)
    return list(json.loads(resp.data)["items"])


def worker_events(run: Any, step: str) -> list[ev.StepWorkers]:
    return [e for e in run.events(follow=False) if isinstance(e, ev.StepWorkers) and e.step == step]


@pytest.mark.k8s
def test_two_pod_gloo_training_equals_single_process(real: Cluster, client: Any) -> None:
    run = client.submit(ddp_k8s, {"epochs": 20})
    # while it runs: 2 pods with the contract, a headless Service selecting them, owned by rank 0
    pods = wait_for("both worker pods", lambda: (p := real.pods(run.id)) and len(p) == 2 and p, 120)
    svc = wait_for("the gang's Service", lambda: services(real, run.id), 60)[0]
    run.wait(timeout=300)
    by_rank = {int(p["metadata"]["labels"]["nbpipe.io/rank"]): p for p in pods}
    rank0 = by_rank[0]
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"] == {"nbpipe.io/gang": svc["metadata"]["name"]}
    assert svc["metadata"]["ownerReferences"][0]["uid"] == rank0["metadata"]["uid"]
    assert by_rank[1]["metadata"]["ownerReferences"][0]["uid"] == rank0["metadata"]["uid"]
    for r, p in by_rank.items():
        assert p["spec"]["subdomain"] == svc["metadata"]["name"] and p["spec"]["hostname"] == p["metadata"]["name"]
        env = {e["name"]: e for e in p["spec"]["containers"][0]["env"]}
        assert env["RANK"]["value"] == str(r) and env["WORLD_SIZE"]["value"] == "2"
        assert p["metadata"]["labels"]["nbpipe.io/gang"] == svc["metadata"]["name"]
    # pod-ip mode: rank 0 reads its own IP from the downward API, rank 1 was given it
    assert {e["name"]: e for e in rank0["spec"]["containers"][0]["env"]}["MASTER_ADDR"]["valueFrom"] == \
        {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}
    assert {e["name"]: e for e in by_rank[1]["spec"]["containers"][0]["env"]}["MASTER_ADDR"]["value"] == "127.0.0.1"

    assert run.output("train_ddp") == pytest.approx(train_single(20), rel=1e-9, abs=1e-12)
    log = run.logs("train_ddp")
    for r in range(2):
        assert f"[rank {r}] rank {r}/2 in pod {by_rank[r]['metadata']['name']} master 127.0.0.1 loss" in log
    last = worker_events(run, "train_ddp")[-1]
    assert [(w["rank"], w["pod"], w["state"]) for w in last.workers] == \
        [(r, by_rank[r]["metadata"]["name"], "succeeded") for r in range(2)]
    wait_for("the pods and the Service to be deleted",
             lambda: real.pods(run.id) == [] and services(real, run.id) == [], 60)


@pytest.mark.k8s
def test_a_failed_worker_deletes_the_gang_and_the_step_retries_as_a_unit(real: Cluster, client: Any) -> None:
    t0 = time.monotonic()
    run = client.submit(shaky).wait(timeout=240)
    assert run.output("shaky_gang") == "rank 0 done on attempt 2"
    assert run.steps["shaky_gang"]["attempt"] == 2
    retrying = [e for e in run.events(follow=False) if isinstance(e, ev.StepRetrying)]
    assert len(retrying) == 1 and "worker rank 1 of 2" in retrying[0].reason
    assert "RuntimeError: worker 1 lost its shard" in retrying[0].reason
    first = run.logs("shaky_gang", attempt=1)
    assert "[rank 1] " in first and "worker 1 lost its shard" in first and "deleting ranks 0" in first
    first_attempt = [e for e in worker_events(run, "shaky_gang") if e.attempt == 1][-1]
    assert [w["state"] for w in first_attempt.workers] == ["stopped", "failed"], first_attempt.workers
    # attempt 1: rank 0 (stopped by the gang) and the Service are gone; the failed rank 1 is kept for
    # `kubectl describe` (delete policy on-success) and ended; attempt 2 succeeded: all deleted
    def kept() -> list[dict[str, Any]] | None:
        pods = real.pods(run.id)
        return pods if len(pods) <= 1 else None

    try:
        left = wait_for("attempt 1's rank 0 to be deleted", kept, 60)
    except AssertionError:
        raise AssertionError([(p["metadata"]["name"], p["status"].get("phase"), p["metadata"].get("deletionTimestamp"))
                              for p in real.pods(run.id)]) from None
    assert len(left) == 1, "the failed worker's pod is kept (on-success)"
    assert left[0]["metadata"]["labels"]["nbpipe.io/rank"] == "1"
    assert left[0]["metadata"]["labels"]["nbpipe.io/attempt"] == "1" and left[0]["status"]["phase"] == "Failed"
    assert services(real, run.id) == []
    assert time.monotonic() - t0 < 120  # rank 0's 300 s sleep did not hold the step


@pytest.mark.k8s
def test_cancel_deletes_every_worker_pod_and_the_service(real: Cluster, client: Any) -> None:
    run = client.submit(long_pipe)
    wait_for("both workers running", lambda: (e := worker_events(run, "long_gang"))
             and [w["state"] for w in e[-1].workers] == ["running", "running"], 120)
    assert len(real.pods(run.id)) == 2 and len(services(real, run.id)) == 1
    run.cancel()
    run.wait(timeout=60, raise_on_failure=False)
    assert run.state == "cancelled" and run.steps["long_gang"]["state"] == "cancelled"
    wait_for("the pods and the Service to be deleted",
             lambda: real.pods(run.id) == [] and services(real, run.id) == [], 60)
    assert [w["state"] for w in worker_events(run, "long_gang")[-1].workers] == ["stopped", "stopped"]


@pytest.mark.k8s
def test_runner_restart_reattaches_to_the_whole_gang(real: Cluster, tmp_path: Path) -> None:
    runner = real.runner(tmp_path / "runner", NBPIPE_K8S_GANG_ADDRESS="pod-ip", NBPIPE_K8S_GANG_PORT="0")
    client = runner.client()

    run = client.submit(slow_pipe)
    wait_for("both workers running", lambda: (e := worker_events(run, "slow_gang"))
             and [w["state"] for w in e[-1].workers] == ["running", "running"], 120)
    pods = {x["metadata"]["name"] for x in real.pods(run.id)}
    runner.stop(signal.SIGKILL)
    assert {x["metadata"]["name"] for x in real.pods(run.id)} == pods  # the gang outlives the runner
    client = runner.start().client()
    run = client.run(run.id).wait(timeout=120)
    assert run.output("slow_gang") == "rank 0" and run.steps["slow_gang"]["attempt"] == 1
    log = run.logs("slow_gang")
    for r in range(2):  # each line once: the re-attached streams skip what the first runner wrote
        assert log.count(f"[rank {r}] rank {r} started") == 1 and log.count(f"[rank {r}] rank {r} finished") == 1
    assert "re-attached to the 2 worker pods" in log
    assert {w["pod"] for w in worker_events(run, "slow_gang")[-1].workers} == pods
    wait_for("the pods and the Service to be deleted",
             lambda: real.pods(run.id) == [] and services(real, run.id) == [], 60)
