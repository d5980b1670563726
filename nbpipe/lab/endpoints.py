"""``/nbpipe/api`` routes of the Lab's Endpoints page: list, test request, rollback, delete.

- ``GET endpoints``: the runner's endpoints with their versions and states;
- ``POST endpoints/{name}/infer`` ``{"request": <v2 request or an array>, "version"?}``: send a
  test request to the endpoint's model server and return its v2 answer; the server's own 4xx/5xx
  comes back with its status and message (a crashing predict's traceback in ``hint``);
- ``POST endpoints/{name}/rollback`` ``{"version"?}``; ``DELETE endpoints/{name}[?version=]``.

The endpoint's token (the ``token`` field of the runner's endpoint JSON) stays in this server.

Like the other routes, everything goes through :class:`nbpipe.Client` and
:class:`nbpipe.serving.Endpoint` in the server: the browser never sees the runner's or the model
server's address or token. Non-goals: deploying from the browser (a model comes from a kernel or a run).
"""

from __future__ import annotations

from typing import Any

import tornado.web

from ..errors import NbpipeError
from .base import NbpipeHandler

NAME = r"(?P<name>[a-z0-9][a-z0-9-]{0,62})"


class NoEndpoint(NbpipeError):
    pass


def _endpoint(client: Any, name: str) -> Any:
    from ..serving import Endpoint

    resp = client._http.get(f"/api/v1/endpoints/{name}")
    if resp.status_code == 404:
        raise NoEndpoint(f"No endpoint {name!r}", hint="It may have been deleted: reload the list.")
    return Endpoint(client._request("GET", f"/api/v1/endpoints/{name}").json(), client)


def _public(info: dict[str, Any]) -> dict[str, Any]:
    """An endpoint's JSON for the browser: without its token (only this server calls the model server)."""
    return {k: v for k, v in info.items() if k != "token"}


def _request_body(raw: Any) -> dict[str, Any]:
    """A v2 request as given, or an array sent as one tensor ``input-0``."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, list):
        from ..serving.protocol import tensor

        try:
            return {"inputs": [tensor("input-0", raw)]}
        except (TypeError, ValueError) as exc:
            raise NbpipeError(f"The test input cannot be sent as a tensor: {exc}",
                              hint="Give a JSON array of numbers (nested for 2-D), or a v2 request "
                                   '{"inputs": [{"name", "shape", "datatype", "data"}]}.') from None
    raise NbpipeError("The test request must be a JSON array or a v2 request object",
                      hint='e.g. [[5.1, 3.5, 1.4, 0.2]] or {"inputs": [...]}')


class EndpointsHandler(NbpipeHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        try:
            client = await self.blocking(self.connection.client)
            body = await self.blocking(lambda: client._request("GET", "/api/v1/endpoints").json())
        except NbpipeError as exc:
            self.send_nbpipe_error(exc)
            return
        self.finish({"endpoints": [_public(e) for e in body]})


class InferHandler(NbpipeHandler):
    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        from ..serving import EndpointError

        try:
            body = self.json_body()
            version = body.get("version") or None
            if version is not None and not isinstance(version, str):
                raise NbpipeError("version must be a string")
            request = _request_body(body.get("request"))
            client = await self.blocking(self.connection.client)
            ep = await self.blocking(_endpoint, client, name)
            answer = await self.blocking(ep.infer, request, version)
        except EndpointError as exc:
            self.send_error_json(exc.status if exc.status < 500 else 502, exc.headline, exc.traceback)
            return
        except NoEndpoint as exc:
            self.send_error_json(404, exc.message, exc.hint)
            return
        except NbpipeError as exc:
            self.send_nbpipe_error(exc)
            return
        self.finish(answer)


class RollbackHandler(NbpipeHandler):
    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        try:
            version = self.json_body().get("version") or None
            client = await self.blocking(self.connection.client)
            ep = await self.blocking(_endpoint, client, name)
            await self.blocking(ep.rollback, version)
        except NbpipeError as exc:
            self.send_nbpipe_error(exc)
            return
        self.finish(_public(ep.info))


class EndpointHandler(NbpipeHandler):
    @tornado.web.authenticated
    async def delete(self, name: str) -> None:
        version = self.get_query_argument("version", "") or None
        try:
            client = await self.blocking(self.connection.client)
            ep = await self.blocking(_endpoint, client, name)
            if version:
                await self.blocking(ep.delete_version, version)
                self.finish(_public(ep.info))
                return
            await self.blocking(ep.delete)
        except NbpipeError as exc:
            self.send_nbpipe_error(exc)
            return
        self.finish({"deleted": name})


def endpoint_handlers() -> list[tuple[str, type[NbpipeHandler]]]:
    return [
        ("endpoints", EndpointsHandler),
        (f"endpoints/{NAME}", EndpointHandler),
        (f"endpoints/{NAME}/infer", InferHandler),
        (f"endpoints/{NAME}/rollback", RollbackHandler),
    ]
