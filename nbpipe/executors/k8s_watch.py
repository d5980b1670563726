"""Follow step pods with one Kubernetes watch, and say how a pod ended in words a user can act on.

:class:`PodWatcher` lists the runner's pods once, then watches from that list's
``resourceVersion`` (with bookmarks, so reconnects resume where they left off). A ``410 Gone``
(the server no longer has that version) triggers a fresh list; dropped connections and API
errors reconnect with backoff. It runs in one daemon thread because the ``kubernetes`` client
is synchronous; callbacks are called from that thread.

:func:`classify` maps a pod's phase and container state to an :class:`ExitStatus`, or ``None``
while the pod is still starting or running.

Non-goals: creating or deleting pods (see :mod:`.kubernetes`), and Kubernetes Events (the pod's
own status already says why it failed in the cases nbpipe reports).
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
import time
from typing import Any, Callable

from .base import ExitStatus

log = logging.getLogger("nbpipe.executors.kubernetes")

PULL_ERRORS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                         "RegistryUnavailable"})
CONFIG_ERRORS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})


def _main_container(pod: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = (pod.get("spec") or {}).get("containers") or [{}]
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return spec[0], statuses[0]


def container_started(pod: dict[str, Any]) -> bool:
    """Whether the step container has started (so its log can be read)."""
    _, cs = _main_container(pod)
    state = cs.get("state") or {}
    return bool(state.get("running") or state.get("terminated"))


def classify(pod: dict[str, Any]) -> ExitStatus | None:
    """How the pod ended, or ``None`` while it is pending or running normally.

    Image pull and container configuration errors count as ended: the kubelet would retry
    them forever, but the step cannot start until someone fixes the image or the Secret.
    """
    status = pod.get("status") or {}
    phase = status.get("phase")
    container, cs = _main_container(pod)
    state = cs.get("state") or {}
    image = container.get("image", "?")
    term = state.get("terminated") or {}
    if phase == "Succeeded":
        return ExitStatus(code=int(term.get("exitCode", 0)))
    if phase == "Failed":
        reason = status.get("reason") or ""
        message = status.get("message") or ""
        if reason == "DeadlineExceeded":
            deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
            return ExitStatus(reason=(
                f"Kubernetes stopped the pod after its deadline (activeDeadlineSeconds={deadline}): {message or reason}. "
                "The runner was not there to enforce the step's timeout; raise component(timeout=...) if the step "
                "needs longer."))
        if reason == "Evicted":
            return ExitStatus(reason=(
                f"Kubernetes evicted the pod: {message or 'the node ran short of resources'}. "
                "The node was under memory or disk pressure; ask for what the step uses with "
                "resources=Resources(memory=...) so it lands on a node with room, or retry with retries=..."))
        if term.get("reason") == "OOMKilled":
            limit = ((container.get("resources") or {}).get("limits") or {}).get("memory", "its memory limit")
            return ExitStatus(code=term.get("exitCode"), reason=(
                f"the step ran out of memory: its container went over {limit} and was killed (OOMKilled). "
                "Ask for more with resources=Resources(memory='4Gi') (or more), or make the step use less."))
        if term:
            code = int(term.get("exitCode", 1))
            if 128 < code < 160:
                return ExitStatus(signal=code - 128)
            return ExitStatus(code=code)
        return ExitStatus(reason=f"the pod failed before its container ran ({reason or 'no reason'}: {message})")
    waiting = state.get("waiting") or {}
    why = waiting.get("reason") or ""
    if why in PULL_ERRORS:
        return ExitStatus(reason=(
            f"Kubernetes cannot pull image '{image}' ({why}: {waiting.get('message') or 'no details'}). "
            "Check the image name and tag, that it was pushed to a registry the cluster can reach, and the "
            "registry credentials (NBPIPE_K8S_IMAGE_PULL_SECRETS); set component(base_image=...) or "
            "NBPIPE_STEP_IMAGE."))
    if why in CONFIG_ERRORS:
        return ExitStatus(reason=(
            f"Kubernetes cannot start the step container ({why}: {waiting.get('message') or 'no details'}). "
            "Usually a Secret or key named in NBPIPE_K8S_SECRET_ENV / NBPIPE_K8S_ENV_FROM_SECRETS / "
            "NBPIPE_S3_CREDENTIALS_SECRET is missing from the namespace: create it or fix the name."))
    return None


def deleted_status(pod: dict[str, Any], killed: bool) -> ExitStatus:
    """The status of a pod that disappeared before it ended on its own."""
    if killed:
        return ExitStatus(signal=int(signal.SIGTERM))
    return ExitStatus(reason=(
        f"the step's pod {pod.get('metadata', {}).get('name', '?')} was deleted before it finished "
        "(by a user, a node drain or a namespace cleanup); the runner retries it if retries are left."))


def _partial_end(data: bytes, end: bytes) -> int:
    """How many bytes at the end of ``data`` may be the start of ``end`` (held back until more arrives:
    anything else is written at once, so a step's live log never lags)."""
    for k in range(min(len(data), len(end) - 1), 0, -1):
        if end.startswith(data[-k:]):
            return k
    return 0


def log_end_line(token: str) -> bytes:
    """The line the entrypoint prints last (``job["log_end"]``): the runner's copy of the log is complete.

    A real kubelet streams a line as it is written, but reports the container's end only on its next
    relist (~1 s) and closes the ``follow`` stream on its next check (1 s): with this line the stream
    is complete (and its thread and connection free) before the pod says it ended, and the attempt
    needs no whole-log read (:meth:`KubernetesExecutor._take_log`, still the path when the line has
    not arrived yet, e.g. on the k8s-rig, whose kubelet polls the log every 0.2 s). Per attempt, so a
    step's own output cannot end its log early by accident. It stays in the container's log
    (``kubectl logs``), not in nbpipe's.
    """
    return f"nbpipe: end of step log {token}\n".encode()


def interrupt(resp: Any) -> None:
    """End the read another thread is blocked in on a streaming response, without waiting for that thread.

    Not ``resp.close()``: closing the socket's buffered reader waits for the lock the reading thread
    holds, i.e. for the next event or the watch's own timeout (minutes), which held every runner's
    stop up for as long. Shutting the socket down makes the blocked read return at once; the reading
    thread then closes the response itself.
    """
    sock = getattr(getattr(resp, "connection", None), "sock", None)
    if sock is None:  # a response to "Connection: close" took the socket over: http.client's reader has it
        raw = getattr(getattr(getattr(resp, "_fp", None), "fp", None), "raw", None)
        sock = getattr(raw, "_sock", None)
    if sock is not None:
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's: not SSLSocket's TLS close
        except OSError:  # already closed or reset
            pass


class PodWatcher:
    """List-then-watch of the pods matching ``selector``, in a daemon thread.

    Parameters
    ----------
    api
        A ``kubernetes.client.CoreV1Api``.
    namespace, selector
        Which pods.
    on_event
        ``(type, pod_dict)`` for ``ADDED``/``MODIFIED``/``DELETED`` and ``SYNC`` (a pod seen by a list).
    on_sync
        Called after each list with the names of all pods it saw and the ``time.monotonic()`` at
        which the list was requested (to notice deletions missed while disconnected: only a pod
        created before that moment can be missing because it was deleted).
    timeout
        Seconds each watch request stays open before reconnecting from the last version.
    """

    def __init__(self, api: Any, namespace: str, selector: str, on_event: Callable[[str, dict[str, Any]], None],
                 on_sync: Callable[[set[str], float], None], timeout: int = 240):
        self.api = api
        self.namespace = namespace
        self.selector = selector
        self.on_event = on_event
        self.on_sync = on_sync
        self.timeout = timeout
        self.resource_version: str | None = None
        self.lists = 0
        self.bookmarks = 0
        self._stop = threading.Event()
        self._watch: Any = None
        self._thread = threading.Thread(target=self._run, name="nbpipe-k8s-watch", daemon=True)
        self.ready = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        resp = self._watch
        if resp is not None:
            interrupt(resp)
        self._thread.join(timeout=2)

    def _run(self) -> None:
        from kubernetes.client.exceptions import ApiException

        backoff = 0.2
        while not self._stop.is_set():
            try:
                if self.resource_version is None:
                    self._list()
                self._watch_once()
                backoff = 0.2
            except ApiException as exc:
                if exc.status == 410:
                    log.info("pod watch expired (410 Gone): listing again")
                    self.resource_version = None
                    continue
                if self._stop.is_set():
                    break
                log.warning("pod watch failed (%s %s); reconnecting in %.1f s", exc.status, exc.reason, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            except Exception as exc:  # noqa: BLE001 - connection drops, timeouts: reconnect
                if self._stop.is_set():
                    break
                log.warning("pod watch disconnected (%s); reconnecting in %.1f s", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _list(self) -> None:
        started = time.monotonic()  # a pod whose creation completed before this is in the list if it exists
        resp = self.api.list_namespaced_pod(self.namespace, label_selector=self.selector, _preload_content=False)
        body = json.loads(resp.data)
        names: set[str] = set()
        for item in body.get("items") or []:
            item.setdefault("kind", "Pod")
            names.add(item["metadata"]["name"])
            self.on_event("SYNC", item)
        self.resource_version = body["metadata"]["resourceVersion"]
        self.lists += 1
        self.on_sync(names, started)
        self.ready.set()

    def _watch_once(self) -> None:
        """One watch request, read as raw JSON lines.

        Not ``kubernetes.watch.Watch``: it turns every event into ``V1Pod`` models (~2 ms of this
        thread's CPU per event, 4-5 events per step pod) that nobody here reads.
        """
        from kubernetes.client.exceptions import ApiException
        from kubernetes.watch.watch import iter_resp_lines

        resp = self.api.list_namespaced_pod(self.namespace, label_selector=self.selector, watch=True,
                                            resource_version=self.resource_version, allow_watch_bookmarks=True,
                                            timeout_seconds=self.timeout, _preload_content=False)
        self._watch = resp
        try:
            for line in iter_resp_lines(resp):
                if not line.strip():
                    continue
                ev = json.loads(line)
                obj = ev.get("object") or {}
                if ev.get("type") == "ERROR":  # e.g. 410 Gone: the version is too old (see _run)
                    raise ApiException(status=obj.get("code"), reason=f"{obj.get('reason')}: {obj.get('message')}")
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if rv:
                    self.resource_version = rv
                if ev.get("type") == "BOOKMARK":
                    self.bookmarks += 1
                    continue
                self.on_event(ev["type"], obj)
                if self._stop.is_set():
                    break
        finally:
            self._watch = None
            resp.close()
            resp.release_conn()
