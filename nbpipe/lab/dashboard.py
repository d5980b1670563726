"""``/nbpipe/api`` routes of the Lab dashboard: the run list, its live stream, compare, lineage.

- ``GET dashboard/runs?experiment=&pipeline=&notebook=&state=&q=&limit=&offset=&facets=&archived=``:
  a page of runs with the total and the filter values (the runner's ``/api/v1/dashboard/runs``;
  ``archived=true``: the archived runs instead); each run names its float parameters
  (``float_params``), as a run's snapshot does.
- ``GET dashboard/events?after=``: every run's events as Server-Sent Events, for a live list
  (log lines are dropped here: a list needs states, not output).
- ``GET dashboard/compare?runs=a,b,c``: parameters and metrics of 1–10 runs, the same columns as
  :func:`nbpipe.compare` (``param.*`` and ``step.output[.key]``), plus which parameters differ
  and each run's float parameters (``float_params``).
- ``GET dashboard/lineage/{run}/{step}?output=``: the runner's lineage of a step's outputs.

Like :mod:`.routes`, everything goes through :class:`nbpipe.Client`: the browser never sees the
runner's address or token. Non-goals: state of its own; charts (the panel draws them).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any
from urllib.parse import quote

import httpx
import tornado.web
from tornado.iostream import StreamClosedError

from ..comparison import metrics_of
from ..errors import NbpipeError, RunnerError
from ..widgets.snapshot import mark_floats
from .base import NbpipeHandler

RUN_ID = r"(?P<run_id>[A-Za-z0-9_.\-]{1,128})"
STEP = r"(?P<step>[A-Za-z0-9_.\-]{1,200})"
MAX_COMPARE = 10
LIST_ARGS = ("experiment", "pipeline", "notebook", "state", "q")
# Events a run list needs; StepLog lines (most of the traffic) are not forwarded.
LIST_EVENTS = frozenset({"RunCreated", "RunStarted", "RunFinished", "StepStarted", "StepRetrying", "StepFinished",
                         "RunStorage"})  # archived, restored or deleted (nbpipe.runner.run_storage)


class DashboardRunsHandler(NbpipeHandler):
    """``GET dashboard/runs``: one page of runs with filters, search, total and facets."""

    @tornado.web.authenticated
    async def get(self) -> None:
        params: dict[str, Any] = {}
        for name in LIST_ARGS:
            value = self.get_query_argument(name, "").strip()
            if value:
                params[name] = value[:200]
        try:
            params["limit"] = max(1, min(int(self.get_query_argument("limit", "50")), 500))
            params["offset"] = max(0, int(self.get_query_argument("offset", "0")))
        except ValueError:
            self.send_error_json(400, "limit and offset must be integers")
            return
        if self.get_query_argument("facets", "") in ("1", "true"):
            params["facets"] = "true"
        if self.get_query_argument("archived", "") in ("1", "true"):
            params["archived"] = "true"  # the archived runs instead of the others
        if "notebook" in params:  # runs a kernel submitted name the notebook by its absolute path
            params["kernel_notebook"] = self._absolute(params["notebook"])
        try:
            client = await self.blocking(self.connection.client)
            body = await self.blocking(lambda: client._request("GET", "/api/v1/dashboard/runs", params=params).json())
        except NbpipeError as exc:
            self.send_nbpipe_error(exc)
            return
        for run in body.get("runs") or []:
            mark_floats(run)  # the rows show c=1.0, not c=1, as the run page does
        if isinstance(body.get("facets"), dict):
            body["facets"]["notebooks"] = self._merge_notebooks(body["facets"])
        self.finish(body)

    def _root(self) -> str:
        return os.path.realpath(self.contents_manager.root_dir)

    def _absolute(self, rel: str) -> list[str]:
        """The paths a kernel of the notebook ``rel`` (relative to the Jupyter root) labels its runs with."""
        root = str(self.contents_manager.root_dir)
        joined = os.path.normpath(os.path.join(root, rel.lstrip("/")))
        return list(dict.fromkeys([joined, os.path.join(self._root(), os.path.relpath(joined, root))]))

    def _merge_notebooks(self, facets: dict[str, Any]) -> list[dict[str, Any]]:
        """The notebook filter's values: panel runs' notebooks and kernel runs' notebooks under this
        server's root (as root-relative paths), counted together, most runs first."""
        counts: dict[str, int] = {}
        for v in facets.get("notebooks") or []:
            counts[v["value"]] = counts.get(v["value"], 0) + int(v["runs"])
        root = self._root()
        for v in facets.pop("kernel_notebooks", None) or []:
            real = os.path.realpath(v["value"])
            if not real.endswith(".ipynb") or os.path.commonpath([root, real]) != root:
                continue
            rel = os.path.relpath(real, root).replace(os.sep, "/")
            counts[rel] = counts.get(rel, 0) + int(v["runs"])
        return [{"value": k, "runs": n} for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


class DashboardEventsHandler(NbpipeHandler):
    """``GET dashboard/events?after=``: all runs' state events, proxied as SSE frame by frame."""

    @tornado.web.authenticated
    async def get(self) -> None:
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
        timeout = httpx.Timeout(10.0, read=60.0)  # the runner sends a keep-alive every 15 s
        buffer = ""
        try:
            async with httpx.AsyncClient(timeout=timeout) as http:
                async with http.stream("GET", f"{client.url}/api/v1/events", params={"after": after},
                                       headers=headers) as resp:
                    if resp.status_code >= 400:
                        await resp.aread()
                        self.send_error_json(502, f"The runner refused the event stream ({resp.status_code})")
                        return
                    self.set_header("Content-Type", "text/event-stream")
                    self.set_header("Cache-Control", "no-cache")
                    self.set_header("X-Accel-Buffering", "no")
                    self.write(": connected\n\n")  # lets the browser know the stream is open
                    await self.flush()
                    async for text in resp.aiter_text():
                        buffer += text.replace("\r\n", "\n")
                        *frames, buffer = buffer.split("\n\n")
                        out = [f for f in frames if _keep(f)]
                        if out:
                            self.write("".join(f + "\n\n" for f in out))
                            await self.flush()
        except StreamClosedError:
            return
        except httpx.HTTPError as exc:
            if not self._headers_written:
                self.send_nbpipe_error(RunnerError(f"No runner at {client.url} ({exc})",
                                                   hint="Check the runner URL in the nbpipe panel."))
            return
        self.finish(set_content_type="text/event-stream")


def _keep(frame: str) -> bool:
    """Forward keep-alives and the events a run list uses."""
    for line in frame.split("\n"):
        if line.startswith("event:"):
            return line[6:].strip() in LIST_EVENTS
    return frame.startswith(":")


def compare_table(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs side by side: parameters (with the ones that differ) and metrics, as ``nbpipe.compare``;
    each run names its float parameters (``float_params``, as a run's snapshot does)."""
    runs = []
    for snap in snapshots:
        runs.append({
            "id": snap["id"], "name": snap.get("name", ""), "pipeline": snap.get("pipeline", ""),
            "experiment": snap.get("experiment", ""), "state": snap.get("state", ""),
            "duration": snap.get("duration"), "created_at": snap.get("created_at"),
            "params": snap.get("params") or {}, "metrics": metrics_of(snap),
        })
        mark_floats(runs[-1])  # float_params: the table shows threshold 1.0, not 1, as the run lists do
    params = sorted({k for r in runs for k in r["params"]})
    missing = object()
    differ = [p for p in params
              if len({json.dumps(r["params"].get(p, missing), sort_keys=True, default=str) for r in runs}) > 1]
    metrics = sorted({k for r in runs for k in r["metrics"]})
    return {"runs": runs, "params": params, "differ": differ, "metrics": metrics}


class CompareHandler(NbpipeHandler):
    """``GET dashboard/compare?runs=a,b,c``: parameters and metrics of runs side by side."""

    @tornado.web.authenticated
    async def get(self) -> None:
        ids = [r for r in self.get_query_argument("runs", "").split(",") if r.strip()]
        ids = list(dict.fromkeys(r.strip() for r in ids))
        if not ids or len(ids) > MAX_COMPARE:
            self.send_error_json(400, f"Compare takes 1 to {MAX_COMPARE} runs; got {len(ids)}",
                                 hint="Select between 2 and 10 runs in the run list.")
            return
        if any(not re.fullmatch(r"[A-Za-z0-9_.\-]{1,128}", r) for r in ids):
            self.send_error_json(400, "runs must be run ids separated by commas")
            return
        try:
            client = await self.blocking(self.connection.client)
            snaps = await self.blocking(lambda: [client.get_run(r) for r in ids])
        except NbpipeError as exc:
            self.send_nbpipe_error(exc)
            return
        self.finish(compare_table(snaps))


class LineageHandler(NbpipeHandler):
    """``GET dashboard/lineage/{run}/{step}?output=``: producer, inputs, code digest and consumers."""

    @tornado.web.authenticated
    async def get(self, run_id: str, step: str) -> None:
        output = self.get_query_argument("output", None)
        params = {"output": output} if output else {}
        path = f"/api/v1/lineage/runs/{quote(run_id, safe='')}/steps/{quote(step, safe='')}"
        try:
            client = await self.blocking(self.connection.client)
            body = await self.blocking(lambda: client._request("GET", path, params=params).json())
        except NbpipeError as exc:
            if isinstance(exc, RunnerError) and ("has no output" in exc.message or "no outputs" in exc.message):
                self.send_error_json(404, exc.message, exc.hint)
                return
            self.send_nbpipe_error(exc)
            return
        self.finish(body)


def dashboard_handlers() -> list[tuple[str, type[NbpipeHandler]]]:
    """``(pattern, handler)`` pairs relative to ``{base_url}/nbpipe/api``."""
    return [
        ("dashboard/runs", DashboardRunsHandler),
        ("dashboard/events", DashboardEventsHandler),
        ("dashboard/compare", CompareHandler),
        (f"dashboard/lineage/{RUN_ID}/{STEP}", LineageHandler),
    ]
