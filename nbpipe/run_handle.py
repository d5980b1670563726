"""A handle on one run: follow it, wait for it, re-run it, load its outputs as Python objects.

Made by :class:`nbpipe.client.Client` (``submit``, ``run``, ``attach``); importable from
``nbpipe.client`` as before. Step outputs are unpickled here, in the user's own process, never
in the runner.
"""

from __future__ import annotations

import os
import tarfile
import time
from typing import TYPE_CHECKING, Any, Iterator

import httpx

from . import events as ev
from . import serializers
from ._embedded import nbpipe_home
from .artifacts import ARTIFACT_TYPES, Artifact
from .errors import NbpipeError, RunnerError, StepFailed, check_rerun_step

if TYPE_CHECKING:
    from .client import Client

QUIET = 15.0  # seconds without an event after which Run.wait asks the runner whether it still schedules


def no_outputs_error(run_id: str, step: str, s: dict[str, Any]) -> NbpipeError:
    """Why step ``s`` (a run snapshot's step) has no outputs, and what to do, by its state."""
    state, reason = s["state"], (s.get("reason") or "").rstrip(".")
    why = f" ({reason})" if reason else ""
    if state in ("pending", "running", "retrying"):
        return NbpipeError(f"Step '{step}' of run {run_id} is {state}, so it has no outputs yet{why}",
                           hint="Wait for the run first: run.wait().")
    if state == "failed":
        return NbpipeError(f"Step '{step}' of run {run_id} failed, so it has no outputs{why}",
                           hint=f"See why: nbpipe logs {run_id} {step} (in a notebook: %nbpipe debug {run_id} {step}).")
    verb = {"cancelled": "was cancelled", "skipped": "was skipped"}.get(state, f"is {state}")
    return NbpipeError(f"Step '{step}' of run {run_id} {verb}, so it has no outputs{why}",
                       hint=f"Run it again: nbpipe rerun {run_id}." if state == "cancelled" else "")


class Run:
    """A handle on one run: state, steps, events, logs, outputs, cancel."""

    def __init__(self, client: Client, run_id: str, snapshot: dict[str, Any] | None = None):
        self.client = client
        self.id = run_id
        self._snapshot = snapshot
        self._values: dict[tuple[str, str], Any] = {}

    def __repr__(self) -> str:
        snap = self._snapshot or {}
        return f"<nbpipe Run {self.id} {snap.get('pipeline', '')} {snap.get('state', '')}>"

    def _ipython_display_(self) -> None:
        """In a notebook, a run shows as the live run graph."""
        from .widgets import show

        show(self)

    def snapshot(self) -> dict[str, Any]:
        """The run's current state (fetched from the runner)."""
        self._snapshot = self.client.get_run(self.id)
        return self._snapshot

    @property
    def last_snapshot(self) -> dict[str, Any]:
        """The newest snapshot this handle already has (e.g. the one submit returned); fetched if none."""
        return self._snapshot or self.snapshot()

    @property
    def state(self) -> str:
        return str(self.snapshot()["state"])

    @property
    def name(self) -> str:
        return str(self.last_snapshot["name"])

    @property
    def steps(self) -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in self.snapshot()["steps"]}

    def events(self, after: int = 0, follow: bool = True) -> Iterator[ev.Event]:
        return self.client.events(self.id, after=after, follow=follow)

    def wait(self, timeout: float | None = None, raise_on_failure: bool = True) -> "Run":
        """Block until the run finishes. A failed run raises :class:`StepFailed` with the step's traceback.

        ``timeout`` (seconds) is a deadline, kept even when the run prints nothing or is stuck:
        every read of the event stream is bounded by the time left.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        snap = self._snapshot if self._snapshot and self._snapshot["state"] in ev.RUN_FINAL \
            else self._snapshot_by(deadline, timeout)
        after = snap["last_event_id"]
        while snap["state"] not in ev.RUN_FINAL:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"Run {self.id} is still {snap['state']} after {timeout} s")
            before = after
            after = self._follow(after, QUIET if left is None else min(left, QUIET))
            snap = self._snapshot_by(deadline, timeout)
            if after == before and snap["state"] not in ev.RUN_FINAL:
                self._check_runner(deadline)  # nothing happened for a while: is the runner still scheduling?
        views = __import__("sys").modules.get("nbpipe.widgets.run_view")
        if views is not None:  # a shown live graph of this run puts its final picture in the notebook first
            views.settle(self.id, timeout=5.0)
        if raise_on_failure and snap["state"] == "failed":
            self.raise_for_failure()
            # no step failed: the runner itself ended the run (an internal error, a full disk)
            raise RunnerError(f"Run {self.id} failed: {snap['reason']}",
                              hint="Its steps did not fail; see `nbpipe runner status` and the runner's log.")
        return self

    def _check_runner(self, deadline: float | None) -> None:
        """Raise if the runner answers that it is not scheduling runs (its loop stopped): this run
        cannot go on, and waiting on (forever, without a timeout) would say nothing."""
        left = 5.0 if deadline is None else max(0.05, min(5.0, deadline - time.monotonic()))
        try:
            resp = self.client._http.get("/api/v1/health", timeout=left)
            body = resp.json() if resp.status_code == 503 else None
        except (httpx.HTTPError, ValueError):
            return  # not answering (or not in time): the caller's deadline decides
        if isinstance(body, dict) and body.get("status") == "stalled":
            raise RunnerError(f"Run {self.id} cannot go on: {body.get('message') or 'the runner is not scheduling runs'}",
                              hint="Restart the runner (nbpipe runner stop, then start, or run again for the "
                                   "embedded one); its runs resume from the database.")

    def _snapshot_by(self, deadline: float | None, timeout: float | None) -> dict[str, Any]:
        """:meth:`snapshot`, given no more than the time left before ``deadline``: a runner that
        stopped answering (stopped, swapped out, wedged) must not hold ``wait(timeout)`` past it."""
        if deadline is None:
            return self.snapshot()
        left = max(0.05, deadline - time.monotonic())
        try:
            self._snapshot = self.client._request("GET", f"/api/v1/runs/{self.id}",
                                                  timeout=httpx.Timeout(left, connect=min(left, 10.0))).json()
        except RunnerError as exc:
            if not isinstance(exc.__context__, httpx.TimeoutException):
                raise
            last = self._snapshot["state"] if self._snapshot else "unknown"
            raise TimeoutError(f"Run {self.id} is still {last} after {timeout} s "
                               f"(the runner at {self.client.url} did not answer)") from None
        return self._snapshot

    def _follow(self, after: int, left: float | None) -> int:
        """Read this run's events after ``after`` until RunFinished, the stream ends or ``left`` s pass."""
        end = None if left is None else time.monotonic() + left
        read = 20.0 if left is None else max(0.05, min(20.0, left))
        try:
            with self.client._http.stream("GET", f"/api/v1/runs/{self.id}/events", params={"after": after},
                                          timeout=httpx.Timeout(read, connect=min(read, 10.0))) as resp:
                if resp.status_code >= 400:
                    return after
                for event in sse(resp.iter_lines()):
                    if event is not None:
                        after = event.id
                        if isinstance(event, ev.RunFinished):
                            return after
                    if end is not None and time.monotonic() >= end:
                        return after
        except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError):
            # a dropped stream: resume from the last event after a breath (within the time given)
            time.sleep(0.2 if end is None else min(0.2, max(0.0, end - time.monotonic())))
        except httpx.ConnectError as exc:
            if not self.client._restarted():  # (the embedded runner comes back, and the caller reads again)
                raise RunnerError(f"No runner at {self.client.url} ({exc})",
                                  hint="Start one with `nbpipe runner start`.") from None
        return after

    def raise_for_failure(self) -> None:
        snap = self._snapshot or self.snapshot()
        failed = [s for s in snap["steps"] if s["state"] == "failed"]
        if not failed:
            return
        s = failed[0]
        att = f" (attempt {s['attempt']}/{s['max_attempts']})" if s["max_attempts"] > 1 else ""
        raise StepFailed(f"Step '{s['name']}' failed{att}: {s['reason']}",
                         hint=f"Logs: nbpipe logs {self.id} {s['name']}", traceback=s.get("traceback") or "")

    def cancel(self) -> None:
        self.client.cancel(self.id)

    def archive(self) -> None:
        """Take this (finished) run out of the run lists; it stays whole (see :meth:`Client.archive_run`)."""
        self.client.archive_run(self.id)

    def unarchive(self) -> None:
        """Bring this archived run back to the run lists."""
        self.client.unarchive_run(self.id)

    def delete(self) -> None:
        """Delete this (finished) run's records and step logs for good (see :meth:`Client.delete_run`)."""
        self.client.delete_run(self.id)

    def rerun(self, from_step: str | None = None, pipeline: Any = None, from_failed: bool = False,
              same_code: bool = False) -> "Run":
        """A new run of this one (see :meth:`Client.rerun`): ``from_step``, ``from_failed`` and
        ``pipeline`` (the pipeline object to run, with your fix). In a notebook kernel ``pipeline``
        defaults to the kernel's pipeline of the run's name as it is now, as the graph's buttons and
        ``%nbpipe rerun`` do; ``same_code=True`` runs the run's own package again instead."""
        if pipeline is None and not same_code:
            from .pipeline import kernel_pipeline

            pipeline = kernel_pipeline(str((self._snapshot or self.snapshot()).get("pipeline") or ""))
        check_rerun_step(self, pipeline, from_step, from_failed, magic=False)  # a step the pipeline lost: say so
        return self.client.rerun(self.id, from_step, pipeline=pipeline, from_failed=from_failed)

    def logs(self, step: str, attempt: int | None = None) -> str:
        return self.client.logs(self.id, step, attempt)

    # ------------------------------------------------------------ outputs
    def _step(self, step: str) -> dict[str, Any]:
        steps = {s["name"]: s for s in (self._snapshot or self.snapshot())["steps"]}
        if step not in steps or (steps[step]["state"] not in ev.STEP_FINAL):
            steps = self.steps
        if step not in steps:
            raise NbpipeError(f"Run {self.id} has no step '{step}'", f"Its steps are: {', '.join(steps)}.")
        return steps[step]

    def _load(self, out: dict[str, Any]) -> Any:
        key = (out["digest"], out["kind"])
        if key in self._values:
            return self._values[key]
        if out["kind"] == "artifact":
            value = self._load_artifact(out)
        elif "value" in out:
            value = out["value"]
        else:
            value = serializers.load_value(self.client.artifact(out["digest"]), out["format"])
        self._values[key] = value
        return value

    def _load_artifact(self, out: dict[str, Any]) -> Artifact:
        cls = ARTIFACT_TYPES.get(out.get("artifact_type", "Artifact"), Artifact)
        base = nbpipe_home() / "cache" / "artifacts" / out["digest"]
        name = out.get("filename") or "data"
        path = base / name
        if not path.exists():
            base.mkdir(parents=True, exist_ok=True)
            data = self.client.artifact(out["digest"])
            if out["format"] == "dir":
                tmp = base / "data.tar"
                tmp.write_bytes(data)
                with tarfile.open(tmp) as tf:
                    tf.extractall(path, filter="data")
                tmp.unlink()
            else:
                tmp = base / (name + ".part")
                tmp.write_bytes(data)
                os.replace(tmp, path)
        return cls(name=name, path=str(path), uri=out["key"], metadata=out.get("metadata"))

    def outputs(self, step: str) -> dict[str, Any]:
        """A step's outputs as Python objects (artifacts as Artifact objects with a local ``path``)."""
        s = self._step(step)
        if s["state"] not in ev.STEP_OK:
            raise no_outputs_error(self.id, step, s)
        return {name: self._load(out) for name, out in s["outputs"].items()}

    def output(self, step: str, name: str | None = None) -> Any:
        outs = self.outputs(step)
        if name is None:
            if len(outs) != 1:
                raise NbpipeError(f"Step '{step}' has outputs {', '.join(outs) or 'none'}",
                                  hint=f"Name one: run.output('{step}', '<name>').")
            return next(iter(outs.values()))
        if name not in outs:
            raise NbpipeError(f"Step '{step}' has no output '{name}'", f"Its outputs are: {', '.join(outs)}.")
        return outs[name]

    def inputs(self, step: str) -> dict[str, Any]:
        """The values a step was (or would be) called with — to reproduce a failure in a notebook."""
        s = self._step(step)
        steps = {x["name"]: x for x in (self._snapshot or {}).get("steps", [])}
        out: dict[str, Any] = {}
        for name, b in s["inputs"].items():
            if "step" in b:
                up = steps.get(b["step"]) or self._step(b["step"])
                if b["output"] not in up.get("outputs", {}):
                    raise NbpipeError(f"Input '{name}' of step '{step}' comes from '{b['step']}', which has no "
                                      f"output '{b['output']}' in run {self.id} (it is {up['state']})")
                out[name] = self._load(up["outputs"][b["output"]])
            else:
                out[name] = b.get("value")
        return out


def sse(lines: Iterator[str]) -> Iterator[ev.Event | None]:
    """The events of a runner's SSE stream, and ``None`` for each comment line (its keep-alive)."""
    data: list[str] = []
    for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            yield ev.decode("\n".join(data))
            data = []
        elif line.startswith(":"):
            yield None
