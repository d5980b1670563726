"""Distributed steps as a Training Operator PyTorchJob (``@component(workers=N, kubeflow_job=True)``), k8s-rig.

The rig's API server has the real ``pytorchjobs.kubeflow.org`` CRD (``tests/k8s/crds``, applied by
``tests/k8s_rig/run.py``), so every PyTorchJob the runner creates is validated against the
operator's own schema. No Training Operator can run here, so :class:`Operator` plays its part,
explicitly and minimally, as the test's admin: for each new PyTorchJob it creates the pods the
operator creates from the replica specs (``<job>-master-0``, ``<job>-worker-<i>``; the template's
labels plus ``training.kubeflow.org/*``, owned by the job; ``MASTER_ADDR``/``MASTER_PORT``/
``WORLD_SIZE``/``RANK`` added to the ``pytorch`` container, ``MASTER_PORT`` from its
``pytorchjob-port``) and writes the ``Created``/``Running`` conditions to the job's status. The rig has
no cluster DNS, so the stand-in gives ``MASTER_ADDR=127.0.0.1`` where the operator gives the
master's Service name. Everything on nbpipe's side (the runner as its least-privilege
ServiceAccount, the job, the watch of its pods and conditions, logs, results, cancel, re-attach) is
real, and ``torch.distributed`` (gloo) trains across the pods.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from nbpipe import component, pipeline
from nbpipe import events as ev

from .cases import wait_for
from .conftest import Cluster, _api
from .test_distributed_k8s import train_single

GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "pytorchjobs"
FAIL_AS_OPERATOR = "unplaceable"  # a component of this name: the stand-in fails its job as the operator would


def make_data(n: int = 96) -> Any:  # as in test_distributed_k8s (the step captures this module's functions)
    import torch

    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 5, generator=g, dtype=torch.float64)
    w = torch.tensor([1.5, -2.0, 0.5, 3.0, -1.0], dtype=torch.float64)
    return X, X @ w + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)


def make_model() -> Any:
    import torch

    torch.manual_seed(42)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()


class Operator:
    """The Training Operator's part, as small as the tests need (see the module docstring)."""

    def __init__(self, c: Cluster):
        from kubernetes import client

        self.core = _api(c.admin_kubeconfig or c.kubeconfig)
        self.custom = client.CustomObjectsApi(self.core.api_client)
        self.ns = c.namespace
        self.done: set[str] = set()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        from kubernetes import watch

        while not self.stopped.is_set():
            try:
                for e in watch.Watch().stream(self.custom.list_namespaced_custom_object, GROUP, VERSION, self.ns,
                                              PLURAL, timeout_seconds=5):
                    if e["type"] == "ADDED" and e["object"]["metadata"]["uid"] not in self.done:
                        self.done.add(e["object"]["metadata"]["uid"])
                        self.reconcile(e["object"])
                    if self.stopped.is_set():
                        return
            except Exception:  # noqa: BLE001 - the watch expired or dropped: watch again
                if self.stopped.wait(0.2):
                    return

    def status(self, job: dict[str, Any], *conditions: tuple[str, str, str]) -> None:
        now = "2026-11-30T00:00:00Z"
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "PyTorchJob", "metadata": job["metadata"],
                "spec": job["spec"],
                "status": {"conditions": [{"type": t, "status": "True", "reason": r, "message": m,
                                           "lastUpdateTime": now, "lastTransitionTime": now}
                                          for t, r, m in conditions], "replicaStatuses": {}}}
        fresh = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, job["metadata"]["name"])
        body["metadata"] = fresh["metadata"]
        self.custom.replace_namespaced_custom_object_status(GROUP, VERSION, self.ns, PLURAL,
                                                            job["metadata"]["name"], body)

    def reconcile(self, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        created = ("Created", "PyTorchJobCreated", f"PyTorchJob {name} is created.")
        step = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["metadata"]["labels"]["nbpipe.io/step"]
        if step == FAIL_AS_OPERATOR:
            self.status(job, created, ("Failed", "PyTorchJobFailed",
                                       "pods \"x\" is forbidden: exceeded quota: gpu-quota (stand-in operator)"))
            return
        self.status(job, created)
        specs = job["spec"]["pytorchReplicaSpecs"]
        world = sum(int(s["replicas"]) for s in specs.values())
        owner = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "PyTorchJob", "name": name,
                 "uid": job["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
        rank = 0
        for rtype in ("Master", "Worker"):
            spec = specs.get(rtype)
            for index in range(int(spec["replicas"]) if spec else 0):
                tpl = json.loads(json.dumps(spec["template"]))
                container = next(c for c in tpl["spec"]["containers"] if c["name"] == "pytorch")
                port = next(p["containerPort"] for p in container["ports"] if p["name"] == "pytorchjob-port")
                container["env"] = [*container.get("env", []),
                                    {"name": "MASTER_PORT", "value": str(port)},
                                    {"name": "MASTER_ADDR", "value": "127.0.0.1"},
                                    {"name": "WORLD_SIZE", "value": str(world)},
                                    {"name": "RANK", "value": str(rank)}]
                tpl["spec"]["restartPolicy"] = spec["restartPolicy"]
                labels = {**tpl["metadata"].get("labels", {}), "training.kubeflow.org/job-name": name,
                          "training.kubeflow.org/operator-name": "pytorchjob-controller",
                          "training.kubeflow.org/replica-type": rtype.lower(),
                          "training.kubeflow.org/replica-index": str(index)}
                if rtype == "Master":
                    labels["training.kubeflow.org/job-role"] = "master"
                pod = {"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": f"{name}-{rtype.lower()}-{index}", "namespace": self.ns,
                                    "labels": labels, "annotations": tpl["metadata"].get("annotations", {}),
                                    "ownerReferences": [owner]},
                       "spec": tpl["spec"]}
                self.core.create_namespaced_pod(self.ns, pod)
                rank += 1
        self.status(job, created, ("Running", "PyTorchJobRunning", f"PyTorchJob {name} is running."))

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(10)


@component(workers=2, kubeflow_job=True, cache=False)
def train_pj(epochs: int) -> list:
    import os

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo")  # MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK from the operator
    rank, world = dist.get_rank(), dist.get_world_size()
    X, y = make_data()
    shard = slice(rank * len(X) // world, (rank + 1) * len(X) // world)
    model = DDP(make_model())
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X[shard]).squeeze(-1), y[shard])
        loss.backward()
        opt.step()
    print(f"rank {rank}/{world} in pod {os.environ['NBPIPE_POD_NAME']} local rank {os.environ['LOCAL_RANK']} "
          f"group rank {os.environ['GROUP_RANK']} loss {loss.item():.6f}")
    params = torch.cat([p.detach().reshape(-1) for p in model.module.parameters()]).tolist()
    dist.destroy_process_group()
    return params


@pipeline
def pj_train(epochs: int = 20):
    train_pj(epochs=epochs)


@component(workers=2, kubeflow_job=True, retries=1, backoff=0.1, cache=False)
def shaky_pj() -> str:
    import os
    import time

    rank, attempt = int(os.environ["RANK"]), int(os.environ["NBPIPE_ATTEMPT"])
    if attempt == 1 and rank == 1:
        raise RuntimeError("worker 1 lost its shard")
    if attempt == 1:
        time.sleep(300)  # the job's other pod must be stopped by nbpipe
    return f"rank {rank} done on attempt {attempt}"


@pipeline
def pj_shaky():
    shaky_pj()


@component(workers=2, kubeflow_job=True, cache=False)
def slow_pj(seconds: float) -> str:
    import os
    import time

    print(f"rank {os.environ['RANK']} started", flush=True)
    time.sleep(seconds)
    print(f"rank {os.environ['RANK']} finished", flush=True)
    return f"rank {os.environ['RANK']}"


@pipeline
def pj_slow(seconds: float = 8):
    slow_pj(seconds=seconds)


@component(workers=3, kubeflow_job=True, cache=False, name=FAIL_AS_OPERATOR)
def unplaceable_pj() -> int:
    return 1


@pipeline
def pj_unplaceable():
    unplaceable_pj()


@pytest.fixture(scope="module")
def operator(real: Cluster) -> Iterator[Operator]:
    op = Operator(real)
    yield op
    op.close()


@pytest.fixture(scope="module")
def client(real: Cluster, operator: Operator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield real.runner(tmp_path_factory.mktemp("k8s-pj-runner"), NBPIPE_K8S_GANG_PORT="0").client()


def jobs(op: Operator, run_id: str) -> list[dict[str, Any]]:
    return list(op.custom.list_namespaced_custom_object(GROUP, VERSION, op.ns, PLURAL,
                                                        label_selector=f"nbpipe.io/run={run_id}")["items"])


def worker_events(run: Any, step: str) -> list[ev.StepWorkers]:
    return [e for e in run.events(follow=False) if isinstance(e, ev.StepWorkers) and e.step == step]


@pytest.mark.k8s
def test_pytorchjob_gloo_training_equals_single_process(real: Cluster, operator: Operator, client: Any) -> None:
    run = client.submit(pj_train, {"epochs": 20})
    (job,) = wait_for("the PyTorchJob", lambda: jobs(operator, run.id), 120)
    pods = wait_for("its two pods", lambda: (p := real.pods(run.id)) and len(p) == 2 and p, 120)
    run.wait(timeout=300)
    name = job["metadata"]["name"]
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert {k: v["replicas"] for k, v in specs.items()} == {"Master": 1, "Worker": 1}
    assert job["spec"]["runPolicy"]["cleanPodPolicy"] == "None"
    for spec in specs.values():
        assert spec["restartPolicy"] == "Never" and spec["template"]["spec"]["restartPolicy"] == "Never"
        (c,) = spec["template"]["spec"]["containers"]
        assert c["name"] == "pytorch" and c["ports"][0]["name"] == "pytorchjob-port"
        env = {e["name"] for e in c["env"]}
        assert "NBPIPE_JOB" in env and not env & {"RANK", "MASTER_ADDR", "WORLD_SIZE"}  # the operator's to give
    by_name = {p["metadata"]["name"]: p for p in pods}
    assert set(by_name) == {f"{name}-master-0", f"{name}-worker-0"}
    for p in pods:
        assert p["metadata"]["labels"]["training.kubeflow.org/job-name"] == name
        assert p["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]

    assert run.output("train_pj") == pytest.approx(train_single(20), rel=1e-9, abs=1e-12)
    log = run.logs("train_pj")
    assert f"PyTorchJob {name} created: Master x1 + Worker x1" in log
    assert f"PyTorchJob {name} Created" in log and f"PyTorchJob {name} Running" in log
    for r, pod in enumerate((f"{name}-master-0", f"{name}-worker-0")):
        assert f"[rank {r}] rank {r}/2 in pod {pod} local rank 0 group rank {r} loss" in log
    last = worker_events(run, "train_pj")[-1]
    assert [(w["rank"], w["pod"], w["state"]) for w in last.workers] == \
        [(0, f"{name}-master-0", "succeeded"), (1, f"{name}-worker-0", "succeeded")]
    wait_for("the job and its pods to be deleted", lambda: jobs(operator, run.id) == [] and real.pods(run.id) == [], 60)


@pytest.mark.k8s
def test_a_failed_worker_stops_the_job_and_the_step_retries_as_a_unit(real: Cluster, operator: Operator,
                                                                      client: Any) -> None:
    run = client.submit(pj_shaky).wait(timeout=240)
    assert run.output("shaky_pj") == "rank 0 done on attempt 2"
    retrying = [e for e in run.events(follow=False) if isinstance(e, ev.StepRetrying)]
    assert len(retrying) == 1 and "worker rank 1 of 2" in retrying[0].reason
    assert "RuntimeError: worker 1 lost its shard" in retrying[0].reason
    first = run.logs("shaky_pj", attempt=1)
    assert "[rank 1] " in first and "deleting ranks 0" in first
    states = [w["state"] for w in [e for e in worker_events(run, "shaky_pj") if e.attempt == 1][-1].workers]
    assert states == ["stopped", "failed"], states
    # attempt 1 failed: its job and the failed worker's pod are kept (delete policy on-success), the
    # master it stopped is gone; attempt 2 succeeded: its job is deleted
    kept = wait_for("attempt 1's master pod to be deleted", lambda: p if len(p := real.pods(run.id)) == 1 else None, 60)
    assert kept[0]["metadata"]["name"].endswith("-worker-0") and kept[0]["status"]["phase"] == "Failed"
    left = wait_for("attempt 2's job to be deleted", lambda: j if len(j := jobs(operator, run.id)) == 1 else None, 60)
    assert left[0]["metadata"]["name"] == kept[0]["metadata"]["labels"]["training.kubeflow.org/job-name"]


@pytest.mark.k8s
def test_cancel_deletes_the_job_and_its_pods(real: Cluster, operator: Operator, client: Any) -> None:
    run = client.submit(pj_slow, {"seconds": 300})
    wait_for("both workers running", lambda: (e := worker_events(run, "slow_pj"))
             and [w["state"] for w in e[-1].workers] == ["running", "running"], 120)
    assert len(jobs(operator, run.id)) == 1
    run.cancel()
    run.wait(timeout=60, raise_on_failure=False)
    assert run.state == "cancelled" and run.steps["slow_pj"]["state"] == "cancelled"
    wait_for("the job and its pods to be deleted", lambda: jobs(operator, run.id) == [] and real.pods(run.id) == [], 60)
    assert [w["state"] for w in worker_events(run, "slow_pj")[-1].workers] == ["stopped", "stopped"]


@pytest.mark.k8s
def test_an_operator_failure_without_pods_fails_the_step_with_its_message(operator: Operator, client: Any) -> None:
    run = client.submit(pj_unplaceable).wait(timeout=120, raise_on_failure=False)
    assert run.state == "failed"
    step = run.steps[FAIL_AS_OPERATOR]
    log = run.logs(FAIL_AS_OPERATOR)
    assert "Failed: pods \"x\" is forbidden: exceeded quota" in log, log
    assert step["state"] == "failed"
    last = worker_events(run, FAIL_AS_OPERATOR)[-1]
    assert [w["state"] for w in last.workers] == ["not started"] * 3


@pytest.mark.k8s
def test_runner_restart_reattaches_to_the_job(real: Cluster, operator: Operator, tmp_path: Path) -> None:
    runner = real.runner(tmp_path / "runner", NBPIPE_K8S_GANG_PORT="0")
    client = runner.client()
    run = client.submit(pj_slow, {"seconds": 8})
    wait_for("both workers running", lambda: (e := worker_events(run, "slow_pj"))
             and [w["state"] for w in e[-1].workers] == ["running", "running"], 120)
    (job,) = jobs(operator, run.id)
    runner.stop(signal.SIGKILL)
    assert [j["metadata"]["uid"] for j in jobs(operator, run.id)] == [job["metadata"]["uid"]]  # outlives the runner
    client = runner.start().client()
    run = client.run(run.id).wait(timeout=120)
    assert run.output("slow_pj") == "rank 0" and run.steps["slow_pj"]["attempt"] == 1
    log = run.logs("slow_pj")
    for r in range(2):
        assert log.count(f"[rank {r}] rank {r} started") == 1 and log.count(f"[rank {r}] rank {r} finished") == 1
    assert f"re-attached to PyTorchJob {job['metadata']['name']}" in log
    wait_for("the job and its pods to be deleted", lambda: jobs(operator, run.id) == [] and real.pods(run.id) == [], 60)


@component(workers=2, kubeflow_job=True, cache=False)
def no_crd_pj() -> int:
    return 1


@pipeline
def pj_no_crd():
    no_crd_pj()


def test_kubeflow_job_option_and_its_errors() -> None:
    """Offline (make test): the option reaches the job's environment; without workers it is refused."""
    from nbpipe.errors import DefinitionError

    assert train_pj.options.to_json()["env"]["NBPIPE_KUBEFLOW_JOB"] == "PyTorchJob"
    assert "kubeflow_job" not in component(workers=2)(make_model).options.to_json()  # other specs unchanged
    with pytest.raises(DefinitionError, match=r"kubeflow_job=True needs workers=N with N >= 2"):
        component(kubeflow_job=True)(make_model)
    with pytest.raises(DefinitionError, match="must be True or False"):
        component(workers=2, kubeflow_job="yes")(make_model)  # type: ignore[arg-type]


def test_without_the_crd_the_step_fails_saying_so(double: Cluster, tmp_path: Path) -> None:
    """The API double serves no PyTorchJob CRD (404, as a cluster without the Training Operator)."""
    client = double.runner(tmp_path / "runner").client()
    run = client.submit(pj_no_crd).wait(timeout=120, raise_on_failure=False)
    assert run.state == "failed" and run.steps["no_crd_pj"]["state"] == "failed"
    text = json.dumps(run.steps["no_crd_pj"]) + run.logs("no_crd_pj")
    assert "asks for a Training Operator PyTorchJob (kubeflow_job=True), but the cluster does not serve " \
           "pytorchjobs.kubeflow.org/v1" in text, text
    assert double.pods(run.id) == []
