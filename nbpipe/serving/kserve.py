"""Model-serving endpoints as KServe InferenceServices (``NBPIPE_SERVING=kserve``).

Where KServe is installed, endpoint ``NAME`` becomes, in the namespace of the endpoint's profile (as
for the Deployment backend: where its step pods run, with their ServiceAccount and S3 Secret, the
bundles read from the profile's prefix of the store; the runner's namespace for ``default``),

- InferenceService ``nbp-ep-NAME`` (``serving.kserve.io/v1beta1``, ``RawDeployment`` mode, one
  replica) whose predictor is a custom container running nbpipe's model server, exactly the pod
  :class:`nbpipe.serving.k8s.K8sServing` puts in its Deployment (``python -m nbpipe.serving.k8s``:
  the bundles fetched from the store named in ``NBPIPE_ENDPOINT_CONFIG``, the same env, S3
  credentials, service account, probes; container ``kserve-container``);
- Secret ``nbp-ep-NAME-token`` (owned by the InferenceService): the endpoint's own token.

KServe makes the Deployment and the predictor Service. The runner follows the InferenceService's
status: once ``status.observedGeneration`` has caught up with the spec it wrote and the ``Ready``
condition is ``True``, it takes the endpoint's URL from ``status.address.url`` (in-cluster), else
``status.url``, and asks the server there whether it serves the endpoint's default version
(``GET /v2/models/NAME/versions/V``), as for a Deployment. A new version, a rollback or a deleted
version patches the predictor's config (a new revision); deleting the endpoint deletes the
InferenceService (and, through its owner reference, the Secret). A ``Ready`` condition that is
``False`` because the profile's ResourceQuota refused the predictor's pod fails the endpoint at once,
naming the profile and the quota (KServe copies the Deployment's failure into it).

It is chosen explicitly (``NBPIPE_SERVING=kserve``), not detected: the runner's least-privilege Role
is namespaced and cannot ask the cluster which CRDs it has. Without the CRD the endpoint fails with
a message saying so. Non-goals: KServe's built-in runtimes (sklearn, torch...), canary traffic
splits, Knative (``Serverless``) mode.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..errors import NbpipeError
from .k8s import DEFAULT_PROFILE, READY_TIMEOUT, K8sServing, quota_refusal, resource_name

log = logging.getLogger("nbpipe.serving.kserve")

GROUP, VERSION, PLURAL, KIND = "serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService"
MERGE = "application/merge-patch+json"
CONTAINER = "kserve-container"


class KServeServing(K8sServing):
    """The KServe side of :class:`nbpipe.runner.endpoints.Endpoints`."""

    kind = "InferenceService"

    def __init__(self, store: Any, core: Any = None, apps: Any = None, stores: Any = None, placements: Any = None):
        super().__init__(store, core, apps, stores, placements)
        self.urls: dict[str, str] = {}  # endpoint -> the URL its InferenceService's status gives
        self.generations: dict[str, int] = {}  # endpoint -> the generation of the spec last written

    def _custom(self) -> Any:
        from kubernetes import client

        core, _ = self._clients()
        return client.CustomObjectsApi(core.api_client)

    def url(self, name: str, port: int | None, profile: str | None = None) -> str | None:
        if name in self.urls:
            return self.urls[name]
        if self.shares_host:
            return None  # only the status says where the predictor listens
        return f"http://{resource_name(name)}-predictor.{self.namespace(profile)}.svc"

    def inference_service(self, name: str, config: str, port: int, profile: str | None = None) -> dict[str, Any]:
        """The endpoint's InferenceService: the Deployment's pod (placed as ``profile``'s) as a custom predictor."""
        dep = self.deployment(name, config, port, profile=profile)
        pod = dep["spec"]["template"]["spec"]
        pod["containers"][0]["name"] = CONTAINER
        predictor = {**pod, "minReplicas": 1, "maxReplicas": 1}
        labels = dep["metadata"]["labels"]
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
                "metadata": {"name": resource_name(name), "namespace": dep["metadata"]["namespace"], "labels": labels,
                             "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"}},
                "spec": {"predictor": predictor}}

    def _sync(self, name: str, config: str, port: int, token: str, profile: str | None = None) -> None:
        """Create the InferenceService and its token Secret, or patch its predictor (a new revision)."""
        core, _ = self._clients()
        api = self._custom()
        res = resource_name(name)
        body = self.inference_service(name, config, port, profile)
        ns = body["metadata"]["namespace"]
        try:
            obj = api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
        except Exception as exc:
            status = getattr(exc, "status", None)
            if status == 404:
                raise NbpipeError(
                    f"NBPIPE_SERVING=kserve, but the cluster does not serve {PLURAL}.{GROUP}/{VERSION} in "
                    f"namespace {ns}",
                    hint="Install KServe (its CRDs), or set NBPIPE_SERVING=kubernetes to serve from a "
                         "Deployment and Service.") from None
            if status != 409:
                raise
            obj = api.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, res,
                                                     {"spec": body["spec"]}, _content_type=MERGE)
            self.generations[name] = int(obj["metadata"].get("generation") or 0)
            return
        self.generations[name] = int(obj["metadata"].get("generation") or 0)
        owner = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": res, "uid": obj["metadata"]["uid"],
                 "controller": False, "blockOwnerDeletion": False}
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                  "metadata": {"name": f"{res}-token", "namespace": ns, "labels": body["metadata"]["labels"],
                               "ownerReferences": [owner]},
                  "stringData": {"token": token}}
        try:
            core.create_namespaced_secret(ns, secret)
        except Exception as exc:
            if getattr(exc, "status", None) != 409:
                raise

    def _status(self, name: str, profile: str | None = None) -> tuple[bool, str, str]:
        """``(caught up and Ready, url, why not)`` from the InferenceService's status."""
        obj = self._custom().get_namespaced_custom_object(GROUP, VERSION, self.namespace(profile), PLURAL,
                                                          resource_name(name))
        st = obj.get("status") or {}
        want = self.generations.get(name) or int(obj["metadata"].get("generation") or 0)
        if int(st.get("observedGeneration") or 0) < want:
            return False, "", f"KServe has not reconciled generation {want} yet"
        ready = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
        url = str((st.get("address") or {}).get("url") or st.get("url") or "")
        if ready is None or ready.get("status") != "True":
            why = (ready or {}).get("message") or (ready or {}).get("reason") or "not Ready"
            return False, url, f"InferenceService {resource_name(name)}: {why}"
        if not url:
            return False, url, f"InferenceService {resource_name(name)} is Ready but has no URL"
        return True, url, ""

    def _refused(self, name: str, profile: str | None) -> str | None:
        return None  # KServe's Deployment is not the runner's to read: its status says it (``_status``)

    async def _wait_served(self, eps: Any, name: str, default: str, port: int,
                           profile: str | None = None) -> tuple[str, str]:
        """Wait for the InferenceService's Ready condition and URL, then for its server to serve ``default``."""
        deadline = time.monotonic() + READY_TIMEOUT
        why = "no status yet"
        ns = await asyncio.to_thread(self.namespace, profile)
        while time.monotonic() < deadline:
            try:
                ok, url, why = await asyncio.to_thread(self._status, name, profile)
            except Exception as exc:  # noqa: BLE001 - API trouble: say it if it lasts
                ok, url, why = False, "", f"cannot read the InferenceService: {exc}"
            if ok:
                self.urls[name] = url.rstrip("/")
                return await super()._wait_served(eps, name, default, port, profile)
            refused = quota_refusal(why, profile or DEFAULT_PROFILE, ns)
            if refused is not None:
                return "failed", refused
            await asyncio.sleep(0.2)
        return "failed", (f"the InferenceService of endpoint {name!r} was not ready within {READY_TIMEOUT:g} s "
                          f"({why}); see `kubectl -n {ns} describe inferenceservice {resource_name(name)}`")

    async def delete(self, name: str, profile: str | None = None) -> None:
        """Delete the endpoint's InferenceService (KServe removes what it made) and its token Secret."""
        from kubernetes import client

        core, _ = await asyncio.to_thread(self._clients)
        ns = await asyncio.to_thread(self.namespace, profile)
        res = resource_name(name)
        body = client.V1DeleteOptions(propagation_policy="Background", grace_period_seconds=5)
        api = self._custom()
        for call, args in ((api.delete_namespaced_custom_object, (GROUP, VERSION, ns, PLURAL, res)),
                           (core.delete_namespaced_secret, (f"{res}-token", ns))):
            try:
                await asyncio.to_thread(call, *args, body=body)
            except Exception as exc:  # noqa: BLE001 - gone already (404; e.g. garbage-collected) is fine
                if getattr(exc, "status", None) != 404:
                    raise NbpipeError(f"could not delete {args[-1] if len(args) == 2 else res} of endpoint "
                                      f"{name!r}: {exc}") from None
        self.urls.pop(name, None)
        self.generations.pop(name, None)
