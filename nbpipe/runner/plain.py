"""The runner's hottest route, ``POST /api/v1/runs``, served as plain ASGI behind the gate.

FastAPI's routing, dependency solving, body parsing and exception middleware cost ~0.4 ms of a
submit whose run is answered in ~2 ms (a fully cached re-run, issue 14). The gate (token, Host and
Origin checks, profile, audit; see ``server.create_app``) runs exactly as for every other route,
then hands a well-formed JSON submit to the same handler with the same pydantic model; anything
else — another content type, a body that is not JSON or does not validate — goes on to the FastAPI
route with its body replayed, so errors (the documented 422 shape) are FastAPI's as before.
Non-goals: any other route; the OpenAPI document (the FastAPI route stays there).
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from pydantic import ValidationError


def _is_json(scope: Any) -> bool:
    for name, value in scope.get("headers") or ():
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return False  # FastAPI reads a body without a content type as JSON: left to it (nobody sends that)


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def again() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


def json_route(model: Any, handler: Callable[[Any], Awaitable[Any]],
               on_error: Callable[[Exception], Awaitable[Any]]) -> Callable[..., Awaitable[None]]:
    """An ASGI callable ``(scope, receive, send, fallback)``: ``handler(model(body))``'s response, or
    the ``fallback`` app's for a request it does not take (see the module's docstring)."""

    async def route(scope: Any, receive: Any, send: Any, fallback: Any) -> None:
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away before sending its body
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        req = None
        if _is_json(scope):
            try:
                req = model.model_validate(json.loads(body))  # python mode, as FastAPI validates a body
            except (ValueError, ValidationError):  # FastAPI says what is wrong, in its own words
                req = None
        if req is None:
            return await fallback(scope, _replay(body, receive), send)  # type: ignore[no-any-return]
        try:
            response = await handler(req)
        except Exception as exc:  # what the app's exception handlers answer for it
            response = await on_error(exc)
        await response(scope, receive, send)

    return route
