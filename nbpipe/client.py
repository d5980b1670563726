"""Talk to a runner: submit pipelines, follow runs, load outputs back as Python objects.

``nbpipe.run(pipeline, **params)`` submits to the configured runner — ``configure(url=…)``,
``NBPIPE_RUNNER_URL`` or ``NBPIPE_HOME/config.json`` — or, when none is set, to the embedded
local runner, started on 127.0.0.1 on first use and reused. Step outputs are unpickled here,
in the user's own process, never in the runner. Non-goal: scheduling (the runner's job).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx

from . import events as ev
from ._embedded import ensure_local_runner, nbpipe_home, runtime_token
from .errors import NbpipeError, RunnerError
from .loopback_http import LoopbackPoster
from .package import build_package
from .run_handle import QUIET, Run, sse  # noqa: F401 - Run is part of this module's API

_DEFAULT: dict[str, Any] = {"url": None, "token": None, "client": None}
_RESTART = threading.Lock()  # one restart of the embedded runner at a time (see Client._restarted)


def configure(url: str | None = None, token: str | None = None) -> None:
    """Set the default runner for :func:`run` (``url=None``: the embedded local runner)."""
    if url:
        check_url(url, "nbpipe.client.configure(url)")
    _DEFAULT.update(url=url.rstrip("/") if url else None, token=token, client=None)


def check_url(url: str, where: str) -> None:
    """Refuse a runner URL without its scheme (``localhost:8765``) here, naming the URL meant, instead of
    httpx's "Request URL is missing an 'http://' or 'https://' protocol" at the first request."""
    if re.match(r"https?://[^/\s]", url):
        return
    raise NbpipeError(f"{url!r} (from {where}) is not a runner URL: it starts with http:// or https://",
                      hint=f"Use {'http://' + url.split('://', 1)[-1]!r}.")


def _configured() -> tuple[str | None, str | None]:
    if _DEFAULT["url"]:
        return _DEFAULT["url"], _DEFAULT["token"]
    if os.environ.get("NBPIPE_RUNNER_URL"):
        check_url(os.environ["NBPIPE_RUNNER_URL"], "NBPIPE_RUNNER_URL")
        return os.environ["NBPIPE_RUNNER_URL"].rstrip("/"), os.environ.get("NBPIPE_TOKEN")
    cfg = nbpipe_home() / "config.json"
    if cfg.exists():
        try:
            data = json.loads(cfg.read_text())
        except ValueError:
            raise NbpipeError(f"{cfg} is not valid JSON", hint="Fix or delete it.") from None
        if data.get("runner"):
            check_url(str(data["runner"]), f"{cfg}'s \"runner\"")
            return str(data["runner"]).rstrip("/"), data.get("token")
    return None, None


def _back_to_embedded(url: str) -> str:
    """What to do about a runner at ``url`` that does not answer, for where its URL was set."""
    start = "Start one with `nbpipe runner start`, or use the embedded local runner: "
    if _DEFAULT["url"] == url:  # (%nbpipe config runner=URL sets it too)
        return start + "`%nbpipe config runner=local` in a notebook, nbpipe.client.configure() with no URL in Python."
    if (os.environ.get("NBPIPE_RUNNER_URL") or "").rstrip("/") == url:
        return start + "unset NBPIPE_RUNNER_URL (it names this runner)."
    cfg = nbpipe_home() / "config.json"
    try:
        saved = str(json.loads(cfg.read_text()).get("runner") or "").rstrip("/")
    except (OSError, ValueError, AttributeError):
        saved = ""
    if saved == url:
        return (f"Start that runner (`nbpipe runner start` for one on this machine), or go back to the embedded "
                f"local runner: the nbpipe panel's runner settings (Use embedded runner) or "
                f"`%nbpipe config runner=local` (this URL is saved in {cfg}).")
    return start + "`%nbpipe config runner=local` in a notebook, nbpipe.client.configure() in Python."


def prestart() -> None:
    """Start the default runner in the background (e.g. on ``%load_ext nbpipe``) so the first run
    does not wait for it; any error resurfaces on first real use."""
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
        else:
            check_url(url, "Client(url)")
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
        self._timeout = timeout
        self._connect(self.url, headers)
        self._uploaded: set[str] = set()  # package digests this runner already has

    def _connect(self, url: str, headers: dict[str, str]) -> None:
        self._http = httpx.Client(base_url=url, headers=headers, timeout=self._timeout)
        # submits to a runner on this machine skip httpx's layers (see .loopback_http)
        self._poster = LoopbackPoster(url, headers, self._timeout) if LoopbackPoster.usable(url) else None

    def _restarted(self) -> bool:
        """The embedded runner is gone (killed, crashed): start it again and use it (True), as the next
        ``Client()`` would; its runs resume from its database. Callers send again only what is safe to."""
        if not self.embedded:
            return False
        with _RESTART:
            url = ensure_local_runner().rstrip("/")
            if url != self.url:  # (else it answers again, or another thread of this kernel got here first)
                self._rebind(url)
        return True

    def _rebind(self, url: str) -> None:
        self.close()
        self.url, self.token = url, runtime_token(url)
        self.auth_headers.pop("Authorization", None)
        if self.token:
            self.auth_headers["Authorization"] = f"Bearer {self.token}"
        self._connect(url, self.auth_headers)
        self._uploaded.clear()

    def __repr__(self) -> str:
        return f"<nbpipe Client {self.url}{' (embedded)' if self.embedded else ''}>"

    # ------------------------------------------------------------ plumbing
    def _request(self, method: str, path: str, _again: bool = True, **kw: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.ConnectError as exc:
            if _again and self._restarted():
                return self._request(method, path, _again=False, **kw)
            raise self._unreachable(exc) from None
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:  # it went away mid-request
            if method in ("GET", "HEAD") and _again and self._restarted():  # (safe to ask again)
                return self._request(method, path, _again=False, **kw)
            raise RunnerError(f"The runner at {self.url} dropped the connection during {method} {path} ({exc})",
                              hint="Check that it runs (nbpipe runner status) and try again"
                                   + ("." if method in ("GET", "HEAD") else "; see first whether it was done."))
        except httpx.TimeoutException:
            raise self._too_slow(method, path) from None
        if resp.status_code >= 400 and method != "HEAD":
            self._refused(resp.status_code, resp.text)
        return resp

    def _post_json(self, path: str, body: dict[str, Any], _again: bool = True) -> Any:
        """POST ``body`` as JSON, return the answer's JSON (errors as :meth:`_request` raises them)."""
        got = None
        if self._poster is not None:
            try:
                got = self._poster.post(path, body)
            except TimeoutError:
                raise self._too_slow("POST", path) from None
            except ConnectionRefusedError as exc:  # nothing was sent: safe to send again
                if not (_again and self._restarted()):
                    raise self._unreachable(exc) from None
                return self._post_json(path, body, _again=False)
            except OSError as exc:
                raise self._unreachable(exc) from None
        if got is None:
            return self._request("POST", path, _again=_again, json=body).json()
        status, data = got
        if status >= 400:
            self._refused(status, data.decode("utf-8", "replace"))
        return json.loads(data)

    def _unreachable(self, exc: Exception) -> RunnerError:
        return RunnerError(f"No runner at {self.url} ({exc})", hint=_back_to_embedded(self.url))

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
                              hint="Pass its token: in a notebook `%nbpipe config runner=URL token=...`; in Python "
                                   "nbpipe.client.configure(url, token=...); for the command line, NBPIPE_TOKEN.")
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
             limit: int = 50, archived: bool = False) -> list[dict[str, Any]]:
        """Runs, newest first; ``archived=True``: the archived ones instead (see :meth:`archive_run`)."""
        params = {k: v for k, v in {"experiment": experiment, "state": state, "pipeline": pipeline,
                                    "limit": limit, "archived": "true" if archived else None}.items() if v is not None}
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

    def archive_run(self, run_id: str) -> dict[str, Any]:
        """Archive a finished run (Kubeflow's Archive): it leaves the run lists, stays whole; see :meth:`unarchive_run`."""
        return self._request("POST", f"/api/v1/runs/{run_id}/archive").json()  # type: ignore[no-any-return]

    def unarchive_run(self, run_id: str) -> dict[str, Any]:
        """Restore an archived run to the run lists."""
        return self._request("POST", f"/api/v1/runs/{run_id}/unarchive").json()  # type: ignore[no-any-return]

    def delete_run(self, run_id: str) -> dict[str, Any]:
        """Delete a finished run's records and step logs for good (its artifacts and the step cache stay)."""
        return self._request("DELETE", f"/api/v1/runs/{run_id}").json()  # type: ignore[no-any-return]

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
                    for event in sse(resp.iter_lines()):
                        if event is None:
                            if on_quiet is not None:
                                on_quiet()
                            continue
                        last = event.id
                        retries = 0
                        yield event
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
                retries += 1
                if retries > 5 or not self._restarted():  # (the embedded runner comes back: read on)
                    raise RunnerError(f"No runner at {self.url} ({exc})",
                                      hint="Start one with `nbpipe runner start`.") from None

    def close(self) -> None:
        self._http.close()
        if self._poster is not None:
            self._poster.close()


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


def run(pipeline: Any, *positional: Any, runner: Client | str | None = None, experiment: str = "Default",
        name: str | None = None, wait: bool = False, params: dict[str, Any] | None = None, **kwargs: Any) -> Run:
    """Submit ``pipeline`` with its parameters (``c=10.0``, or ``params={"c": 10.0}``); returns a
    :class:`Run` (``wait=True`` blocks). A parameter named like one of run's own options (``name``,
    ``experiment``, ``runner``, ``wait``, ``params``) goes in ``params=``."""
    params = _run_params(pipeline, positional, params, kwargs, {"runner": runner, "experiment": experiment != "Default",
                                                                "name": name, "wait": wait})
    client = runner if isinstance(runner, Client) else (Client(runner) if runner else default_client())
    r = client.submit(pipeline, params, experiment=experiment, name=name, labels=kernel_labels())
    return r.wait() if wait else r


def _run_params(pipeline: Any, positional: tuple[Any, ...], params: dict[str, Any] | None, kwargs: dict[str, Any],
                own: dict[str, Any]) -> dict[str, Any]:
    """``nbpipe.run``'s parameters for the pipeline, refusing what would silently run something else: values
    given by position, and ``name=``/``experiment=``… when the pipeline has a parameter of that name (run's own
    option would take it, and the parameter would keep its default)."""
    from .errors import DefinitionError

    names = [p["name"] for p in getattr(pipeline, "parameters", None) or ()]
    label = getattr(pipeline, "name", "")
    variable = getattr(getattr(pipeline, "func", None), "__name__", "pipeline")
    if positional:
        pairs = list(zip(names, positional))
        shown = (", ".join(f"{n}={v!r}" for n, v in pairs) if not set(names) & {*own, "params"} else
                 "params={" + ", ".join(f"{n!r}: {v!r}" for n, v in pairs) + "}") if pairs else "NAME=VALUE"
        raise DefinitionError(f"nbpipe.run takes pipeline '{label}'s parameters by name, not by position "
                              f"(got {len(positional)} value(s) after the pipeline)",
                              f"Its parameters: {', '.join(names) or 'none'}", f"Write nbpipe.run({variable}, {shown}).")
    clash = [k for k, given in own.items() if given and k in names and k not in (params or {})]
    if clash:
        k = clash[0]
        raise DefinitionError(f"'{k}' is both a parameter of pipeline '{label}' and nbpipe.run's own {k}=, so "
                              f"nbpipe.run(..., {k}=...) would not set the parameter (it would keep its default)",
                              hint=f"Pass the pipeline's parameters in params=: nbpipe.run({variable}, "
                                   f"params={{'{k}': ...}}) ({k}= then sets the run's own option).")
    both = sorted(set(params or {}) & set(kwargs))
    if both:
        raise DefinitionError(f"Parameter '{both[0]}' is given twice, in params= and as {both[0]}=",
                              hint="Give it once.")
    return {**(params or {}), **kwargs}


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
