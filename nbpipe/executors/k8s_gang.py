"""Distributed steps on the Kubernetes executor: a ``workers=N`` attempt as N pods plus a headless Service.

Each rank is a pod running the step entrypoint with the PyTorch environment contract
(``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK=0``,
``LOCAL_WORLD_SIZE=1``, ``GROUP_RANK``: one worker per pod, as a PyTorchJob gives them). Rank
0's pod is created first and owns the others and the Service (``ownerReferences``), so deleting
rank 0 garbage-collects the whole gang; the pods have ``hostname``/``subdomain`` set so rank 0 is
``<pod>.<service>.<namespace>.svc`` in cluster DNS.

Where rank 0 is found (``NBPIPE_K8S_GANG_ADDRESS``):

- ``dns`` (default, a real cluster): its stable DNS name through the headless Service
  (``publishNotReadyAddresses``, so it resolves before any probe passes);
- ``pod-ip`` (clusters without DNS for pods, and the k8s-rig): rank 0 is created, its pod IP is
  read from the watch, then the other ranks are created with it.

``NBPIPE_K8S_GANG_PORT`` is the rendezvous port (default 29500, as torchrun); ``0`` picks a free
port on the runner's host, for clusters whose pods share the runner's network (the k8s-rig runs
pods as local processes on loopback), where every worker also gets its share of the host's cores
(``OMP_NUM_THREADS``).

Gang semantics as on the local executor (:mod:`.gang`): all pods are created or none (a failed
create deletes the ones made); the first worker to fail deletes the others and the attempt fails
as a unit (the scheduler retries it as a unit, with new pods); cancel and timeouts delete every
pod; rank 0's result is the step's; every worker's log is streamed into the step's log with
``[rank R]`` prefixes; ``StepWorkers`` events carry the pods and their states. The Service is
deleted when the attempt ends; the pods follow the executor's delete policy (``on-success``
keeps a failed worker's pod for ``kubectl describe``; the workers the gang stopped are deleted).
A restarted runner re-attaches to the whole gang (:func:`reattach`).

The Training Operator's PyTorchJob (``kubeflow_job=True``) is :mod:`.k8s_pytorchjob`, which follows
the operator's pods with this class. Non-goal: elastic membership.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import NbpipeError
from .base import ExitStatus, Handle
from .gang import EXIT_GRACE, first_error, free_port, rank_result_key, report_rank_failure
from .k8s_pod import (CONTAINER, LABEL_RUN, MANAGED_BY, MAX_ENV_JOB, build_pod, dns_name, encode_job,
                      label_value)
from .k8s_logs import follow_log
from .k8s_watch import classify, container_started, deleted_status

log = logging.getLogger("nbpipe.executors.kubernetes")

LABEL_GANG = "nbpipe.io/gang"  # the gang's Service name, on every worker pod (the Service's selector)
LABEL_RANK = "nbpipe.io/rank"
ANNOTATION_WORKERS = "nbpipe.io/workers"
DEFAULT_PORT = 29500
START_TIMEOUT = float(os.environ.get("NBPIPE_K8S_GANG_START_TIMEOUT", "300"))
LOG_WAIT = 15.0


def gang_settings(env: dict[str, str] | None = None) -> tuple[str, int]:
    """``(address mode, port)`` from ``NBPIPE_K8S_GANG_ADDRESS`` / ``NBPIPE_K8S_GANG_PORT``."""
    e = os.environ if env is None else env
    mode = e.get("NBPIPE_K8S_GANG_ADDRESS", "dns") or "dns"
    if mode not in ("dns", "pod-ip"):
        raise NbpipeError(f"NBPIPE_K8S_GANG_ADDRESS={mode!r} is not 'dns' or 'pod-ip'",
                          hint="'dns' finds rank 0 through the gang's headless Service; 'pod-ip' by its pod IP.")
    try:
        port = int(e.get("NBPIPE_K8S_GANG_PORT", str(DEFAULT_PORT)))
    except ValueError:
        raise NbpipeError(f"NBPIPE_K8S_GANG_PORT={e.get('NBPIPE_K8S_GANG_PORT')!r} is not a port number",
                          hint="Give a port (default 29500), or 0 when pods share the runner's network.") from None
    return mode, port


def service_name(attempt_id: str) -> str:
    return dns_name("nbp-gang", attempt_id)


def worker_pod_name(attempt_id: str, rank: int) -> str:
    suffix = f"-r{rank}"
    return dns_name("nbp", attempt_id, limit=63 - len(suffix)) + suffix


@dataclass
class Worker:
    rank: int
    pod: str
    uid: str = ""
    state: str = "starting"
    exit_code: int | None = None
    status: ExitStatus | None = None
    deleted: bool = False
    ip: str = ""
    created: float = 0.0
    written: int = 0  # bytes of the container's log consumed (prefixed into the step's log)
    partial: bytes = b""
    logs: asyncio.Future[bool] | None = None
    stop_logs: threading.Event = field(default_factory=threading.Event)
    log_taken: bool = False


class K8sGang:
    """The N pods of one attempt: their watch events, logs, and the end of the attempt as a unit."""

    container = CONTAINER  # the step's container in each worker pod (a PyTorchJob's is "pytorch")

    def __init__(self, ex: Any, job: dict[str, Any], attempt_id: str, log_path: str, n: int, settings: Any):
        self.ex, self.job, self.attempt_id, self.log_path, self.n = ex, job, attempt_id, log_path, n
        self.settings = settings  # the pod settings of the run's profile (its namespace among them)
        self.ns = settings.namespace
        self.service = service_name(attempt_id)
        self.workers = [Worker(r, worker_pod_name(attempt_id, r)) for r in range(n)]
        rank0 = self.workers[0].pod  # the attempt's row keeps "namespace/pod" outside the runner's namespace
        self.handle = Handle(attempt_id, name=rank0 if self.ns == ex.settings.namespace else f"{self.ns}/{rank0}",
                             extra={"gang": self})
        self.stopping = False
        self.killed = False
        self.first_failure: int | None = None
        self.finishing = False
        self.rank0_ip: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.lock = threading.Lock()

    # ------------------------------------------------------------ events and log
    def emit(self) -> None:
        on_event = getattr(self.ex, "on_event", None)
        if on_event is None:
            return
        from .. import events as ev

        try:
            on_event(ev.StepWorkers(
                run_id=str(self.job.get("run_id", "")), ts=time.time(), step=str(self.job.get("step", "")),
                attempt=int(self.job.get("attempt", 1)),
                workers=[{"rank": w.rank, "pod": w.pod, "pid": None, "state": w.state, "exit_code": w.exit_code}
                         for w in self.workers]))
        except Exception:  # noqa: BLE001 - an event that cannot be recorded must not break the gang
            pass

    def note(self, text: str) -> None:
        with self.lock, open(self.log_path, "ab") as fh:
            fh.write(f"[gang] {text}\n".encode())

    def _write(self, w: Worker, data: bytes, final: bool = False) -> None:
        """Append ``data`` of worker ``w``'s container log to the step's log, line by line with its prefix."""
        text = w.partial + data
        lines = text.split(b"\n")
        w.partial = lines.pop()
        if final and w.partial:
            lines.append(w.partial)
            w.partial = b""
        if lines:
            prefix = f"[rank {w.rank}] ".encode()
            with open(self.log_path, "ab") as fh:
                fh.write(b"".join(prefix + line + b"\n" for line in lines))

    def _stream(self, w: Worker) -> bool:
        """Follow worker ``w``'s container log into the step's log; True when read to its end."""
        def read(resp: Any) -> bool:
            pos = 0  # a reconnection reads from the first byte: skip what was consumed
            for chunk in resp.stream(65536):
                start, pos = pos, pos + len(chunk)
                with self.lock:
                    if w.log_taken:
                        resp.close()
                        return True
                    if pos > w.written:
                        piece = chunk[max(0, w.written - start):]
                        w.written += len(piece)
                        self._write(w, piece)
            resp.release_conn()
            return True

        return follow_log(self.ex.api, w.pod, self.ns, self.container, w.stop_logs, read)

    def _take_log(self, w: Worker) -> None:
        """Complete worker ``w``'s log from its ended container's whole log (or the entrypoint's upload)."""
        data: bytes | None = None
        if not w.deleted:
            try:
                data = self.ex.api.read_namespaced_pod_log(w.pod, self.ns, container=self.container,
                                                           _preload_content=False).data
            except Exception:  # noqa: BLE001 - gone: try the copy the entrypoint uploaded
                data = None
        if data is None:
            from ..stores import open_store

            try:
                data = open_store(self.job["store"]).get_bytes(rank_log_key(self.job["log_key"], w.rank))
            except Exception:  # noqa: BLE001 - it never ran the entrypoint
                data = b""
        with self.lock:
            w.log_taken = True
            if len(data) > w.written:
                piece = data[w.written:]
                w.written = len(data)
                self._write(w, piece)
            self._write(w, b"", final=True)
        w.stop_logs.set()

    # ------------------------------------------------------------ watch
    def on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        name = pod.get("metadata", {}).get("name", "")
        if pod.get("metadata", {}).get("namespace", self.ns) != self.ns:
            return
        w = next((x for x in self.workers if x.pod == name), None)
        if w is None or w.status is not None or self.finishing:
            return
        ip = (pod.get("status") or {}).get("podIP") or ""
        if ip:
            w.ip = ip
            if w.rank == 0 and not self.rank0_ip.done():
                self.rank0_ip.set_result(ip)
        if w.logs is None and container_started(pod):
            w.logs = asyncio.ensure_future(asyncio.to_thread(self._stream, w))
            if w.state == "starting":
                w.state = "running"
                self.emit()
        status = classify(pod)
        if kind == "DELETED" and status is None:
            w.deleted = True
            status = deleted_status(pod, self.killed or self.stopping)
        if status is not None:
            self._ended(w, status)

    def on_sync(self, names: set[str], listed_at: float) -> None:
        for w in self.workers:
            if w.status is None and w.created and w.created < listed_at and w.pod not in names:
                self.on_pod("DELETED", {"metadata": {"name": w.pod}})

    def _ended(self, w: Worker, status: ExitStatus) -> None:
        w.status = status
        w.exit_code = status.code if status.code is not None else (128 + status.signal if status.signal else None)
        if w.rank == 0 and not self.rank0_ip.done():
            self.rank0_ip.set_exception(NbpipeError(f"worker rank 0 ({w.pod}) ended before the others started: "
                                                    f"{status.describe()}"))
            self.rank0_ip.exception()  # retrieved: no "never retrieved" warning when nobody waits
        if status.ok:
            w.state = "succeeded"
            if w.rank == 0 and any(x.status is None for x in self.workers):
                asyncio.ensure_future(self._stragglers())
        elif self.stopping:
            w.state = "stopped"
        else:
            w.state = "failed"
            self.first_failure = w.rank
            self.stopping = True
            others = [x.rank for x in self.workers if x.status is None]
            self.note(f"worker rank {w.rank} ({w.pod}) failed: {status.describe()}; deleting "
                      f"{'ranks ' + ', '.join(map(str, others)) if others else 'nothing (all ended)'}")
            asyncio.ensure_future(self._delete_all(grace=1, keep=w.rank))
        self.emit()
        if all(x.status is not None for x in self.workers):
            self.finishing = True
            asyncio.ensure_future(self._finish())

    async def _stragglers(self) -> None:
        await asyncio.sleep(EXIT_GRACE)
        left = [w.rank for w in self.workers if w.status is None]
        if left and not self.stopping:
            self.stopping = True
            self.note(f"rank 0 finished {EXIT_GRACE:g} s ago; deleting ranks {', '.join(map(str, left))}, "
                      "which did not exit")
            await self._delete_all(grace=1, keep=0)

    # ------------------------------------------------------------ API
    async def _delete(self, kind: str, name: str, grace: int, propagation: str = "Background") -> bool:
        from kubernetes import client

        body = client.V1DeleteOptions(grace_period_seconds=max(0, int(grace)), propagation_policy=propagation)
        call = self.ex.api.delete_namespaced_pod if kind == "pod" else self.ex.api.delete_namespaced_service
        try:
            await asyncio.to_thread(call, name, self.ns, body=body)
            return True
        except Exception as exc:  # noqa: BLE001 - gone already (404) or API trouble (logged)
            if getattr(exc, "status", None) != 404:
                log.warning("could not delete %s %s: %s", kind, name, exc)
            return False

    async def _delete_all(self, grace: int, keep: int | None = None) -> None:
        """Delete the Service and the workers still running, but ``keep``: rank 0 then goes with
        ``Orphan`` propagation, or the garbage collector would take the kept pod with its owner."""
        await asyncio.gather(self._delete("service", self.service, 0),
                             *(self._delete("pod", w.pod, grace, "Orphan" if keep and w.rank == 0 else "Background")
                               for w in self.workers if w.rank != keep and w.status is None))

    def _pod(self, rank: int, rjob: dict[str, Any], ref: dict[str, Any] | None, mode: str, owner: dict[str, Any] | None,
             master: str) -> dict[str, Any]:
        w = self.workers[rank]
        pod = build_pod(rjob, self.attempt_id, self.settings, timeout=self.job.get("timeout"), job_ref=ref)
        meta, spec = pod["metadata"], pod["spec"]
        meta["name"] = w.pod
        meta["labels"].update({LABEL_GANG: self.service, LABEL_RANK: str(rank)})
        meta["annotations"][ANNOTATION_WORKERS] = str(self.n)
        if owner is not None:
            meta["ownerReferences"] = [owner]
        spec["hostname"], spec["subdomain"] = w.pod, self.service
        if mode == "pod-ip" and rank == 0:  # rank 0 reaches itself by its own pod IP (the downward API)
            env = [e for e in spec["containers"][0]["env"] if e["name"] != "MASTER_ADDR"]
            env.append({"name": "MASTER_ADDR", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
            spec["containers"][0]["env"] = env
        return pod

    def _service(self, port: int, owner: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": self.service, "namespace": self.ns, "ownerReferences": [owner],
                             "labels": {MANAGED_BY: "nbpipe", LABEL_RUN: label_value(str(self.job["run_id"])),
                                        LABEL_GANG: self.service}},
                "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                         "selector": {LABEL_GANG: self.service},
                         "ports": [{"name": "rendezvous", "port": port, "targetPort": port, "protocol": "TCP"}]}}

    async def _create(self, pod: dict[str, Any]) -> dict[str, Any]:
        resp = await asyncio.to_thread(self.ex.api.create_namespaced_pod, self.ns, pod, _preload_content=False)
        self.workers[int(pod["metadata"]["labels"][LABEL_RANK])].created = time.monotonic()
        return dict(json.loads(resp.data))

    async def start(self) -> Handle:
        from .k8s_errors import api_error as _api_error
        from .kubernetes import store_key

        mode, port = gang_settings()
        shares_host = port == 0
        if shares_host:
            port = free_port()
        run_id, step, attempt = str(self.job["run_id"]), str(self.job["step"]), int(self.job["attempt"])
        master = f"{self.workers[0].pod}.{self.service}.{self.ns}.svc"
        rjobs: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        for w in self.workers:
            rjob = dict(self.job)
            rjob["result_key"] = rank_result_key(self.job["result_key"], w.rank)
            rjob["log_key"] = rank_log_key(self.job["log_key"], w.rank)
            contract = {"MASTER_ADDR": master, "MASTER_PORT": str(port), "WORLD_SIZE": str(self.n),
                        "RANK": str(w.rank), "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
                        "GROUP_RANK": str(w.rank), "NBPIPE_WORKER_RANK": str(w.rank)}
            if shares_host:  # the workers share this host's cores, as the local gang's do
                contract.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.n)))
            if mode == "pod-ip" and w.rank == 0:
                del contract["MASTER_ADDR"]  # from the pod's status (see _pod), not the job
            rjob["env"] = {**(self.job.get("env") or {}), **contract}
            ref = None
            if len(encode_job(rjob)) > MAX_ENV_JOB:
                ref = {"job_key": store_key(run_id, step, attempt, f"job.rank{w.rank}.json"), "store": rjob["store"]}
                await asyncio.to_thread(self.ex._put_job, rjob, ref["job_key"])
            rjobs.append((rjob, ref))
        for w in self.workers:
            self.ex._gang_pods[w.pod] = self
        made = 0
        try:
            rank0 = await self._create(self._pod(0, *rjobs[0], mode, None, master))
            made = 1
            owner = {"apiVersion": "v1", "kind": "Pod", "name": self.workers[0].pod,
                     "uid": rank0["metadata"]["uid"], "blockOwnerDeletion": False}
            await asyncio.to_thread(self.ex.api.create_namespaced_service, self.ns, self._service(port, owner))
            if mode == "pod-ip":  # the others are told where rank 0 is once it has an address
                master = await asyncio.wait_for(asyncio.shield(self.rank0_ip), START_TIMEOUT)
                for rjob, _ in rjobs[1:]:
                    rjob["env"]["MASTER_ADDR"] = master
            for rank in range(1, self.n):
                rjob, ref = rjobs[rank]
                if ref is not None:
                    await asyncio.to_thread(self.ex._put_job, rjob, ref["job_key"])
                await self._create(self._pod(rank, rjob, ref, mode, owner, master))
                made += 1
        except BaseException as exc:  # all or none: delete what was made
            self.stopping = True
            self.finishing = True
            for w in self.workers[made:]:
                w.state = "not started"
            self.note(f"could not start worker rank {made} of {self.n} ({exc}); deleting the "
                      f"{made} worker pod(s) made and the Service")
            await asyncio.gather(self._delete("service", self.service, 0),
                                 *(self._delete("pod", w.pod, 0) for w in self.workers[:made]))
            for w in self.workers:
                self.ex._gang_pods.pop(w.pod, None)
                w.stop_logs.set()
            self.emit()
            if isinstance(exc, asyncio.TimeoutError):
                raise NbpipeError(f"worker rank 0 ({self.workers[0].pod}) got no pod IP within {START_TIMEOUT:g} s",
                                  hint="Check that the cluster can run the pod (kubectl describe pod).") from None
            if getattr(exc, "status", None) is not None:
                from .k8s_errors import quota_refusal

                refused = quota_refusal(exc, str(self.job.get("profile") or "default"), self.ns)
                if refused is not None:  # the profile's budget, not a runner fault: a failed attempt saying so
                    self.handle.done.set_result(ExitStatus(reason=f"worker rank {made} of {self.n}: {refused}"))
                    return self.handle
                raise _api_error(exc, f"create the {self.n} pods and Service of a distributed step",
                                 self.ns) from None
            raise
        self.handle.extra["created"] = time.monotonic()
        addr = "rank 0's pod IP " + master if mode == "pod-ip" else master
        self.note(f"{self.n} worker pods and headless Service {self.service} created "
                  f"(MASTER_ADDR={addr} MASTER_PORT={port})")
        self.emit()
        return self.handle

    # ------------------------------------------------------------ the end
    async def _finish(self) -> None:
        for w in self.workers:
            if w.logs is not None and not w.deleted:
                await asyncio.to_thread(self._take_log, w)
            elif w.logs is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(w.logs), LOG_WAIT)
                except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - the store copy below covers it
                    pass
                await asyncio.to_thread(self._take_log, w)
            else:
                await asyncio.to_thread(self._take_log, w)
        if self.first_failure is not None:  # the rank whose error came first is the cause (gang.first_error)
            cause = await asyncio.to_thread(first_error, self.job, self.n, self.first_failure)
            if cause != self.first_failure and self.workers[cause].status is not None:
                self.workers[self.first_failure].state, self.workers[cause].state = "stopped", "failed"
                self.note(f"worker rank {cause} ({self.workers[cause].pod}) failed first; "
                          f"rank {self.first_failure} failed because it went away")
                self.first_failure = cause
                self.emit()
        result = self._result()
        if self.first_failure is not None:
            reason = await asyncio.to_thread(self._report_failure, self.first_failure)
            result = ExitStatus(code=result.code, signal=result.signal, reason=reason)
        await self._delete("service", self.service, 0)
        policy = self.settings.delete_pods
        if not self.killed and (policy == "always" or (policy == "on-success" and result.ok)):
            await asyncio.gather(*(self._delete("pod", w.pod, 0) for w in self.workers if not w.deleted))
        for w in self.workers:
            self.ex._gang_pods.pop(w.pod, None)
        if not self.handle.done.done():
            self.handle.done.set_result(result)

    def _result(self) -> ExitStatus:
        """The attempt's status: the first failed worker's; else rank 0's (its result is the step's,
        even when stragglers were deleted after it succeeded)."""
        w = self.workers[self.first_failure if self.first_failure is not None else 0]
        st = w.status or ExitStatus(reason=f"worker rank {w.rank} ({w.pod}) has no status")
        return ExitStatus(code=st.code, signal=st.signal, reason=st.reason)

    def _report_failure(self, rank: int) -> str:
        """Make the first failed rank's error the attempt's; return the attempt's reason."""
        w = self.workers[rank]
        desc = w.status.describe() if w.status else "failed"
        return report_rank_failure(self.job, rank, f"worker rank {rank} of {self.n} (pod {w.pod})", f": {desc}",
                                   "deleted")

    async def kill(self, grace: float = 3.0) -> None:
        """Delete every worker pod and the Service (cancel, timeout), and wait for the attempt to end."""
        self.killed = self.stopping = True
        if self.handle.done.done():
            return
        self.note("stopping: deleting every worker pod and the Service")
        await self._delete_all(int(grace))
        try:
            await asyncio.wait_for(asyncio.shield(self.handle.done), grace + 30.0)
        except asyncio.TimeoutError:
            for w in self.workers:
                w.stop_logs.set()
                self.ex._gang_pods.pop(w.pod, None)
            if not self.handle.done.done():
                self.handle.done.set_result(ExitStatus(reason="the worker pods were deleted but did not go away"))

    def stop_streams(self) -> None:
        for w in self.workers:
            w.stop_logs.set()


def rank_log_key(key: str, rank: int) -> str:
    return key if rank == 0 else f"{key.removesuffix('.txt')}.rank{rank}.txt"


async def start(ex: Any, job: dict[str, Any], attempt_id: str, log_path: str, settings: Any, n: int) -> Handle:
    """Start a gang of ``n`` pods for ``job`` on the Kubernetes executor ``ex`` (``settings``: the placed ones)."""
    gang = K8sGang(ex, job, attempt_id, log_path, n, settings)
    return await gang.start()


_PREFIX = re.compile(rb"^\[rank (\d+)\] ")


def _consumed(log_path: str, n: int) -> list[int]:
    """Bytes of each rank's container log already in the step's log (lines ``[rank R] ...``)."""
    out = [0] * n
    try:
        with open(log_path, "rb") as fh:
            for line in fh:
                m = _PREFIX.match(line)
                if m and int(m[1]) < n:
                    out[int(m[1])] += len(line) - m.end()
    except OSError:
        pass
    return out


async def reattach(ex: Any, attempt: dict[str, Any], rank0: dict[str, Any], namespace: str) -> Handle | None:
    """Follow the gang of an attempt a previous runner started (``rank0``: its rank 0 pod, in ``namespace``)."""
    meta = rank0.get("metadata") or {}
    try:
        n = int((meta.get("annotations") or {}).get(ANNOTATION_WORKERS, "0"))
    except ValueError:
        return None
    if n < 2:
        return None
    found = reattach_job(rank0, attempt)
    if found is None:
        return None
    job, log_path = found
    from dataclasses import replace

    gang = K8sGang(ex, job, str(attempt["id"]), log_path, n, replace(ex.settings, namespace=namespace))
    service = (meta.get("labels") or {}).get(LABEL_GANG, gang.service)
    gang.service = service
    resp = await asyncio.to_thread(ex.api.list_namespaced_pod, namespace,
                                   label_selector=f"{MANAGED_BY}=nbpipe,{LABEL_GANG}={service}", _preload_content=False)
    pods = {p["metadata"]["name"]: p for p in json.loads(resp.data).get("items") or []}
    resume(gang, pods, log_path, f"the {n} worker pods", missing_deleted=True)
    gang.emit()
    return gang.handle


def reattach_job(pod: dict[str, Any], attempt: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """The job a re-attached gang's pod carries, and its attempt's local log path (None: not ours)."""
    from .kubernetes import _job_from_pod, store_key

    job = _job_from_pod(pod)
    if not job.get("store"):
        return None
    log_path = str(attempt["log_key"])
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    job.setdefault("log_key", store_key(str(attempt["run_id"]), str(attempt["step"]), int(attempt["attempt"]),
                                        "log.txt"))
    return job, log_path


def resume(gang: "K8sGang", pods: dict[str, dict[str, Any]], log_path: str, what: str, missing_deleted: bool) -> None:
    """Follow a gang again after a runner restart: each rank's log resumes after the lines already
    written, and the pods listed now are synced (a missing one is deleted, if ``missing_deleted``)."""
    done = _consumed(log_path, gang.n)
    now = time.monotonic()
    for w in gang.workers:
        w.written, w.created = done[w.rank], now
        gang.ex._gang_pods[w.pod] = gang
    gang.handle.extra.update(reattached=True, created=now)
    gang.note(f"re-attached to {what} after a runner restart")
    for w in gang.workers:
        if w.pod in pods:
            gang.on_pod("SYNC", pods[w.pod])
        elif missing_deleted:
            gang.on_pod("DELETED", {"metadata": {"name": w.pod}})
