"""HTTP routes of model-serving endpoints (``/api/v1/endpoints``); the endpoints themselves are
:class:`nbpipe.runner.endpoints.Endpoints`."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Callable

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, Field

from ..serving.bundle import MAX_BUNDLE_BYTES
from .api_models import Endpoint, EndpointDeleted, errors
from .endpoints import EndpointError, Endpoints, check_name


class RollbackRequest(BaseModel):
    version: str | None = Field(default=None, description="the version to serve (default: the one before)")


def endpoints_router(get: Callable[[], Endpoints], error: Callable[..., Any]) -> APIRouter:
    from ..errors import NbpipeError

    r = APIRouter(prefix="/api/v1/endpoints", tags=["endpoints"])

    def fail(exc: EndpointError) -> Any:
        return error(exc.status, NbpipeError(str(exc), hint=exc.hint))

    @r.get("", description="Model-serving endpoints, their versions and where they listen.",
           responses={200: {"model": list[Endpoint]}})
    async def list_endpoints() -> Any:
        return await asyncio.to_thread(get().list)

    @r.get("/{name}", responses={200: {"model": Endpoint}, **errors(400, 404)})
    async def get_endpoint(name: str) -> Any:
        try:
            return get().get(name)
        except EndpointError as exc:
            return fail(exc)

    @r.put("/{name}/versions", status_code=201, description="Deploy a bundle (the request body, as built by "
           "nbpipe.serve) as a new version and serve it by default.",
           responses={201: {"model": Endpoint}, **errors(400, 403, 409, 413)},
           openapi_extra={"requestBody": {"content": {"application/zip": {"schema": {"type": "string",
                                                                                      "format": "binary"}}}}})
    async def deploy(name: str, request: Request, version: str | None = Query(None, max_length=64),
                     description: str = Query("", max_length=2000)) -> Any:
        import tempfile

        path = None
        try:
            check_name(name)
            length = int(request.headers.get("content-length") or 0)
            if length > MAX_BUNDLE_BYTES:
                raise EndpointError(413, f"The bundle is {length / 1e9:.1f} GB, over the 2 GB limit")
            # Streamed to a file, never held whole: a model bundle may be hundreds of MiB.
            fd, path = tempfile.mkstemp(dir=get().upload_dir(), prefix="bundle-")
            size = 0
            with os.fdopen(fd, "wb") as fh:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > MAX_BUNDLE_BYTES:
                        raise EndpointError(413, "The bundle is over the 2 GB limit")
                    fh.write(chunk)
            return await get().deploy(name, Path(path), version, description)
        except EndpointError as exc:
            return fail(exc)
        finally:
            if path is not None and os.path.exists(path):
                os.unlink(path)

    @r.post("/{name}/rollback", responses={200: {"model": Endpoint}, **errors(400, 404, 409)})
    async def rollback(name: str, req: RollbackRequest = Body(default_factory=RollbackRequest)) -> Any:
        try:
            return await get().rollback(name, req.version)
        except EndpointError as exc:
            return fail(exc)

    @r.delete("/{name}/versions/{version}", responses={200: {"model": Endpoint}, **errors(400, 404, 409)})
    async def delete_version(name: str, version: str) -> Any:
        try:
            return await get().delete_version(name, version)
        except EndpointError as exc:
            return fail(exc)

    @r.delete("/{name}", responses={200: {"model": EndpointDeleted}, **errors(400, 404)})
    async def delete(name: str) -> Any:
        try:
            await get().delete(name)
            return {"deleted": name}
        except EndpointError as exc:
            return fail(exc)

    return r
