"""Model serving as KServe InferenceServices (``NBPIPE_SERVING=kserve``), against the real API server (k8s-rig).

The rig's API server has KServe's real ``inferenceservices.serving.kserve.io`` CRD (``tests/k8s/crds``,
applied by ``tests/k8s_rig/run.py``), so the InferenceService the runner creates and patches is
validated against KServe's schema. No KServe controller can run here, so :class:`KServeStandIn`
plays its part, explicitly and minimally, as the test's admin: for each new generation of an
InferenceService it applies the predictor Deployment KServe's RawDeployment mode makes
(``<name>-predictor``, the predictor's pod spec, owned by the InferenceService; the rig's
controller-manager makes its pod, pkubelet runs it), waits for that rollout, and writes the status
(``observedGeneration``, ``Ready``, ``url``/``address.url``). The rig has no Service routing, so
the URL it writes is the predictor pod's address on this host (``NBPIPE_K8S_SERVING_PORT=0``) and the
Deployment uses ``Recreate`` (two pods cannot hold one host port). Everything on nbpipe's side (the
runner as its least-privilege ServiceAccount, the InferenceService, its token Secret, readiness
from the status, the model server fetching the bundle from S3, versions, rollback, delete) is real.
"""

from __future__ import annotations

import base64
import threading
import time
from typing import Any, Iterator

import numpy as np
import pytest

import nbpipe

from .cases import wait_for
from .conftest import Cluster

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
NAME = "ks-linear"


def linear(model: Any, x: Any) -> Any:
    import numpy as np

    return np.asarray(x, dtype=float) @ np.asarray(model, dtype=float)


class KServeStandIn:
    """KServe's controller, as small as the test needs (see the module docstring)."""

    def __init__(self, c: Cluster, namespace: str = ""):
        from kubernetes import client

        self.core = c.api()
        self.apps = client.AppsV1Api(self.core.api_client)
        self.custom = client.CustomObjectsApi(self.core.api_client)
        self.ns = namespace or c.namespace  # the namespace it watches (one KServe per namespace here)
        self.stopped = threading.Event()
        self.reconciled: list[tuple[str, int]] = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        from kubernetes import watch

        while not self.stopped.is_set():
            try:
                for e in watch.Watch().stream(self.custom.list_namespaced_custom_object, GROUP, VERSION, self.ns,
                                              PLURAL, timeout_seconds=5):
                    obj = e["object"]
                    if e["type"] in ("ADDED", "MODIFIED") and int((obj.get("status") or {}).get(
                            "observedGeneration") or 0) < int(obj["metadata"]["generation"]):
                        self.reconcile(obj)
                    if self.stopped.is_set():
                        return
            except Exception:  # noqa: BLE001 - the watch expired or dropped (or a 409 on status): watch again
                if self.stopped.wait(0.2):
                    return

    def reconcile(self, isvc: dict[str, Any]) -> None:
        from kubernetes import client

        name, gen = isvc["metadata"]["name"], int(isvc["metadata"]["generation"])
        pod = {k: v for k, v in isvc["spec"]["predictor"].items() if k not in ("minReplicas", "maxReplicas")}
        labels = {**isvc["metadata"]["labels"], "serving.kserve.io/inferenceservice": name,
                  "component": "predictor"}
        dep = {"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": f"{name}-predictor", "namespace": self.ns, "labels": labels,
                            "ownerReferences": [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService",
                                                 "name": name, "uid": isvc["metadata"]["uid"],
                                                 "controller": True, "blockOwnerDeletion": True}]},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"serving.kserve.io/inferenceservice": name}},
                        "strategy": {"type": "Recreate"},
                        "template": {"metadata": {"labels": labels}, "spec": pod}}}
        try:
            made = self.apps.create_namespaced_deployment(self.ns, dep)
        except client.exceptions.ApiException as exc:
            if exc.status != 409:
                raise
            made = self.apps.replace_namespaced_deployment(f"{name}-predictor", self.ns, dep)
        want = made.metadata.generation

        def rolled_out() -> bool:
            d = self.apps.read_namespaced_deployment(f"{name}-predictor", self.ns)
            s = d.status
            return bool(s.observed_generation and s.observed_generation >= want and s.updated_replicas == 1
                        and s.ready_replicas == 1 and (s.replicas or 0) == 1)

        wait_for(f"Deployment {name}-predictor to roll out", rolled_out, 120)
        port = pod["containers"][0]["ports"][0]["containerPort"]
        url = f"http://127.0.0.1:{port}"
        now = "2026-11-30T00:00:00Z"
        fresh = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)
        fresh["status"] = {"observedGeneration": gen, "url": url, "address": {"url": url},
                           "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                                          for t in ("PredictorReady", "Ready")]}
        self.custom.replace_namespaced_custom_object_status(GROUP, VERSION, self.ns, PLURAL, name, fresh)
        self.reconciled.append((name, gen))

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(10)


@pytest.fixture(scope="module")
def kserve(real: Cluster) -> Iterator[KServeStandIn]:
    k = KServeStandIn(real)
    yield k
    k.close()


@pytest.fixture(scope="module")
def client(real: Cluster, kserve: KServeStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield real.runner(tmp_path_factory.mktemp("k8s-kserve-runner"), NBPIPE_SERVING="kserve",
                      NBPIPE_K8S_SERVING_PORT="0").client()


def gone(call: Any, *args: Any) -> bool:
    try:
        call(*args)
    except Exception as exc:  # noqa: BLE001 - the 404 is what we wait for
        return getattr(exc, "status", None) == 404
    return False


@pytest.mark.k8s
def test_inference_service_deploy_new_version_roll_back_and_undeploy(real: Cluster, kserve: KServeStandIn,
                                                                     client: Any) -> None:
    core, ns = kserve.core, real.namespace
    X = np.arange(12.0).reshape(4, 3)
    w1, w2 = np.array([1.0, 2.0, -1.0]), np.array([0.5, 0.0, 3.0])

    t0 = time.monotonic()
    ep = nbpipe.serve(w1, predict=linear, name=NAME, runner=client)
    print(f"\nkserve: deploy (InferenceService Ready + server serving) {time.monotonic() - t0:.2f} s")
    assert ep.info["state"] == "ready" and ep.version == "1", ep.info
    np.testing.assert_allclose(ep.predict(X), linear(w1, X))  # over HTTP, at the status URL == in the kernel
    isvc = kserve.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, f"nbp-ep-{NAME}")
    assert ep.url == isvc["status"]["address"]["url"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert isvc["metadata"]["labels"]["nbpipe.io/endpoint"] == NAME
    pred = isvc["spec"]["predictor"]
    assert (pred["minReplicas"], pred["maxReplicas"]) == (1, 1)
    (c,) = pred["containers"]
    assert c["name"] == "kserve-container" and c["command"][:3] == ["python", "-m", "nbpipe.serving.k8s"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert pred["serviceAccountName"] == "nbpipe-step"
    secret = core.read_namespaced_secret(f"nbp-ep-{NAME}-token", ns)
    (owner,) = secret.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid) == ("InferenceService", f"nbp-ep-{NAME}", isvc["metadata"]["uid"])
    assert base64.b64decode(secret.data["token"]).decode() == ep.info["token"]
    assert gone(kserve.apps.read_namespaced_deployment, f"nbp-ep-{NAME}", ns)  # KServe's, not nbpipe's Deployment

    # a new version patches the predictor: a new generation, a new revision; a rollback another
    ep2 = nbpipe.serve(w2, predict=linear, name=NAME, runner=client)
    assert ep2.version == "2" and ep2.info["state"] == "ready", ep2.info
    np.testing.assert_allclose(ep2.predict(X), linear(w2, X))
    np.testing.assert_allclose(ep2.predict(X, version="1"), linear(w1, X))
    ep2.rollback()
    assert ep2.version == "1" and ep2.info["state"] == "ready", ep2.info
    np.testing.assert_allclose(ep2.predict(X), linear(w1, X))
    assert [g for n, g in kserve.reconciled if n == f"nbp-ep-{NAME}"] == [1, 2, 3]

    # undeploy: the InferenceService goes, and with it (owner references) the Secret and KServe's Deployment
    ep2.delete()
    wait_for("the InferenceService, its Secret and its predictor to be deleted",
             lambda: gone(kserve.custom.get_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, f"nbp-ep-{NAME}")
             and gone(core.read_namespaced_secret, f"nbp-ep-{NAME}-token", ns)
             and gone(kserve.apps.read_namespaced_deployment, f"nbp-ep-{NAME}-predictor", ns), 60)
    assert NAME not in [e.name for e in nbpipe.serving.endpoints(client)]


def test_without_the_crd_the_endpoint_fails_saying_so(double: Cluster, tmp_path: Any) -> None:
    """The API double serves no InferenceService CRD (404, as a cluster without KServe)."""
    client = double.runner(tmp_path / "runner", NBPIPE_SERVING="kserve", NBPIPE_K8S_SERVING_PORT="0").client()
    with pytest.raises(Exception) as err:
        nbpipe.serve(np.array([1.0]), predict=linear, name="no-kserve", runner=client)
    assert "NBPIPE_SERVING=kserve, but the cluster does not serve inferenceservices.serving.kserve.io/v1beta1" \
        in str(err.value), str(err.value)
    assert "Install KServe" in str(err.value)


@pytest.mark.k8s
def test_a_team_inference_service_runs_in_its_profile_namespace(real: Cluster, tmp_path: Any) -> None:
    """An endpoint of profile team-a becomes an InferenceService in team-a's namespace (its ServiceAccount,
    S3 Secret and store prefix in the predictor), serves there and is deleted there."""
    import json
    import uuid

    from nbpipe.client import Client

    from .test_profiles_k8s import ALICE, profile_namespaces, users_file

    spaces = profile_namespaces()
    assert "team-a" in spaces, f"the rig applied no profile overlays: {spaces}"
    ns, name = spaces["team-a"], "ks-team-a"
    res = f"nbp-ep-{name}"
    stand_in = KServeStandIn(real, ns)
    try:
        users = users_file(tmp_path / "users.json", {"team-a": ns})
        root = "p" + uuid.uuid4().hex[:8]
        r = real.runner(tmp_path / "runner", NBPIPE_USERS_FILE=str(users), NBPIPE_SERVING="kserve",
                        NBPIPE_K8S_SERVING_PORT="0", NBPIPE_S3_PREFIX=root)
        alice = Client(r.url, token=ALICE)
        w = np.array([1.0, -2.0, 0.5])
        X = np.arange(6.0).reshape(2, 3)
        ep = nbpipe.serve(w, predict=linear, name=name, runner=alice)  # alice's profile: team-a
        assert ep.info["state"] == "ready" and ep.info["profile"] == "team-a", ep.info
        np.testing.assert_allclose(ep.predict(X), linear(w, X))
        isvc = stand_in.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, res)
        assert ep.url == isvc["status"]["address"]["url"]
        pred = isvc["spec"]["predictor"]
        assert pred["serviceAccountName"] == "nbpipe-step"
        (c,) = pred["containers"]
        env = {e["name"]: e for e in c["env"]}
        refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in env.values() if "valueFrom" in e}
        assert refs == {"nbpipe-s3", f"{res}-token"}  # team-a's S3 Secret and the token, both in team-a's namespace
        assert json.loads(env["NBPIPE_ENDPOINT_CONFIG"]["value"])["store"]["prefix"] == f"{root}/profiles/team-a"
        secret = stand_in.core.read_namespaced_secret(f"{res}-token", ns)
        assert base64.b64decode(secret.data["token"]).decode() == ep.info["token"]
        assert gone(stand_in.custom.get_namespaced_custom_object, GROUP, VERSION, real.namespace, PLURAL, res)
        assert gone(stand_in.core.read_namespaced_secret, f"{res}-token", real.namespace)
        ep.delete()
        wait_for("team-a's InferenceService, Secret and predictor to be deleted",
                 lambda: gone(stand_in.custom.get_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, res)
                 and gone(stand_in.core.read_namespaced_secret, f"{res}-token", ns)
                 and gone(stand_in.apps.read_namespaced_deployment, f"{res}-predictor", ns), 60)
    finally:
        stand_in.close()


def test_a_profiles_inference_service_is_placed_and_its_quota_refusal_fails_it(tmp_path: Any,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline (make test): the InferenceService and its predictor follow the profile; a Ready=False that
    KServe copied from a quota-refused predictor pod fails the endpoint at once, naming profile and quota."""
    import asyncio

    from nbpipe.runner.profiles import Placements, ProfileStores
    from nbpipe.serving.kserve import KServeServing
    from nbpipe.stores.local import LocalStore

    monkeypatch.setenv("NBPIPE_K8S_NAMESPACE", "nbpipe")
    monkeypatch.setenv("NBPIPE_K8S_SERVING_PORT", "8080")
    monkeypatch.setenv("NBPIPE_K8S_STEP_SERVICE_ACCOUNT", "nbpipe-step")
    users = tmp_path / "users.yaml"
    users.write_text("profiles:\n  team-b: {namespace: ns-b, serviceAccountName: b-steps}\n")
    root = LocalStore(str(tmp_path / "store"))
    serving = KServeServing(root, core=object(), apps=object(), stores=ProfileStores(root, Placements(users)))
    isvc = serving.inference_service("iris", "{}", 8080, "team-b")
    assert isvc["metadata"]["namespace"] == "ns-b" and isvc["spec"]["predictor"]["serviceAccountName"] == "b-steps"
    assert serving.inference_service("iris", "{}", 8080)["metadata"]["namespace"] == "nbpipe"
    assert serving.url("iris", 8080, "team-b") == "http://nbp-ep-iris-predictor.ns-b.svc"

    seen: list[Any] = []

    def status(name: str, profile: Any = None) -> tuple[bool, str, str]:
        seen.append(profile)
        return False, "", ('InferenceService nbp-ep-iris: pods "nbp-ep-iris-predictor-7c9-x" is forbidden: exceeded '
                           'quota: compute, requested: requests.cpu=3, used: requests.cpu=0, limited: requests.cpu=2')

    monkeypatch.setattr(serving, "_status", status)
    state, reason = asyncio.run(serving._wait_served(None, "iris", "1", 8080, "team-b"))
    assert state == "failed" and seen == ["team-b"]  # at the first status read: no waiting out the timeout
    assert reason.startswith("profile 'team-b' is out of its ResourceQuota 'compute' (namespace ns-b): the endpoint's "
                             "model server requested requests.cpu=3"), reason
