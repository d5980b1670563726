"""The ``Executor`` plug point: what starts, watches and stops a step attempt.

An executor launches ``nbpipe.executors.entry`` for a job (a local process, a forked child of
a warm zygote, a Kubernetes pod) and reports how it ended. The scheduler reads the attempt's
result JSON from the store, so executors only deal with processes (or pods), never payloads.

The whole contract (a third-party executor registered under the ``nbpipe.executors`` entry points
must keep it; see docs/plugins.md):

- **Construction.** ``cls(**options)`` with the runner's executor options (``NBPIPE_EXECUTOR_OPTIONS``
  / ``--executor-options``, a JSON object); ``name`` is the entry-point name (recorded with each
  attempt, so a restarted runner re-attaches only its own attempts).
- **start(job, attempt_id, log_path, workdir)** runs ``python -m nbpipe.executors.entry JOB`` where
  ``JOB`` is ``job`` as JSON (minus ``workdir``/``python_executable`` when they mean nothing where the
  step runs), appends the process's stdout+stderr to ``log_path`` as it comes (the runner tails that
  file into log events) and returns a :class:`Handle` at once; ``handle.done`` resolves with an
  :class:`ExitStatus` when the process ends (``reason`` for what is not an exit code: OOMKilled,
  ImagePullBackOff…). ``job["python_executable"]`` is the Python to run, when set; ``job["env"]``
  holds variables the step needs (the entrypoint sets them too). The entrypoint writes the result
  to the store under ``job["result_key"]``: never read payloads or results yourself.
- **kill(handle, grace)** stops the attempt and everything it started (SIGTERM, then SIGKILL after
  ``grace``), then lets ``handle.done`` resolve. Idempotent; a finished handle is a no-op.
- **close()** stops watching; it may leave work running for :meth:`reattach`.
- Optional: ``reattach(attempt_row) -> Handle | None`` (follow an attempt a previous runner started;
  ``None``: gone, the step is retried), ``run_finished(run_id, state)`` (release per-run resources),
  ``installs_packages = True`` (the executor makes ``job["packages"]`` importable itself, so the
  runner does not prepare a local overlay first), ``on_event`` (set by the runner: a callable taking
  an :mod:`nbpipe.events` event, for extra state such as a gang's workers).

Non-goals: retries and timeouts (the scheduler decides; executors only kill on request).
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass
class ExitStatus:
    """How an attempt's process ended: an exit code, or the signal that killed it, or a reason."""

    code: int | None = None
    signal: int | None = None
    reason: str = ""  # executor-specific (e.g. OOMKilled, ImagePullBackOff)

    @property
    def ok(self) -> bool:
        return self.code == 0 and not self.reason

    def describe(self) -> str:
        if self.reason:
            return self.reason
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            what = {"SIGSEGV": " (segmentation fault)", "SIGKILL": " (killed, e.g. out of memory or by a user)",
                    "SIGABRT": " (aborted)", "SIGBUS": " (bus error)", "SIGFPE": " (arithmetic error)"}
            return f"the step process was killed by {name}{what.get(name, '')}"
        if self.code == 0:
            return "the step process exited normally"
        return f"the step process exited with code {self.code}"


@dataclass
class Handle:
    """A started attempt: its id, process (or pod) id and a future for its :class:`ExitStatus`."""

    attempt_id: str
    pid: int | None = None
    name: str = ""
    done: asyncio.Future[ExitStatus] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Executor(Protocol):
    name: str

    async def start(self, job: dict[str, Any], attempt_id: str, log_path: str, workdir: str) -> Handle:
        """Launch the entrypoint for ``job``; output goes to ``log_path``."""
        ...

    async def kill(self, handle: Handle, grace: float = 3.0) -> None:
        """Stop the attempt and everything it started (process tree / pod)."""
        ...

    async def close(self) -> None: ...
