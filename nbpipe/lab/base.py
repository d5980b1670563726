"""The base handler of every ``/nbpipe/api`` route: auth, JSON bodies and readable errors.

Errors leave as JSON ``{"message", "hint", "cell"}`` with a status that says whose fault it
is (400 the request, 404 unknown run, 422 a broken notebook, 502 the runner), so the panel can show
them as they are. Non-goals: retry logic and caching (the runner is the source of truth).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, TypeVar
from collections.abc import Callable

from jupyter_server.base.handlers import APIHandler

from ..errors import NbpipeError, RunnerError
from .connection import RunnerConnection

T = TypeVar("T")


def error_status(exc: NbpipeError) -> int:
    """HTTP status for an nbpipe error."""
    if getattr(exc, "cell", None) is not None or type(exc).__name__ == "ExportError":
        return 422
    if isinstance(exc, RunnerError):
        text = exc.message
        if text.startswith("No run ") or "has no step" in text:
            return 404
        if text.startswith(("No runner at", "The runner at", "The embedded nbpipe runner", "Lost the event")):
            return 502
        return 400
    return 400


class NbpipeHandler(APIHandler):
    """Shared plumbing: the runner connection, JSON in/out, errors as ``[nbpipe]``-ready JSON."""

    @property
    def connection(self) -> RunnerConnection:
        return self.settings["nbpipe.connection"]  # type: ignore[no-any-return]

    async def blocking(self, func: Callable[..., T], *args: Any) -> T:
        """Run a blocking call (the synchronous client, an export) in a worker thread."""
        return await asyncio.to_thread(func, *args)

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object (empty body: ``{}``)."""
        if not self.request.body:
            return {}
        try:
            data = json.loads(self.request.body)
        except ValueError as exc:
            raise NbpipeError(f"The request body is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise NbpipeError("The request body must be a JSON object")
        return data

    def send_error_json(self, status: int, message: str, hint: str = "", cell: int | None = None) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message, "hint": hint, "cell": cell}))

    def send_nbpipe_error(self, exc: NbpipeError) -> None:
        # ``message`` already joins headline, detail and hint; ``hint`` is sent too so the panel can
        # show the fix on its own line.
        self.send_error_json(error_status(exc), exc.message, exc.hint, getattr(exc, "cell", None))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, NbpipeError):
            self.log.info("nbpipe: %s", value.message)  # an expected, explained failure: no traceback
            return
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        exc = exc_info[1] if exc_info else None
        if isinstance(exc, NbpipeError):
            self.send_nbpipe_error(exc)
            return
        super().write_error(status_code, **kwargs)
