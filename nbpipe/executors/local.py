"""The local executor: one process per step attempt on this machine.

``mode="fork"`` (default) asks a warm zygote (:mod:`nbpipe.executors.zygote`) to fork each
attempt, which starts steps in a few milliseconds; ``mode="spawn"`` starts a fresh
``python -m nbpipe.executors.entry`` (used when a step needs another interpreter or
environment). Either way the attempt is a session leader, so timeouts and cancel kill the
whole process tree. Non-goal: resource limits (cpu/memory are honoured by Kubernetes only).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

from .base import ExitStatus, Handle

STEP_ENV = {"PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}

# What a step inherits from the runner's environment: an allow-list, so the runner's secrets
# (its token, store keys, cloud credentials) never reach user code. A component sets its own
# variables with ``env=``; an operator passes more names with NBPIPE_STEP_ENV_PASS=A,B.
STEP_ENV_NAMES = {
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR", "TEMP", "TMP",
    "VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "LD_LIBRARY_PATH", "NBPIPE_HOME", "NBPIPE_PRELOAD",
    "NBPIPE_INSTALL_PACKAGES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "HF_HOME", "TORCH_HOME", "MPLCONFIGDIR",
    "NBPIPE_PACKAGE_SKEW",  # the operator's policy for package versions that differ from the kernel's
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    "http_proxy", "https_proxy", "no_proxy", "COVERAGE_PROCESS_START",
}
STEP_ENV_PREFIXES = ("LC_", "XDG_", "PYTHON", "COV_CORE_")
# A local step writes its outputs to the runner's store itself: on S3 it needs the store's keys.
S3_STORE_ENV = ("NBPIPE_S3_ACCESS_KEY", "NBPIPE_S3_SECRET_KEY", "NBPIPE_S3_CREDENTIALS_DIR",
                "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")


def step_environ(store_type: str = "local") -> dict[str, str]:
    """The runner environment a step may see (see STEP_ENV_NAMES), plus STEP_ENV."""
    passed = {n.strip() for n in os.environ.get("NBPIPE_STEP_ENV_PASS", "").split(",") if n.strip()}
    env = {k: v for k, v in os.environ.items()
           if k in STEP_ENV_NAMES or k in passed or k.startswith(STEP_ENV_PREFIXES)}
    if store_type == "s3":
        env.update({k: os.environ[k] for k in S3_STORE_ENV if k in os.environ})
    return {**env, **STEP_ENV}


def _descendants(pid: int) -> dict[int, float]:
    try:
        import psutil

        out = {}
        for p in psutil.Process(pid).children(recursive=True):
            try:
                out[p.pid] = p.create_time()
            except Exception:  # noqa: BLE001 - exited meanwhile
                pass
        return out
    except Exception:  # noqa: BLE001 - process already gone, or psutil missing
        return {}


def kill_tree(pid: int, sig: int, known: dict[int, float] | None = None) -> None:
    """Signal a step's process group, its descendants, and every process ``known`` to have been in its tree.

    ``known`` (pid -> start time, see :func:`track_tree`) catches a grandchild that called
    ``setsid()`` and whose parent exited: it is no longer a descendant nor in the group.
    """
    now = _descendants(pid)
    if known is not None:
        for p, started in now.items():
            known.setdefault(p, started)
    pids = set(now)
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for p, started in (known or {}).items():
        if p not in pids and _same_process(p, started):
            pids.add(p)
    for p in pids:
        try:
            os.kill(p, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _same_process(pid: int, started: float) -> bool:
    try:
        import psutil

        return bool(abs(psutil.Process(pid).create_time() - started) < 0.01)
    except Exception:  # noqa: BLE001 - gone
        return False


async def track_tree(pid: int, known: dict[int, float], done: "asyncio.Future[Any]", every: float = 0.2,
                     first: float = 0.05) -> None:
    """Remember every process that is ever in ``pid``'s tree while the attempt runs.

    The first look is ``first`` s after the start, not at once: a just-forked step has no children
    yet, and a scan (every process in /proc) costs milliseconds, most of a short step's overhead.
    """
    import psutil

    delay = first
    while not done.done():
        await asyncio.sleep(delay)
        delay = every
        if done.done():
            return
        try:
            for p in psutil.Process(pid).children(recursive=True):
                if p.pid not in known:
                    known[p.pid] = p.create_time()
        except Exception:  # noqa: BLE001 - the leader is gone (or exiting)
            pass


class LocalExecutor:
    name = "local"

    def __init__(self, python: str | None = None, mode: str = "fork", preload: tuple[str, ...] = ()):
        if mode not in ("fork", "spawn"):
            raise ValueError(f"LocalExecutor mode must be 'fork' or 'spawn', not {mode!r}")
        if mode == "fork" and not hasattr(os, "fork"):
            mode = "spawn"
        self.python = python or sys.executable
        self.mode = mode
        self.preload = preload
        self._zygote: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._handles: dict[str, Handle] = {}
        self._spawned: dict[str, asyncio.Future[int]] = {}
        self._lock = asyncio.Lock()
        self._preloaded: set[tuple[str, ...]] = set()

    # -------------------------------------------------------------- zygote
    async def _ensure_zygote(self) -> asyncio.subprocess.Process:
        async with self._lock:
            if self._zygote is not None and self._zygote.returncode is None:
                return self._zygote
            env = step_environ()  # the zygote's own environment: no secrets (steps add theirs per job)
            if self.preload:
                env["NBPIPE_PRELOAD"] = ",".join(self.preload)
            proc = await asyncio.create_subprocess_exec(
                self.python, "-m", "nbpipe.executors.zygote",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
                start_new_session=True, limit=2**24,
            )
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if not line or json.loads(line).get("op") != "ready":
                raise RuntimeError(f"The nbpipe step zygote failed to start ({self.python}).")
            self._zygote = proc
            self._preloaded = set()
            self._reader = asyncio.create_task(self._read(proc))
            return proc

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line:
                break
            msg = json.loads(line)
            if msg["op"] == "spawned":
                fut = self._spawned.pop(msg["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(msg["pid"])
            elif msg["op"] == "exited":
                h = self._handles.pop(msg["id"], None)
                if h is not None and h.pid and h.extra.get("tree"):  # its group is gone (the zygote
                    kill_tree(h.pid, signal.SIGKILL, h.extra["tree"])  # ended it); setsid() escapees too
                if h is not None and not h.done.done():
                    h.done.set_result(ExitStatus(code=msg["code"], signal=msg["signal"]))
        # The zygote died: every attempt it owned is lost.
        for att_id, h in list(self._handles.items()):
            if h.pid:
                kill_tree(h.pid, signal.SIGKILL)
            if not h.done.done():
                h.done.set_result(ExitStatus(reason="the local step launcher (zygote) died"))
            self._handles.pop(att_id, None)
        for fut in self._spawned.values():
            if not fut.done():
                fut.set_exception(RuntimeError("the local step launcher (zygote) died"))
        self._spawned.clear()

    async def warm(self) -> None:
        """Start the zygote ahead of the first step."""
        if self.mode == "fork":
            try:
                await self._ensure_zygote()
            except Exception:  # noqa: BLE001 - the first start() will report it
                pass

    # -------------------------------------------------------------- executor API
    async def start(self, job: dict[str, Any], attempt_id: str, log_path: str, workdir: str) -> Handle:
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        os.makedirs(workdir, exist_ok=True)
        env = {k: str(v) for k, v in job.get("env", {}).items()}
        store_type = str((job.get("store") or {}).get("type", "local"))
        if store_type == "s3":
            env = {**{k: v for k, v in step_environ("s3").items() if k in S3_STORE_ENV}, **env}
        from . import gang

        if gang.workers_of(job) > 1:  # a distributed step: N processes started together
            return await gang.start(self, job, attempt_id, log_path, workdir, env, gang.workers_of(job))
        if self.mode == "spawn" or job.get("python_executable"):
            return await self._spawn(job, attempt_id, log_path, workdir, env)
        proc = await self._ensure_zygote()
        assert proc.stdin is not None
        wanted = tuple(sorted(job.get("packages") or ()))
        if wanted and wanted not in self._preloaded:
            # Steps that declare packages (scikit-learn, pandas…) pay their import once, in the
            # zygote, instead of in every forked step.
            self._preloaded.add(wanted)
            proc.stdin.write((json.dumps({"op": "preload", "packages": list(wanted)}) + "\n").encode())
        handle = Handle(attempt_id)
        self._handles[attempt_id] = handle
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._spawned[attempt_id] = fut
        req = {"op": "spawn", "id": attempt_id, "job": job, "log": log_path, "workdir": workdir, "env": env}
        proc.stdin.write((json.dumps(req) + "\n").encode())
        await proc.stdin.drain()
        handle.pid = await fut
        self._track(handle)
        return handle

    def _track(self, handle: Handle) -> None:
        if handle.pid is not None:
            handle.extra["tree"] = tree = {}
            handle.extra["tracker"] = asyncio.create_task(track_tree(handle.pid, tree, handle.done))

    async def _spawn(self, job: dict[str, Any], attempt_id: str, log_path: str, workdir: str,
                     env: dict[str, str]) -> Handle:
        job_path = os.path.join(workdir, "job.json")
        with open(job_path, "w", encoding="utf-8") as fh:
            json.dump(job, fh)
        log = open(log_path, "ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                job.get("python_executable") or self.python, "-m", "nbpipe.executors.entry", job_path,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, cwd=workdir,
                env={**step_environ(), **env}, start_new_session=True,
            )
        finally:
            log.close()
        handle = Handle(attempt_id, pid=proc.pid)

        async def wait() -> None:
            rc = await proc.wait()
            from .zygote import end_leftovers

            end_leftovers(proc.pid, log_path)
            if handle.extra.get("tree"):
                kill_tree(proc.pid, signal.SIGKILL, handle.extra["tree"])
            if not handle.done.done():
                handle.done.set_result(ExitStatus(code=rc if rc >= 0 else None, signal=-rc if rc < 0 else None))

        handle.extra["waiter"] = asyncio.create_task(wait())
        self._track(handle)
        return handle

    async def kill(self, handle: Handle, grace: float = 3.0) -> None:
        if handle.pid is None or handle.done.done():
            return
        if "gang" in handle.extra:
            from . import gang

            return await gang.kill(handle, grace)
        known = handle.extra.get("tree") or {}
        kill_tree(handle.pid, signal.SIGTERM, known)
        try:
            await asyncio.wait_for(asyncio.shield(handle.done), grace)
            kill_tree(handle.pid, signal.SIGKILL, known)  # stragglers that ignored SIGTERM after the leader died
        except asyncio.TimeoutError:
            kill_tree(handle.pid, signal.SIGKILL, known)

    async def close(self) -> None:
        from . import gang

        await gang.close(self)
        for h in list(self._handles.values()):
            await self.kill(h, grace=1.0)
        if self._zygote is not None and self._zygote.returncode is None:
            assert self._zygote.stdin is not None
            self._zygote.stdin.close()
            try:
                await asyncio.wait_for(self._zygote.wait(), 5)
            except asyncio.TimeoutError:
                self._zygote.kill()
        if self._reader is not None:
            self._reader.cancel()
