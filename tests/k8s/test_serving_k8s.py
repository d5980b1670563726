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
import json
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
    ep = nbpipe.serve(w1, predict=linear, name=NAME, runner=client, resources={"cpu": "250m", "memory": "300Mi"})
    deploy_s = time.monotonic() - t0
    assert ep.info["state"] == "ready" and ep.version == "1"
    assert ep.info["versions"][0]["resources"] == {"cpu": "250m", "memory": "300Mi"}
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
    v1_resources = {"requests": {"cpu": "250m", "memory": "300Mi"}, "limits": {"memory": "300Mi"}}
    assert (c.resources.requests, {"memory": c.resources.limits["memory"]}) == (v1_resources["requests"],
                                                                                v1_resources["limits"])
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

    def server_resources() -> Any:
        return apps.read_namespaced_deployment(f"nbp-ep-{NAME}", ns).spec.template.spec.containers[0].resources

    assert (server_resources().requests or {}).get("memory") != "300Mi"  # version 2 asked for nothing: defaults
    ep2.rollback()
    assert ep2.version == "1" and ep2.info["state"] == "ready", ep2.info
    assert server_resources().requests == v1_resources["requests"]  # the rollback brought version 1's back
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


# ------------------------------------------------------------------ profiles: an endpoint lives where its profile's pods do
def test_a_profiles_endpoint_objects_are_placed_as_its_step_pods(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline (make test): namespace, ServiceAccount, S3 Secret, store view and URL follow the endpoint's profile."""
    from nbpipe.runner.profiles import Placements, ProfileStores
    from nbpipe.serving.k8s import K8sServing, quota_refusal
    from nbpipe.stores.local import LocalStore

    for var, value in {"NBPIPE_K8S_NAMESPACE": "nbpipe", "NBPIPE_K8S_STEP_SERVICE_ACCOUNT": "nbpipe-step",
                       "NBPIPE_S3_CREDENTIALS_SECRET": "nbpipe-s3", "NBPIPE_K8S_SERVING_PORT": "8080",
                       "NBPIPE_K8S_SECRET_ENV": "NBPIPE_S3_ACCESS_KEY=nbpipe-s3:access-key,OTHER=api:token"}.items():
        monkeypatch.setenv(var, value)
    users = tmp_path / "users.yaml"
    users.write_text("profiles:\n  team-a: {namespace: ns-a}\n"
                     "  team-b: {namespace: ns-b, serviceAccountName: b-steps, s3CredentialsSecret: b-s3}\n")
    root = LocalStore(str(tmp_path / "store"))
    serving = K8sServing(root, core=object(), apps=object(), stores=ProfileStores(root, Placements(users)))
    home = serving.deployment("iris", "{}", 8080)
    assert home["metadata"]["namespace"] == "nbpipe" and home["spec"]["template"]["spec"]["serviceAccountName"] == \
        "nbpipe-step"
    assert serving.deployment("iris", "{}", 8080, profile="user-carol")["metadata"]["namespace"] == "nbpipe"  # unlisted
    b = serving.deployment("iris", "{}", 8080, profile="team-b")
    pod = b["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert b["metadata"]["namespace"] == "ns-b" and pod["serviceAccountName"] == "b-steps"
    assert pod["volumes"] == [{"name": "s3-credentials", "secret": {"secretName": "b-s3"}}]
    assert env["NBPIPE_S3_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "b-s3", "key": "access-key"}
    assert env["OTHER"]["valueFrom"]["secretKeyRef"] == {"name": "api", "key": "token"}  # not the S3 Secret: kept
    assert "ns-b.svc" in env["NBPIPE_SERVING_HOSTS"]["value"] and "nbpipe.svc" not in env["NBPIPE_SERVING_HOSTS"]["value"]
    owner = {**b, "metadata": {**b["metadata"], "uid": "u-1"}}
    assert serving.service("iris", 8080, owner)["metadata"]["namespace"] == "ns-b"
    assert serving.secret("iris", "t", owner)["metadata"]["namespace"] == "ns-b"
    assert serving.url("iris", 8080) == "http://nbp-ep-iris.nbpipe.svc"
    assert serving.url("iris", 8080, "team-b") == "http://nbp-ep-iris.ns-b.svc"

    # the server's config: the profile's view of the store, keys inside it; an old root key is copied in
    new = root.put_bytes(b"bundle-2", "profiles/team-a/sha256/bb/bundle-2")
    old = root.put_bytes(b"bundle-1", "sha256/aa/bundle-1")  # stored before profiles had prefixes
    config = json.loads(serving._config("iris", "2", {"1": {"key": old.key, "digest": "aa"},
                                                      "2": {"key": new.key, "digest": "bb"}}, "team-a"))
    assert config["store"] == serving.stores.of("team-a").config() and config["store"]["root"].endswith(
        "profiles/team-a")
    assert {v: i["key"] for v, i in config["versions"].items()} == {"1": "sha256/aa/bundle-1",
                                                                     "2": "sha256/bb/bundle-2"}
    assert serving.stores.of("team-a").get_bytes("sha256/aa/bundle-1") == b"bundle-1"
    plain = json.loads(serving._config("iris", "1", {"1": {"key": old.key, "digest": "aa"}}, "default"))
    assert plain["store"] == root.config() and plain["versions"]["1"]["key"] == old.key  # default: as before

    # a refused pod (the Deployment's ReplicaFailure condition) or object (a 403) names the profile and quota
    msg = ('pods "nbp-ep-iris-5d8f-x" is forbidden: exceeded quota: compute, requested: requests.cpu=3, '
           'used: requests.cpu=0, limited: requests.cpu=2')
    text = quota_refusal(msg, "team-b", "ns-b")
    assert text is not None and text.startswith("profile 'team-b' is out of its ResourceQuota 'compute' (namespace "
                                                 "ns-b): the endpoint's model server requested requests.cpu=3")
    assert "limit requests.cpu=2" in text and "ask an admin" in text

    class Refused(Exception):
        status, reason, body = 403, "Forbidden", json.dumps({"message": msg})

    assert quota_refusal(Refused(), "team-b", "ns-b") == text
    assert quota_refusal('pods "x" is forbidden: User "u" cannot create resource "pods"', "p", "ns") is None
    assert quota_refusal("pods is forbidden: status unknown for quota: compute", "p", "ns") is None  # transient


def train_weights(scale: float) -> list:
    return [scale, 2.0 * scale, -1.0]


@pytest.mark.k8s
def test_a_team_endpoint_runs_in_its_profile_namespace_with_its_account_secret_and_prefix(
        real: Cluster, tmp_path: Any) -> None:
    """A deploy step of a team-a run makes an endpoint in team-a's namespace (its ServiceAccount, S3 Secret,
    store prefix), which serves, survives a runner restart, takes a new version and a rollback, and is
    deleted there; team-b's endpoint beyond its quota fails saying so. Nothing lands in the runner's
    namespace (and the audit check after the suite: the runner touched no other namespace)."""
    import json as _json
    import signal
    import uuid

    from nbpipe import component, pipeline
    from nbpipe.client import Client
    from nbpipe.serving import deployer

    from .test_profiles_k8s import ALICE, BOB, bucket_keys, profile_namespaces, users_file

    spaces = profile_namespaces()
    assert {"team-a", "team-b"} <= set(spaces), f"the rig applied no profile overlays: {spaces}"
    users = users_file(tmp_path / "users.json", {p: spaces[p] for p in ("team-a", "team-b")})
    root = "p" + uuid.uuid4().hex[:8]
    r = real.runner(tmp_path / "runner", NBPIPE_USERS_FILE=str(users), NBPIPE_K8S_SERVING_PORT="0",
                    NBPIPE_S3_PREFIX=root)
    alice, bob = Client(r.url, token=ALICE), Client(r.url, token=BOB)
    core, apps = admin(real)
    ns, home, name = spaces["team-a"], real.namespace, "team-a-linear"
    res = f"nbp-ep-{name}"

    train = component(cache=False)(train_weights)
    deploy = deployer(name, predict=linear)

    @pipeline
    def train_and_deploy(scale: float = 1.0):
        deploy(model=train(scale=scale).output)

    run = alice.submit(train_and_deploy, {"scale": 2.0}).wait(timeout=240)
    assert run.steps[f"deploy-{name}"]["state"] == "succeeded"
    wait_for("team-a's endpoint to serve", lambda: [e.info["state"] for e in nbpipe.serving.endpoints(alice)
                                                    if e.name == name] == ["ready"], 240)
    (ep,) = [e for e in nbpipe.serving.endpoints(alice) if e.name == name]
    assert ep.info["profile"] == "team-a"
    X = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(ep.predict(X), linear(train_weights(2.0), X))
    assert name not in [e.name for e in nbpipe.serving.endpoints(bob)]

    dep = apps.read_namespaced_deployment(res, ns)
    spec = dep.spec.template.spec
    assert spec.service_account_name == "nbpipe-step"
    env = {e.name: e for e in spec.containers[0].env}
    refs = {e.value_from.secret_key_ref.name for e in env.values() if e.value_from and e.value_from.secret_key_ref}
    assert refs == {"nbpipe-s3", f"{res}-token"}  # team-a's own S3 Secret and token, in team-a's namespace
    config = _json.loads(env["NBPIPE_ENDPOINT_CONFIG"].value)
    assert config["store"]["prefix"] == f"{root}/profiles/team-a", config["store"]
    (version,) = config["versions"].values()
    assert version["key"].startswith("sha256/") or version["key"].startswith("runs/"), version
    assert any(k.endswith(version["key"]) for k in bucket_keys(real, f"{root}/profiles/team-a"))
    svc = core.read_namespaced_service(res, ns)
    secret = core.read_namespaced_secret(f"{res}-token", ns)
    assert base64.b64decode(secret.data["token"]).decode() == ep.info["token"]
    for obj in (svc, secret):
        assert obj.metadata.owner_references[0].uid == dep.metadata.uid
    assert [p.metadata.namespace for p in core.list_namespaced_pod(ns, label_selector=f"nbpipe.io/endpoint={name}")
            .items] == [ns]
    for other in (home, spaces["team-b"]):  # nothing of it anywhere else
        assert gone(apps.read_namespaced_deployment, res, other) and gone(core.read_namespaced_service, res, other)
        assert not core.list_namespaced_pod(other, label_selector=f"nbpipe.io/endpoint={name}").items

    # team-b's endpoint, from a runner whose pods ask for 3 CPUs: beyond team-b's quota (2), a clear
    # failure at once (no 5-minute wait for a server that cannot start)
    greedy = real.runner(tmp_path / "greedy-runner", NBPIPE_USERS_FILE=str(users), NBPIPE_K8S_SERVING_PORT="0",
                         NBPIPE_S3_PREFIX=root, NBPIPE_K8S_DEFAULT_REQUESTS="cpu=3,memory=256Mi")
    bob = Client(greedy.url, token=BOB)
    t0 = time.monotonic()
    with pytest.raises(Exception) as refused:
        nbpipe.serve(np.array([1.0, 1.0, 1.0]), predict=linear, name="team-b-linear", runner=bob)
    said = str(refused.value)
    assert f"profile 'team-b' is out of its ResourceQuota 'compute' (namespace {spaces['team-b']})" in said, said
    assert "requests.cpu=3" in said and "ask an admin" in said
    print(f"\nteam-b's endpoint refused by its quota in {time.monotonic() - t0:.1f} s")
    apps.read_namespaced_deployment("nbp-ep-team-b-linear", spaces["team-b"])  # where it was put
    nbpipe.serving.endpoint("team-b-linear", runner=bob).delete()
    wait_for("team-b's Deployment to be deleted",
             lambda: gone(apps.read_namespaced_deployment, "nbp-ep-team-b-linear", spaces["team-b"]), 60)
    greedy.stop()

    # a runner restart finds team-a's Deployment in team-a's namespace: a new version and a rollback
    # patch the same Deployment there (after the restarted runner's own check of it)
    r.stop(signal.SIGKILL)
    r.start()
    alice = Client(r.url, token=ALICE)
    w2 = np.array([0.5, 0.0, 3.0])
    ep = nbpipe.serve(w2, predict=linear, name=name, runner=alice)
    assert ep.version == "2" and ep.info["state"] == "ready", ep.info
    np.testing.assert_allclose(ep.predict(X), linear(w2, X))
    ep.rollback()
    assert ep.version == "1" and ep.info["state"] == "ready", ep.info
    np.testing.assert_allclose(ep.predict(X), linear(train_weights(2.0), X))
    assert apps.read_namespaced_deployment(res, ns).metadata.uid == dep.metadata.uid
    config = _json.loads({e.name: e for e in apps.read_namespaced_deployment(res, ns).spec.template.spec.containers[0]
                          .env}["NBPIPE_ENDPOINT_CONFIG"].value)
    assert config["store"]["prefix"] == f"{root}/profiles/team-a" and len(config["versions"]) == 2
    for other in (home, spaces["team-b"]):
        assert gone(apps.read_namespaced_deployment, res, other)

    # undeploy: gone from team-a's namespace
    ep.delete()
    wait_for("team-a's endpoint objects to be deleted", lambda: gone(apps.read_namespaced_deployment, res, ns)
             and gone(core.read_namespaced_service, res, ns) and gone(core.read_namespaced_secret, f"{res}-token", ns)
             and not core.list_namespaced_pod(ns, label_selector=f"nbpipe.io/endpoint={name}").items, 60)
