"""Distributed steps on the local executor: a *gang* of N worker processes for one step attempt.

A component with ``workers=N`` runs as N processes of the same step entrypoint, started
together, each with the PyTorch environment contract (``MASTER_ADDR``, ``MASTER_PORT`` — a free
port —, ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``), as ``torchrun`` gives
them. Gang semantics: all start or none do (a worker that cannot be started stops the others);
the first worker to fail stops the rest and the attempt fails as a unit (so it retries as a
unit); cancel and timeouts stop every worker's process tree. Rank 0 writes the step's result
(its return value and outputs); the other ranks write theirs beside it (read only to say why a
rank failed). Every worker's output is piped through the runner into the step's log, each line
prefixed ``[rank R]``. Worker states go out as ``StepWorkers`` events (``on_event``).

Non-goals: several machines (all workers run here, on loopback), elastic membership.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import time
from typing import Any, Callable

from .base import ExitStatus, Handle

WORKERS_ENV = "NBPIPE_WORKERS"
# Seconds the other workers have to exit after rank 0 succeeded, before they are stopped.
EXIT_GRACE = float(os.environ.get("NBPIPE_GANG_EXIT_GRACE", "60"))


def workers_of(job: dict[str, Any]) -> int:
    """The gang size a job asks for (1: an ordinary step)."""
    try:
        return max(1, int(job.get("workers") or (job.get("env") or {}).get(WORKERS_ENV) or 1))
    except (TypeError, ValueError):
        return 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rank_result_key(key: str, rank: int) -> str:
    return key if rank == 0 else f"{key.removesuffix('.json')}.rank{rank}.json"


class Gang:
    """The N processes of one attempt, their log pumps and the monitor that ends them together."""

    def __init__(self, job: dict[str, Any], n: int, log_path: str, on_event: Callable[[Any], None] | None):
        self.job, self.n, self.log_path, self.on_event = job, n, log_path, on_event
        self.procs: list[asyncio.subprocess.Process] = []
        self.trees: list[dict[int, float]] = []
        self.states: list[str] = []
        self.codes: list[int | None] = []
        self.stopping = False
        self.first_failure: int | None = None
        self.tasks: list[asyncio.Task[Any]] = []
        self.pumps: list[asyncio.Task[Any]] = []
        self.log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    # ------------------------------------------------------------ events and log
    def _emit(self) -> None:
        if self.on_event is None:
            return
        from .. import events as ev

        try:
            self.on_event(ev.StepWorkers(
                run_id=self.job.get("run_id", ""), ts=time.time(), step=self.job.get("step", ""),
                attempt=int(self.job.get("attempt", 1)),
                workers=[{"rank": r, "pid": p.pid if p else None, "state": self.states[r], "exit_code": self.codes[r]}
                         for r, p in enumerate(self.procs + [None] * (self.n - len(self.procs)))]))
        except Exception:  # noqa: BLE001 - an event that cannot be recorded must not break the gang
            pass

    def _log(self, text: str) -> None:
        with contextlib.suppress(OSError):
            os.write(self.log_fd, text.encode())

    async def _pump(self, rank: int, stream: asyncio.StreamReader) -> None:
        prefix = f"[rank {rank}] ".encode()
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line over the limit: take what is there
                line = await stream.read(1 << 16)
            if not line:
                return
            with contextlib.suppress(OSError):
                os.write(self.log_fd, prefix + line)

    # ------------------------------------------------------------ lifecycle
    async def start(self, python: str, workdir: str, base_env: dict[str, str]) -> None:
        port = free_port()
        threads = str(max(1, (os.cpu_count() or 1) // self.n))
        self.states = ["starting"] * self.n
        self.codes = [None] * self.n
        try:
            for rank in range(self.n):
                rjob = dict(self.job)
                rjob["result_key"] = rank_result_key(self.job["result_key"], rank)
                wd = workdir if rank == 0 else os.path.join(workdir, f"rank-{rank}")
                os.makedirs(wd, exist_ok=True)
                rjob["workdir"] = wd
                contract = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(self.n),
                            "RANK": str(rank), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(self.n),
                            "GROUP_RANK": "0", "NBPIPE_WORKER_RANK": str(rank)}
                rjob["env"] = {**(self.job.get("env") or {}), **contract}
                job_path = os.path.join(wd, f"job-rank{rank}.json")
                with open(job_path, "w", encoding="utf-8") as fh:
                    json.dump(rjob, fh)
                env = {**base_env, **contract}
                env.setdefault("OMP_NUM_THREADS", threads)  # N workers share the cores, like torchrun
                # Rank 0 leads a new process group and the others join it (a group can only be
                # joined within its session, hence no new session), so what kills an attempt's group
                # (cancel, or a restarted runner cleaning up after a crash, which knows only rank 0's
                # pid) kills the whole gang.
                group = {"process_group": 0 if rank == 0 else self.procs[0].pid}
                proc = await asyncio.create_subprocess_exec(
                    python, "-m", "nbpipe.executors.entry", job_path, stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=wd, env=env,
                    limit=1 << 20, **group)
                self.procs.append(proc)
                self.trees.append({})
                self.states[rank] = "running"
        except Exception as exc:  # all or none: stop the ones already started
            self._log(f"[gang] could not start worker rank {len(self.procs)} of {self.n}: {exc}; "
                      "stopping the others\n")
            self.stopping = True
            for r in range(len(self.procs), self.n):
                self.states[r] = "not started"
            await self.kill(grace=1.0)
            raise
        self._log(f"[gang] {self.n} workers started (MASTER_ADDR=127.0.0.1 MASTER_PORT={port})\n")
        self._emit()

    def watch(self, handle: Handle) -> None:
        from .local import track_tree

        assert self.procs[0].stdout is not None
        for rank, proc in enumerate(self.procs):
            assert proc.stdout is not None
            self.pumps.append(asyncio.create_task(self._pump(rank, proc.stdout)))
            self.tasks.append(asyncio.create_task(track_tree(proc.pid, self.trees[rank], handle.done)))
        self.tasks.append(asyncio.create_task(self._monitor(handle)))

    async def _monitor(self, handle: Handle) -> None:
        try:
            await self._follow(handle)
        except Exception as exc:  # noqa: BLE001 - a bug here must end the attempt, never leave it running
            self._log(f"[gang] internal error while following the workers: {type(exc).__name__}: {exc}\n")
            with contextlib.suppress(Exception):
                await self.kill(grace=1.0)
            if not handle.done.done():
                handle.done.set_result(ExitStatus(reason=f"nbpipe lost track of the workers ({type(exc).__name__}: "
                                                         f"{exc}); they were stopped"))

    async def _follow(self, handle: Handle) -> None:
        order = itertools.count()

        async def reaped(rank: int, proc: asyncio.subprocess.Process) -> tuple[int, int, int]:
            rc = await _exit_code(proc)
            return next(order), rank, rc  # numbered as reaped: the first failure is the cause

        pending = {asyncio.create_task(reaped(r, p)) for r, p in enumerate(self.procs)}
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            # Not ordered by done callbacks: a task finished in the loop iteration that woke us may
            # not have run its callbacks yet (that lost a cancelled gang's end, about 1 run in 10).
            for _, rank, rc in sorted(t.result() for t in done):
                self.codes[rank] = rc
                if rc == 0:
                    self.states[rank] = "succeeded"
                    if rank == 0 and pending:
                        self.tasks.append(asyncio.create_task(self._stragglers()))
                elif self.stopping:
                    self.states[rank] = "failed" if rank == self.first_failure else "stopped"
                else:
                    self.stopping = True
                    # The first exit seen is not always the cause: a peer's collective fails as soon
                    # as the crashed rank's sockets close, and it may be reaped first. The rank whose
                    # error came first is the cause; the others failed because it went away.
                    cause = await asyncio.to_thread(first_error, self.job, self.n, rank)
                    self.first_failure = cause
                    for r in range(self.n):
                        if self.codes[r] is not None and self.codes[r] != 0:
                            self.states[r] = "failed" if r == cause else "stopped"
                    others = [r for r in range(self.n) if self.codes[r] is None and r != cause]
                    how = "failed" if self.codes[cause] is None else _describe(self.codes[cause])
                    self._log(f"[gang] worker rank {cause} {how}; stopping "
                              f"{'ranks ' + ', '.join(map(str, others)) if others else 'nothing (all ended)'}\n")
                    self.tasks.append(asyncio.create_task(self.kill()))
            self._emit()
        with contextlib.suppress(Exception):  # the last lines reach the log before the attempt ends
            await asyncio.wait_for(asyncio.gather(*self.pumps, return_exceptions=True), 5)
        os.close(self.log_fd)
        self.log_fd = -1  # never write to a recycled descriptor
        if handle.done.done():
            return
        if self.first_failure is None and all(c == 0 for c in self.codes):
            handle.done.set_result(ExitStatus(code=0))
            return
        if self.first_failure is None:  # stopped from outside (cancel, timeout): say how rank 0 ended
            rc = self.codes[0] or 0
            handle.done.set_result(ExitStatus(code=rc if rc >= 0 else None, signal=-rc if rc < 0 else None))
            return
        rank = self.first_failure
        rc = self.codes[rank] or 0
        reason = await asyncio.to_thread(self._report_failure, rank, rc)
        handle.done.set_result(ExitStatus(code=rc if rc >= 0 else None, signal=-rc if rc < 0 else None,
                                          reason=reason))

    async def _stragglers(self) -> None:
        """Rank 0 succeeded (its result is the step's): give the others a grace period to exit, then
        stop them (e.g. a worker hanging in a collective's teardown must not hold the step)."""
        await asyncio.sleep(EXIT_GRACE)
        left = [r for r in range(self.n) if self.codes[r] is None]
        if left and not self.stopping:
            self._log(f"[gang] rank 0 finished {EXIT_GRACE:g} s ago; stopping rank{'s' if len(left) > 1 else ''} "
                      f"{', '.join(map(str, left))}, which did not exit\n")
            await self.kill()

    def _report_failure(self, rank: int, rc: int) -> str:
        return report_rank_failure(self.job, rank, f"worker rank {rank} of {self.n}", f" {_describe(rc)}", "stopped")

    async def kill(self, grace: float = 3.0) -> None:
        from .local import kill_tree

        self.stopping = True
        alive = [(p, t) for p, t in zip(self.procs, self.trees) if p.returncode is None]
        for p, tree in alive:
            kill_tree(p.pid, signal.SIGTERM, tree)
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)  # a worker that is not its group's leader
        try:
            await asyncio.wait_for(asyncio.gather(*(_exit_code(p) for p, _ in alive)), grace)
        except asyncio.TimeoutError:
            pass
        for p, tree in zip(self.procs, self.trees):
            kill_tree(p.pid, signal.SIGKILL, tree)  # stragglers, and children that outlived their worker
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()


def first_error(job: dict[str, Any], n: int, seen: int) -> int:
    """The rank whose own error came first (the earliest ``finished_at`` of the failed results the
    workers wrote), else ``seen`` (the first failed exit observed; e.g. a worker killed by a signal
    writes no result). Causal, not a race: a crashed rank writes its result before it exits, and its
    peers only fail once its sockets close, at its exit."""
    from ..stores import open_store

    store = open_store(job["store"])
    best: tuple[float, int] | None = None
    for rank in range(n):
        try:  # plain JSON the step wrote, never a pickle
            res = json.loads(store.get_bytes(rank_result_key(job["result_key"], rank)))
        except Exception:  # noqa: BLE001 - not written (still running, or crashed before writing)
            continue
        at = res.get("finished_at")
        if res.get("status") == "failed" and res.get("error") and isinstance(at, (int, float)):
            if best is None or (at, rank) < best:
                best = (float(at), rank)
    return best[1] if best is not None else seen


def report_rank_failure(job: dict[str, Any], rank: int, where: str, how: str, verb: str) -> str:
    """Make the first failed rank's error the attempt's result (rank 0's, written after it was
    stopped, only says a peer went away); return the attempt's reason.

    ``where`` names the worker ("worker rank 1 of 2 (pod …)"), ``how`` says how it ended when it
    wrote no error (" exited with code 3", ": OOMKilled"), ``verb`` what happened to the others
    ("stopped", "deleted"). Shared by the local gang and the Kubernetes one."""
    from ..stores import open_store

    store = open_store(job["store"])
    err: dict[str, Any] = {}
    try:  # plain JSON the step wrote, never a pickle
        err = json.loads(store.get_bytes(rank_result_key(job["result_key"], rank))).get("error") or {}
    except Exception:  # noqa: BLE001 - no result: it crashed before writing one
        pass
    if err:
        reason = f"{where} failed: {err.get('type')}: {err.get('message')}; the other workers were {verb}"
        message = f"{err.get('message')} ({where}; the other workers were {verb})"
        result = {"status": "failed", "error": {"type": err.get("type"), "message": message,
                                                 "traceback": f"[rank {rank}]\n{err.get('traceback') or ''}"}}
    else:
        reason = f"{where}{how}; the other workers were {verb}"
        result = {"status": "failed", "error": {"type": "JobError", "message": reason, "traceback": ""}}
    if rank != 0:
        try:
            store.put_bytes(json.dumps(result).encode(), key=job["result_key"])
        except Exception:  # noqa: BLE001 - the reason still goes out with the exit status
            pass
    return reason


async def _exit_code(proc: asyncio.subprocess.Process) -> int:
    """The worker's exit code once it has exited. Not ``proc.wait()``: on Python 3.11 that also waits
    for the stdout pipe to close, and a cancelled gang was seen stuck there with every worker gone."""
    while proc.returncode is None:
        try:
            os.kill(proc.pid, 0)  # a zombie still answers: the child watcher will report its code
        except ProcessLookupError:
            # Gone and reaped without asyncio hearing of it (seen, rarely, after a cancel): report it
            # as asyncio reports an unknown child, so the gang still ends instead of hanging.
            await asyncio.sleep(0.2)
            return proc.returncode if proc.returncode is not None else 255
        await asyncio.sleep(0.05)
    return proc.returncode


def _describe(rc: int | None) -> str:
    if rc is None:
        return "is still running"
    if rc < 0:
        try:
            return f"was killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"was killed by signal {-rc}"
    return f"exited with code {rc}"


async def start(executor: Any, job: dict[str, Any], attempt_id: str, log_path: str, workdir: str,
                env: dict[str, str], n: int) -> Handle:
    """Start a gang for ``job`` on the local ``executor``; the handle's pid is rank 0's."""
    from .local import step_environ

    gang = Gang(job, n, log_path, getattr(executor, "on_event", None))
    python = job.get("python_executable") or executor.python
    await gang.start(python, workdir, {**step_environ(), **env})
    handle = Handle(attempt_id, pid=gang.procs[0].pid)
    handle.extra["gang"] = gang
    gangs = executor.__dict__.setdefault("_gangs", {})
    gangs[attempt_id] = handle
    handle.done.add_done_callback(lambda _f: gangs.pop(attempt_id, None))
    gang.watch(handle)
    return handle


async def kill(handle: Handle, grace: float = 3.0) -> None:
    gang: Gang = handle.extra["gang"]
    await gang.kill(grace)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(handle.done), grace + 5)


async def close(executor: Any) -> None:
    for h in list(executor.__dict__.get("_gangs", {}).values()):
        await kill(h, grace=1.0)
