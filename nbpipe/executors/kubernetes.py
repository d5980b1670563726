"""The Kubernetes executor: one pod per step attempt, in the namespace of the run's profile.

Each attempt becomes a pod running ``python -m nbpipe.executors.entry`` on the component's
image (the job travels in the ``NBPIPE_JOB`` variable, or through the store when large). One
watch (:class:`.k8s_watch.PodWatcher`) follows every step pod and resolves each attempt's
future when its pod ends; the pod's log is streamed into the attempt's log file while it runs,
and the entrypoint also uploads its full log to the store, so logs outlive the pod. A
restarted runner re-attaches to pods that are still running (:meth:`KubernetesExecutor.reattach`).

Profiles (``job["profile"]``): a profile listed in the ``profiles:`` section of the users file
(:class:`nbpipe.runner.profiles.Placements`) runs its pods in its own namespace, with its own
ServiceAccount and S3 credentials Secret, under that namespace's ResourceQuota; every other
profile (``default`` among them) runs in the runner's namespace. There is one watch per
namespace in use. A pod the API server refuses for a quota is a failed attempt whose reason
names the profile and the quota (:func:`quota_refusal`), not an internal error.

The ``kubernetes`` client is synchronous: API calls run in threads (``asyncio.to_thread``), the
watch and log streams in daemon threads that hand results to the event loop with
``call_soon_threadsafe``.

Non-goals: retries and timeouts (the scheduler decides), building images, and cluster setup
(see ``cluster/``: namespace, RBAC, Secrets).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import NbpipeError
from . import k8s_gang, k8s_pytorchjob
from .base import ExitStatus, Handle
from .gang import workers_of
from .k8s_errors import api_error as _api_error, quota_refusal  # noqa: F401 - quota_refusal: re-exported
from .k8s_logs import PodLogs
from .k8s_standby import StandbyPool
from .k8s_pod import (
    ANNOTATION_ATTEMPT_ID,
    JOB_ENV,
    LABEL_RUN,
    MANAGED_BY,
    MAX_ENV_JOB,
    PodSettings,
    build_claim,
    build_pod,
    claim_name,
    encode_job,
    label_value,
    pod_name,
)
from .k8s_watch import PodWatcher, classify, container_started, deleted_status

log = logging.getLogger("nbpipe.executors.kubernetes")

LOG_WAIT = 15.0  # seconds to let a finished pod's log stream drain before resolving the attempt


def store_key(run_id: str, step: str, attempt: int, name: str) -> str:
    return f"runs/{run_id}/{step}/{attempt}/{name}"


def load_api(configuration: Any = None) -> Any:
    """A ``CoreV1Api`` from the in-cluster service account, else ``KUBECONFIG`` / ``~/.kube/config``."""
    try:
        from kubernetes import client, config
    except ImportError:
        raise NbpipeError("Executor 'kubernetes' needs the 'kubernetes' package.",
                          hint='Install it with: pip install "nbpipe[k8s]".') from None
    cfg = configuration or client.Configuration()
    if configuration is None:
        try:
            if os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config(client_configuration=cfg)
            else:
                config.load_kube_config(client_configuration=cfg)
        except Exception as exc:  # noqa: BLE001 - the config loaders raise several types
            raise NbpipeError(f"The kubernetes executor found no cluster credentials ({exc})",
                              "it needs the in-cluster service account or a kubeconfig.",
                              "Run the runner in the cluster (cluster/manifests) or set KUBECONFIG.") from None
    return client.CoreV1Api(client.ApiClient(cfg))


@dataclass
class _Attempt:
    handle: Handle
    pod: str
    namespace: str
    log_path: str
    log_key: str
    store: dict[str, Any]
    written: int = 0  # bytes of the container's log already in log_path (more than 0 after a re-attach)
    killed: bool = False
    finishing: bool = False
    logs: asyncio.Future[bool] | None = None
    stop_logs: threading.Event = field(default_factory=threading.Event)
    log_lock: threading.Lock = field(default_factory=threading.Lock)
    log_taken: bool = False  # _finish wrote the rest of the log itself: the stream must not write more
    log_end: str = ""  # the token of the entrypoint's last line (see log_end_line); "" for none


class KubernetesExecutor(PodLogs):
    """Start step attempts as pods; see the module docstring. Options: :class:`.k8s_pod.PodSettings`."""

    name = "kubernetes"
    installs_packages = True  # in the pod, on top of the image (the runner needs no overlay)

    def __init__(self, api: Any = None, placements: Any = None, **options: Any):
        self.settings = PodSettings.from_env(**options)
        self._api = api
        self._placements = placements  # nbpipe.runner.profiles.Placements; read from the env when first needed
        self._attempts: dict[str, _Attempt] = {}
        self._claims: set[str] = set()
        self._run_ns: dict[str, str] = {}  # run id -> the namespace of its pods (and claim)
        self._deleting: dict[asyncio.Future[bool], str] = {}  # pod deletions in flight -> pod name
        self._gang_pods: dict[str, Any] = {}  # worker pod of a distributed step -> its k8s_gang.K8sGang
        self._watchers: dict[str, PodWatcher] = {}  # namespace -> its watch
        self._stores: dict[str, Any] = {}  # a job's store config (JSON) -> the store, for step logs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready_lock: asyncio.Lock | None = None
        self.selector = f"{MANAGED_BY}=nbpipe"
        self.standby = StandbyPool(self, self.settings)  # prewarmed pods for the steps to come (k8s_standby)

    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = load_api()
        return self._api

    @property
    def _watcher(self) -> PodWatcher | None:
        """The watch of the runner's own namespace."""
        return self._watchers.get(self.settings.namespace)

    @property
    def placements(self) -> Any:
        if self._placements is None:
            from ..runner.profiles import Placements

            self._placements = Placements.from_env()
        return self._placements

    def place(self, job: dict[str, Any]) -> PodSettings:
        """The pod settings of ``job``'s profile: its namespace, ServiceAccount and S3 Secret, else the runner's."""
        profile = str(job.get("profile") or "default")
        p = self.placements.get(profile)
        if p is None:
            return self.settings
        s = self.settings
        changes: dict[str, Any] = {"namespace": p.namespace or s.namespace}  # (a profile may set only its storePrefix)
        if p.service_account:
            changes["service_account"] = p.service_account
        if p.s3_credentials_secret:
            # the runner's S3 Secret, wherever the pod refers to it, becomes the profile's
            own = {s.s3_credentials_secret} | {ref.partition(":")[0] for var, ref in s.secret_env.items() if var in _S3_VARS}
            own.discard("")
            changes["s3_credentials_secret"] = p.s3_credentials_secret if s.s3_credentials_secret else ""
            changes["secret_env"] = {var: (p.s3_credentials_secret + ":" + ref.partition(":")[2]
                                           if ref.partition(":")[0] in own else ref)
                                     for var, ref in s.secret_env.items()}
            changes["env_from_secrets"] = [p.s3_credentials_secret if x in own else x for x in s.env_from_secrets]
        return replace(s, **changes)

    # -------------------------------------------------------------- watch
    async def _ready(self, namespace: str | None = None) -> None:
        """Load the client (a heavy import: in a thread, off the event loop) and start a namespace's watch once."""
        namespace = namespace or self.settings.namespace
        if namespace in self._watchers:
            return
        if self._ready_lock is None:
            self._ready_lock = asyncio.Lock()
        async with self._ready_lock:
            if namespace in self._watchers:
                return
            api = await asyncio.to_thread(lambda: self.api)
            self._loop = asyncio.get_running_loop()
            watcher = PodWatcher(api, namespace, self.selector, self._from_thread,
                                 lambda names, listed_at: self._synced_from_thread(namespace, names, listed_at))
            self._watchers[namespace] = watcher
            watcher.start()

    async def warm(self) -> None:
        """Load credentials and start the watch before the first step."""
        try:
            await self._ready()
        except NbpipeError as exc:
            log.warning("%s", exc)

    def _from_thread(self, kind: str, pod: dict[str, Any]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._on_pod, kind, pod)

    def _synced_from_thread(self, namespace: str, names: set[str], listed_at: float) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._on_sync, names, listed_at, namespace)

    def _on_sync(self, names: set[str], listed_at: float, namespace: str | None = None) -> None:
        namespace = namespace or self.settings.namespace
        for name, att in list(self._attempts.items()):
            created = att.handle.extra.get("created")
            if att.namespace == namespace and name not in names and created and created < listed_at and not att.finishing:
                # known to exist before the list was asked for, but gone from it: deleted while the
                # watch was disconnected (a pod created while the list was in flight is not in it)
                self._on_pod("DELETED", {"metadata": {"name": name}})
        for gang in {id(g): g for g in self._gang_pods.values()}.values():
            if gang.ns == namespace:
                gang.on_sync(names, listed_at)
        self.standby.on_sync(names, listed_at, namespace)

    def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata", {})
        if meta.get("name") in self._gang_pods:  # a worker of a distributed step (see k8s_gang)
            self._gang_pods[meta["name"]].on_pod(kind, pod)
            return
        att = self._attempts.get(meta.get("name", ""))
        if att is None and self.standby.pods:
            self.standby.on_pod(kind, pod)
        if att is None or att.finishing or meta.get("namespace", att.namespace) != att.namespace:
            return
        att.handle.extra["pod"] = pod
        if att.logs is None and container_started(pod):
            att.logs = asyncio.ensure_future(asyncio.to_thread(self._stream_logs, att))
        status = classify(pod)
        if kind == "DELETED" and status is None:
            status = deleted_status(pod, att.killed)
        if status is not None:
            att.finishing = True
            asyncio.ensure_future(self._finish(att, status, deleted=kind == "DELETED"))

    async def _finish(self, att: _Attempt, status: ExitStatus, deleted: bool) -> None:
        complete = False
        pod = att.handle.extra.get("pod") or {}
        ended = bool(((pod.get("status") or {}).get("containerStatuses") or [{}])[0].get("state", {}).get("terminated"))
        if att.logs is not None and att.logs.done():  # e.g. the stream saw the entrypoint's last line
            complete = att.logs.exception() is None and bool(att.logs.result())
        if not complete and ended and not deleted and att.log_end and att.store and status.code in (0, 1, 2):
            # the entrypoint ended on its own (its exit codes), so it uploaded its log before it exited
            complete = await asyncio.to_thread(self._take_log, att, True)
        if not complete and ended and not deleted:
            complete = await asyncio.to_thread(self._take_log, att)
        if att.logs is not None and not complete:
            try:
                complete = await asyncio.wait_for(asyncio.shield(att.logs), LOG_WAIT)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - the store copy below covers it
                att.stop_logs.set()
        if not complete and att.store:
            await asyncio.to_thread(self._log_from_store, att)
        policy = self.settings.delete_pods
        self._attempts.pop(att.pod, None)
        if not att.handle.done.done():
            att.handle.done.set_result(status)
        if not deleted and not att.killed and (
                policy == "always" or (policy == "on-success" and status.ok) or (status.reason and att.logs is None)):
            # after the result: the next step need not wait for this API call (close() waits for it)
            task = asyncio.ensure_future(self._delete_pod(att.pod, att.namespace, grace=0))
            self._deleting[task] = att.pod
            task.add_done_callback(lambda t: self._deleting.pop(t, None))

    # -------------------------------------------------------------- executor API
    async def start(self, job: dict[str, Any], attempt_id: str, log_path: str, workdir: str) -> Handle:
        settings = await asyncio.to_thread(self.place, job)  # (may re-read the profiles file)
        ns = settings.namespace
        await self._ready(ns)
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        job = dict(job)
        job.pop("workdir", None)  # the runner's folder means nothing in a pod: the entrypoint uses its cwd
        job.pop("python_executable", None)
        run_id, step, attempt = str(job["run_id"]), str(job["step"]), int(job["attempt"])
        job["log_key"] = store_key(run_id, step, attempt, "log.txt")
        if workers_of(job) > 1 and k8s_pytorchjob.wants_pytorchjob(job):  # a Training Operator PyTorchJob
            return await k8s_pytorchjob.start(self, job, attempt_id, log_path, settings, workers_of(job))
        if workers_of(job) > 1:  # a distributed step: N pods and a headless Service (see k8s_gang)
            return await k8s_gang.start(self, job, attempt_id, log_path, settings, workers_of(job))
        job["log_end"] = secrets.token_hex(8)  # its last line ends the log stream (see log_end_line)
        if self.standby.pods:  # a standby pod with this step's pod spec, warm: it gets the job
            bound = await self.standby.start(job, attempt_id, log_path, settings)
            if bound is not None:
                self._run_ns[run_id] = ns
                return bound
        ref = None
        if len(encode_job(job)) > MAX_ENV_JOB:
            ref = {"job_key": store_key(run_id, step, attempt, "job.json"), "store": job["store"],
                   "log_end": job["log_end"]}
            await asyncio.to_thread(self._put_job, job, ref["job_key"])
        self._run_ns[run_id] = ns
        if settings.run_volume_size:
            await self._ensure_claim(run_id, settings)
        pod = build_pod(job, attempt_id, settings, timeout=job.get("timeout"), job_ref=ref)
        name = pod["metadata"]["name"]
        # the attempt's row keeps "namespace/pod" for a pod outside the runner's namespace (see reattach)
        handle = Handle(attempt_id, name=name if ns == self.settings.namespace else f"{ns}/{name}")
        att = _Attempt(handle, name, ns, log_path, job["log_key"], job["store"], log_end=job["log_end"])
        self._attempts[name] = att
        try:
            # (the answer unread: turning it into a V1Pod costs ~2 ms, and the watch reports the pod)
            await asyncio.to_thread(self.api.create_namespaced_pod, ns, pod, _preload_content=False)
        except Exception as exc:
            self._attempts.pop(name, None)
            if getattr(exc, "status", None) is None:
                raise
            refused = quota_refusal(exc, str(job.get("profile") or "default"), ns)
            if refused is None:
                raise _api_error(exc, f"create pod {name}", ns) from None
            # a quota is the profile's budget, not a runner fault: a failed attempt saying so
            log.info("pod %s refused by a quota: %s", name, refused)
            failed = Handle(attempt_id)
            failed.done.set_result(ExitStatus(reason=refused))
            return failed
        handle.extra["created"] = time.monotonic()  # when the API server confirmed it (see _on_sync)
        return handle

    def _put_job(self, job: dict[str, Any], key: str) -> None:
        from ..stores import open_store

        open_store(job["store"]).put_bytes(json.dumps(job).encode(), key=key)

    def upcoming(self, run_id: str, jobs: list[dict[str, Any]]) -> None:
        """The scheduler's word on the run's next steps (jobs without inputs): warm standby pods for them."""
        self.standby.upcoming(run_id, jobs)

    async def _ensure_claim(self, run_id: str, settings: PodSettings) -> None:
        name = claim_name(run_id)
        if name in self._claims:
            return
        body = build_claim(run_id, settings)
        try:
            await asyncio.to_thread(self.api.create_namespaced_persistent_volume_claim, settings.namespace, body)
        except Exception as exc:
            if getattr(exc, "status", None) != 409:  # 409: a runner before a restart made it already
                raise _api_error(exc, f"create volume claim {name}", settings.namespace) from None
        self._claims.add(name)

    async def run_finished(self, run_id: str, state: str) -> None:
        """Delete the run's volume claim when the policy says so (``NBPIPE_K8S_RUN_VOLUME_DELETE``).

        A claim is only gone once no scheduled pod names it (``kubernetes.io/pvc-protection``),
        even a Failed one: pods the delete policy kept (failed attempts under ``on-success``, all
        under ``never``) would hold it ``Terminating`` forever. So they go with the claim, after
        their final status is saved in the store as ``pod.json`` beside the attempt's ``log.txt``.
        """
        await self.standby.run_finished(run_id, state)  # (before its claim: they mount it)
        known = self._run_ns.pop(run_id, None)
        if not self.settings.run_volume_size or self.settings.run_volume_delete != "on-run-finish":
            return
        if known is not None:
            spaces = [known]
        else:  # no step of it started in this runner's life: wherever a profile's claim may be
            spaces = [self.settings.namespace, *sorted(await asyncio.to_thread(self.placements.namespaces)
                                                       - {self.settings.namespace})]
        name = claim_name(run_id)
        self._claims.discard(name)
        for ns in spaces:
            try:
                await asyncio.to_thread(self._release_kept_pods, run_id, ns)
            except Exception as exc:  # noqa: BLE001 - still delete the claim; it goes once the pods do
                log.warning("could not delete the kept pods of run %s: %s", run_id, exc)
            try:
                await asyncio.to_thread(self.api.delete_namespaced_persistent_volume_claim, name, ns)
            except Exception as exc:  # noqa: BLE001 - a claim that is gone already is fine; others are logged
                if getattr(exc, "status", None) != 404:
                    log.warning("could not delete volume claim %s of run %s: %s", name, run_id, exc)

    def _release_kept_pods(self, run_id: str, namespace: str) -> None:
        """Save the final status of the run's remaining pods to the store, then delete them."""
        from kubernetes import client

        from ..stores import open_store

        selector = f"{self.selector},{LABEL_RUN}={label_value(run_id)}"
        resp = self.api.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
        for pod in json.loads(resp.data).get("items") or []:
            meta = pod.get("metadata") or {}
            if meta.get("name") in self._attempts or meta.get("name") in self._deleting.values():
                continue  # still followed (cannot be, once the run ended), or being deleted by _finish
            job = _job_from_pod(pod)  # (a large job's stand-in has the store too)
            attempt_id = str((meta.get("annotations") or {}).get(ANNOTATION_ATTEMPT_ID, ""))
            step, _, attempt = attempt_id[len(run_id) + 1:].rpartition(".")
            if job.get("store") and attempt_id.startswith(run_id + ".") and step and attempt.isdigit():
                key = store_key(run_id, step, int(attempt), "pod.json")
                try:
                    open_store(job["store"]).put_bytes(json.dumps(pod, indent=1).encode(), key=key)
                except Exception as exc:  # noqa: BLE001 - the step's state and log are in nbpipe already
                    log.warning("could not save the status of pod %s: %s", meta.get("name"), exc)
            try:
                self.api.delete_namespaced_pod(meta["name"], namespace,
                                               body=client.V1DeleteOptions(grace_period_seconds=0))
                log.info("deleted kept pod %s of finished run %s to release its volume claim", meta["name"], run_id)
            except Exception as exc:  # noqa: BLE001 - gone already (404) is fine
                if getattr(exc, "status", None) != 404:
                    log.warning("could not delete pod %s: %s", meta.get("name"), exc)

    async def _delete_pod(self, name: str, namespace: str, grace: float) -> bool:
        from kubernetes import client

        body = client.V1DeleteOptions(grace_period_seconds=max(0, int(grace)), propagation_policy="Background")
        try:
            await asyncio.to_thread(self.api.delete_namespaced_pod, name, namespace, body=body)
            return True
        except Exception as exc:  # noqa: BLE001 - gone already (404) or API trouble (logged)
            if getattr(exc, "status", None) != 404:
                log.warning("could not delete pod %s: %s", name, exc)
            return False

    async def kill(self, handle: Handle, grace: float = 3.0) -> None:
        """Delete the attempt's pod (SIGTERM, then SIGKILL after ``grace`` seconds) and wait for it."""
        if "gang" in handle.extra:  # every worker pod and the Service
            return await handle.extra["gang"].kill(grace)  # type: ignore[no-any-return]
        pod = handle.name.rpartition("/")[2]
        att = self._attempts.get(pod)
        if att is None or handle.done.done():
            return
        att.killed = True
        existed = await self._delete_pod(pod, att.namespace, grace)
        try:
            await asyncio.wait_for(asyncio.shield(handle.done), grace + 30.0 if existed else 0.5)
        except asyncio.TimeoutError:
            att.finishing = True
            att.stop_logs.set()
            self._attempts.pop(pod, None)
            if not handle.done.done():
                handle.done.set_result(ExitStatus(reason=f"the pod {handle.name} was deleted but did not go away"))

    async def reattach(self, attempt: dict[str, Any]) -> Handle | None:
        """Follow the pod of an attempt a previous runner started, if it still exists.

        Parameters
        ----------
        attempt
            The attempt's database row (``id``, ``run_id``, ``step``, ``attempt``, ``pod``, ``log_key``).

        Returns
        -------
        Handle or None
            A handle whose future resolves when the pod ends (at once if it ended while no runner
            watched it), or ``None`` when the pod is gone (the scheduler retries the step).
        """
        if attempt.get("executor") not in (None, self.name):
            return None
        if str(attempt.get("pod") or "").startswith(k8s_pytorchjob.ROW_PREFIX):  # a distributed step's PyTorchJob
            return await k8s_pytorchjob.reattach(self, attempt)
        ns, _, name = str(attempt.get("pod") or "").rpartition("/")
        name = name or pod_name(str(attempt["id"]))
        if ns:
            candidates = [ns]
        else:  # the runner's namespace, else (a row from before it said where) every profile's
            others = await asyncio.to_thread(self.placements.namespaces)
            candidates = [self.settings.namespace, *sorted(others - {self.settings.namespace})]
        pod = None
        for ns in candidates:
            try:
                resp = await asyncio.to_thread(self.api.read_namespaced_pod, name, ns, _preload_content=False)
            except Exception as exc:  # noqa: BLE001 - 404: not here; anything else: cannot tell, so retry the step
                if getattr(exc, "status", None) != 404:
                    log.warning("cannot re-attach to pod %s in namespace %s: %s", name, ns, exc)
                    return None
                continue
            pod = json.loads(resp.data)
            break
        if pod is None:
            return None
        await self._ready(ns)
        if (pod.get("metadata", {}).get("labels") or {}).get(LABEL_RUN) != label_value(str(attempt["run_id"])):
            return None
        if k8s_gang.LABEL_GANG in (pod.get("metadata", {}).get("labels") or {}):  # rank 0 of a gang: follow them all
            return await k8s_gang.reattach(self, attempt, pod, ns)
        job = _job_from_pod(pod)
        log_path = str(attempt["log_key"])
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        handle = Handle(str(attempt["id"]), name=name if ns == self.settings.namespace else f"{ns}/{name}",
                        extra={"reattached": True, "created": time.monotonic()})
        written = os.path.getsize(log_path) if os.path.exists(log_path) else 0
        self._run_ns[str(attempt["run_id"])] = ns
        att = _Attempt(handle, name, ns, log_path,
                       job.get("log_key") or store_key(str(attempt["run_id"]), str(attempt["step"]),
                                                       int(attempt["attempt"]), "log.txt"),
                       job.get("store") or {}, written=written, log_end=str(job.get("log_end") or ""))
        self._attempts[name] = att
        if self.settings.run_volume_size:
            self._claims.add(claim_name(str(attempt["run_id"])))
        self._on_pod("SYNC", pod)
        return handle

    async def close(self) -> None:
        """Stop watching. Step pods keep running: a restarted runner re-attaches to them; standby pods go."""
        await self.standby.close()
        for att in self._attempts.values():
            att.stop_logs.set()
        for gang in {id(g): g for g in self._gang_pods.values()}.values():
            gang.stop_streams()
        if self._deleting:
            await asyncio.gather(*self._deleting, return_exceptions=True)
        watchers, self._watchers = list(self._watchers.values()), {}
        for watcher in watchers:
            await asyncio.to_thread(watcher.stop)


_S3_VARS = {"NBPIPE_S3_ACCESS_KEY", "NBPIPE_S3_SECRET_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def _job_from_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """The job a pod was started with (from its ``NBPIPE_JOB`` variable), or ``{}``."""
    for c in (pod.get("spec") or {}).get("containers") or []:
        for e in c.get("env") or []:
            if e.get("name") == JOB_ENV and e.get("value"):
                try:
                    return dict(json.loads(gzip.decompress(base64.b64decode(e["value"]))))
                except (ValueError, OSError):
                    return {}
    return {}
