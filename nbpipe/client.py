"""Talk to a runner: submit pipelines, follow runs, load outputs back as Python objects.

``nbpipe.run(pipeline, **params)`` submits to the configured runner — ``configure(url=…)``,
``NBPIPE_RUNNER_URL`` or ``NBPIPE_HOME/config.json`` — or, when none is set, to the embedded
local runner, started on 127.0.0.1 on first use and reused. Step outputs are unpickled here,
in the user's own process, never in the runner. Non-goal: scheduling (the runner's job).
"""

from __future__ import annotations

import json
import os
import tarfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx

from . import events as ev
from . import serializers
from ._embedded import ensure_local_runner, nbpipe_home, runtime_token
from .artifacts import ARTIFACT_TYPES, Artifact
from .errors import NbpipeError, RunnerError, StepFailed
from .loopback_http import LoopbackPoster
from .package import build_package

_DEFAULT: dict[str, Any] = {"url": None, "token": None, "client": None}


def configure(url: str | None = None, token: str | None = None) -> None:
    """Set the default runner for :func:`run` (``url=None``: the embedded local runner)."""
    _DEFAULT.update(url=url.rstrip("/") if url else None, token=token, client=None)


def _configured() -> tuple[str | None, str | None]:
    if _DEFAULT["url"]:
        return _DEFAULT["url"], _DEFAULT["token"]
    if os.environ.get("NBPIPE_RUNNER_URL"):
        return os.environ["NBPIPE_RUNNER_URL"].rstrip("/"), os.environ.get("NBPIPE_TOKEN")
    cfg = nbpipe_home() / "config.json"
    if cfg.exists():
        try:
            data = json.loads(cfg.read_text())
        except ValueError:
            raise NbpipeError(f"{cfg} is not valid JSON", hint="Fix or delete it.") from None
        if data.get("runner"):
            return str(data["runner"]).rstrip("/"), data.get("token")
    return None, None


def prestart() -> None:
    """Start the default runner in the background (e.g. on ``%load_ext nbpipe``) so the first run
    does not wait for it; any error resurfaces on first real use."""
    import threading

    def go() -> None:
        try:
            default_client()
        except Exception:  # noqa: BLE001 - reported again by the first real call
            pass

    threading.Thread(target=go, name="nbpipe-runner-prestart", daemon=True).start()


def default_client() -> "Client":
    if _DEFAULT["client"] is None:
        seen = (_DEFAULT["url"], _DEFAULT["token"])
        client = Client()  # may take seconds (starting the embedded runner)
        if (_DEFAULT["url"], _DEFAULT["token"]) != seen:  # configure() ran meanwhile, e.g. during prestart
            return default_client()
        _DEFAULT["client"] = client
    return _DEFAULT["client"]  # type: ignore[no-any-return]


class Client:
    """An HTTP client for one runner. ``Client()`` uses the configured or embedded runner."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0,
                 profile: str | None = None, user: str | None = None):
        """``profile``: the profile new runs, schedules and endpoints go to (default ``NBPIPE_PROFILE``,
        else the user's first); ``user``: the user a trusted proxy (JupyterHub) acts for."""
        self.embedded = False
        if url is None:
            url, conf_token = _configured()
            token = token or conf_token
            if url is None:
                url = ensure_local_runner()
                self.embedded = True
        self.url = url.rstrip("/")
        if token is None:  # a local runner's generated token, from its 0600 runtime file
            token = runtime_token(self.url)
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.profile = profile or os.environ.get("NBPIPE_PROFILE") or None
        if self.profile:
            headers["X-Nbpipe-Profile"] = self.profile
        if user:
            headers["X-Nbpipe-User"] = user
        self.auth_headers = dict(headers)  # for other HTTP clients of this runner (the Lab's SSE proxies)
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        # submits to a runner on this machine skip httpx's layers (see .loopback_http)
        self._poster = LoopbackPoster(self.url, headers, timeout) if LoopbackPoster.usable(self.url) else None
        self._uploaded: set[str] = set()  # package digests this runner already has

    def __repr__(self) -> str:
        return f"<nbpipe Client {self.url}{' (embedded)' if self.embedded else ''}>"

    # ------------------------------------------------------------ plumbing
    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.ConnectError as exc:
            raise self._unreachable(exc) from None
        except httpx.TimeoutException:
            raise self._too_slow(method, path) from None
        if resp.status_code >= 400 and method != "HEAD":
            self._refused(resp.status_code, resp.text)
        return resp

    def _post_json(self, path: str, body: dict[str, Any]) -> Any:
        """POST ``body`` as JSON, return the answer's JSON (errors as :meth:`_request` raises them)."""
        got = None
        if self._poster is not None:
            try:
                got = self._poster.post(path, body)
            except TimeoutError:
                raise self._too_slow("POST", path) from None
            except OSError as exc:
                raise self._unreachable(exc) from None
        if got is None:
            return self._request("POST", path, json=body).json()
        status, data = got
        if status >= 400:
            self._refused(status, data.decode("utf-8", "replace"))
        return json.loads(data)

    def _unreachable(self, exc: Exception) -> RunnerError:
        return RunnerError(
            f"No runner at {self.url} ({exc})",
            hint="Start one with `nbpipe runner start`, or use the embedded local runner: "
                 "`%nbpipe config runner=local` in a notebook, nbpipe.client.configure() in Python, "
                 "or unset NBPIPE_RUNNER_URL.")

    def _too_slow(self, method: str, path: str) -> RunnerError:
        return RunnerError(f"The runner at {self.url} did not answer in time ({method} {path})",
                           hint="Check that it is healthy: nbpipe runner status.")

    def _refused(self, status: int, text: str) -> None:
        try:
            body = json.loads(text)
            msg = body.get("message") or body.get("detail") or text
        except (ValueError, AttributeError):
            msg = text
        if status == 401:
            raise RunnerError(f"The runner at {self.url} refused the request: {msg}",
                              hint="Pass its token: nbpipe.client.configure(url, token=...) or NBPIPE_TOKEN.")
        raise RunnerError(str(msg) if isinstance(msg, str) else json.dumps(msg))

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/api/v1/health").json()  # type: ignore[no-any-return]

    # ------------------------------------------------------------ submit
    def upload(self, package: bytes) -> str:
        import hashlib

        digest = hashlib.sha256(package).hexdigest()
        if digest in self._uploaded:
            return digest
        if self._request("HEAD", f"/api/v1/packages/{digest}").status_code != 200:
            self._request("PUT", f"/api/v1/packages/{digest}", content=package,
                          headers={"Content-Type": "application/zip"})
        self._uploaded.add(digest)
        return digest

    def submit(self, pipeline: Any, params: dict[str, Any] | None = None, experiment: str = "Default",
               name: str | None = None, labels: dict[str, str] | None = None) -> "Run":
        """Submit a Pipeline, package bytes or a package path; return the :class:`Run`."""
        params = dict(params or {})
        digest = self.upload(_package_bytes(pipeline, params))
        body = {"package": digest, "params": params, "experiment": experiment, "name": name,
                "labels": labels or {}}
        snap = self._post_json("/api/v1/runs", body)
        return Run(self, snap["id"], snap)

    # ------------------------------------------------------------ queries
    def runs(self, experiment: str | None = None, state: str | None = None, pipeline: str | None = None,
             limit: int = 50) -> list[dict[str, Any]]:
        params = {k: v for k, v in {"experiment": experiment, "state": state, "pipeline": pipeline,
                                    "limit": limit}.items() if v is not None}
        return self._request("GET", "/api/v1/runs", params=params).json()  # type: ignore[no-any-return]

    def experiments(self) -> list[dict[str, Any]]:
        return self._request("GET", "/api/v1/experiments").json()  # type: ignore[no-any-return]

    # ------------------------------------------------------------ schedules and triggers
    def create_schedule(self, pipeline: Any, params: dict[str, Any] | None = None, *, cron: str | None = None,
                        interval: float | None = None, trigger: dict[str, Any] | None = None, name: str = "",
                        experiment: str = "Default", max_concurrency: int = 1, catchup: bool = False,
                        start_at: float | None = None) -> dict[str, Any]:
        """Run ``pipeline`` on a cron expression, every ``interval`` seconds, or when files arrive.

        ``trigger={"folder": PATH, "param": NAME}`` (or ``"prefix"`` of the runner's store) starts
        a run with the new files' paths in parameter NAME. See :mod:`nbpipe.runner.schedules`.
        """
        data = _package_bytes(pipeline, dict(params or {}), allow_missing=trigger.get("param") if trigger else None)
        body = {"package": self.upload(data), "params": dict(params or {}), "cron": cron, "interval": interval,
                "trigger": trigger, "name": name, "experiment": experiment, "max_concurrency": max_concurrency,
                "catchup": catchup, "start_at": start_at}
        return self._request("POST", "/api/v1/schedules", json=body).json()  # type: ignore[no-any-return]

    def schedules(self) -> list[dict[str, Any]]:
        return self._request("GET", "/api/v1/schedules").json()  # type: ignore[no-any-return]

    def schedule(self, schedule_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/v1/schedules/{schedule_id}").json()  # type: ignore[no-any-return]

    def pause_schedule(self, schedule_id: str) -> dict[str, Any]:
        return self._request("POST", f"/api/v1/schedules/{schedule_id}/pause").json()  # type: ignore[no-any-return]

    def resume_schedule(self, schedule_id: str) -> dict[str, Any]:
        return self._request("POST", f"/api/v1/schedules/{schedule_id}/resume").json()  # type: ignore[no-any-return]

    def delete_schedule(self, schedule_id: str) -> None:
        self._request("DELETE", f"/api/v1/schedules/{schedule_id}")

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/v1/runs/{run_id}").json()  # type: ignore[no-any-return]

    def run(self, run_id: str) -> "Run":
        return Run(self, run_id)

    def cancel(self, run_id: str) -> dict[str, Any]:
        return self._request("POST", f"/api/v1/runs/{run_id}/cancel").json()  # type: ignore[no-any-return]

    def rerun(self, run_id: str, from_step: str | None = None, pipeline: Any = None,
              from_failed: bool = False) -> "Run":
        """Run ``run_id`` again with its parameters, as a new run (Kubeflow's "Retry"/"Clone").

        ``from_step``: re-execute that step and everything downstream of it (never from the
        cache) and reuse the run's outputs for the other steps. ``from_failed``: from the run's
        first failed step. ``pipeline``: run this pipeline as it is *now* (e.g. after fixing a
        cell) instead of the run's package; an upstream step is reused only if its code, inputs
        and options are unchanged, otherwise it runs again. Each step's reason says which.
        """
        snap: dict[str, Any] | None = None
        if from_failed:
            snap = self.get_run(run_id)
            failed = [s["name"] for s in snap["steps"] if s["state"] == "failed"]
            if not failed:
                raise NbpipeError(f"Run {run_id} has no failed step to re-run from (it is {snap['state']})",
                                  hint="Re-run it whole, or name the step to start from (--from STEP; from_step=... in Python).")
            from_step = failed[0]
        body: dict[str, Any] = {"from_step": from_step}
        if pipeline is not None:
            params = (snap or self.get_run(run_id)).get("params") or {}
            body["package"] = self.upload(_package_bytes(pipeline, params))
        new = self._request("POST", f"/api/v1/runs/{run_id}/rerun", json=body).json()
        return Run(self, new["id"], new)

    def logs(self, run_id: str, step: str, attempt: int | None = None, offset: int = 0) -> str:
        params = {"offset": offset} | ({"attempt": attempt} if attempt else {})
        return self._request("GET", f"/api/v1/runs/{run_id}/steps/{step}/logs", params=params).text

    def artifact(self, digest: str) -> bytes:
        # a cluster runner answers with a redirect to its S3 store (a presigned URL)
        return self._request("GET", f"/api/v1/artifacts/{digest}", follow_redirects=True).content

    def events(self, run_id: str | None = None, after: int = 0, follow: bool = True,
               on_quiet: Callable[[], None] | None = None) -> Iterator[ev.Event]:
        """Events of one run (or all runs) after an id, from the runner's SSE stream.

        With ``follow`` the stream stays open (a run's stream ends after ``RunFinished``);
        dropped connections are resumed from the last event id. ``on_quiet`` is called whenever
        the runner says the stream is still open but nothing happened (its keep-alive, every 15 s).
        """
        path = f"/api/v1/runs/{run_id}/events" if run_id else "/api/v1/events"
        last = after
        retries = 0
        while True:
            try:
                with self._http.stream("GET", path, params={"after": last},
                                       timeout=httpx.Timeout(30.0, read=60.0 if follow else 5.0)) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        self._request("GET", path, params={"after": last})  # raises the runner's message
                    data: list[str] = []
                    for line in resp.iter_lines():
                        if line.startswith("data:"):
                            data.append(line[5:].strip())
                        elif line == "" and data:
                            event = ev.decode("\n".join(data))
                            data = []
                            last = event.id
                            retries = 0
                            yield event
                        elif line.startswith(":") and on_quiet is not None:
                            on_quiet()
                    if run_id is not None or not follow:
                        return
            except (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                if not follow:
                    return
                retries += 1
                if retries > 5:
                    raise RunnerError(f"Lost the event stream of {self.url} ({exc})") from None
                time.sleep(min(2.0, 0.1 * 2**retries))
            except httpx.ConnectError as exc:
                raise RunnerError(f"No runner at {self.url} ({exc})",
                                  hint="Start one with `nbpipe runner start`.") from None

    def close(self) -> None:
        self._http.close()
        if self._poster is not None:
            self._poster.close()


QUIET = 15.0  # seconds without an event after which Run.wait asks the runner whether it still schedules


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
                data: list[str] = []
                for line in resp.iter_lines():
                    if line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif line == "" and data:
                        event = ev.decode("\n".join(data))
                        data = []
                        after = event.id
                        if isinstance(event, ev.RunFinished):
                            return after
                    if end is not None and time.monotonic() >= end:
                        return after
        except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError):
            # a dropped stream: resume from the last event after a breath (within the time given)
            time.sleep(0.2 if end is None else min(0.2, max(0.0, end - time.monotonic())))
        except httpx.ConnectError as exc:
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

    def rerun(self, from_step: str | None = None, pipeline: Any = None, from_failed: bool = False,
              same_code: bool = False) -> "Run":
        """A new run of this one (see :meth:`Client.rerun`): ``from_step``, ``from_failed`` and
        ``pipeline`` (the pipeline object to run, with your fix). In a notebook kernel ``pipeline``
        defaults to the kernel's pipeline of the run's name as it is now, as the graph's buttons and
        ``%nbpipe rerun`` do; ``same_code=True`` runs the run's own package again instead."""
        if pipeline is None and not same_code:
            from .pipeline import kernel_pipeline

            pipeline = kernel_pipeline(str((self._snapshot or self.snapshot()).get("pipeline") or ""))
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
            raise NbpipeError(f"Step '{step}' of run {self.id} is {s['state']}, so it has no outputs",
                              s.get("reason", ""), f"See nbpipe logs {self.id} {step}.")
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


def _package_bytes(pipeline: Any, params: dict[str, Any], allow_missing: str | None = None) -> bytes:
    """Package bytes of a Pipeline (its parameters checked here), package bytes or a package path."""
    if isinstance(pipeline, (bytes, bytearray)):
        return bytes(pipeline)
    if isinstance(pipeline, (str, Path)):
        return Path(pipeline).read_bytes()
    if hasattr(pipeline, "spec") and hasattr(pipeline, "steps"):
        # fail here, with the pipeline's own message (a trigger fills its own parameter later)
        pipeline.resolve_params({**({allow_missing: []} if allow_missing else {}), **params})
        return build_package(pipeline)  # captured now: what runs is what the kernel has
    raise NbpipeError(f"Cannot run a {type(pipeline).__name__}",
                      hint="Pass an @nbpipe.pipeline function, package bytes or a package file path.")


def run(pipeline: Any, *, runner: Client | str | None = None, experiment: str = "Default",
        name: str | None = None, wait: bool = False, **params: Any) -> Run:
    """Submit ``pipeline`` with ``params``; returns a :class:`Run` (``wait=True`` blocks)."""
    client = runner if isinstance(runner, Client) else (Client(runner) if runner else default_client())
    r = client.submit(pipeline, params, experiment=experiment, name=name, labels=kernel_labels())
    return r.wait() if wait else r


def kernel_labels() -> dict[str, str]:
    """``{"kernel_notebook": ABSOLUTE_PATH}`` in a Jupyter kernel (Jupyter Server tells kernels their
    notebook in ``JPY_SESSION_NAME``), else ``{}``. Re-runs keep it, so the Lab panel's re-run of a run
    started in a kernel can run the notebook as it is now (with the user's fix), like a panel run."""
    path = os.environ.get("JPY_SESSION_NAME", "")
    if path.endswith(".ipynb") and os.path.isfile(path):
        return {"kernel_notebook": os.path.abspath(path)}
    return {}


def attach(run_id: str | Run, runner: Client | str | None = None) -> Run:
    """A handle on an existing run (e.g. after a kernel restart); in a notebook it shows as the live graph."""
    if isinstance(run_id, Run):
        run_id = run_id.id
    client = runner if isinstance(runner, Client) else (Client(runner) if runner else default_client())
    r = Run(client, run_id)
    r.snapshot()
    return r
