"""``/nbpipe/api`` routes about the runner: status, the URL setting, runs, events, logs, artifacts.

Every handler is ``@tornado.web.authenticated`` and talks to the runner through
:class:`nbpipe.Client` (see :class:`~nbpipe.lab.connection.RunnerConnection`). The event
stream is proxied as Server-Sent Events, frame by frame, so the browser resumes with
``Last-Event-ID`` exactly as it would against the runner.

Non-goals: any run state of its own; polling (events are pushed through).
"""

from __future__ import annotations

import os
import re
from typing import Any

import httpx
import tornado.web
from tornado.iostream import StreamClosedError

from ..errors import NbpipeError, RunnerError
from ..widgets.snapshot import mark_floats
from .base import NbpipeHandler
from .connection import read_setting, write_setting
from .notebook import NotebookHandler

RUN_ID = r"(?P<run_id>[A-Za-z0-9_.\-]{1,128})"
STEP = r"(?P<step>[A-Za-z0-9_.\-]{1,200})"
DIGEST = r"(?P<digest>[0-9a-f]{64})"
# Media types an artifact may be served as; anything else is an opaque download.
PREVIEW_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/svg+xml",
        "image/webp",
        "text/plain",
        "text/csv",
        "application/json",
    }
)


class StatusHandler(NbpipeHandler):
    """``GET /status``: runner URL, embedded or remote, reachable, version."""

    @tornado.web.authenticated
    async def get(self) -> None:
        self.finish(await self.blocking(self.connection.status))


class SettingsHandler(NbpipeHandler):
    """``GET``/``PUT /settings``: the runner URL (and a write-only token)."""

    @tornado.web.authenticated
    async def get(self) -> None:
        try:
            self.finish(read_setting().public())
        except NbpipeError as exc:
            self.send_nbpipe_error(exc)

    @tornado.web.authenticated
    async def put(self) -> None:
        try:
            body = self.json_body()
            url = body.get("runner_url")
            token = body.get("token")
            if (
                url is not None
                and not isinstance(url, str)
                or token is not None
                and not isinstance(token, str)
            ):
                raise NbpipeError("runner_url and token must be strings or null")
            setting = write_setting(url or None, token, keep_token=not body.get("clear_token", False))
        except NbpipeError as exc:
            self.send_nbpipe_error(exc)
            return
        self.finish(setting.public())


class RunsHandler(NbpipeHandler):
    """``GET /runs?limit=&experiment=``: run summaries, newest first, each naming its float parameters
    (``float_params``, as a run's snapshot does)."""

    @tornado.web.authenticated
    async def get(self) -> None:
        try:
            limit = int(self.get_query_argument("limit", "50"))
        except ValueError:
            self.send_error_json(400, "limit must be an integer")
            return
        experiment = self.get_query_argument("experiment", None)
        try:
            runs = await self.blocking(
                lambda: self.connection.client().runs(experiment, limit=max(1, min(limit, 500)))
            )
        except NbpipeError as exc:
            self.send_nbpipe_error(exc)
            return
        self.finish({"runs": [mark_floats(run) for run in runs]})  # the rows show c=1.0, not c=1


CACHE_REASON = "result reused from the cache"
MAX_ORIGINS = 20  # cached steps of one snapshot whose origin is looked up (a big fan-out keeps the plain reason)


def name_cache_origins(client: Any, snap: dict[str, Any]) -> dict[str, Any]:
    """Say which run a cached step's result came from: "reused from run X (step S)", as a rerun
    says, instead of "result reused from the cache" (the runner's lineage knows the producer)."""
    from urllib.parse import quote

    todo = [s for s in snap.get("steps") or [] if s.get("state") == "cached" and s.get("outputs")
            and (s.get("reason") == CACHE_REASON or str(s.get("reason") or "").endswith(" by the cache"))][:MAX_ORIGINS]
    for step in todo:
        path = f"/api/v1/lineage/runs/{quote(snap['id'], safe='')}/steps/{quote(step['name'], safe='')}"
        try:
            arts = client._request("GET", path).json().get("artifacts") or []
        except (NbpipeError, ValueError):
            continue  # the plain reason stays
        prod = (arts[0].get("producer") or {}) if arts else {}
        if prod.get("run") and prod.get("run") != snap["id"]:
            where = f" (step {prod['step']})" if prod.get("step") and prod["step"] != step["name"] else ""
            step["reason"] = f"reused from run {prod['run']}{where} by the cache"
            step["reused_from"] = {"run": prod["run"], "step": prod.get("step", step["name"])}
    return mark_floats(snap)


class RunHandler(NbpipeHandler):
    """``GET /runs/{id}``: the run's snapshot (cached steps name the run they were reused from);
    ``DELETE``: the run is deleted."""

    @tornado.web.authenticated
    async def get(self, run_id: str) -> None:
        try:
            client = await self.blocking(self.connection.client)
            self.finish(await self.blocking(lambda: name_cache_origins(client, client.get_run(run_id))))
        except NbpipeError as exc:
            self.send_nbpipe_error(exc)

    @tornado.web.authenticated
    async def delete(self, run_id: str) -> None:
        """``DELETE /runs/{id}``: the run's records and logs, for good (see :mod:`.storage`)."""
        from .storage import run_storage

        await run_storage(self, "DELETE", run_id)


class CancelHandler(NbpipeHandler):
    """``POST /runs/{id}/cancel``."""

    @tornado.web.authenticated
    async def post(self, run_id: str) -> None:
        try:
            self.finish(await self.blocking(lambda: self.connection.client().cancel(run_id)))
        except NbpipeError as exc:
            self.send_nbpipe_error(exc)


class RerunHandler(NotebookHandler):
    """``POST /runs/{id}/rerun`` ``{from_step?, from_failed?, notebook?}``: the new run's snapshot.

    A run started from a notebook (the panel labels it ``notebook``) re-runs the notebook *as it is
    saved now*: it is exported again (as the panel's Run does), so "Re-run from failed" after a
    fix runs the fixed cell, and steps before the re-run step are reused only if unchanged.
    ``"notebook": false`` re-runs the run's own package instead.
    """

    @tornado.web.authenticated
    async def post(self, run_id: str) -> None:
        try:
            body = self.json_body()
            from_step = body.get("from_step") or None
            if from_step is not None and not isinstance(from_step, str):
                raise NbpipeError("from_step must be a step name")
            from_failed = bool(body.get("from_failed"))
            client = await self.blocking(self.connection.client)
            package = None
            if body.get("notebook", True) is not False:
                package = await self.blocking(self._current_package, client, run_id)
            run = await self.blocking(
                lambda: client.rerun(run_id, from_step, pipeline=package, from_failed=from_failed)
            )
            snapshot = run.last_snapshot  # submit/rerun already returned it
            if snapshot.get("state") in ("succeeded", "failed", "cancelled"):  # a run answered from the cache
                snapshot = await self.blocking(name_cache_origins, client, snapshot)
        except NbpipeError as exc:
            self.send_nbpipe_error(exc)
            return
        self.set_status(201)
        self.finish(mark_floats(snapshot))  # as every snapshot the views get: float parameters named

    def _current_package(self, client: Any, run_id: str) -> bytes | None:
        """The run's notebook exported as it is saved now (None: the run did not come from one here)."""
        from ..export.notebook import pipelines_of, read_notebook
        from .notebook import _PACKAGES

        snap = client.get_run(run_id)
        labels = snap.get("labels") or {}
        rel = labels.get("notebook") or self._kernel_notebook(labels.get("kernel_notebook"))
        if not rel:
            return None
        try:
            path = self.notebook_path({"path": rel})
        except NbpipeError:
            return None  # moved or deleted since: re-run the run's own package
        titles: dict[str, str] = {}
        for cand in pipelines_of(read_notebook(path)):  # a run names `def my_pipe` "my-pipe"; plain
            for name in cand.names:  # cells are "notebook" in a kernel, the notebook's name in export
                titles.setdefault(name, cand.title)
                titles.setdefault(name.replace("_", "-"), cand.title)
        title = titles.get(snap.get("pipeline") or "")
        if title is None and "notebook" not in labels:
            # Started in a kernel as a pipeline the saved notebook does not define by that name (made
            # in a loop, renamed, imported): its own package, never another pipeline of the notebook.
            return None
        return _PACKAGES.export(path, title)

    def _kernel_notebook(self, path: Any) -> str | None:
        """A run submitted from a kernel names its notebook absolutely; relative to the Jupyter root
        (None: not a notebook under this server's root)."""
        if not isinstance(path, str) or not path.endswith(".ipynb"):
            return None
        root = os.path.realpath(self.contents_manager.root_dir)
        real = os.path.realpath(path)
        if os.path.commonpath([root, real]) != root:
            return None
        return os.path.relpath(real, root)


class LogsHandler(NbpipeHandler):
    """``GET /runs/{id}/steps/{step}/logs?attempt=``: the step's log as text."""

    @tornado.web.authenticated
    async def get(self, run_id: str, step: str) -> None:
        attempt_arg = self.get_query_argument("attempt", None)
        try:
            attempt = int(attempt_arg) if attempt_arg else None
            text = await self.blocking(lambda: self.connection.client().logs(run_id, step, attempt))
        except ValueError:
            self.send_error_json(400, "attempt must be an integer")
            return
        except NbpipeError as exc:
            self.send_nbpipe_error(exc)
            return
        self.finish(text, set_content_type="text/plain; charset=utf-8")


class ArtifactHandler(NbpipeHandler):
    """``GET /artifacts/{digest}?mime=``: artifact bytes (image previews), as a known type or a download."""

    @tornado.web.authenticated
    async def get(self, digest: str) -> None:
        mime = self.get_query_argument("mime", "")
        try:
            data = await self.blocking(lambda: self.connection.client().artifact(digest))
        except NbpipeError as exc:
            self.send_nbpipe_error(exc)
            return
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", "sandbox; default-src 'none'; style-src 'unsafe-inline'")
        self.set_header("Cache-Control", "private, max-age=31536000, immutable")  # content-addressed
        self.finish(data, set_content_type=mime if mime in PREVIEW_TYPES else "application/octet-stream")


class EventsHandler(NbpipeHandler):
    """``GET /runs/{id}/events?after=``: the runner's SSE stream of one run, proxied frame by frame."""

    @tornado.web.authenticated
    async def get(self, run_id: str) -> None:
        after = self.get_query_argument("after", None) or self.request.headers.get("Last-Event-ID", "0")
        if not re.fullmatch(r"\d{1,18}", after):
            self.send_error_json(400, "after must be an event id (a non-negative integer)")
            return
        try:
            client = await self.blocking(self.connection.client)
        except NbpipeError as exc:
            self.send_nbpipe_error(exc)
            return
        headers = {"Accept": "text/event-stream"}
        headers.update(client.auth_headers)  # the token, and the hub user behind JupyterHub
        url = f"{client.url}/api/v1/runs/{run_id}/events"
        # The runner sends a keep-alive comment every 15 s, so a read timeout means it is gone.
        timeout = httpx.Timeout(10.0, read=60.0)
        try:
            async with httpx.AsyncClient(timeout=timeout) as http:
                async with http.stream("GET", url, params={"after": after}, headers=headers) as resp:
                    if resp.status_code >= 400:
                        await resp.aread()
                        self.send_error_json(404 if resp.status_code == 404 else 502, _runner_message(resp))
                        return
                    self.set_header("Content-Type", "text/event-stream")  # APIHandler.finish resets it too
                    self.set_header("Cache-Control", "no-cache")
                    self.set_header("X-Accel-Buffering", "no")
                    async for chunk in resp.aiter_raw():
                        self.write(chunk)
                        await self.flush()
        except StreamClosedError:
            return  # the browser went away; leaving the block closes the runner stream
        except httpx.HTTPError as exc:
            if not self._headers_written:
                self.send_nbpipe_error(
                    RunnerError(
                        f"No runner at {client.url} ({exc})", hint="Check the runner URL in the nbpipe panel."
                    )
                )
            return
        self.finish(set_content_type="text/event-stream")


def _runner_message(resp: httpx.Response) -> str:
    try:
        body: Any = resp.json()
        return str(body.get("message") or body.get("detail") or resp.text)
    except ValueError:
        return resp.text or f"The runner answered {resp.status_code}"


def handlers() -> list[tuple[str, type[NbpipeHandler]]]:
    """``(pattern, handler)`` pairs relative to ``{base_url}/nbpipe/api``."""
    from .dashboard import dashboard_handlers
    from .endpoints import endpoint_handlers
    from .notebook import notebook_handlers
    from .storage import storage_handlers

    return [
        ("status", StatusHandler),
        ("settings", SettingsHandler),
        ("runs", RunsHandler),
        (f"runs/{RUN_ID}", RunHandler),
        (f"runs/{RUN_ID}/cancel", CancelHandler),
        (f"runs/{RUN_ID}/rerun", RerunHandler),
        (f"runs/{RUN_ID}/events", EventsHandler),
        (f"runs/{RUN_ID}/steps/{STEP}/logs", LogsHandler),
        (f"artifacts/{DIGEST}", ArtifactHandler),
        *storage_handlers(),
        *notebook_handlers(),
        *dashboard_handlers(),
        *endpoint_handlers(),
    ]
