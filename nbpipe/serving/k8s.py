"""Model-serving endpoints on Kubernetes: a Deployment + Service per endpoint, its token in a Secret.

With the Kubernetes backend (``NBPIPE_SERVING=kubernetes``; the default when the runner's executor
is ``kubernetes``) the runner does not start model-server processes itself: endpoint ``NAME``
becomes, in the namespace of the endpoint's profile (where that profile's step pods run: its
:class:`~nbpipe.runner.profiles.Placement`, else the runner's namespace, as for ``default``),

- Deployment ``nbp-ep-NAME`` (one replica) running ``python -m nbpipe.serving.k8s``, which fetches
  the endpoint's bundles from the profile's view of the store (its config, limited to the profile's
  prefix ``profiles/<P>/``, travels in ``NBPIPE_ENDPOINT_CONFIG``; bundle keys relative to it; the
  ServiceAccount and S3 credentials Secret are the profile's, as for its step pods) and runs
  :mod:`nbpipe.serving.server` on its port, with readiness and liveness probes on its open health
  routes (``/v2/health/ready``, ``/v2/health/live``);
- Secret ``nbp-ep-NAME-token``: the endpoint's own token (never the runner's), as
  ``NBPIPE_ENDPOINT_TOKEN`` in the server;
- Service ``nbp-ep-NAME`` in front of it; the endpoint's URL is ``http://nbp-ep-NAME.NS.svc`` (NS:
  the profile's namespace).

The Service and the Secret are owned by the Deployment (deleting it garbage-collects them).
A new version, a rollback or a deleted version changes the Deployment's pod template (its config
variable), which rolls out a new pod; the runner then asks the server itself, through the Service,
whether it serves the new default version (``GET /v2/models/NAME``), so the endpoint's state is the
server's, as with local processes. While the server does not answer yet, the runner reads the
Deployment's status: a pod the profile's ResourceQuota refuses (condition ``ReplicaFailure``) fails
the endpoint at once, naming the profile, the quota and what to do. Deleting the endpoint deletes
all three, in the namespace its profile places it in now (after a runner restart too: the
namespace is never stored; moving a profile to another namespace leaves its endpoints' old objects
there, see docs/multi-user.md).

``NBPIPE_K8S_SERVING_PORT`` is the server's port (default 8080, behind Service port 80). ``0``
picks a free port of the runner's host, for clusters whose pods share the runner's network (the
k8s-rig runs pods as local processes on loopback, with no Service routing): the URL is then the
pod's address on that port, and the Deployment uses the ``Recreate`` strategy (two pods of one
endpoint cannot hold one host port).

KServe's InferenceService instead of the Deployment: ``NBPIPE_SERVING=kserve`` (:mod:`.kserve`).
The server pod asks for what the default version's bundle names (``nbpipe.serve(..., resources=)``,
``deployer(..., resources=)``), else the runner's defaults (``NBPIPE_K8S_DEFAULT_REQUESTS`` /
``_LIMITS``, like a step with no ``resources=``); a rollback brings back that version's. Non-goal:
autoscaling.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from typing import Any

from ..errors import NbpipeError

DEFAULT_PROFILE = "default"

log = logging.getLogger("nbpipe.serving.k8s")

LABEL_ENDPOINT = "nbpipe.io/endpoint"
MANAGED_BY = "app.kubernetes.io/managed-by"
CONFIG_ENV = "NBPIPE_ENDPOINT_CONFIG"
DEFAULT_PORT = 8080
PATCH = "application/strategic-merge-patch+json"  # the client would send a dict as a JSON patch
READY_TIMEOUT = float(os.environ.get("NBPIPE_K8S_SERVING_READY_TIMEOUT", "300"))


def backend() -> str:
    """``kubernetes``, ``kserve`` or ``local``: where endpoints run (``NBPIPE_SERVING``, else the executor's
    kind; ``kserve``: InferenceServices, see :mod:`nbpipe.serving.kserve`)."""
    value = os.environ.get("NBPIPE_SERVING") or (
        "kubernetes" if os.environ.get("NBPIPE_EXECUTOR") == "kubernetes" else "local")
    if value not in ("kubernetes", "kserve", "local"):
        raise NbpipeError(f"NBPIPE_SERVING={value!r} is not 'local', 'kubernetes' or 'kserve'",
                          hint="'local' runs model servers as processes of the runner; 'kubernetes' as Deployments; "
                               "'kserve' as KServe InferenceServices.")
    return value


def resource_name(endpoint: str) -> str:
    """The Deployment and Service of endpoint ``endpoint`` (a DNS label, kept under 63 characters)."""
    from ..executors.k8s_pod import dns_name

    name = f"nbp-ep-{endpoint}"
    return name if len(name) <= 57 else dns_name("nbp-ep", endpoint, limit=57)  # room for "-token"


class K8sServing:
    """The Kubernetes side of :class:`nbpipe.runner.endpoints.Endpoints` (runs on the runner's loop)."""

    kind = "Deployment"  # what the runner makes per endpoint (for messages)

    def __init__(self, store: Any, core: Any = None, apps: Any = None, stores: Any = None, placements: Any = None):
        """``stores``: the runner's :class:`~nbpipe.runner.profiles.ProfileStores` (each profile's view);
        ``placements``: where each profile's pods go (default: the stores', else from the env)."""
        from ..executors.k8s_pod import PodSettings

        self.store = store
        self.settings = PodSettings.from_env()
        self.ns = self.settings.namespace  # the runner's: the default profile's endpoints
        self._core, self._apps = core, apps
        self._stores, self._placements = stores, placements
        self._placer: Any = None
        try:
            self.port = int(os.environ.get("NBPIPE_K8S_SERVING_PORT", str(DEFAULT_PORT)))
        except ValueError:
            raise NbpipeError(f"NBPIPE_K8S_SERVING_PORT={os.environ['NBPIPE_K8S_SERVING_PORT']!r} is not a port",
                              hint="Give a port (default 8080), or 0 when pods share the runner's network.") from None
        self.shares_host = self.port == 0

    # ------------------------------------------------------------ clients
    def _clients(self) -> tuple[Any, Any]:
        if self._core is None:
            from kubernetes import client

            from ..executors.kubernetes import load_api

            self._core = load_api()
            self._apps = client.AppsV1Api(self._core.api_client)
        return self._core, self._apps

    # ------------------------------------------------------------ profiles
    @property
    def stores(self) -> Any:
        """Each profile's view of the store (:class:`~nbpipe.runner.profiles.ProfileStores`)."""
        if self._stores is None:
            from ..runner.profiles import ProfileStores

            self._stores = ProfileStores(self.store, self.placements)
        return self._stores

    @property
    def placements(self) -> Any:
        if self._placements is None:
            self._placements = getattr(self._stores, "placements", None)
        if self._placements is None:
            from ..runner.profiles import Placements

            self._placements = Placements.from_env()
        return self._placements

    def place(self, profile: str | None) -> Any:
        """The pod settings of ``profile``'s endpoints: exactly its step pods' (namespace, ServiceAccount,
        S3 credentials Secret), from the same placements; the runner's own for ``default``/unlisted."""
        if self._placer is None:
            from ..executors.kubernetes import KubernetesExecutor

            self._placer = KubernetesExecutor(api=object(), placements=self.placements)
            self._placer.settings = self.settings
        return self._placer.place({"profile": profile or DEFAULT_PROFILE})

    def namespace(self, profile: str | None) -> str:
        return str(self.place(profile).namespace)

    def url(self, name: str, port: int | None, profile: str | None = None) -> str | None:
        if self.shares_host:
            return f"http://127.0.0.1:{port}" if port else None
        return f"http://{resource_name(name)}.{self.namespace(profile)}.svc"

    # ------------------------------------------------------------ objects
    def _labels(self, name: str) -> dict[str, str]:
        return {MANAGED_BY: "nbpipe", LABEL_ENDPOINT: name, "app.kubernetes.io/name": "nbpipe-model-server"}

    def _config(self, name: str, default: str, versions: dict[str, dict[str, Any]],
                profile: str | None = None) -> str:
        """The server's config: the profile's view of the store, and each version's bundle key in it.

        Version keys are recorded root-relative (``profiles/<P>/sha256/…``); a key outside the
        profile's prefix (a bundle stored before prefixes) is copied into the view first, so the
        pod, with the profile's credentials, reads its own prefix only.
        """
        stores = self.stores
        prefix = stores.prefix(profile)
        inside = {}
        for version, info in versions.items():
            key = str(info["key"])
            if prefix and key.startswith(prefix + "/"):
                key = key[len(prefix) + 1:]
            elif prefix:
                stores.stage(profile, key)
            inside[version] = {**info, "key": key}
        return json.dumps({"name": name, "default": default, "versions": inside,
                           "store": stores.of(profile).config()}, sort_keys=True)

    def deployment(self, name: str, config: str, port: int, replicas: int = 1,
                   profile: str | None = None) -> dict[str, Any]:
        """The endpoint's Deployment (plain JSON, as the API takes it), placed as ``profile``'s pods."""
        from ..executors.k8s_pod import _resources

        s = self.place(profile)
        ns = s.namespace
        res = resource_name(name)
        hosts = ",".join([res, f"{res}.{ns}", f"{res}.{ns}.svc", f"{res}.{ns}.svc.cluster.local"])
        env: list[dict[str, Any]] = [
            {"name": CONFIG_ENV, "value": config}, {"name": "PYTHONUNBUFFERED", "value": "1"},
            {"name": "NBPIPE_ENDPOINT_TOKEN", "valueFrom": {"secretKeyRef": {"name": f"{res}-token", "key": "token"}}},
            {"name": "NBPIPE_SERVING_HOSTS", "value": hosts}]
        for var, ref in sorted(s.secret_env.items()):
            secret, _, key = ref.partition(":")
            env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
        probe = {"httpGet": {"path": "/v2/health/ready", "port": port}, "periodSeconds": 2, "failureThreshold": 3}
        container: dict[str, Any] = {
            "name": "server", "image": s.image, "imagePullPolicy": "IfNotPresent",
            "command": ["python", "-m", "nbpipe.serving.k8s", "--port", str(port),
                       "--host", "127.0.0.1" if self.shares_host else "0.0.0.0"],
            "env": env, "ports": [{"name": "http", "containerPort": port}],
            "readinessProbe": probe,
            "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": port}, "periodSeconds": 10,
                              "failureThreshold": 6, "initialDelaySeconds": 30},
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        }
        if s.env_from_secrets:
            container["envFrom"] = [{"secretRef": {"name": x}} for x in s.env_from_secrets]
        cfg = json.loads(config)  # the default version's own requests and limits, else the runner's defaults
        resources = _resources(((cfg.get("versions") or {}).get(cfg.get("default")) or {}).get("resources") or {}, s)
        if resources:
            container["resources"] = resources
        spec: dict[str, Any] = {"containers": [container], "automountServiceAccountToken": False,
                                "enableServiceLinks": False}
        if s.s3_credentials_secret:
            env.append({"name": "NBPIPE_S3_CREDENTIALS_DIR", "value": s.s3_credentials_dir})
            spec["volumes"] = [{"name": "s3-credentials", "secret": {"secretName": s.s3_credentials_secret}}]
            container["volumeMounts"] = [{"name": "s3-credentials", "mountPath": s.s3_credentials_dir,
                                          "readOnly": True}]
        if s.service_account:
            spec["serviceAccountName"] = s.service_account
        if s.image_pull_secrets:
            spec["imagePullSecrets"] = [{"name": x} for x in s.image_pull_secrets]
        if s.node_selector:
            spec["nodeSelector"] = dict(s.node_selector)
        if s.tolerations:
            spec["tolerations"] = list(s.tolerations)
        labels = self._labels(name)
        return {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": res, "namespace": ns, "labels": labels},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {LABEL_ENDPOINT: name, MANAGED_BY: "nbpipe"}},
                         # pods on the runner's host network cannot overlap on one port
                         "strategy": {"type": "Recreate"} if self.shares_host else {"type": "RollingUpdate"},
                         "template": {"metadata": {"labels": labels}, "spec": spec}}}

    def _owned(self, name: str, owner: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "namespace": owner["metadata"]["namespace"], "labels": self._labels_of(owner),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": owner["metadata"]["name"],
                                     "uid": owner["metadata"]["uid"], "controller": True,
                                     "blockOwnerDeletion": False}]}

    @staticmethod
    def _labels_of(owner: dict[str, Any]) -> dict[str, str]:
        return dict(owner["metadata"]["labels"])

    def service(self, name: str, port: int, owner: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Service", "metadata": self._owned(resource_name(name), owner),
                "spec": {"selector": {LABEL_ENDPOINT: name, MANAGED_BY: "nbpipe"},
                         "ports": [{"name": "http", "port": port if self.shares_host else 80, "targetPort": port,
                                    "protocol": "TCP"}]}}

    def secret(self, name: str, token: str, owner: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": self._owned(f"{resource_name(name)}-token", owner), "stringData": {"token": token}}

    # ------------------------------------------------------------ apply / delete
    def _sync(self, name: str, config: str, port: int, token: str, profile: str | None = None) -> None:
        """Create the Deployment (at 0 replicas), its Secret and Service, then run it; or update its config."""
        core, apps = self._clients()
        res = resource_name(name)
        ns = self.namespace(profile)
        try:
            resp = apps.create_namespaced_deployment(ns, self.deployment(name, config, port, 0, profile),
                                                     _preload_content=False)
        except Exception as exc:
            if getattr(exc, "status", None) != 409:
                raise
            # it exists (a new version, a rollback, or a runner restart): a new config rolls out a new pod
            apps.patch_namespaced_deployment(res, ns, self.deployment(name, config, port, 1, profile),
                                             _content_type=PATCH)
            return
        owner = json.loads(resp.data)
        for create, body in ((core.create_namespaced_secret, self.secret(name, token, owner)),
                             (core.create_namespaced_service, self.service(name, port, owner))):
            try:
                create(ns, body)
            except Exception as exc:
                if getattr(exc, "status", None) != 409:
                    raise
        # the pods start once their token Secret exists
        apps.patch_namespaced_deployment(res, ns, {"spec": {"replicas": 1}}, _content_type=PATCH)

    async def apply(self, eps: Any, name: str) -> None:
        """Make the endpoint's Deployment serve the DB's versions; record its state when the server says so."""
        import sqlalchemy as sa

        from ..runner import db
        from ..runner.migrations.m0004_endpoints import endpoint_versions

        ep = eps._rows(name)[0]
        profile = str(ep.get("profile") or DEFAULT_PROFILE)
        with eps.engine.connect() as conn:
            vers = db.rows(conn.execute(sa.select(endpoint_versions).where(endpoint_versions.c.endpoint == name)))
        versions = {v["version"]: {"key": v["key"], "digest": v["digest"],
                                   "resources": (db.loads(v["manifest"]) or {}).get("resources") or {}}
                    for v in vers}
        default = str(ep["default_version"])
        port = int(ep["port"] or 0) if self.shares_host else self.port
        if self.shares_host and not port:
            from ..executors.gang import free_port

            port = free_port()
        token = await asyncio.to_thread(eps.endpoint_token, name, True)
        eps._set(name, port=port, reason="")
        ns = ""
        try:
            ns = await asyncio.to_thread(self.namespace, profile)
            config = await asyncio.to_thread(self._config, name, default, versions, profile)
            await asyncio.to_thread(self._sync, name, config, port, token, profile)
        except Exception as exc:  # noqa: BLE001 - the API refused: the endpoint is failed, saying why
            from ..executors.k8s_errors import api_error as _api_error

            refused = quota_refusal(exc, profile, ns) if ns else None
            if refused is not None:
                eps._set(name, state="failed", reason=refused)
                return
            err = _api_error(exc, f"create the {self.kind} of endpoint {name!r}", ns or self.ns) \
                if getattr(exc, "status", None) is not None else exc
            eps._set(name, state="failed", reason=f"{err}" + (f" ({err.hint})" if getattr(err, "hint", "") else ""))
            return
        state, reason = await self._wait_served(eps, name, default, port, profile)
        eps._set(name, state=state, reason=reason, pid=None)

    async def resume(self, eps: Any, name: str) -> None:
        """After a runner restart: bring the endpoint's Deployment in line with the DB, in the background."""
        try:
            async with eps._lock(name):
                await self.apply(eps, name)
        except Exception as exc:  # noqa: BLE001 - one bad endpoint must not stop the others
            log.exception("cannot resume endpoint %s", name)
            eps._set(name, state="failed", reason=str(exc))

    def _refused(self, name: str, profile: str | None) -> str | None:
        """Why the endpoint's Deployment cannot make its pod, when its profile's quota refuses it (else None)."""
        _, apps = self._clients()
        ns = self.namespace(profile)
        resp = apps.read_namespaced_deployment(resource_name(name), ns, _preload_content=False)
        for cond in (json.loads(resp.data).get("status") or {}).get("conditions") or []:
            if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
                return quota_refusal(cond.get("message") or "", profile or DEFAULT_PROFILE, ns)
        return None

    async def _wait_served(self, eps: Any, name: str, default: str, port: int,
                           profile: str | None = None) -> tuple[str, str]:
        """Wait until the server behind the Service serves ``default`` (or says why it cannot)."""
        import httpx

        url = self.url(name, port, profile)
        deadline = time.monotonic() + READY_TIMEOUT
        last = "no answer yet"
        checked = 0.0  # when the Deployment's status was last read (a quota refusal shows there)
        async with httpx.AsyncClient(timeout=10) as http:
            while time.monotonic() < deadline:
                try:
                    resp = await http.get(f"{url}/v2/models/{name}/versions/{default}", headers=eps._auth(name))
                    body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
                    if resp.status_code == 200 and (body.get("parameters") or {}).get("default_version") == default:
                        return "ready", ""
                    if resp.status_code == 503 and body.get("error"):  # it has the version but cannot load it
                        return "failed", str(body["error"])
                    # 404: a pod of the previous config still answers; 200 with another default: likewise
                    last = f"HTTP {resp.status_code}: {body.get('error') or 'serving the previous version'}"
                except (httpx.HTTPError, ValueError) as exc:
                    last = f"not answering ({type(exc).__name__})"
                if time.monotonic() - checked >= 2.0:
                    checked = time.monotonic()
                    try:
                        refused = await asyncio.to_thread(self._refused, name, profile)
                    except Exception as exc:  # noqa: BLE001 - the status is a hint; the server's answer decides
                        log.debug("cannot read the status of endpoint %s: %s", name, exc)
                        refused = None
                    if refused is not None:
                        return "failed", refused
                await asyncio.sleep(0.2)
        ns = self.namespace(profile)
        return "failed", (f"the model server of endpoint {name!r} did not serve version {default} within "
                          f"{READY_TIMEOUT:g} s ({last}); see `kubectl -n {ns} describe deployment "
                          f"{resource_name(name)}` and its pod's log")

    async def delete(self, name: str, profile: str | None = None) -> None:
        """Delete the endpoint's Deployment (its pods), Service and token Secret (in its profile's namespace)."""
        from kubernetes import client

        core, apps = await asyncio.to_thread(self._clients)
        ns = await asyncio.to_thread(self.namespace, profile)
        res = resource_name(name)
        body = client.V1DeleteOptions(propagation_policy="Background", grace_period_seconds=5)
        for call, obj in ((apps.delete_namespaced_deployment, res), (core.delete_namespaced_service, res),
                          (core.delete_namespaced_secret, f"{res}-token")):
            try:
                await asyncio.to_thread(call, obj, ns, body=body)
            except Exception as exc:  # noqa: BLE001 - gone already (404; e.g. garbage-collected) is fine
                if getattr(exc, "status", None) != 404:
                    raise NbpipeError(f"could not delete {obj} of endpoint {name!r}: {exc}") from None


def quota_refusal(refusal: Exception | str, profile: str, namespace: str) -> str | None:
    """The endpoint's failure reason when ``profile``'s ResourceQuota refused its object or pod, else None.

    ``refusal``: the API's 403 on a create, or the message of a Deployment's ``ReplicaFailure``
    condition (the controller's refused pod). Worded as :func:`nbpipe.executors.k8s_errors.quota_refusal`
    words a step's, for an endpoint.
    """
    from ..executors.k8s_errors import _EXCEEDED, _MUST_SPECIFY, _detail

    if isinstance(refusal, str):
        detail = refusal
    elif getattr(refusal, "status", None) == 403:
        detail = _detail(refusal)
    else:
        return None
    m = _EXCEEDED.search(detail)
    if m:
        return (f"profile '{profile}' is out of its ResourceQuota '{m['quota']}' (namespace {namespace}): the "
                f"endpoint's model server requested {m['requested']}, already used {m['used']}, limit "
                f"{m['limited']}; ask an admin to raise the quota, or delete another endpoint of the profile, or "
                "ask for less (the version's resources=, else the runner's NBPIPE_K8S_DEFAULT_REQUESTS), "
                "then deploy again")
    m = _MUST_SPECIFY.search(detail)
    if m:
        return (f"profile '{profile}': its ResourceQuota '{m['quota']}' (namespace {namespace}) needs every pod "
                f"to set {m['what']}; set NBPIPE_K8S_DEFAULT_REQUESTS / NBPIPE_K8S_DEFAULT_LIMITS on the runner "
                "or ask an admin for a LimitRange with defaults in that namespace")
    if "exceeded quota" in detail or "failed quota" in detail:
        return f"profile '{profile}': a ResourceQuota in namespace {namespace} refused the endpoint: {detail}"
    return None


# ------------------------------------------------------------------ in the pod
def fetch(config: dict[str, Any], folder: str) -> dict[str, Any]:
    """The model server's config with every version's bundle fetched from the store into ``folder``."""
    from ..stores import open_store

    store = open_store(config["store"])
    os.makedirs(folder, exist_ok=True)
    versions = {}
    for version, info in config["versions"].items():
        dest = os.path.join(folder, f"{info.get('digest') or version}.zip")
        if not os.path.exists(dest):
            store.get_file(info["key"], dest)
        versions[version] = dest
    return {"name": config["name"], "default": config["default"], "versions": versions,
            "workdir": os.path.join(folder, "work")}


def main(argv: list[str] | None = None) -> int:
    """``python -m nbpipe.serving.k8s --port P --host H``: fetch the bundles, then serve them."""
    import argparse

    from . import server

    ap = argparse.ArgumentParser(prog="python -m nbpipe.serving.k8s")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument("--host", default="0.0.0.0")
    args = ap.parse_args(argv)
    try:
        config = json.loads(os.environ[CONFIG_ENV])
    except (KeyError, ValueError) as exc:
        sys.stderr.write(f"nbpipe model server: no valid {CONFIG_ENV} ({exc})\n")
        return 2
    here = os.getcwd()
    try:
        local = fetch(config, os.path.join(here, "bundles"))
    except Exception as exc:  # noqa: BLE001 - say which store and key, then exit (the pod restarts)
        sys.stderr.write(f"nbpipe model server: cannot fetch the bundles of {config.get('name')!r} from the store: "
                         f"{exc}\n")
        return 1
    path = os.path.join(here, "config.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(local, fh)
    print(f"nbpipe model server: {len(local['versions'])} version(s) of {config['name']!r} fetched; "
          f"serving version {config['default']}", flush=True)
    return server.main([path, "--port", str(args.port), "--host", args.host,
                        "--ready-file", os.path.join(here, "ready.json"), "--strict-port"])


if __name__ == "__main__":
    sys.exit(main())
