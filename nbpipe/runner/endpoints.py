"""Model-serving endpoints on the embedded runner: versions in the metadata DB, one model-server
process per endpoint, and the HTTP API ``/api/v1/endpoints``.

A deploy uploads a bundle (:mod:`nbpipe.serving.bundle`) — from the kernel (``nbpipe.serve``) or
from a pipeline's deploy step (an ``endpoint`` Model output of a component marked with
``NBPIPE_DEPLOY_ENDPOINT``, picked up from the event log so the scheduler knows nothing of it).
The runner stores the bundle by digest and reads only its JSON manifest; the model-server
process (:mod:`nbpipe.serving.server`) is where it is unpickled. The runner starts the servers,
restarts one that dies, stops them on shutdown and starts them again on the next start, on the
same port when it is free. Each endpoint has its own token (``endpoints/NAME/token``, 0600, made
when its server first starts, kept across restarts): the model server — which runs user code —
gets only that token and the steps' allow-listed environment, never the runner's token; clients
read the endpoint's token from the runner's authenticated API (the ``token`` field).
Non-goals: autoscaling, traffic splitting (one default version; others by ``/versions/V``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from ..errors import DefinitionError
from ..serving.bundle import DEPLOY_ENV, NAME_RE, bundle_resources, read_manifest
from . import db
from .migrations.m0004_endpoints import endpoint_versions, endpoints

log = logging.getLogger("nbpipe.runner.endpoints")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEPLOY_OUTPUT = "endpoint"
CURSOR_KEY = "endpoints.event_cursor"
CURSOR_SAVE_S = 10.0  # the cursor is saved after a deploy, else at most this often
# never given to a model server, even when an operator passes them to steps with NBPIPE_STEP_ENV_PASS
RUNNER_SECRETS = frozenset({"NBPIPE_TOKEN", "NBPIPE_TOKEN_FILE"})


class EndpointError(ValueError):
    def __init__(self, status: int, message: str, hint: str = ""):
        super().__init__(message)
        self.status, self.hint = status, hint


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise EndpointError(400, f"Endpoint name {name!r} is not valid",
                            "Use lowercase letters, digits and '-' (a DNS label, up to 63 characters), e.g. 'iris'.")
    return name


def check_version(version: str) -> str:
    if not VERSION_RE.match(version or ""):
        raise EndpointError(400, f"Version {version!r} is not valid",
                            "Use letters, digits, '.', '_' and '-' (up to 64), e.g. '3' or '2024-06-01'.")
    return version


def _order(v: dict[str, Any]) -> int:
    return int(v["seq"])


class Endpoints:
    """Endpoint state and the model-server processes (runs on the runner's event loop)."""

    def __init__(self, engine: sa.Engine, store: Any, data_dir: Path, token: str, scheduler: Any = None):
        self.engine, self.store, self.token, self.sched = engine, store, token, scheduler
        self.root = Path(data_dir) / "endpoints"
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.watchers: dict[str, asyncio.Task[None]] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.tail: asyncio.Task[None] | None = None
        self.closing = False
        from ..serving.k8s import K8sServing, backend
        from ..serving.kserve import KServeServing

        # NBPIPE_SERVING=kubernetes: a Deployment + Service per endpoint instead of a local process;
        # NBPIPE_SERVING=kserve: a KServe InferenceService per endpoint
        kind = backend()
        # (in the namespace of the endpoint's profile, reading the profile's view of the store)
        serving = {"kserve": KServeServing, "kubernetes": K8sServing}.get(kind)
        self.k8s = serving(store, stores=self._stores()) if serving is not None else None

    # ------------------------------------------------------------ queries
    def _rows(self, name: str | None = None) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            q = sa.select(endpoints).order_by(endpoints.c.name)
            if name is not None:
                q = q.where(endpoints.c.name == name)
            eps = db.rows(conn.execute(q))
            vq = sa.select(endpoint_versions).order_by(endpoint_versions.c.seq)
            if name is not None:
                vq = vq.where(endpoint_versions.c.endpoint == name)
            vers = db.rows(conn.execute(vq))
        out = []
        for e in eps:
            vs = [{"version": v["version"], "digest": v["digest"], "size": v["size"], "created_at": v["created_at"],
                   "description": v["description"], "source": db.loads(v["source"]) or {},
                   "model": (db.loads(v["manifest"]) or {}).get("model", {}), "seq": v["seq"],
                   "resources": (db.loads(v["manifest"]) or {}).get("resources") or {},
                   "default": v["version"] == e["default_version"]}
                  for v in vers if v["endpoint"] == e["name"]]
            url = f"http://127.0.0.1:{e['port']}" if e["port"] else None
            if self.k8s is not None:
                url = self.k8s.url(e["name"], e["port"], e.get("profile") or "default")
            out.append({"name": e["name"], "url": url, "token": self.endpoint_token(e["name"]),
                        "port": e["port"], "state": e["state"], "reason": e["reason"],
                        "default_version": e["default_version"], "versions": vs, "pid": e["pid"],
                        "restarts": e["restarts"], "created_at": e["created_at"], "updated_at": e["updated_at"],
                        "profile": e.get("profile") or "default",
                        "infer_url": f"{url}/v2/models/{e['name']}/infer" if url else None})
        return out

    def list(self) -> list[dict[str, Any]]:
        from .profiles import visible

        seen = visible()  # the caller's profiles' endpoints only (None: all)
        return [e for e in self._rows() if seen is None or e["profile"] in seen]

    def get(self, name: str) -> dict[str, Any]:
        found = self._rows(check_name(name))
        if not found:
            raise EndpointError(404, f"No endpoint {name!r}", "See the endpoints with `nbpipe endpoints list`.")
        return found[0]

    @staticmethod
    def _profile_of(conn: sa.Connection, source: dict[str, Any] | None) -> str:
        """A new endpoint's profile: its deploying run's, or the deploying caller's."""
        from .profiles import submit_profile

        if source and source.get("run_id"):
            row = conn.execute(sa.select(db.runs.c.profile).where(db.runs.c.id == source["run_id"])).first()
            if row is not None:
                return str(row[0])
        return submit_profile()

    def _stores(self) -> Any:
        """Each profile's view of the store: bundles live in their endpoint's profile's (keys kept root-relative)."""
        from .profiles import ProfileStores

        return self.sched.stores if self.sched is not None else ProfileStores(self.store)

    def _bundle_profile(self, name: str | None, source: dict[str, Any] | None) -> str:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(endpoints.c.profile).where(endpoints.c.name == name)).first() if name else None
            return str(row[0]) if row is not None and row[0] else self._profile_of(conn, source)

    def endpoint_token(self, name: str, create: bool = False) -> str:
        """The endpoint's own token (what its model server accepts); ``create``: make it if it has none.

        Kept in a 0600 file beside the endpoint's config so it survives a runner restart; never the
        runner's token, so user code in the model server cannot act as the runner.
        """
        path = self.root / name / "token"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            if not create:
                return ""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        token = secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(token)
        return token

    def _auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.endpoint_token(name)}"}

    def _set(self, name: str, **values: Any) -> None:
        with db.write_tx(self.engine) as conn:
            conn.execute(endpoints.update().where(endpoints.c.name == name).values(updated_at=time.time(), **values))

    def _lock(self, name: str) -> asyncio.Lock:
        return self.locks.setdefault(name, asyncio.Lock())

    # ------------------------------------------------------------ changes
    def upload_dir(self) -> Path:
        """Where an uploaded bundle is streamed to before it is stored (never held whole in memory)."""
        path = self.root.parent / "uploads"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    async def deploy(self, name: str, bundle: bytes | str | Path, version: str | None = None, description: str = "",
                     source: dict[str, Any] | None = None, digest: str | None = None) -> dict[str, Any]:
        """Add a version (bundle bytes, an uploaded bundle file — consumed —, or the store key of one)
        and make it the default."""
        check_name(name)
        if version is not None:
            check_version(version)
        if isinstance(bundle, (bytes, Path)):
            try:
                manifest = read_manifest(bundle)
            except (ValueError, RecursionError) as exc:
                what = "nested too deeply" if isinstance(exc, RecursionError) else exc
                raise EndpointError(400, f"The upload for endpoint {name!r} is {what}",
                                    "Deploy with nbpipe.serve(...) or a deploy step, which build the bundle.") from None
            profile = await asyncio.to_thread(self._bundle_profile, name, source)
            view = self._stores().of(profile)
            if isinstance(bundle, Path):
                info = await asyncio.to_thread(view.put_file, str(bundle), None, move=True)
            else:
                info = await asyncio.to_thread(view.put_bytes, bundle)
            key, digest, size = self._stores().root_key(profile, info.key), info.digest, info.size
        else:  # a deploy step's output, in its run's view of the store
            key = self._stores().root_key(await asyncio.to_thread(self._bundle_profile, None, source), bundle)
            local = self._local_bundle(key, digest or "")
            try:
                manifest = read_manifest(local)
            except (ValueError, RecursionError) as exc:
                what = "nested too deeply" if isinstance(exc, RecursionError) else exc
                raise EndpointError(400, f"The deploy step's output for endpoint {name!r} is {what}") from None
            size = os.path.getsize(local)
        try:  # it goes into the server pod's spec: checked here, not by the API server
            bundle_resources(manifest.get("resources"))
        except DefinitionError as exc:
            raise EndpointError(400, f"Endpoint {name!r}: {exc.headline}", exc.hint) from None
        async with self._lock(name):
            now = time.time()
            with db.write_tx(self.engine) as conn:
                row = conn.execute(sa.select(endpoints).where(endpoints.c.name == name)).first()
                if row is not None and source and source.get("run_id") and \
                        row.profile != self._profile_of(conn, source):  # a run deploys in its own profile only
                    raise EndpointError(403, f"Endpoint {name!r} belongs to another profile than run "
                                             f"{source['run_id']}", "Deploy under another endpoint name.")
                if row is None:
                    conn.execute(endpoints.insert().values(name=name, default_version="", next_version=1,
                                                           state="starting", reason="", restarts=0,
                                                           created_at=now, updated_at=now,
                                                           profile=self._profile_of(conn, source)))
                    next_v, seq = 1, 1
                else:
                    next_v = row.next_version
                    seq = (conn.execute(sa.select(sa.func.max(endpoint_versions.c.seq))
                                        .where(endpoint_versions.c.endpoint == name)).scalar() or 0) + 1
                    cur = conn.execute(sa.select(endpoint_versions).where(
                        endpoint_versions.c.endpoint == name,
                        endpoint_versions.c.version == row.default_version)).first()
                    if cur is not None and cur.digest == digest and version in (None, cur.version):
                        return {**self._rows(name)[0], "unchanged": True}  # the same bundle again
                if version is None:
                    taken = {v for (v,) in conn.execute(sa.select(endpoint_versions.c.version)
                                                        .where(endpoint_versions.c.endpoint == name))}
                    while str(next_v) in taken:
                        next_v += 1
                    version = str(next_v)
                elif conn.execute(sa.select(endpoint_versions.c.version).where(
                        endpoint_versions.c.endpoint == name, endpoint_versions.c.version == version)).first():
                    raise EndpointError(409, f"Endpoint {name!r} already has a version {version!r}",
                                        "Pick another version, or leave it out to number versions automatically.")
                conn.execute(endpoint_versions.insert().values(
                    endpoint=name, version=version, seq=seq, digest=digest, key=key, size=size,
                    manifest=db.dumps(manifest), source=db.dumps(source or {"kind": "kernel"}),
                    description=description, created_at=now))
                # "updating" until the server serves it: a reader never sees the new default as ready early
                conn.execute(endpoints.update().where(endpoints.c.name == name).values(
                    default_version=version, updated_at=now, state="updating" if row is not None else "starting",
                    next_version=max(next_v, int(version) if version.isdigit() else 0) + 1))
            await self._apply(name)
        return self.get(name)

    async def rollback(self, name: str, version: str | None = None) -> dict[str, Any]:
        ep = self.get(name)
        async with self._lock(name):
            vs = sorted(ep["versions"], key=_order)
            if version is None:
                cur = next((i for i, v in enumerate(vs) if v["default"]), len(vs))
                if cur == 0:
                    raise EndpointError(409, f"Endpoint {name!r} is at its first version ({vs[0]['version']}): "
                                             "there is nothing to roll back to")
                version = vs[cur - 1]["version"]
            elif version not in {v["version"] for v in vs}:
                raise EndpointError(404, f"Endpoint {name!r} has no version {version!r}",
                                    f"Versions: {', '.join(v['version'] for v in vs)}.")
            self._set(name, default_version=version, state="updating")
            await self._apply(name)
        return self.get(name)

    async def delete_version(self, name: str, version: str) -> dict[str, Any]:
        ep = self.get(name)
        async with self._lock(name):
            if version not in {v["version"] for v in ep["versions"]}:
                raise EndpointError(404, f"Endpoint {name!r} has no version {version!r}")
            if version == ep["default_version"]:
                raise EndpointError(409, f"Version {version!r} is what endpoint {name!r} serves by default",
                                    f"Roll back (or deploy another version) first, or delete the endpoint.")
            with db.write_tx(self.engine) as conn:
                conn.execute(endpoint_versions.delete().where(endpoint_versions.c.endpoint == name,
                                                              endpoint_versions.c.version == version))
            await self._apply(name)
        return self.get(name)

    async def delete(self, name: str) -> None:
        self.get(name)
        async with self._lock(name):
            await self._stop(name)
            with db.write_tx(self.engine) as conn:
                conn.execute(endpoint_versions.delete().where(endpoint_versions.c.endpoint == name))
                conn.execute(endpoints.delete().where(endpoints.c.name == name))
            (self.root / name / "token").unlink(missing_ok=True)  # a new endpoint of this name gets a new token

    # ------------------------------------------------------------ processes
    def _local_bundle(self, key: str, digest: str) -> str:
        path = self.store.local_path(key)
        if path is not None:
            return str(path)
        dest = self.root / "bundles" / f"{digest or key.replace('/', '_')}.zip"
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            self.store.get_file(key, str(dest))
        return str(dest)

    def _write_config(self, name: str) -> Path:
        ep = self._rows(name)[0]
        with self.engine.connect() as conn:
            vers = db.rows(conn.execute(sa.select(endpoint_versions).where(endpoint_versions.c.endpoint == name)))
        d = self.root / name
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = {"name": name, "default": ep["default_version"], "workdir": str(d / "work"),
                  "versions": {v["version"]: self._local_bundle(v["key"], v["digest"]) for v in vers}}
        path = d / "config.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config))
        os.replace(tmp, path)
        return path

    async def _apply(self, name: str) -> None:
        """Make the running server serve the DB's versions: reload it, or start it."""
        if self.k8s is not None:  # roll out the Deployment's new config
            await self.k8s.apply(self, name)
            return
        await asyncio.to_thread(self._write_config, name)
        proc = self.procs.get(name)
        ep = self._rows(name)[0]
        if proc is not None and proc.returncode is None and ep["port"]:
            try:
                async with httpx.AsyncClient(timeout=120) as http:
                    resp = await http.post(f"http://127.0.0.1:{ep['port']}/nbpipe/v1/reload",
                                           headers=self._auth(name))
                body = resp.json()
                failed = body.get("failed", {}).get(ep["default_version"])
                self._set(name, state="failed" if failed else "ready", reason=failed or "")
                return
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("reload of endpoint %s failed (%s): restarting it", name, exc)
                await self._stop(name)
        await self._start(name)

    async def _start(self, name: str) -> None:
        from ..executors.local import step_environ

        config = await asyncio.to_thread(self._write_config, name)
        ep = self._rows(name)[0]
        d = config.parent
        ready = d / "ready.json"
        ready.unlink(missing_ok=True)
        self._set(name, state="starting", reason="")
        token = await asyncio.to_thread(self.endpoint_token, name, True)
        # the steps' allow-listed environment (no runner token, store keys or cloud credentials) + its own token
        env = {k: v for k, v in step_environ().items() if k not in RUNNER_SECRETS}
        env.update(NBPIPE_ENDPOINT_TOKEN=token, PYTHONUNBUFFERED="1")
        with open(d / "server.log", "ab") as logf:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "nbpipe.serving.server", str(config), "--port", str(ep["port"] or 0),
                "--ready-file", str(ready), stdin=asyncio.subprocess.DEVNULL, stdout=logf, stderr=logf,
                env=env, cwd=str(d), start_new_session=True)
        self.procs[name] = proc
        deadline = time.time() + 120
        while not ready.exists():
            if proc.returncode is not None or time.time() > deadline:
                if proc.returncode is None:
                    proc.kill()
                tail = (d / "server.log").read_text(errors="replace").splitlines()[-8:]
                self._set(name, state="failed", pid=None,
                          reason="the model server did not start: " + " | ".join(tail)[-1500:])
                return
            await asyncio.sleep(0.05)
        info = json.loads(ready.read_text())
        state, reason = "ready", ""
        try:
            async with httpx.AsyncClient(timeout=120) as http:
                resp = await http.get(f"http://127.0.0.1:{info['port']}/v2/models/{name}/ready",
                                      headers=self._auth(name))
            if resp.status_code != 200:
                meta = await self._meta(info["port"], name)
                state, reason = "failed", meta or f"not ready (HTTP {resp.status_code})"
        except httpx.HTTPError as exc:
            state, reason = "failed", f"not answering: {exc}"
        self._set(name, state=state, reason=reason, port=info["port"], pid=proc.pid)
        self.watchers[name] = asyncio.create_task(self._watch(name, proc))

    async def _meta(self, port: int, name: str) -> str:
        try:
            async with httpx.AsyncClient(timeout=30) as http:
                resp = await http.get(f"http://127.0.0.1:{port}/v2/models/{name}", headers=self._auth(name))
            return str(resp.json().get("error", ""))
        except (httpx.HTTPError, ValueError):
            return ""

    async def _watch(self, name: str, proc: asyncio.subprocess.Process) -> None:
        """Restart a model server that died (with backoff), unless it was stopped on purpose."""
        rc = await proc.wait()
        if self.closing or self.procs.get(name) is not proc:
            return
        self.procs.pop(name, None)
        rows = self._rows(name)
        if not rows:
            return
        restarts = rows[0]["restarts"] + 1
        self._set(name, state="restarting", pid=None, restarts=restarts,
                  reason=f"the model server exited (code {rc}); restarting")
        await asyncio.sleep(min(30.0, 0.5 * 2 ** min(restarts, 6)))
        if not self.closing and name not in self.procs and self._rows(name):
            async with self._lock(name):
                await self._start(name)

    async def _stop(self, name: str) -> None:
        if self.k8s is not None:  # the endpoint's Deployment, Service and token Secret (in its profile's namespace)
            rows = await asyncio.to_thread(self._rows, name)
            await self.k8s.delete(name, rows[0]["profile"] if rows else None)
            return
        proc = self.procs.pop(name, None)
        task = self.watchers.pop(name, None)
        if task is not None:
            task.cancel()
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start every endpoint's server (after a runner restart) and follow deploy steps."""
        for ep in self._rows():
            if self.k8s is not None:  # its Deployment outlived the runner: check it serves the DB's versions
                self.watchers[ep["name"]] = asyncio.create_task(self.k8s.resume(self, ep["name"]))
                continue
            self._kill_orphan(ep)
            try:
                async with self._lock(ep["name"]):
                    await self._start(ep["name"])
            except Exception as exc:  # noqa: BLE001 - one bad endpoint must not stop the runner
                log.exception("cannot start endpoint %s", ep["name"])
                self._set(ep["name"], state="failed", reason=str(exc))
        if self.sched is not None:
            self.tail = asyncio.create_task(self._follow_events())

    def _kill_orphan(self, ep: dict[str, Any]) -> None:
        """A model server left by a runner that was killed: stop it (only if it is really ours)."""
        if not ep["pid"]:
            return
        try:
            import psutil

            p = psutil.Process(ep["pid"])
            if "nbpipe.serving.server" in p.cmdline() and str(self.root / ep["name"]) in " ".join(p.cmdline()):
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        except Exception:  # noqa: BLE001 - gone already
            pass

    async def close(self) -> None:
        self.closing = True
        if self.tail is not None:
            self.tail.cancel()
        await asyncio.gather(*(self._stop(n) for n in list(self.procs)), return_exceptions=True)

    # ------------------------------------------------------------ deploy steps
    def _cursor(self) -> int:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(db.meta_info.c.value).where(db.meta_info.c.key == CURSOR_KEY)).first()
            if row is not None:
                return int(row[0])
            return int(conn.execute(sa.select(sa.func.max(db.events.c.id))).scalar() or 0)

    def _save_cursor(self, value: int) -> None:
        with db.write_tx(self.engine) as conn:
            conn.execute(db.meta_info.delete().where(db.meta_info.c.key == CURSOR_KEY))
            conn.execute(db.meta_info.insert().values(key=CURSOR_KEY, value=str(value)))

    def _deploy_target(self, run_id: str, step: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(db.packages.c.spec).select_from(
                db.runs.join(db.packages, db.runs.c.package == db.packages.c.digest))
                .where(db.runs.c.id == run_id)).first()
        if row is None:
            return None
        spec = json.loads(row[0])
        for s in spec.get("steps", []):
            if s.get("name") == step:
                comp = spec.get("components", {}).get(s.get("component"), {})
                env = {**(comp.get("options") or {}).get("env", {}), **(s.get("options") or {}).get("env", {})}
                return env.get(DEPLOY_ENV)
        return None

    async def _follow_events(self) -> None:
        from .views import events_after

        last = await asyncio.to_thread(self._cursor)
        await asyncio.to_thread(self._save_cursor, last)
        saved_at = time.monotonic()
        while not self.closing:
            seq = self.sched.event_seq
            # the newest events from the scheduler's memory (no query, no thread per commit, only saved
            # artifacts whose text names DEPLOY_OUTPUT parsed), else the table
            kept = self.sched.events.scan(last, 500, "ArtifactSaved", DEPLOY_OUTPUT)
            if kept is not None:
                batch, newest = kept
            else:
                batch = await asyncio.to_thread(events_after, self.engine, None, last, 500)
                newest = batch[-1]["id"] if batch else last
            moved, deployed = newest != last, False
            for e in batch:
                last = e["id"]
                if e.get("type") != "ArtifactSaved" or e.get("name") != DEPLOY_OUTPUT:
                    continue
                deployed = True
                try:
                    target = await asyncio.to_thread(self._deploy_target, e["run_id"], e["step"])
                    if target:
                        with self.engine.connect() as conn:
                            art = conn.execute(sa.select(db.artifacts.c.key).where(
                                db.artifacts.c.run_id == e["run_id"], db.artifacts.c.step == e["step"],
                                db.artifacts.c.name == DEPLOY_OUTPUT)).first()
                        if art is not None:
                            await self.deploy(target, art[0], digest=e["digest"],
                                              source={"kind": "run", "run_id": e["run_id"], "step": e["step"]})
                except Exception:  # noqa: BLE001 - a bad deploy step must not stop the follower
                    log.exception("deploy from %s/%s failed", e.get("run_id"), e.get("step"))
            last = newest
            if moved:
                # only events that deploy nothing since the last save: a restart re-reads them, harmlessly
                if deployed or time.monotonic() - saved_at > CURSOR_SAVE_S:
                    await asyncio.to_thread(self._save_cursor, last)
                    saved_at = time.monotonic()
                continue
            await self.sched.wait_for_events(seq, 15.0)
