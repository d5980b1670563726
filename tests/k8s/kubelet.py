"""The API double's kubelet: runs each pod's container command as a local process.

What it does like a kubelet: environment from the pod spec (``value``, ``fieldRef``,
``secretKeyRef``, ``envFrom`` Secrets; a missing Secret leaves the container waiting in
``CreateContainerConfigError``), container states and pod phases as the process starts and exits
(``Succeeded``/``Failed``, exit codes, 128+signal), ``activeDeadlineSeconds`` (phase ``Failed``,
reason ``DeadlineExceeded``), graceful deletion (SIGTERM to the process group, SIGKILL after the
grace period), container logs (stdout and stderr in one file).

What it simulates, said plainly:

- **Images**: every image is this machine's Python environment (the first ``python`` on the
  double's ``PATH``). An image whose tag is ``missing`` (``anything:missing``) fails to pull:
  ``ErrImagePull``, then ``ImagePullBackOff``, as a kubelet reports it.
- **Memory limits**: no cgroups. The kubelet samples the container's process tree RSS every
  50 ms and SIGKILLs it when it exceeds ``resources.limits.memory``, then reports exit code 137
  with reason ``OOMKilled``. A spike shorter than the sampling interval goes unnoticed.
- **Eviction**: :meth:`Kubelet.evict` (a test control) kills the pod and reports phase
  ``Failed``, reason ``Evicted``, as node-pressure eviction does.
- **Volumes**: a ``persistentVolumeClaim`` is a folder per claim, a ``secret`` a folder of its
  keys, an ``emptyDir`` a fresh folder; the container sees it at ``mountPath`` through a symlink
  on this host, so tests use mount paths in temporary folders.

Non-goals: restarts (only ``restartPolicy: Never``), init containers, more than one container,
probes, CPU limits and GPUs (accepted, not enforced).
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from .apiserver import ApiServer

_UNITS = {"": 1, "k": 1000, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
          "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_memory(quantity: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", str(quantity))
    if not m or m[2] not in _UNITS:
        raise ValueError(f"bad memory quantity {quantity!r}")
    return int(float(m[1]) * _UNITS[m[2]])


class _Container:
    def __init__(self, proc: subprocess.Popen[bytes], links: list[Path]):
        self.proc = proc
        self.links = links
        self.cause = ""  # OOMKilled / DeadlineExceeded / Evicted / Deleted
        self.message = ""
        self.started = time.monotonic()
        self.remove = False


class Kubelet:
    def __init__(self, api: "ApiServer", root: Path):
        self.api = api
        self.root = root
        self.containers: dict[tuple[str, str], _Container] = {}
        self.mounts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.python_bin = os.path.dirname(sys.executable)

    def log_path(self, ns: str, name: str) -> Path:
        return self.root / "pods" / ns / name / "container.log"

    def is_running(self, ns: str, name: str) -> bool:
        with self.lock:
            c = self.containers.get((ns, name))
        return c is not None and c.proc.poll() is None

    def admit(self, pod: dict[str, Any]) -> None:
        threading.Thread(target=self._start, args=(pod,), daemon=True, name="kubelet-start").start()

    def _status(self, ns: str, name: str, phase: str, state: dict[str, Any], image: str, ready: bool = False,
                **extra: Any) -> None:
        def change(pod: dict[str, Any]) -> None:
            st = pod["status"]
            st["phase"] = phase
            st.update(extra)
            st.setdefault("startTime", now_rfc3339())
            st["containerStatuses"] = [{"name": pod["spec"]["containers"][0]["name"], "image": image,
                                        "imageID": "" if "waiting" in state else f"double://{image}",
                                        "ready": ready, "restartCount": 0, "started": ready, "state": state}]

        self.api.update_status(ns, name, change)

    # ------------------------------------------------------------------ start
    def _start(self, pod: dict[str, Any]) -> None:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        container = pod["spec"]["containers"][0]
        image = container["image"]
        time.sleep(0.02)  # scheduling
        if image.rsplit("/", 1)[-1].endswith(":missing"):
            ref = image if "/" in image else f"docker.io/library/{image}"
            self._status(ns, name, "Pending", {"waiting": {"reason": "ErrImagePull", "message": (
                f'failed to pull and unpack image "{ref}": failed to resolve reference "{ref}": not found')}}, image)
            time.sleep(0.3)
            self._status(ns, name, "Pending", {"waiting": {"reason": "ImagePullBackOff",
                                                           "message": f'Back-off pulling image "{image}"'}}, image)
            return
        try:
            env = self._env(pod, container)
            links = self._mount(pod, container)
        except LookupError as exc:
            self._status(ns, name, "Pending", {"waiting": {"reason": "CreateContainerConfigError",
                                                           "message": str(exc)}}, image)
            return
        work = self.root / "pods" / ns / name
        for sub in ("home", "tmp", "cwd"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        env.setdefault("HOME", str(work / "home"))
        env.setdefault("TMPDIR", str(work / "tmp"))
        cmd = list(container.get("command") or []) + list(container.get("args") or [])
        with open(self.log_path(ns, name), "ab") as log:
            proc = subprocess.Popen(cmd, env=env, cwd=container.get("workingDir") or str(work / "cwd"),
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        c = _Container(proc, links)
        with self.lock:
            self.containers[(ns, name)] = c
        if self.api.get("pods", ns, name) is None:  # deleted while the container was being created
            self.forget(ns, name)
            self._unmount(links)
            return
        self._status(ns, name, "Running", {"running": {"startedAt": now_rfc3339()}}, image, ready=True,
                     podIP="127.0.0.1")
        threading.Thread(target=self._monitor, args=(pod, c), daemon=True, name="kubelet-monitor").start()

    def _env(self, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        ns = pod["metadata"]["namespace"]
        env = {"PATH": f"{self.python_bin}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
               "HOSTNAME": pod["metadata"]["name"]}

        def secret(sname: str) -> dict[str, str]:
            obj = self.api.get("secrets", ns, sname)
            if obj is None:
                raise LookupError(f'secret "{sname}" not found')
            return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}

        for src in container.get("envFrom") or []:
            if "secretRef" in src:
                env.update(secret(src["secretRef"]["name"]))
        for e in container.get("env") or []:
            if "value" in e:
                env[e["name"]] = str(e["value"])
            elif "secretKeyRef" in (e.get("valueFrom") or {}):
                ref = e["valueFrom"]["secretKeyRef"]
                data = secret(ref["name"])
                if ref["key"] not in data:
                    raise LookupError(f"couldn't find key {ref['key']} in Secret {ns}/{ref['name']}")
                env[e["name"]] = data[ref["key"]]
            elif "fieldRef" in (e.get("valueFrom") or {}):
                path = e["valueFrom"]["fieldRef"]["fieldPath"]
                env[e["name"]] = {"metadata.name": pod["metadata"]["name"], "metadata.namespace": ns,
                                  "status.podIP": "127.0.0.1"}.get(path, "")
        return env

    def _mount(self, pod: dict[str, Any], container: dict[str, Any]) -> list[Path]:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        links: list[Path] = []
        for m in container.get("volumeMounts") or []:
            vol = volumes.get(m["name"])
            if vol is None:
                raise LookupError(f'volumeMount "{m["name"]}" names no volume')
            if "persistentVolumeClaim" in vol:
                claim = vol["persistentVolumeClaim"]["claimName"]
                if self.api.get("persistentvolumeclaims", ns, claim) is None:
                    raise LookupError(f'persistentvolumeclaim "{claim}" not found')
                target = self.root / "volumes" / ns / claim
            elif "secret" in vol:
                target = self.root / "pods" / ns / name / "secrets" / m["name"]
                target.mkdir(parents=True, exist_ok=True)
                obj = self.api.get("secrets", ns, vol["secret"]["secretName"])
                if obj is None:
                    raise LookupError(f'secret "{vol["secret"]["secretName"]}" not found')
                for k, v in (obj.get("data") or {}).items():
                    (target / k).write_bytes(base64.b64decode(v))
            else:
                target = self.root / "pods" / ns / name / "empty" / m["name"]
                target.mkdir(parents=True, exist_ok=True)
            link = Path(m["mountPath"])
            with self.lock:
                if link.is_symlink() and Path(os.readlink(link)) == target:
                    pass  # another pod mounts the same volume at the same path
                elif link.exists() or link.is_symlink():
                    raise LookupError(f"mount path {link} already exists on the double's host; "
                                      "use a mount path in a temporary folder")
                else:
                    link.parent.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(target, target_is_directory=True)
                self.mounts[str(link)] = self.mounts.get(str(link), 0) + 1
            links.append(link)
        return links

    def _unmount(self, links: list[Path]) -> None:
        with self.lock:
            for link in links:
                n = self.mounts.get(str(link), 1) - 1
                self.mounts[str(link)] = n
                if n <= 0 and link.is_symlink():
                    link.unlink()

    # ------------------------------------------------------------------ run and end
    def _monitor(self, pod: dict[str, Any], c: _Container) -> None:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        limit = ((pod["spec"]["containers"][0].get("resources") or {}).get("limits") or {}).get("memory")
        limit_bytes = parse_memory(limit) if limit else None
        deadline = pod["spec"].get("activeDeadlineSeconds")
        while c.proc.poll() is None:
            if limit_bytes is not None and _tree_rss(c.proc.pid) > limit_bytes and not c.cause:
                c.cause = "OOMKilled"
                _kill_group(c.proc.pid, signal.SIGKILL)
            if deadline is not None and time.monotonic() - c.started > deadline and not c.cause:
                c.cause, c.message = "DeadlineExceeded", "Pod was active on the node longer than the specified deadline"
                _kill_group(c.proc.pid, signal.SIGKILL)
            time.sleep(0.05)
        rc = c.proc.returncode
        _kill_group(c.proc.pid, signal.SIGKILL)  # what the container runtime does to leftovers
        code = rc if rc >= 0 else 128 - rc
        self._unmount(c.links)
        term: dict[str, Any] = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                "startedAt": now_rfc3339(), "finishedAt": now_rfc3339()}
        extra: dict[str, Any] = {}
        if c.cause == "OOMKilled":
            term["reason"] = "OOMKilled"
        elif c.cause in ("DeadlineExceeded", "Evicted"):
            extra = {"reason": c.cause, "message": c.message}
        phase = "Succeeded" if code == 0 and not c.cause else "Failed"
        image = pod["spec"]["containers"][0]["image"]
        self._status(ns, name, phase, {"terminated": term}, image, **extra)
        if c.remove:
            with self.api.cond:
                if self.api.get("pods", ns, name) is not None:
                    self.api.commit("pods", ns, name, None, "DELETED")
            self.forget(ns, name)

    def terminate(self, ns: str, name: str, grace: int, remove: bool) -> None:
        """Graceful deletion: SIGTERM, SIGKILL after ``grace`` seconds, then (``remove``) DELETED."""
        with self.lock:
            c = self.containers.get((ns, name))
        if c is None:
            return
        c.remove = remove

        def run() -> None:
            _kill_group(c.proc.pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
            try:
                c.proc.wait(timeout=max(grace, 0))
            except subprocess.TimeoutExpired:
                _kill_group(c.proc.pid, signal.SIGKILL)

        threading.Thread(target=run, daemon=True, name="kubelet-kill").start()

    def evict(self, ns: str, name: str, message: str = "The node was low on resource: memory.") -> None:
        """Node-pressure eviction of a running pod (a test control)."""
        with self.lock:
            c = self.containers.get((ns, name))
        if c is None:
            raise KeyError(f"pod {ns}/{name} is not running")
        c.cause, c.message = "Evicted", message
        _kill_group(c.proc.pid, signal.SIGKILL)

    def forget(self, ns: str, name: str) -> None:
        with self.lock:
            c = self.containers.pop((ns, name), None)
        if c is not None and c.proc.poll() is None:
            _kill_group(c.proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        with self.lock:
            items = list(self.containers.values())
        for c in items:
            if c.proc.poll() is None:
                _kill_group(c.proc.pid, signal.SIGKILL)
                c.proc.wait(timeout=5)
            self._unmount(c.links)


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _tree_rss(pid: int) -> int:
    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.Error:
            pass
    return total
