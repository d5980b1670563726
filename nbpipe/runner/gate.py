"""Who may talk to the runner at all: the Host and Origin checks (as Jupyter Server's) and the
plain ASGI middleware every HTTP request passes through (see ``server.create_app``'s ``gate``)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from .config import LOOPBACK_NAMES, is_loopback


OPEN_PATHS = ("/api/v1/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _hostname(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def check_origin(request: Request, local_only: bool, extra_hosts: set[str]) -> str:
    """Why a request must be refused for its Host or Origin, or "" (see Jupyter Server's checks)."""
    allowed = set(LOOPBACK_NAMES) | extra_hosts
    if local_only:
        host = _hostname(request.headers.get("host", ""))
        if host not in allowed and not is_loopback(host):
            return f"Host {host[:100]!r} is not this runner (a DNS-rebinding request?)"
    origin = request.headers.get("origin")
    site = request.headers.get("sec-fetch-site", "")
    if origin is not None:
        from urllib.parse import urlsplit

        try:
            o = urlsplit(origin)
            o_host, o_port = (o.hostname or ""), o.port
        except ValueError:
            o_host, o_port = "", None
        own = request.headers.get("host", "").strip().lower()
        shown = f"[{o_host}]" if ":" in o_host else o_host
        same = bool(o_host) and (f"{shown}:{o_port}" == own if o_port else shown == own)
        if not same and not (o_host in extra_hosts):
            return f"Cross-origin request from {origin[:100]!r} refused"
    elif site == "cross-site" and request.method not in SAFE_METHODS:
        return "Cross-site request refused"
    return ""


class Gate:
    """Plain ASGI middleware: every HTTP request goes through ``check`` (see ``create_app``'s ``gate``)."""

    def __init__(self, app: Any, check: Any) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # lifespan
            return await self.app(scope, receive, send)  # type: ignore[no-any-return]
        await self.check(scope, receive, send, self.app)
