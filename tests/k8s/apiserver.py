"""A Kubernetes API double: the real HTTP API for the subset nbpipe uses, with real pod processes.

It speaks the same JSON over HTTP as a kube-apiserver, so the real ``kubernetes`` client (and
``kubectl`` for that subset) work against it unchanged:

- ``/api/v1/namespaces/{ns}/pods``, ``.../persistentvolumeclaims``, ``.../secrets``: create (POST,
  201; 409 ``AlreadyExists``; 422 ``Invalid`` for bad names and label values), get, list with
  ``labelSelector`` (equality, ``!=``, existence), delete (``gracePeriodSeconds``), a merge patch of
  labels, annotations and a pod's ``activeDeadlineSeconds`` (how standby pods are bound), all errors
  as ``Status`` objects;
- ``?watch=true``: JSON lines with ``resourceVersion`` semantics (start from a version, replay of
  what came after it, ``BOOKMARK`` events when asked, ``timeoutSeconds``), and a ``410 Expired``
  ERROR event when the version is older than the retained history (see :meth:`ApiServer.compact`);
- deletion as the real server does it: a running pod with a grace period gets a
  ``deletionTimestamp`` and goes when its process has ended (``gracePeriodSeconds=0`` removes it at
  once); a claim carries the ``kubernetes.io/pvc-protection`` finalizer and stays ``Terminating``
  while any pod, even a Failed one, names it;
- ``.../pods/{name}/log`` with ``follow=true`` (chunked, ends when the container ends), and 400
  while the container is waiting, as the kubelet answers;
- bearer-token authentication (401 ``Unauthorized`` without it).

Pods really run: :mod:`tests.k8s.kubelet` starts each container's command as a local process.
Non-goals: scheduling, nodes, other resources, other patches, update, field selectors, chunked
lists (``limit``/``continue``), admission and Pod Security. See ``cluster/README.md`` for what
this double does and does not prove.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .kubelet import Kubelet, now_rfc3339

KINDS = {"pods": "Pod", "persistentvolumeclaims": "PersistentVolumeClaim", "secrets": "Secret"}
_ROUTE = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/(?P<res>pods|persistentvolumeclaims|secrets)"
                    r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>log))?$")
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, name: str = "", kind: str = ""):
        super().__init__(message)
        self.code, self.reason, self.message, self.name, self.kind = code, reason, message, name, kind

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                               "message": self.message, "reason": self.reason, "code": self.code}
        if self.name or self.kind:
            out["details"] = {"name": self.name, "kind": self.kind}
        return out


def _flag(q: dict[str, str], name: str) -> bool:
    return q.get(name, "").lower() in ("true", "1")


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality-based label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, comma-joined."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class ApiServer:
    """The double: objects, resource versions, watch history, an HTTP server and a kubelet.

    Parameters
    ----------
    root
        Folder for pod working directories, container logs and volume contents.
    token
        Bearer token clients must send.
    bookmark_interval
        Seconds between ``BOOKMARK`` events on watches that allow them.
    """

    def __init__(self, root: Path, token: str = "nbpipe-double-token", bookmark_interval: float = 1.0,
                 namespaces: tuple[str, ...] = ("default",)):
        self.root = Path(root)
        self.token = token
        self.bookmark_interval = bookmark_interval
        self.namespaces = set(namespaces)
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.rv = 0
        self.history: list[tuple[int, str, str, str, dict[str, Any]]] = []  # rv, resource, ns, type, object
        self.oldest_rv = 0  # watches from before this version get 410 Expired
        self.generation = 0  # bumped to end every open watch
        self.cond = threading.Condition()
        self.requests: list[tuple[str, str]] = []
        # a real kubelet closes a finished container's follow stream only on its next check (1 s);
        # set this to keep such streams open until it is cleared (or the double stops)
        self.hold_log_streams = threading.Event()
        self.stopping = False
        self.kubelet = Kubelet(self, self.root)
        server = self

        class Handler(_Handler):
            api = server

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="k8s-double", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> "ApiServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping = True
        self.kubelet.stop()
        with self.cond:
            self.generation += 1
            self.cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """A kubeconfig for this double (JSON is valid YAML)."""
        cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "double",
               "clusters": [{"name": "double", "cluster": {"server": self.url}}],
               "users": [{"name": "nbpipe", "user": {"token": self.token}}],
               "contexts": [{"name": "double", "context": {"cluster": "double", "user": "nbpipe",
                                                            "namespace": namespace}}]}
        path.write_text(json.dumps(cfg))
        return path

    # ------------------------------------------------------------------ test controls
    def compact(self) -> None:
        """Compact like etcd: forget the history, end open watches, move past the current version.

        A client resuming from any version it has seen gets ``410 Expired`` and must list again.
        """
        with self.cond:
            self.history.clear()
            self.rv += 1
            self.oldest_rv = self.rv + 1
            self.generation += 1
            self.cond.notify_all()

    def drop_watches(self) -> None:
        """End every open watch (a load balancer or API server restart does this)."""
        with self.cond:
            self.generation += 1
            self.cond.notify_all()

    def pods(self, namespace: str) -> list[dict[str, Any]]:
        with self.cond:
            return [copy.deepcopy(o) for (res, ns, _), o in self.objects.items() if res == "pods" and ns == namespace]

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.cond:
            obj = self.objects.get((resource, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def watch_requests(self) -> int:
        return sum(1 for m, p in self.requests if m == "GET" and "watch=true" in p.lower())

    # ------------------------------------------------------------------ storage
    def commit(self, resource: str, ns: str, name: str, obj: dict[str, Any] | None, etype: str) -> dict[str, Any]:
        """Store (or with ``DELETED`` remove) an object at a new resource version; wake watches."""
        with self.cond:
            self.rv += 1
            if obj is None:
                obj = self.objects[(resource, ns, name)]
            obj["metadata"]["resourceVersion"] = str(self.rv)
            if etype == "DELETED":
                self.objects.pop((resource, ns, name), None)
            else:
                self.objects[(resource, ns, name)] = obj
            snapshot = copy.deepcopy(obj)
            self.history.append((self.rv, resource, ns, etype, snapshot))
            del self.history[:-5000]
            self.cond.notify_all()
            if resource == "pods" and etype == "DELETED":
                self._release_claims(ns)
            return snapshot

    def _claims_in_use(self, ns: str) -> set[str]:
        """Claims named by a pod of ``ns`` (every pod here is scheduled: the kubelet takes all)."""
        return {v["persistentVolumeClaim"]["claimName"] for (res, n, _), pod in self.objects.items()
                if res == "pods" and n == ns for v in (pod.get("spec") or {}).get("volumes") or []
                if "persistentVolumeClaim" in v}

    def _release_claims(self, ns: str) -> None:
        """The pvc-protection controller: a deleted claim goes once no pod names it."""
        used = self._claims_in_use(ns)
        for (res, n, name), obj in list(self.objects.items()):
            if res == "persistentvolumeclaims" and n == ns and obj["metadata"].get("deletionTimestamp") \
                    and name not in used:
                obj["metadata"]["finalizers"] = []
                self.commit(res, ns, name, obj, "DELETED")

    def update_status(self, ns: str, name: str, change: Any) -> dict[str, Any] | None:
        """Apply ``change(pod)`` to a stored pod and commit it as ``MODIFIED``."""
        with self.cond:
            pod = self.objects.get(("pods", ns, name))
            if pod is None:
                return None
            change(pod)
            return self.commit("pods", ns, name, pod, "MODIFIED")

    def patch(self, resource: str, ns: str, name: str, body: dict[str, Any], content_type: str) -> dict[str, Any]:
        """A JSON merge patch (or a strategic one: the same for maps) of labels, annotations and, for pods,
        ``spec.activeDeadlineSeconds`` (which, as on a real server, may be set or lowered, never raised)."""
        if content_type not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {content_type}")
        if set(body) - {"metadata", "spec"} or set(body.get("metadata") or {}) - {"labels", "annotations"} \
                or set(body.get("spec") or {}) - {"activeDeadlineSeconds"}:
            raise ApiError(422, "Invalid", f"the double patches only labels, annotations and activeDeadlineSeconds: {body}")
        for value in ((body.get("metadata") or {}).get("labels") or {}).values():
            if value is not None and (not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value)):
                raise ApiError(422, "Invalid", f'metadata.labels: Invalid value: "{value}"', name, resource)
        with self.cond:
            obj = self.objects.get((resource, ns, name))
            if obj is None:
                raise ApiError(404, "NotFound", f'{resource} "{name}" not found', name, resource)
            deadline = (body.get("spec") or {}).get("activeDeadlineSeconds")
            old = (obj.get("spec") or {}).get("activeDeadlineSeconds")
            if deadline is not None and old is not None and deadline > old:
                raise ApiError(422, "Invalid", f'Pod "{name}" is invalid: spec: Forbidden: pod updates may not change '
                               "fields other than ... spec.activeDeadlineSeconds (may only be lowered)", name, resource)
            for part in ("labels", "annotations"):
                for k, v in ((body.get("metadata") or {}).get(part) or {}).items():
                    target = obj["metadata"].setdefault(part, {})
                    if v is None:
                        target.pop(k, None)
                    else:
                        target[k] = v
            if deadline is not None:
                obj["spec"]["activeDeadlineSeconds"] = deadline
            return self.commit(resource, ns, name, obj, "MODIFIED")

    def create(self, resource: str, ns: str, body: dict[str, Any]) -> dict[str, Any]:
        kind = KINDS[resource]
        if ns not in self.namespaces:
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found', ns, "namespaces")
        meta = body.setdefault("metadata", {})
        name = meta.get("name") or (meta.get("generateName", "") + uuid.uuid4().hex[:5])
        if not name or len(name) > 253 or not _DNS1123.match(name) or (resource == "pods" and len(name) > 253):
            raise ApiError(422, "Invalid", f'{kind} "{name}" is invalid: metadata.name: Invalid value: "{name}": '
                           "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                           "'-' or '.'", name, resource)
        for value in (meta.get("labels") or {}).values():
            if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
                raise ApiError(422, "Invalid", f'{kind} "{name}" is invalid: metadata.labels: Invalid value: '
                               f'"{value}": a valid label must be an empty string or consist of alphanumeric '
                               "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                               "character (max 63 characters)", name, resource)
        if resource == "pods":
            containers = (body.get("spec") or {}).get("containers") or []
            if not containers or not all(c.get("name") and c.get("image") for c in containers):
                raise ApiError(422, "Invalid", f'Pod "{name}" is invalid: spec.containers: Required value', name,
                               resource)
        with self.cond:
            if (resource, ns, name) in self.objects:
                raise ApiError(409, "AlreadyExists", f'{resource} "{name}" already exists', name, resource)
            body.update(kind=kind, apiVersion="v1")
            meta.update(name=name, namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339())
            if resource == "pods":
                body["status"] = {"phase": "Pending", "qosClass": "Burstable",
                                  "conditions": [{"type": "PodScheduled", "status": "True",
                                                  "lastTransitionTime": now_rfc3339()}]}
            elif resource == "persistentvolumeclaims":
                meta["finalizers"] = ["kubernetes.io/pvc-protection"]  # as the StorageObjectInUseProtection admission
                body["status"] = {"phase": "Bound", "accessModes": body.get("spec", {}).get("accessModes", []),
                                  "capacity": body.get("spec", {}).get("resources", {}).get("requests", {})}
                (self.root / "volumes" / ns / name).mkdir(parents=True, exist_ok=True)
            elif resource == "secrets":
                data = dict(body.get("data") or {})
                for k, v in (body.pop("stringData", None) or {}).items():
                    data[k] = base64.b64encode(str(v).encode()).decode()
                body["data"] = data
            created = self.commit(resource, ns, name, body, "ADDED")
        if resource == "pods":
            self.kubelet.admit(created)
        return created

    def delete(self, resource: str, ns: str, name: str, grace: int | None) -> dict[str, Any]:
        with self.cond:
            obj = self.objects.get((resource, ns, name))
            if obj is None:
                raise ApiError(404, "NotFound", f'{resource} "{name}" not found', name, resource)
            if resource == "persistentvolumeclaims" and name in self._claims_in_use(ns):
                # pvc-protection: Terminating until no pod names it, even a Failed one (see _release_claims)
                obj["metadata"].setdefault("deletionTimestamp", now_rfc3339())
                obj["metadata"]["deletionGracePeriodSeconds"] = 0
                return self.commit(resource, ns, name, obj, "MODIFIED")
            if resource == "pods" and self.kubelet.is_running(ns, name) and grace != 0:
                # graceful deletion; gracePeriodSeconds=0 is a force delete: gone at once, the kubelet kills later
                grace = 30 if grace is None else grace
                obj["metadata"]["deletionTimestamp"] = now_rfc3339()
                obj["metadata"]["deletionGracePeriodSeconds"] = grace
                snapshot = self.commit(resource, ns, name, obj, "MODIFIED")
                self.kubelet.terminate(ns, name, grace, remove=True)
                return snapshot
            snapshot = self.commit(resource, ns, name, obj, "DELETED")
        if resource == "pods":
            self.kubelet.forget(ns, name)
        return snapshot

    def listing(self, resource: str, ns: str, selector: str) -> dict[str, Any]:
        with self.cond:
            items = [copy.deepcopy(o) for (res, n, _), o in sorted(self.objects.items())
                     if res == resource and n == ns and selector_matches(selector, o["metadata"].get("labels") or {})]
            return {"kind": KINDS[resource] + "List", "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(self.rv)}, "items": items}


class _Handler(BaseHTTPRequestHandler):
    api: ApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        pass

    # ------------------------------------------------------------------ plumbing
    def _send_json(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start_chunked(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        # Streams end by closing the connection (close_connection below); saying so up front keeps
        # the client from pooling it for its next request, which would then find it closed
        # ("Remote end closed connection without response", seen under load).
        self.send_header("Connection", "close")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _body(self) -> dict[str, Any]:
        n = int(self.headers.get("Content-Length") or 0)
        if not n:
            return {}
        try:
            return dict(json.loads(self.rfile.read(n)))
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"the body of the request was in an unknown format: {exc}") from None

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.api.requests.append((method, self.path))
        try:
            if self.headers.get("Authorization") != f"Bearer {self.api.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            if url.path == "/version" and method == "GET":
                return self._send_json(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-nbpipe-double",
                                             "platform": "linux/amd64"})
            m = _ROUTE.match(url.path)
            if m is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            ns, res, name, sub = m["ns"], m["res"], m["name"], m["sub"]
            if sub == "log" and method == "GET" and res == "pods":
                return self._log(ns, name, q)
            if name is None and method == "GET":
                if _flag(q, "watch"):
                    return self._watch(res, ns, q)
                return self._send_json(200, self.api.listing(res, ns, q.get("labelSelector", "")))
            if name is None and method == "POST":
                return self._send_json(201, self.api.create(res, ns, self._body()))
            if name is not None and method == "GET" and sub is None:
                obj = self.api.get(res, ns, name)
                if obj is None:
                    raise ApiError(404, "NotFound", f'{res} "{name}" not found', name, res)
                return self._send_json(200, obj)
            if name is not None and method == "PATCH" and sub is None:
                content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                return self._send_json(200, self.api.patch(res, ns, name, self._body(), content_type))
            if name is not None and method == "DELETE" and sub is None:
                body = self._body()
                grace = q.get("gracePeriodSeconds", body.get("gracePeriodSeconds"))
                return self._send_json(200, self.api.delete(res, ns, name, None if grace is None else int(grace)))
            raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on {res}")
        except ApiError as exc:
            self._send_json(exc.code, exc.status())
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    # ------------------------------------------------------------------ watch
    def _watch(self, res: str, ns: str, q: dict[str, str]) -> None:
        api = self.api
        selector = q.get("labelSelector", "")
        bookmarks = _flag(q, "allowWatchBookmarks")
        deadline = time.monotonic() + float(q.get("timeoutSeconds") or 1800)
        self._start_chunked("application/json")
        kind = KINDS[res]

        def send(etype: str, obj: dict[str, Any]) -> None:
            self._chunk(json.dumps({"type": etype, "object": obj}).encode() + b"\n")

        with api.cond:
            gen = api.generation
            rv_param = q.get("resourceVersion", "")
            if rv_param in ("", "0"):
                start = api.rv  # "any version": the current state as ADDED events, then changes
                initial = [copy.deepcopy(o) for (r, n, _), o in sorted(api.objects.items())
                           if r == res and n == ns and selector_matches(selector, o["metadata"].get("labels") or {})]
            else:
                start, initial = int(rv_param), []
                if start + 1 < api.oldest_rv:
                    expired = ApiError(410, "Expired", f"too old resource version: {start} ({api.oldest_rv})")
                    send("ERROR", expired.status())
                    self._chunk(b"")
                    return
        try:
            for obj in initial:
                send("ADDED", obj)
            last, next_bookmark = start, time.monotonic() + api.bookmark_interval
            while True:
                with api.cond:
                    pending = [h for h in api.history if h[0] > last]
                    if not pending and api.generation == gen:
                        api.cond.wait(timeout=0.2)
                        pending = [h for h in api.history if h[0] > last]
                    ended = api.generation != gen
                    current = api.rv
                for rv, r, n, etype, obj in pending:
                    last = rv
                    if r == res and n == ns and selector_matches(selector, obj["metadata"].get("labels") or {}):
                        send(etype, obj)
                if ended or time.monotonic() > deadline:
                    break
                if bookmarks and time.monotonic() >= next_bookmark:
                    send("BOOKMARK", {"kind": kind, "apiVersion": "v1",
                                      "metadata": {"resourceVersion": str(max(last, current))}})
                    last = max(last, current)
                    next_bookmark = time.monotonic() + api.bookmark_interval
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    # ------------------------------------------------------------------ logs
    def _log(self, ns: str, name: str, q: dict[str, str]) -> None:
        api = self.api
        pod = api.get("pods", ns, name)
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found', name, "pods")
        container = q.get("container") or pod["spec"]["containers"][0]["name"]
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        state = (statuses[0].get("state") if statuses else None) or {"waiting": {"reason": "ContainerCreating"}}
        if "waiting" in state:
            raise ApiError(400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start: '
                           f'{state["waiting"].get("reason", "ContainerCreating")}')
        path = api.kubelet.log_path(ns, name)
        follow = _flag(q, "follow")
        if not follow:
            data = path.read_bytes() if path.exists() else b""
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self._start_chunked("text/plain")
        try:
            with open(path, "rb") as fh:
                while True:
                    data = fh.read(65536)
                    if data:
                        self._chunk(data)
                        continue
                    held = api.hold_log_streams.is_set() and not api.stopping and api.get("pods", ns, name)
                    if not api.kubelet.is_running(ns, name) and not held:  # (a deleted pod's stream ends)
                        rest = fh.read()
                        if rest:
                            self._chunk(rest)
                        break
                    time.sleep(0.05)
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True
