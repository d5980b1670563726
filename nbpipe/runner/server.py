"""The runner's HTTP API (FastAPI; OpenAPI at ``/openapi.json``, docs at ``/docs``).

Binds to 127.0.0.1 by default; any other address requires a token, checked on every request
(``Authorization: Bearer …``, or ``?token=`` for EventSource clients). Events stream as
Server-Sent Events with resumable ids (``Last-Event-ID`` or ``?after=``).
Non-goals: scheduling logic (:mod:`.scheduler`), unpickling anything.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
import socket
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from .. import __version__
from .._embedded import runtime_dir, write_runtime_file
from ..errors import NbpipeError, PackageError
from ..package import MAX_PACKAGE_BYTES
from ..stores import open_store
from . import audit, db, plain, profiles, views
from .auth import Identities
from .api_models import (MAX_INT, CancelResult, Experiment, Health, PackageInfo, RunRequest, RunSnapshot,
                         RunSummary, errors)
from .config import RunnerConfig, is_loopback
from .gate import OPEN_PATHS, SAFE_METHODS, Gate, check_origin  # noqa: F401 - SAFE_METHODS: tests
from .schedule_routes import schedule_router
from .scheduler import Scheduler
from .schedules import Schedules

log = logging.getLogger("nbpipe.runner")
MIME = {"png": "image/png", "json": "application/json"}
# Seconds an event stream stays silent before the runner says it is still there (an SSE comment):
# followers use that moment to ask /health whether the loop still schedules.
SSE_KEEPALIVE = float(os.environ.get("NBPIPE_SSE_KEEPALIVE", "15") or 15)
GRACEFUL_STOP = 2.0  # seconds open responses get to finish once the runner is told to stop


class RerunRequest(BaseModel):
    from_step: str | None = Field(default=None, description="re-execute this step and everything downstream "
                                  "(never from the cache); reuse the other steps' outputs")
    package: str | None = Field(default=None, description="sha256 digest of an uploaded package to run instead "
                                "(e.g. with the user's fix); a step is reused only if unchanged in it")


def _error(status: int, exc: NbpipeError | str) -> JSONResponse:
    if isinstance(exc, NbpipeError):
        body = {"error": exc.headline, "detail": exc.detail, "hint": exc.hint, "message": exc.message}
    else:
        body = {"error": exc, "detail": "", "hint": "", "message": exc}
    return JSONResponse(body, status_code=status)


def _json(snapshot: Any, status: int = 200) -> JSONResponse:
    """A snapshot as it is (plain JSON from the database or memory): FastAPI's ``jsonable_encoder``
    walk of a returned dict cost ~1 ms for a 10-step run, more than building it."""
    return JSONResponse(snapshot, status_code=status)


def create_app(config: RunnerConfig, on_ready: Any = None, on_stop: Any = None) -> FastAPI:
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(config.data_dir, 0o700)  # runs, logs, artifacts and the database are the owner's only
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from .. import executors

        engine = db.connect(config.db_url, background_checkpoints=True)
        store = open_store(config.store_config)
        executor = executors.get(config.executor)(**config.executor_options)
        sched = Scheduler(engine, store, executor, config.data_dir, config.effective_parallelism)
        executor.on_event = sched._emit  # executors may report more (a distributed step's worker states)
        await sched.start()
        schedules = Schedules(engine, sched)
        await schedules.start()
        from .endpoints import Endpoints  # model-serving endpoints (their own module)

        endpoints = Endpoints(engine, store, config.data_dir, token, sched)
        await endpoints.start()
        state.update(engine=engine, store=store, scheduler=sched, schedules=schedules, endpoints=endpoints)
        if on_ready is not None:
            on_ready()
        try:
            yield
        finally:
            if on_stop is not None:
                on_stop()
            await endpoints.close()
            await schedules.close()
            await sched.close()
            engine.dispose()

    app = FastAPI(title="nbpipe runner", version=__version__, lifespan=lifespan,
                  description="Runs nbpipe pipeline packages: runs, steps, logs, artifacts and a live event stream.")

    def sched() -> Scheduler:
        return state["scheduler"]  # type: ignore[no-any-return]

    token = config.ensure_token()
    identities = Identities(token, os.environ.get("NBPIPE_USERS_FILE") or None)  # read now: a bad file stops start
    local_only = is_loopback(config.host)
    extra_hosts = {h.strip().lower() for h in os.environ.get("NBPIPE_ALLOW_HOSTS", "").split(",") if h.strip()}

    async def gate(scope: Any, receive: Any, send: Any, inner: Any) -> None:
        # Like Jupyter Server: a loopback runner still checks Host (DNS rebinding) and Origin
        # (a web page's cross-site request), and every request needs the token. Plain ASGI (not
        # @app.middleware, whose BaseHTTPMiddleware puts a task group and memory streams around
        # every request and every SSE chunk): the same checks, ~1 ms less per request.
        request = Request(scope)
        if "\x00" in request.url.path or b"%00" in scope.get("query_string", b"").lower():
            return await _error(400, NbpipeError("The request's path or query contains a NUL character"))(
                scope, receive, send)
        refused = check_origin(request, local_only, extra_hosts)
        if refused:
            return await _error(403, NbpipeError(refused, hint="Browsers cannot talk to the runner directly; "
                                                 "use the SDK, the CLI or the JupyterLab extension."))(scope, receive, send)
        if request.url.path in OPEN_PATHS:
            return await inner(scope, receive, send)  # type: ignore[no-any-return]
        user = identities.resolve(request.headers, request.query_params)
        if user is None:
            return await _error(401, NbpipeError("This nbpipe runner needs a token",
                                                 hint="Pass it as 'Authorization: Bearer <token>' (the SDK and CLI "
                                                      "read a local runner's token from its 0600 runtime file)."))(
                scope, receive, send)
        try:  # who it is and which profile a submit goes to (see .profiles), for this request
            profile = profiles.begin(user, request.headers.get(profiles.PROFILE_HEADER)
                                     or request.query_params.get("profile") or None)
        except NbpipeError as exc:
            return await _error(403, exc)(scope, receive, send)
        if "engine" in state:
            hidden = profiles.guard(state["engine"], app, request.url.path)
            if hidden:  # another profile's object: the same answer as a missing one
                return await _error(404, hidden)(scope, receive, send)
        if request.method not in audit.CHANGES or "engine" not in state:
            return await inner(scope, receive, send)  # type: ignore[no-any-return]
        if scope["path"] == "/api/v1/runs" and request.method == "POST":  # the hot route, without FastAPI
            inner = functools.partial(submit_route, fallback=inner)
        # A change: its audit row is written before the client sees the answer (held until then).
        held: list[Any] = []
        status = [500]

        async def hold(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            held.append(message)

        await inner(scope, receive, hold)
        if status[0] < 400:
            noted = profiles.noted()
            if not noted.pop("audited", False):  # else the handler wrote it in its own transaction (a submit)
                route = scope.get("route")  # set by the router: one of the app's own routes needs no OpenAPI
                if route is not None and isinstance(route, APIRoute) and route in app.router.routes:
                    template, params = route.path_format, {k: str(v) for k, v in scope.get("path_params", {}).items()}
                else:  # an included router's: matched on the OpenAPI paths (built on first use, ~0.1 s)
                    template, params = profiles.match_route(app, request.url.path) or (request.url.path, {})
                await asyncio.to_thread(audit.record, state["engine"], user,
                                        audit.action_for(request.method, template),
                                        noted.pop("profile", profile), noted.pop("target", "/".join(params.values())),
                                        noted)
        for message in held:
            await send(message)

    app.add_middleware(Gate, check=gate)

    async def submit_error(exc: Exception) -> JSONResponse:
        return _error(400, exc) if isinstance(exc, NbpipeError) else await internal_error(None, exc)  # type: ignore[arg-type]

    @app.exception_handler(NbpipeError)
    async def nbpipe_error(_: Request, exc: NbpipeError) -> JSONResponse:
        return _error(400, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        text = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail, default=str)
        return JSONResponse({"error": text, "detail": "", "hint": "", "message": text}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        from fastapi.encoders import jsonable_encoder

        problems = jsonable_encoder(exc.errors(), custom_encoder={Exception: str})
        first = problems[0] if problems else {}
        where = ".".join(str(x) for x in first.get("loc", []))
        text = f"Invalid request: {where}: {first.get('msg', '')}" if first else "Invalid request"
        # the shape FastAPI documents for 422 (detail: [...]) plus the runner's own error fields
        return JSONResponse({"error": text, "message": text, "hint": "", "detail": problems}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        from .failures import _disk_full, internal_reason

        if _disk_full(exc, config.data_dir):  # 507 Insufficient Storage: say what to do
            return _error(507, NbpipeError(internal_reason(exc, config.data_dir)))
        log.exception("internal error")
        return _error(500, NbpipeError(internal_reason(exc, config.data_dir)))

    @app.get("/api/v1/health", responses={200: {"model": Health}, **errors(503)})
    async def health() -> Any:
        s = sched()
        loop = s.loop_health()
        body = {"status": "ok" if loop["ticking"] else "stalled", "version": __version__, "executor": s.executor.name,
                "store": s.store.config().get("type"), "active_runs": len(s.runs), "running_steps": s.active,
                "parallelism": s.parallelism, "pid": os.getpid(), "loop": loop}
        if loop["ticking"]:
            return body
        # 503: a process supervisor (or a Kubernetes liveness probe) should restart this runner
        body.update(error="This nbpipe runner is not scheduling runs", message=f"This nbpipe runner is not "
                    f"scheduling runs: {loop['problem']}", detail=loop["problem"],
                    hint="Restart it (nbpipe runner stop, then start); its runs resume from the database.")
        return JSONResponse(body, status_code=503)

    @app.head("/api/v1/packages/{digest}", responses={200: {"description": "The runner has this package"},
                                                      404: {"description": "It does not: upload it"}})
    async def has_package(digest: str) -> Response:
        return Response(status_code=200 if sched().package_spec(digest) is not None else 404)

    @app.put("/api/v1/packages/{digest}", status_code=201, responses={201: {"model": PackageInfo},
                                                                     **errors(400, 413)})
    async def put_package(digest: str, request: Request) -> Any:
        if not _is_digest(digest):
            return _error(400, "Not a sha256 digest")
        try:
            length = int(request.headers.get("content-length") or 0)
        except ValueError:
            length = 0
        if length > MAX_PACKAGE_BYTES:
            return _error(413, PackageError(f"The package is {length / 1e6:.1f} MB, over the "
                                            f"{MAX_PACKAGE_BYTES / 1e6:.0f} MB limit"))
        import tempfile

        # Streamed to a file (hashed on the way), never held whole in memory.
        fd, path = tempfile.mkstemp(dir=sched().upload_dir(), prefix="upload-")
        try:
            h, size = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as fh:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > MAX_PACKAGE_BYTES:
                        return _error(413, PackageError(f"The package is over the {MAX_PACKAGE_BYTES / 1e6:.0f} MB limit"))
                    h.update(chunk)
                    fh.write(chunk)
            actual = h.hexdigest()
            if actual != digest:
                return _error(400, PackageError("The uploaded package does not match its digest",
                                                f"expected {digest[:12]}…, got {actual[:12]}…", "Upload it again."))
            try:
                return await asyncio.to_thread(sched().add_package_file, path, digest)
            except PackageError as exc:
                return _error(400, exc)
        finally:
            if os.path.exists(path):
                os.unlink(path)

    @app.post("/api/v1/runs", status_code=201, responses={201: {"model": RunSnapshot}, **errors(400, 404)})
    async def create_run(req: RunRequest) -> Any:
        try:
            with sched().transaction() as conn:  # the run's rows, first events and audit row commit together
                profile = profiles.submit_profile()
                run_id = sched().create_run(req.package, req.params, req.experiment, req.name, req.labels,
                                            profile=profile)
                caller = profiles.current()
                if caller is not None:  # recorded here, not by the middleware's own transaction after
                    audit.record(state["engine"], caller, "submit", profile, run_id, conn=conn)
                    profiles.note(audited=True)
        except PackageError as exc:
            return _error(404, exc)
        profiles.note(target=run_id)
        snap = sched().cached_snapshot(run_id)  # a fully cached run: written final, answered from memory
        if snap is None:
            sched().advance(run_id)  # cached steps resolve now: a fully cached run is answered final
            snap = views.snapshot(state["engine"], run_id)
        return _json(snap, 201)

    submit_route = plain.json_route(RunRequest, create_run, submit_error)  # see .plain

    @app.get("/api/v1/runs", responses={200: {"model": list[RunSummary]}})
    async def list_runs(experiment: str | None = Query(None, max_length=200),
                        state_: str | None = Query(None, alias="state", max_length=20),
                        pipeline: str | None = Query(None, max_length=200), limit: int = Query(50, ge=1, le=1000),
                        offset: int = Query(0, ge=0, le=MAX_INT),
                        archived: bool = Query(False, description="archived runs instead of the others")) -> Any:
        return views.list_runs(state["engine"], experiment, state_, pipeline, limit, offset, archived)

    @app.get("/api/v1/experiments", responses={200: {"model": list[Experiment]}})
    async def experiments() -> Any:
        import sqlalchemy as sa

        with state["engine"].connect() as conn:
            rows = conn.execute(sa.select(db.runs.c.experiment, sa.func.count(), sa.func.max(db.runs.c.created_at))
                                .where(*profiles.clauses(db.runs.c.profile), views.archived_clause(False))
                                .group_by(db.runs.c.experiment)).all()
        return [{"name": r[0], "runs": r[1], "last_run_at": r[2]} for r in rows]

    @app.get("/api/v1/runs/{run_id}", responses={200: {"model": RunSnapshot}, **errors(404)})
    async def get_run(run_id: str) -> Any:
        snap = views.snapshot(state["engine"], run_id)
        if snap is None:
            return _error(404, f"No run {run_id}")
        return _json(snap)

    @app.post("/api/v1/runs/{run_id}/cancel", responses={200: {"model": CancelResult}, **errors(404)})
    async def cancel_run(run_id: str) -> Any:
        snap = views.snapshot(state["engine"], run_id)
        if snap is None:
            return _error(404, f"No run {run_id}")
        return {"id": run_id, "cancelling": sched().cancel(run_id), "state": snap["state"]}

    @app.post("/api/v1/runs/{run_id}/rerun", status_code=201,
              responses={201: {"model": RunSnapshot}, **errors(400, 404)})
    async def rerun(run_id: str, req: RerunRequest = Body(default_factory=RerunRequest)) -> Any:
        try:
            new_id = sched().rerun(run_id, req.from_step, req.package)
        except KeyError:
            return _error(404, f"No run {run_id}")
        profiles.note(new_run=new_id)
        sched().advance(new_id)  # its reused steps resolve now and the first to run starts (not at the next tick)
        return _json(views.snapshot(state["engine"], new_id), 201)

    async def _sse(request: Request, run_id: str | None, after: int) -> AsyncIterator[bytes]:
        s = sched()
        last = after
        while True:
            seq = s.event_seq
            batch = views.events_after(state["engine"], run_id, last, 500, s.events)
            if batch:  # one write per batch, not one per event
                last = batch[-1]["id"]
                yield "".join(f"id: {e['id']}\nevent: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in batch).encode()
            if run_id is not None and any(e["type"] == "RunFinished" for e in batch):
                return
            if batch:
                if len(batch) >= 500 or s.event_seq != seq:
                    continue  # more may be stored: read on
                # else all stored before `seq` was read: wait for the next commit (no empty re-query)
            elif run_id is not None and run_id not in s.runs:
                snap = views.snapshot(state["engine"], run_id)
                if snap is None or snap["state"] in ("succeeded", "failed", "cancelled"):
                    return
            if await request.is_disconnected():
                return
            if not await s.wait_for_events(seq, SSE_KEEPALIVE):
                yield b": keep-alive\n\n"

    def _after(request: Request, after: int | None) -> int:
        if after is not None:
            return after
        try:
            given = int(request.headers.get("last-event-id", "0").strip()[:20])
        except ValueError:
            return 0
        return min(max(given, 0), MAX_INT)  # an id past the end: nothing newer yet

    sse_headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

    sse_doc = {200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                     "description": "Server-Sent Events"}}

    @app.get("/api/v1/runs/{run_id}/events", response_class=StreamingResponse, responses={**sse_doc, **errors(404)},
             description="Server-Sent Events of one run; ends after RunFinished. Resume with Last-Event-ID.")
    async def run_events(run_id: str, request: Request, after: int | None = Query(None, ge=0, le=MAX_INT)) -> Any:
        import sqlalchemy as sa

        with state["engine"].connect() as conn:  # only whether it exists: every wait() opens this stream
            found = conn.execute(sa.select(db.runs.c.id).where(db.runs.c.id == run_id)).first()
        if found is None:
            return _error(404, f"No run {run_id}")
        return StreamingResponse(_sse(request, run_id, _after(request, after)), media_type="text/event-stream",
                                 headers=sse_headers)

    @app.get("/api/v1/events", response_class=StreamingResponse, responses=sse_doc,
             description="Server-Sent Events of all runs (for run lists).")
    async def all_events(request: Request, after: int | None = Query(None, ge=0, le=MAX_INT)) -> Any:
        return StreamingResponse(_sse(request, None, _after(request, after)), media_type="text/event-stream",
                                 headers=sse_headers)

    @app.get("/api/v1/runs/{run_id}/steps/{step}/logs", response_class=PlainTextResponse, responses=errors(404))
    async def step_logs(run_id: str, step: str, attempt: int | None = Query(None, ge=0, le=MAX_INT),
                        offset: int = Query(0, ge=0, le=MAX_INT),
                        limit: int | None = Query(None, ge=0, le=MAX_INT, description="at most this many bytes")) -> Any:
        found = views.attempt_log(state["engine"], run_id, step, attempt)
        if found is None:
            if views.snapshot(state["engine"], run_id) is None:
                return _error(404, f"No run {run_id}")
            return PlainTextResponse("", headers={"X-Nbpipe-Attempt": "0"})
        path, att = found
        try:
            size = os.path.getsize(path)
        except OSError:
            return PlainTextResponse("", headers={"X-Nbpipe-Attempt": str(att)})
        start = min(offset, size)
        end = size if limit is None else min(size, start + limit)

        def chunks() -> Any:  # a sync generator: Starlette reads it in a worker thread, not on the loop
            with open(path, "rb") as fh:
                fh.seek(start)
                left = end - start
                while left > 0:
                    block = fh.read(min(left, 1 << 20))
                    if not block:
                        break
                    left -= len(block)
                    yield block

        return StreamingResponse(chunks(), media_type="text/plain; charset=utf-8",
                                 headers={"X-Nbpipe-Attempt": str(att), "Content-Length": str(end - start),
                                          "X-Nbpipe-Log-Size": str(size)})

    @app.get("/api/v1/artifacts/{digest}", responses={200: {"content": {"application/octet-stream": {}},
                                                           "description": "The artifact's bytes"},
                                                      307: {"description": "Fetch it from the store (S3)"},
                                                      **errors(400, 404)})
    async def artifact(digest: str, mime: str | None = None) -> Any:
        from ..stores.base import content_key

        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            return _error(400, "Not a sha256 digest")
        key = content_key(digest)
        # in the view of the profile (among the caller's) whose run or endpoint has it
        store = await asyncio.to_thread(profiles.artifact_store, state["engine"], sched().stores, digest)
        if store is None:
            return _error(404, f"No artifact {digest[:12]}…")
        media = mime if mime in ("image/png", "image/jpeg", "image/gif", "image/svg+xml", "text/plain",
                                 "application/json", "text/csv") else "application/octet-stream"
        path = store.local_path(key)
        if path is not None:
            return FileResponse(path, media_type=media)
        url = store.url_for(key)
        if url:
            return Response(status_code=307, headers={"Location": url})
        # Neither a local file nor a URL (S3 with NBPIPE_S3_PUBLIC_ENDPOINT=off, a plugin store): through
        # a temporary file (unlinked once open), never held whole in memory (an artifact may be GBs).
        import tempfile

        fd, tmp = tempfile.mkstemp(dir=sched().upload_dir(), prefix="artifact-")
        os.close(fd)
        try:
            await asyncio.to_thread(store.get_file, key, tmp)
            fh = open(tmp, "rb")
        finally:
            os.unlink(tmp)
        size = os.fstat(fh.fileno()).st_size

        def chunks() -> Any:  # a sync generator: Starlette reads it in a worker thread
            with fh:
                while block := fh.read(1 << 20):
                    yield block

        return StreamingResponse(chunks(), media_type=media, headers={"Content-Length": str(size)})

    app.include_router(schedule_router(lambda: state["schedules"], _error))
    from .lineage import lineage_router  # dashboard reads: artifact lineage, the filtered run list
    from .run_query import run_query_router

    app.include_router(lineage_router(lambda: state["engine"], _error))
    app.include_router(run_query_router(lambda: state["engine"], _error))
    from .run_storage import run_storage_router  # archive, unarchive, delete

    app.include_router(run_storage_router(sched, _error))
    from .endpoint_routes import endpoints_router

    app.include_router(endpoints_router(lambda: state["endpoints"], _error))
    app.include_router(audit.audit_router(lambda: state["engine"], _error))
    _document_common_errors(app)
    return app


def _document_common_errors(app: FastAPI) -> None:
    """Every operation may answer 400 (NUL in the path/query), 401 (token) and 403 (Host/Origin)."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = base()
        comps = schema.setdefault("components", {}).setdefault("schemas", {})
        from .api_models import ErrorBody

        comps.setdefault("ErrorBody", ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}"))
        ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
        for path, ops in schema.get("paths", {}).items():
            for _method, op in ops.items():
                responses = op.setdefault("responses", {})
                responses.setdefault("400", {"description": "Bad input", **ref})
                if "{" in path:
                    responses.setdefault("404", {"description": "Not found", **ref})
                if path not in OPEN_PATHS:
                    responses.setdefault("401", {"description": "No or wrong token", **ref})
                responses.setdefault("403", {"description": "Refused Host or Origin", **ref})
                responses.setdefault("500", {"description": "An internal error (a bug: please report it)", **ref})
                responses.setdefault("507", {"description": "The runner's disk is full", **ref})
        schema["components"].setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _is_digest(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listening socket says it is TCP; without it every keep-alive response waits ~40 ms
    # (Nagle + delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        raise NbpipeError(f"Cannot listen on {host}:{port} ({exc.strerror})",
                          hint="Pick another --port (0 picks a free one) or stop what uses it.") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(config: RunnerConfig, ready_file: str | None = None, log_level: str = "warning") -> None:
    """Run the runner in the foreground until interrupted."""
    import uvicorn

    config.check()
    data_dir_lock = config.claim_data_dir()  # noqa: F841 - held (open) until this process ends
    os.umask(0o077)  # every file the runner (and its steps) create is owner-only, whatever the shell's umask
    sock = bind_socket(config.host, config.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    config.ensure_token()

    def _ready() -> None:
        info = {"url": url, "pid": os.getpid(), "data_dir": str(config.data_dir), "started_at": time.time(),
                "python": sys.executable, "version": __version__, "token": config.token}
        # Runtime files clients read the token from: owner-only, like Jupyter Server's.
        write_runtime_file(runtime, info)
        if ready_file:
            write_runtime_file(Path(ready_file), info)
        print(f"nbpipe runner {__version__} listening on {url} (data: {config.data_dir})", flush=True)
        # Load the package validator now, in the background, not on the first package's request.
        threading.Thread(target=_validator, args=(PACKAGE_VERSION,), name="nbpipe-warm-validator", daemon=True).start()

    import threading

    from ..compiler import PACKAGE_VERSION
    from ..package import _validator, lean_validator
    from . import wire

    lean_validator()  # this process is nbpipe's own: jsonschema without its format-checking libraries
    runtime = runtime_dir() / f"runner-{os.getpid()}.json"
    app = create_app(config, on_ready=_ready, on_stop=lambda: runtime.unlink(missing_ok=True))
    # A stop waits this long for open responses: event streams (a notebook following a run, the Lab
    # panel) never end by themselves, and without a bound SIGTERM left the runner up until SIGKILL.
    # http: one socket write per response (see .wire)
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on", access_log=False,
                                           timeout_graceful_shutdown=GRACEFUL_STOP, http=wire.http_protocol()))
    try:
        server.run(sockets=[sock])
    finally:
        runtime.unlink(missing_ok=True)
