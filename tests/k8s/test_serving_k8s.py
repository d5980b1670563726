"""Model serving with the Kubernetes backend, against the real API server and controller-manager (k8s-rig).

runner (``nbpipe-runner`` ServiceAccount, least privilege) → Deployment (the rig's controller-manager
makes its ReplicaSet and pod) + Service + token Secret → the pod (a process of this machine, run by
pkubelet) fetches the bundle from the S3 store and serves KServe's v2 protocol → the kernel's
``Endpoint.predict`` gets the URL and token from the runner. The rig has no Service routing, so the
runner is set up as for pods on its own network (``NBPIPE_K8S_SERVING_PORT=0``: a free port of this
host, the URL is the pod's address); on a real cluster the URL is the Service's DNS name.
"""

from __future__ import annotations

import base64
import statistics
import time
from typing import Any, Iterator

import numpy as np
import pytest

import nbpipe
from nbpipe.serving import EndpointError

from .cases import wait_for
from .conftest import Cluster

NAME = "k8s-linear"


def linear(model: Any, x: Any) -> Any:
    import numpy as np

    return np.asarray(x, dtype=float) @ np.asarray(model, dtype=float)


@pytest.fixture(scope="module")
def client(real: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield real.runner(tmp_path_factory.mktemp("k8s-serving-runner"), NBPIPE_K8S_SERVING_PORT="0").client()


def admin(c: Cluster) -> tuple[Any, Any]:
    from kubernetes import client as k8s

    core = c.api()
    return core, k8s.AppsV1Api(core.api_client)


def test_endpoint_objects_are_valid_kubernetes(tmp_path: Any) -> None:
    """Offline (make test): the Deployment, Service and Secret of an endpoint pass the API's schemas."""
    import kubernetes_validate

    from nbpipe.serving.k8s import K8sServing, resource_name
    from nbpipe.stores.local import LocalStore

    serving = K8sServing(LocalStore(str(tmp_path)), core=object(), apps=object())
    dep = serving.deployment("iris", '{"name": "iris"}', 8080)
    owner = {**dep, "metadata": {**dep["metadata"], "uid": "u-1"}}
    for obj in (dep, serving.service("iris", 8080, owner), serving.secret("iris", "t0k", owner)):
        for version in ("1.30", kubernetes_validate.latest_version()):
            kubernetes_validate.validate(obj, version, strict=True)
    assert resource_name("iris") == "nbp-ep-iris" and len(resource_name("a" * 63) + "-token") <= 63
    assert serving.url("iris", 8080) == f"http://nbp-ep-iris.{serving.ns}.svc"


def gone(call: Any, *args: Any) -> bool:
    try:
        call(*args)
    except Exception as exc:  # noqa: BLE001 - the 404 is what we wait for
        return getattr(exc, "status", None) == 404
    return False


@pytest.mark.k8s
def test_deploy_infer_new_version_roll_back_and_undeploy(real: Cluster, client: Any) -> None:
    core, apps = admin(real)
    ns = real.namespace
    X = np.arange(12.0).reshape(4, 3)
    w1, w2 = np.array([1.0, 2.0, -1.0]), np.array([0.5, 0.0, 3.0])

    t0 = time.monotonic()
    ep = nbpipe.serve(w1, predict=linear, name=NAME, runner=client)
    deploy_s = time.monotonic() - t0
    assert ep.info["state"] == "ready" and ep.version == "1"
    assert ep.url.startswith("http://127.0.0.1:")  # the pod's address (the rig's pods share this host)
    np.testing.assert_allclose(ep.predict(X), linear(w1, X))  # over HTTP == in the kernel
    times = []
    for _ in range(20):
        t = time.perf_counter()
        ep.predict(X[:1])
        times.append(time.perf_counter() - t)
    print(f"\nk8s serving: deploy {deploy_s:.2f} s; one small inference request median "
          f"{statistics.median(times) * 1000:.1f} ms")

    # the objects: Deployment (with probes), and the Service and token Secret it owns
    dep = apps.read_namespaced_deployment(f"nbp-ep-{NAME}", ns)
    assert dep.metadata.labels["nbpipe.io/endpoint"] == NAME
    assert dep.metadata.labels["app.kubernetes.io/managed-by"] == "nbpipe"
    c = dep.spec.template.spec.containers[0]
    assert c.command[:3] == ["python", "-m", "nbpipe.serving.k8s"]
    assert c.readiness_probe.http_get.path == "/v2/health/ready"
    assert c.liveness_probe.http_get.path == "/v2/health/live"
    assert dep.spec.template.spec.service_account_name == "nbpipe-step"
    svc = core.read_namespaced_service(f"nbp-ep-{NAME}", ns)
    secret = core.read_namespaced_secret(f"nbp-ep-{NAME}-token", ns)
    for obj in (svc, secret):
        (owner,) = obj.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid) == ("Deployment", dep.metadata.name, dep.metadata.uid)
        assert obj.metadata.labels["nbpipe.io/endpoint"] == NAME
    assert svc.spec.selector == {"nbpipe.io/endpoint": NAME, "app.kubernetes.io/managed-by": "nbpipe"}
    assert base64.b64decode(secret.data["token"]).decode() == ep.info["token"]  # the endpoint's, not the runner's
    assert ep.info["token"] != real.made[-1].token
    with pytest.raises(EndpointError) as bad:
        ep.infer({"inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [1.0]}]})
    assert 400 <= bad.value.status < 500

    # a new version rolls out a new pod; a rollback another
    ep2 = nbpipe.serve(w2, predict=linear, name=NAME, runner=client)
    assert ep2.version == "2" and ep2.info["state"] == "ready"
    np.testing.assert_allclose(ep2.predict(X), linear(w2, X))
    np.testing.assert_allclose(ep2.predict(X, version="1"), linear(w1, X))
    ep2.rollback()
    assert ep2.version == "1" and ep2.info["state"] == "ready", ep2.info
    np.testing.assert_allclose(ep2.predict(X), linear(w1, X))
    pods = core.list_namespaced_pod(ns, label_selector=f"nbpipe.io/endpoint={NAME}").items
    assert pods, "the endpoint's pod"

    # undeploy: the Deployment, its pods, the Service and the Secret go
    ep2.delete()
    wait_for("the endpoint's objects to be deleted", lambda: gone(apps.read_namespaced_deployment, dep.metadata.name, ns)
             and gone(core.read_namespaced_service, svc.metadata.name, ns)
             and gone(core.read_namespaced_secret, secret.metadata.name, ns), 60)
    wait_for("the endpoint's pods to be deleted",
             lambda: not core.list_namespaced_pod(ns, label_selector=f"nbpipe.io/endpoint={NAME}").items, 60)
    assert NAME not in [e.name for e in nbpipe.serving.endpoints(client)]
