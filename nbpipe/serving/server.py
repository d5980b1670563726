"""The model server: ``python -m nbpipe.serving.server CONFIG.json`` — one process per endpoint.

Speaks KServe's open inference protocol v2 over HTTP on 127.0.0.1:

- ``GET /v2/health/live``, ``GET /v2/health/ready`` (open, like Kubernetes probes; no data);
- ``GET /v2/models/NAME[/versions/V]`` (metadata), ``.../ready``, ``POST .../infer``.

Every other request needs this endpoint's own token (``Authorization: Bearer``), given to this
process in ``NBPIPE_ENDPOINT_TOKEN`` (never on the command line). It is not the runner's token:
this process runs the user's load/predict code, which must not be able to act as the runner. Host must be a loopback name (DNS
rebinding) and cross-origin browser requests are refused, like the runner. The runner writes
CONFIG (versions -> bundle files, the default version) and asks ``POST /nbpipe/v1/reload``
after a deploy, rollback or delete; versions load lazily, the default one at once. A bad request
is a 400 saying what is wrong; a predict function that raises is a 500 with its error and
traceback, and the server keeps serving. Non-goals: batching, the gRPC and binary extensions.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .loader import Loaded, user_traceback
from .protocol import BadRequest, encode_outputs, parse_inputs

OPEN = ("/v2/health/live", "/v2/health/ready")
MAX_BODY = 256 * 1024 * 1024


def _err(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


class ModelServer:
    def __init__(self, config_path: str, token: str):
        self.config_path = config_path
        self.token = token
        self.lock = threading.Lock()
        self.loaded: dict[str, Loaded] = {}
        self.failed: dict[str, str] = {}
        self.config: dict[str, Any] = {}
        self.reload()

    def reload(self) -> None:
        with open(self.config_path, encoding="utf-8") as fh:
            config = json.load(fh)
        with self.lock:
            self.config = config
            keep = set(config.get("versions", {}))
            for v in list(self.loaded):
                if v not in keep:
                    del self.loaded[v]
            self.failed = {v: r for v, r in self.failed.items() if v in keep}
        default = config.get("default")
        if default:
            self.get(default)

    @property
    def name(self) -> str:
        return str(self.config.get("name", ""))

    def get(self, version: str) -> Loaded | str:
        """The loaded version, or why it is not available."""
        with self.lock:
            if version in self.loaded:
                return self.loaded[version]
            if version in self.failed:
                return self.failed[version]
            bundle = self.config.get("versions", {}).get(version)
            if bundle is None:
                return ""
            try:
                loaded = Loaded(bundle, str(Path(self.config["workdir"]) / "versions" / version))
            except Exception as exc:  # noqa: BLE001 - the user's payload failed to load: say why, keep serving
                reason = f"version {version} failed to load: {type(exc).__name__}: {exc}"
                sys.stderr.write(user_traceback(exc))
                self.failed[version] = reason
                return reason
            self.loaded[version] = loaded
            return loaded


def create_app(ms: ModelServer) -> Any:
    def resolve(request: Request) -> tuple[str, Loaded | JSONResponse]:
        name = request.path_params["name"]
        if name != ms.name:
            return "", _err(404, f"No model {name!r} here: this server serves {ms.name!r}")
        version = request.path_params.get("version") or ms.config.get("default") or ""
        versions = ms.config.get("versions", {})
        if version not in versions:
            known = ", ".join(sorted(versions, key=lambda v: (len(v), v))) or "none"
            return version, _err(404, f"Model {name!r} has no version {version!r} (versions: {known})")
        got = ms.get(version)
        if isinstance(got, str):
            return version, _err(503, got or f"version {version} is not available")
        return version, got

    async def live(_: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(_: Request) -> Response:
        default = ms.config.get("default")
        ok = bool(default) and isinstance(ms.get(default), Loaded)
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def server_meta(_: Request) -> Response:
        from .. import __version__

        return JSONResponse({"name": "nbpipe", "version": __version__, "extensions": []})

    async def model_meta(request: Request) -> Response:
        version, got = resolve(request)
        if isinstance(got, JSONResponse):
            return got
        return JSONResponse({"name": ms.name, "versions": sorted(ms.config.get("versions", {}), key=lambda v: (len(v), v)),
                             "version": version, "platform": "nbpipe-python", "inputs": [], "outputs": [],
                             "parameters": {"default_version": ms.config.get("default"),
                                            "model": got.manifest.get("model", {})}})

    async def model_ready(request: Request) -> Response:
        _, got = resolve(request)
        if isinstance(got, JSONResponse):
            return got if got.status_code != 503 else JSONResponse({"name": ms.name, "ready": False}, status_code=503)
        return JSONResponse({"name": ms.name, "ready": True})

    async def infer(request: Request) -> Response:
        version, got = resolve(request)
        if isinstance(got, JSONResponse):
            return got
        body_bytes = await request.body()
        if len(body_bytes) > MAX_BODY:
            return _err(413, f"The request is over {MAX_BODY >> 20} MB")
        try:
            body = json.loads(body_bytes)
        except (ValueError, UnicodeDecodeError) as exc:
            return _err(400, f"The request body is not valid JSON: {exc}")
        try:
            names, arrays, params = parse_inputs(body)
        except BadRequest as exc:
            return _err(400, str(exc))

        def call() -> Any:
            return encode_outputs(got.call(names, arrays, params))

        try:
            outputs = await run_in_threadpool(call)
        except Exception as exc:  # noqa: BLE001 - the user's predict failed: a 500 with its reason
            tb = user_traceback(exc)
            sys.stderr.write(f"predict failed (version {version}):\n{tb}")
            sys.stderr.flush()
            return _err(500, f"The predict function of {ms.name!r} version {version} raised "
                             f"{type(exc).__name__}: {exc}", traceback=tb)
        out: dict[str, Any] = {"model_name": ms.name, "model_version": version, "outputs": outputs}
        if isinstance(body.get("id"), str):
            out["id"] = body["id"]
        return JSONResponse(out)

    async def reload(_: Request) -> Response:
        try:
            await run_in_threadpool(ms.reload)
        except (OSError, ValueError) as exc:
            return _err(500, f"cannot read the endpoint config: {exc}")
        return JSONResponse({"default": ms.config.get("default"), "loaded": sorted(ms.loaded), "failed": ms.failed})

    m = "/v2/models/{name}"
    v = m + "/versions/{version}"
    routes = [
        Route("/v2/health/live", live), Route("/v2/health/ready", ready), Route("/v2", server_meta),
        Route(m, model_meta), Route(v, model_meta), Route(m + "/ready", model_ready), Route(v + "/ready", model_ready),
        Route(m + "/infer", infer, methods=["POST"]), Route(v + "/infer", infer, methods=["POST"]),
        Route("/nbpipe/v1/reload", reload, methods=["POST"]),
    ]
    return Guard(Starlette(routes=routes), ms)  # type: ignore[return-value]


class Guard:
    """ASGI wrapper: loopback Host only, no cross-origin browser requests, the token on all but health."""

    def __init__(self, app: Any, ms: ModelServer):
        self.app, self.ms = app, ms
        # on Kubernetes the server is reached by its Service's names too (nbpipe.serving.k8s sets them)
        extra = {h.strip().lower() for h in os.environ.get("NBPIPE_SERVING_HOSTS", "").split(",") if h.strip()}
        self.hosts = {"127.0.0.1", "localhost", "::1"} | extra

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)  # type: ignore[no-any-return]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "").rsplit(":", 1)[0].strip("[]").lower()
        refusal: Response | None = None
        if host not in self.hosts and scope["path"] not in OPEN:  # probes come by pod IP; health says nothing
            refusal = _err(403, f"Host {host[:100]!r} is not this model server (a DNS-rebinding request?)")
        elif "origin" in headers:
            refusal = _err(403, "Cross-origin browser requests are refused; use the SDK, the CLI or the Lab extension")
        elif scope["path"] not in OPEN:
            given = headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not secrets.compare_digest(given.encode(), self.ms.token.encode()):
                refusal = _err(401, "This nbpipe endpoint needs its own token (not the runner's): send "
                                    "'Authorization: Bearer <token>' with the 'token' of GET /api/v1/endpoints/NAME "
                                    "on the runner (nbpipe.serving.Endpoint and `nbpipe endpoints predict` do)")
        if refusal is not None:
            return await refusal(scope, receive, send)  # type: ignore[no-any-return]
        return await self.app(scope, receive, send)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    import argparse

    import uvicorn

    ap = argparse.ArgumentParser(prog="python -m nbpipe.serving.server")
    ap.add_argument("config")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ready-file", required=True)
    ap.add_argument("--host", default="127.0.0.1", help="0.0.0.0 in a pod (nbpipe.serving.k8s)")
    ap.add_argument("--strict-port", action="store_true", help="fail when --port is taken (a pod's port is fixed)")
    args = ap.parse_args(argv)
    token = os.environ.pop("NBPIPE_ENDPOINT_TOKEN", "")
    if not token:
        sys.stderr.write("nbpipe model server: NBPIPE_ENDPOINT_TOKEN is not set\n")
        return 2
    os.umask(0o077)
    ms = ModelServer(args.config, token)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError:
        if args.strict_port:
            raise
        sock.bind((args.host, 0))  # the old port is taken: the runner records the new one
    sock.listen(128)
    port = sock.getsockname()[1]
    app = create_app(ms)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    orig = server.startup

    async def startup(sockets: Any = None) -> None:
        await orig(sockets=sockets)
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as fh:
            json.dump({"port": port, "pid": os.getpid(), "started_at": time.time()}, fh)
        os.replace(tmp, args.ready_file)
        print(f"nbpipe model server for {ms.name!r} on http://127.0.0.1:{port}", flush=True)

    server.startup = startup  # type: ignore[method-assign]
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
