"""Distributed steps as a Kubeflow Training Operator ``PyTorchJob`` (``@component(workers=N, kubeflow_job=True)``).

When a component asks for it, the Kubernetes executor creates one ``kubeflow.org/v1`` PyTorchJob
per attempt instead of the gang's N pods and headless Service (:mod:`.k8s_gang`): a ``Master``
replica (rank 0) and ``Worker`` replicas (ranks 1..N-1) whose pod template is the step pod the
gang would create (same image, entrypoint, env, volumes, service account, resources), with the
container named ``pytorch`` (the operator's rule) and the rendezvous port as ``pytorchjob-port``.
``restartPolicy: Never`` (nbpipe retries the attempt as a unit) and ``runPolicy.cleanPodPolicy:
None`` (the operator leaves the pods; nbpipe reads their logs and exit codes, then deletes the job,
which garbage-collects its pods). The operator gives every pod ``MASTER_ADDR`` (the master's
Service), ``MASTER_PORT``, ``WORLD_SIZE`` and ``RANK``; the pod runs ``python -m
nbpipe.executors.k8s_pytorchjob JOB`` which completes the contract (``LOCAL_RANK=0``,
``LOCAL_WORLD_SIZE=1``, ``GROUP_RANK``) and points the rank's result and log at its own keys,
then runs the step entrypoint.

The runner follows the job's pods (label ``training.kubeflow.org/job-name``; the template's nbpipe
labels make them part of the executor's pod watch) exactly as a gang's: ``[rank R]`` log
prefixes, ``StepWorkers`` events, the first failed worker stops the others, rank 0's result is the
step's. It also watches the job's status conditions: ``Created``/``Running`` go into the step's
log, and a ``Failed`` condition with no failed pod (the operator could not make them: quota,
invalid spec) fails the attempt with the operator's message. Cancel and timeouts delete the job.
A restarted runner re-attaches through the job (the attempt's row names it
``pytorchjob/<namespace>/<name>``).

The CRD must be installed (the Training Operator); without it the step fails with a message that
says so: nbpipe does not fall back to the gang, because a user who asked for the operator asked
for what it adds (its gang scheduling, quotas, dashboards), and a silent fallback would hide that.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
import time
from typing import Any

from ..errors import NbpipeError
from .base import ExitStatus, Handle
from .gang import free_port, rank_result_key
from .k8s_gang import DEFAULT_PORT, K8sGang, Worker, gang_settings, rank_log_key, reattach_job, resume
from .k8s_pod import LABEL_RUN, MANAGED_BY, MAX_ENV_JOB, build_pod, container_command, dns_name, encode_job, label_value

log = logging.getLogger("nbpipe.executors.kubernetes")

GROUP, VERSION, PLURAL, KIND = "kubeflow.org", "v1", "pytorchjobs", "PyTorchJob"
CONTAINER = "pytorch"  # the operator finds the container it gives the contract to by this name
PORT_NAME = "pytorchjob-port"
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
KUBEFLOW_ENV = "NBPIPE_KUBEFLOW_JOB"  # set by @component(kubeflow_job=True) (see nbpipe.component)
ROW_PREFIX = "pytorchjob/"
LABEL_JOB = "nbpipe.io/pytorchjob"
FAILED_GRACE = 10.0  # seconds a Failed condition waits for the failed pod's own event (its exit code, log)


def wants_pytorchjob(job: dict[str, Any]) -> bool:
    return bool((job.get("env") or {}).get(KUBEFLOW_ENV))


def job_name(attempt_id: str) -> str:
    return dns_name("nbp", attempt_id, limit=63 - len("-worker-63"))  # the operator's pod names stay <= 63


def pod_names(name: str, n: int) -> list[str]:
    """The operator's pod names: ``<job>-master-0`` (rank 0), ``<job>-worker-<i>`` (rank i+1)."""
    return [f"{name}-master-0", *(f"{name}-worker-{i}" for i in range(n - 1))]


def _custom(ex: Any) -> Any:
    from kubernetes import client

    return client.CustomObjectsApi(ex.api.api_client)


class PyTorchJobGang(K8sGang):
    """One attempt as a PyTorchJob; the pods the operator makes are followed as a gang's workers."""

    container = CONTAINER

    def __init__(self, ex: Any, job: dict[str, Any], attempt_id: str, log_path: str, n: int, settings: Any,
                 name: str | None = None):
        super().__init__(ex, job, attempt_id, log_path, n, settings)
        self.name = name or job_name(attempt_id)
        self.service = self.name
        self.workers = [Worker(r, p) for r, p in enumerate(pod_names(self.name, n))]
        self.handle.name = f"{ROW_PREFIX}{self.ns}/{self.name}"
        self.job_deleted = False
        self.job_failure: str | None = None
        self.conditions: list[str] = []
        self.stop_watch = threading.Event()
        self.seen: set[str] = set()  # pods the operator made (the others may not exist yet)

    # ------------------------------------------------------------ the object
    def manifest(self, port: int, ref: dict[str, Any] | None) -> dict[str, Any]:
        rjob = dict(self.job)
        rjob["env"] = {**(self.job.get("env") or {}), "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}
        if port == 0:
            rjob["env"].setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.n)))
        pod = build_pod(rjob, self.attempt_id, self.settings, timeout=self.job.get("timeout"), job_ref=ref)
        meta, spec = pod["metadata"], pod["spec"]
        container = spec["containers"][0]
        container["name"] = CONTAINER
        container["command"] = container_command("nbpipe.executors.k8s_pytorchjob")
        container["ports"] = [{"name": PORT_NAME, "containerPort": self.port, "protocol": "TCP"}]
        meta["labels"][LABEL_JOB] = self.name
        template = {"metadata": {"labels": meta["labels"], "annotations": meta["annotations"]}, "spec": spec}
        replicas = {"Master": {"replicas": 1, "restartPolicy": "Never", "template": template}}
        if self.n > 1:
            replicas["Worker"] = {"replicas": self.n - 1, "restartPolicy": "Never", "template": template}
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
                "metadata": {"name": self.name, "namespace": self.ns,
                             "labels": {MANAGED_BY: "nbpipe", LABEL_RUN: label_value(str(self.job["run_id"])),
                                        LABEL_JOB: self.name},
                             "annotations": dict(meta["annotations"])},
                "spec": {"runPolicy": {"cleanPodPolicy": "None", "backoffLimit": 0},
                         "pytorchReplicaSpecs": replicas}}

    async def start(self) -> Handle:
        from .k8s_errors import api_error as _api_error, quota_refusal
        from .kubernetes import store_key

        _, port = gang_settings()
        self.port = free_port() if port == 0 else port or DEFAULT_PORT
        run_id, step, attempt = str(self.job["run_id"]), str(self.job["step"]), int(self.job["attempt"])
        ref = None
        if len(encode_job(self.job)) > MAX_ENV_JOB:
            ref = {"job_key": store_key(run_id, step, attempt, "job.json"), "store": self.job["store"]}
            await asyncio.to_thread(self.ex._put_job, self.job, ref["job_key"])
        body = self.manifest(0 if port == 0 else self.port, ref)
        for w in self.workers:
            self.ex._gang_pods[w.pod] = self
        try:
            await asyncio.to_thread(_custom(self.ex).create_namespaced_custom_object, GROUP, VERSION, self.ns,
                                    PLURAL, body)
        except Exception as exc:
            for w in self.workers:
                self.ex._gang_pods.pop(w.pod, None)
                w.state = "not started"
            status = getattr(exc, "status", None)
            if status is None:
                raise
            if status == 404:
                raise NbpipeError(
                    f"step {step} asks for a Training Operator PyTorchJob (kubeflow_job=True), but the cluster "
                    f"does not serve {PLURAL}.{GROUP}/{VERSION} in namespace {self.ns}",
                    hint="Install the Kubeflow Training Operator (its CRDs), or drop kubeflow_job=True to run the "
                         "step as N pods and a headless Service.") from None
            refused = quota_refusal(exc, str(self.job.get("profile") or "default"), self.ns)
            if refused is not None:
                self.handle.done.set_result(ExitStatus(reason=f"PyTorchJob {self.name}: {refused}"))
                return self.handle
            raise _api_error(exc, f"create PyTorchJob {self.name} (pytorchjobs.kubeflow.org)", self.ns) from None
        self.handle.extra["created"] = time.monotonic()
        now = time.monotonic()
        for w in self.workers:
            w.created = now
        self.note(f"PyTorchJob {self.name} created: Master x1 + Worker x{self.n - 1} "
                  f"({PORT_NAME} {self.port}, cleanPodPolicy None)")
        self.emit()
        self.watch()
        return self.handle

    # ------------------------------------------------------------ its status
    def watch(self) -> None:
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._watch, args=(loop,), daemon=True, name=f"nbpipe-watch-{self.name}").start()

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """List-then-watch the job (one object, by field selector) until the attempt ends."""
        from kubernetes import watch

        api = _custom(self.ex)
        sel = f"metadata.name={self.name}"
        while not self.stop_watch.is_set() and not self.handle.done.done():
            try:
                listed = api.list_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, field_selector=sel)
                for obj in listed.get("items") or []:
                    loop.call_soon_threadsafe(self.on_job, obj)
                w = watch.Watch()
                for ev in w.stream(api.list_namespaced_custom_object, GROUP, VERSION, self.ns, PLURAL,
                                   field_selector=sel, resource_version=listed["metadata"]["resourceVersion"],
                                   timeout_seconds=60):
                    if self.stop_watch.is_set() or self.handle.done.done():
                        w.stop()
                        break
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        loop.call_soon_threadsafe(self.on_job, ev["object"])
            except Exception as exc:  # noqa: BLE001 - dropped or expired: list again
                log.info("watch of PyTorchJob %s dropped (%s); listing again", self.name, exc)
                if self.stop_watch.wait(1.0):
                    return

    def on_job(self, obj: dict[str, Any]) -> None:
        for cond in (obj.get("status") or {}).get("conditions") or []:
            kind = str(cond.get("type", ""))
            if cond.get("status") != "True" or kind in self.conditions:
                continue
            self.conditions.append(kind)
            msg = cond.get("message") or cond.get("reason") or ""
            self.note(f"PyTorchJob {self.name} {kind}" + (f": {msg}" if msg else ""))
            if kind == "Failed":
                reason = f"PyTorchJob {self.name} failed: {msg or 'the operator gave no reason'}"
                if self.seen:  # a worker failed: its pod's event says how (and stops the others)
                    asyncio.get_running_loop().call_later(FAILED_GRACE, self._job_failed, reason)
                else:
                    self._job_failed(reason)

    def on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        name = pod.get("metadata", {}).get("name", "")
        if kind != "DELETED" or name in self.seen:
            self.seen.add(name)
        super().on_pod(kind, pod)

    def on_sync(self, names: set[str], listed_at: float) -> None:
        for w in self.workers:  # only pods that existed can have gone away
            if w.pod in self.seen and w.status is None and w.created < listed_at and w.pod not in names:
                self.on_pod("DELETED", {"metadata": {"name": w.pod}})

    def _job_failed(self, reason: str) -> None:
        """The operator failed the job with no worker failure seen (it could not make the pods)."""
        if self.first_failure is not None or self.finishing or self.stopping:
            return
        self.job_failure = reason
        self.stopping = True
        asyncio.ensure_future(self._delete_all(1))
        for w in self.workers:
            if w.status is None:
                w.status = ExitStatus(reason=reason)
                w.state = "stopped" if w.logs is not None else "not started"
                w.exit_code = None
        self.emit()
        self.finishing = True
        asyncio.ensure_future(self._finish())

    # ------------------------------------------------------------ the end
    def _result(self) -> ExitStatus:
        if self.job_failure is not None:
            return ExitStatus(reason=self.job_failure)
        return super()._result()

    async def _delete_job(self, grace: int) -> bool:
        from kubernetes import client

        if self.job_deleted:
            return False
        self.job_deleted = True
        body = client.V1DeleteOptions(grace_period_seconds=max(0, int(grace)), propagation_policy="Background")
        try:
            await asyncio.to_thread(_custom(self.ex).delete_namespaced_custom_object, GROUP, VERSION, self.ns,
                                    PLURAL, self.name, body=body)
            return True
        except Exception as exc:  # noqa: BLE001 - gone already (404) or API trouble (logged)
            if getattr(exc, "status", None) != 404:
                log.warning("could not delete PyTorchJob %s: %s", self.name, exc)
            return False

    async def _delete_all(self, grace: int, keep: int | None = None) -> None:
        """A failed worker (``keep``): delete the others' pods (the operator does not remake the pods of a
        job with ``restartPolicy: Never``); cancel and timeouts (no ``keep``): delete the job and its pods."""
        if keep is None:
            await self._delete_job(grace)
        await asyncio.gather(*(self._delete("pod", w.pod, grace) for w in self.workers
                               if w.rank != keep and w.status is None and w.pod in self.seen))
        import signal

        for w in self.workers:  # never made: nothing to wait for
            if w.status is None and w.pod not in self.seen and not self.finishing:
                w.state = "not started"
                self._ended(w, ExitStatus(signal=int(signal.SIGTERM)))

    async def _finish(self) -> None:
        # the base deletes pods by the delete policy and "the Service" (the job's name: no such Service, 404)
        await super()._finish()
        self.stop_watch.set()
        policy = self.settings.delete_pods
        result = self.handle.done.result() if self.handle.done.done() else None
        if self.killed or policy == "always" or (policy == "on-success" and result is not None and result.ok):
            await self._delete_job(0)

    async def _delete(self, kind: str, name: str, grace: int, propagation: str = "Background") -> bool:
        if kind == "service":  # the operator's Services go with the job
            return False
        return await super()._delete(kind, name, grace, propagation)

    def stop_streams(self) -> None:
        super().stop_streams()
        self.stop_watch.set()



async def start(ex: Any, job: dict[str, Any], attempt_id: str, log_path: str, settings: Any, n: int) -> Handle:
    """Run ``job`` as a PyTorchJob of ``n`` replicas on the Kubernetes executor ``ex``."""
    return await PyTorchJobGang(ex, job, attempt_id, log_path, n, settings).start()


async def reattach(ex: Any, attempt: dict[str, Any]) -> Handle | None:
    """Follow the PyTorchJob of an attempt a previous runner started (its row: ``pytorchjob/<ns>/<name>``)."""
    ns, _, name = str(attempt.get("pod") or "").removeprefix(ROW_PREFIX).partition("/")
    try:
        obj = await asyncio.to_thread(_custom(ex).get_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, name)
    except Exception as exc:  # noqa: BLE001 - 404: gone (the step is retried); else cannot tell
        if getattr(exc, "status", None) != 404:
            log.warning("cannot re-attach to PyTorchJob %s in namespace %s: %s", name, ns, exc)
        return None
    if (obj["metadata"].get("labels") or {}).get(LABEL_RUN) != label_value(str(attempt["run_id"])):
        return None
    await ex._ready(ns)
    specs = obj["spec"]["pytorchReplicaSpecs"]
    n = 1 + int((specs.get("Worker") or {}).get("replicas") or 0)
    found = reattach_job({"spec": specs["Master"]["template"]["spec"]}, attempt)
    if found is None:
        return None
    job, log_path = found
    from dataclasses import replace

    gang = PyTorchJobGang(ex, job, str(attempt["id"]), log_path, n, replace(ex.settings, namespace=ns), name=name)
    resp = await asyncio.to_thread(ex.api.list_namespaced_pod, ns, label_selector=f"{JOB_NAME_LABEL}={name}",
                                   _preload_content=False)
    pods = {p["metadata"]["name"]: p for p in json.loads(resp.data).get("items") or []}
    resume(gang, pods, log_path, f"PyTorchJob {name}", missing_deleted=False)  # the operator may not have made them yet
    gang.on_job(obj)
    gang.emit()
    gang.watch()
    return gang.handle


# ---------------------------------------------------------------- in the pod
def main(argv: list[str] | None = None) -> int:
    """In a replica's pod: complete the PyTorch contract from the operator's ``RANK`` and run the entrypoint
    with the rank's own result and log keys (one pod template serves every Worker replica)."""
    from .entry import open_store, read_job, start

    argv = sys.argv[1:] if argv is None else argv
    rank = int(os.environ.get("RANK", "0"))
    try:
        job = read_job(argv[0])
    except (OSError, ValueError, IndexError) as exc:
        sys.stderr.write(f"nbpipe: cannot read job {argv[:1]}: {exc}\n")
        return 2
    if "job_key" in job and "payload" not in job:  # a large job waits in the store
        job = json.loads(open_store(job["store"]).get_bytes(job["job_key"]))
    job["result_key"] = rank_result_key(job["result_key"], rank)
    if job.get("log_key"):
        job["log_key"] = rank_log_key(job["log_key"], rank)
    for key, value in (("GROUP_RANK", str(rank)), ("NBPIPE_WORKER_RANK", str(rank)), ("LOCAL_RANK", "0"),
                       ("LOCAL_WORLD_SIZE", "1")):
        os.environ.setdefault(key, value)
    job["env"] = {**(job.get("env") or {}), "GROUP_RANK": str(rank), "NBPIPE_WORKER_RANK": str(rank)}
    return start(job, in_pod=True)


if __name__ == "__main__":
    sys.exit(main())
