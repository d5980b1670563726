"""``/nbpipe/api`` routes that archive, restore and delete runs (the runner's run storage routes).

- ``POST runs/{id}/archive`` and ``POST runs/{id}/unarchive``: the runner's answer
  (``{id, archived, archived_at, state}``).
- ``DELETE runs/{id}`` (served by :class:`~nbpipe.lab.routes.RunHandler`): ``{id, deleted, state}``.

The runner's refusals keep their status and words: 409 for a run still queued or running (its
message and the hint to cancel it first, which the Runs page shows as they are), 404 for a run that
does not exist or is another profile's. Non-goals: bulk calls (the Lab loops over the ticked runs,
as the runner's own docs say a client does), any state of its own.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import tornado.web

from ..errors import NbpipeError
from .base import NbpipeHandler

RUN_ID = r"(?P<run_id>[A-Za-z0-9_.\-]{1,128})"
REFUSALS = (404, 409)  # answered with the runner's own message and hint


def call_runner(client: Any, method: str, path: str) -> tuple[int, dict[str, Any]]:
    """``(status, body)`` of one run storage call; the runner's 404/409 come back as ``{message, hint}``.

    Other failures raise as :class:`nbpipe.Client` raises them (no runner, a refused token...).
    """
    try:
        resp = client._http.request(method, path)  # noqa: SLF001 - the status and hint, not only the text
    except httpx.HTTPError:
        # Not reached (a restarted embedded runner moves): the client's own call finds it again or
        # raises its clear error. Archive, restore and delete are safe to send twice.
        return 200, client._request(method, path).json()  # noqa: SLF001
    if resp.status_code in REFUSALS:
        try:
            body = resp.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        message = str(body.get("message") or body.get("error") or body.get("detail")
                      or f"The runner answered {resp.status_code}")
        return resp.status_code, {"message": message, "hint": str(body.get("hint") or ""), "cell": None}
    if resp.status_code >= 400:
        client._refused(resp.status_code, resp.text)  # noqa: SLF001 - raises RunnerError
    return resp.status_code, resp.json()


async def run_storage(handler: NbpipeHandler, method: str, run_id: str, verb: str = "") -> None:
    """Send ``method /api/v1/runs/{run_id}[/verb]`` to the runner and answer with what it said."""
    path = f"/api/v1/runs/{quote(run_id, safe='')}" + (f"/{verb}" if verb else "")
    try:
        client = await handler.blocking(handler.connection.client)
        status, body = await handler.blocking(call_runner, client, method, path)
    except NbpipeError as exc:
        handler.send_nbpipe_error(exc)
        return
    handler.set_status(status)
    handler.finish(body)


class ArchiveHandler(NbpipeHandler):
    """``POST runs/{id}/archive``: the run leaves the run lists; it stays whole."""

    @tornado.web.authenticated
    async def post(self, run_id: str) -> None:
        await run_storage(self, "POST", run_id, "archive")


class UnarchiveHandler(NbpipeHandler):
    """``POST runs/{id}/unarchive``: the run is back in the run lists."""

    @tornado.web.authenticated
    async def post(self, run_id: str) -> None:
        await run_storage(self, "POST", run_id, "unarchive")


def storage_handlers() -> list[tuple[str, type[NbpipeHandler]]]:
    """``(pattern, handler)`` pairs relative to ``{base_url}/nbpipe/api`` (DELETE is RunHandler's)."""
    return [(f"runs/{RUN_ID}/archive", ArchiveHandler), (f"runs/{RUN_ID}/unarchive", UnarchiveHandler)]
