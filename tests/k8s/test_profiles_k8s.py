"""Profiles in a cluster: each profile's step pods in its own namespace, under its own quota.

The pure parts (placement from the users file, the quota refusal's message) run in ``make test``;
the rest runs on a real API server (``make test-k8s``: the k8s-rig applies the profile overlays of
``cluster/manifests/profiles/`` for team-a and team-b, and the runner works as its least-privilege
ServiceAccount, bound in those namespaces by the overlays' RoleBindings). The audit check after the
suite (``tests/k8s_rig/audit_check.py``) proves the runner touched no other namespace.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from nbpipe import component, pipeline
from nbpipe.client import Client
from nbpipe.errors import NbpipeError
from nbpipe.executors.k8s_pod import build_pod, claim_name
from nbpipe.executors.kubernetes import KubernetesExecutor, quota_refusal
from nbpipe.runner.auth import hash_token
from nbpipe.runner.profiles import Placements

from . import cases
from .conftest import Cluster

ALICE = "alice-token-" + "a" * 32
BOB = "bob-token-" + "b" * 32


def profile_namespaces() -> dict[str, str]:
    """``{profile: namespace}`` the rig applied (``NBPIPE_TEST_PROFILE_NAMESPACES``)."""
    text = os.environ.get("NBPIPE_TEST_PROFILE_NAMESPACES", "")
    return dict(item.split("=", 1) for item in text.split(",") if item)


def users_file(path: Path, spaces: dict[str, str]) -> Path:
    path.write_text(json.dumps({
        "users": [{"name": "alice", "profiles": ["team-a"], "token_sha256": hash_token(ALICE)},
                  {"name": "bob", "profiles": ["team-b"], "token_sha256": hash_token(BOB)}],
        "profiles": {p: {"namespace": ns} for p, ns in spaces.items()}}))
    return path


# ------------------------------------------------------------------ pure: placement and messages
def test_profiles_place_pods_in_their_namespace_with_their_account_and_secret(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    path.write_text("users: []\nprofiles:\n  team-a: {namespace: ns-a}\n"
                    "  team-b: {namespace: ns-b, serviceAccountName: b-steps, s3CredentialsSecret: b-s3}\n")
    ex = KubernetesExecutor(api=object(), placements=Placements(path), namespace="nbpipe",
                            service_account="nbpipe-step", s3_credentials_secret="nbpipe-s3",
                            secret_env={"NBPIPE_S3_ACCESS_KEY": "nbpipe-s3:access-key", "OTHER": "api:token"})
    job = {"run_id": "r1", "step": "s", "attempt": 1, "store": {"type": "local", "root": "/x"}}
    default = ex.place(job | {"profile": "default"})
    assert default is ex.settings and ex.place(job | {"profile": "user-carol"}) is ex.settings  # not listed
    a = ex.place(job | {"profile": "team-a"})
    assert (a.namespace, a.service_account, a.s3_credentials_secret) == ("ns-a", "nbpipe-step", "nbpipe-s3")
    b = ex.place(job | {"profile": "team-b"})
    assert (b.namespace, b.service_account, b.s3_credentials_secret) == ("ns-b", "b-steps", "b-s3")
    assert b.secret_env == {"NBPIPE_S3_ACCESS_KEY": "b-s3:access-key", "OTHER": "api:token"}
    pod = build_pod(job | {"profile": "team-b"}, "r1.s.1", b)
    assert pod["metadata"]["namespace"] == "ns-b" and pod["spec"]["serviceAccountName"] == "b-steps"
    assert {"name": "s3-credentials", "secret": {"secretName": "b-s3"}} in pod["spec"]["volumes"]
    assert ex.settings.namespace == "nbpipe" and ex.settings.secret_env["NBPIPE_S3_ACCESS_KEY"].startswith("nbpipe-s3:")
    # edited while the runner runs: the next step sees it; a broken edit keeps the last good table
    path.write_text("profiles:\n  team-a: {namespace: ns-a2}\n")
    assert ex.place(job | {"profile": "team-a"}).namespace == "ns-a2" and ex.place(job | {"profile": "team-b"}) is ex.settings
    path.write_text("profiles:\n  team-a: {namespace: ns-a3, colour: blue}\n")
    assert ex.place(job | {"profile": "team-a"}).namespace == "ns-a2"


@pytest.mark.parametrize("text, error", [
    ("profiles: [team-a]", "'profiles' must map a profile name"),
    ("profiles:\n  Team_A: {namespace: x}", "'Team_A' is not a valid name"),
    ("profiles:\n  team-a: {serviceAccountName: x}", "needs 'namespace' (or at least 'storePrefix')"),
    ("profiles:\n  team-a: {namespace: x, storePrefix: ../team-b}", "storePrefix '../team-b' is not a store key prefix"),
    ("profiles:\n  team-a: {namespace: x, colour: blue}", "unknown key(s) colour"),
    ("profiles:\n  team-a: {namespace: Not_A_Namespace}", "namespace 'Not_A_Namespace' is not a Kubernetes name"),
])
def test_a_wrong_profiles_section_stops_the_start_with_a_clear_error(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(text)
    with pytest.raises(NbpipeError, match="is invalid") as info:
        Placements(path)
    assert error in str(info.value)


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.reason, self.body = status, "Forbidden", json.dumps({"message": message})


def test_a_quota_refusal_names_the_profile_the_quota_and_what_to_do() -> None:
    exceeded = _Refused(403, 'pods "nbp-r1-s-1-abc" is forbidden: exceeded quota: compute, requested: '
                             'requests.cpu=3, used: requests.cpu=0, limited: requests.cpu=2')
    text = quota_refusal(exceeded, "team-b", "nbpipe-team-b")
    assert text == ("profile 'team-b' is out of its ResourceQuota 'compute' (namespace nbpipe-team-b): requested "
                    "requests.cpu=3, already used requests.cpu=0, limit requests.cpu=2; ask an admin to raise the "
                    "quota, or lower the step's resources (or wait for the profile's other steps to finish)")
    must = _Refused(403, 'pods "x" is forbidden: failed quota: compute: must specify limits.memory')
    assert "needs every pod to set limits.memory" in (quota_refusal(must, "team-a", "ns") or "")
    assert quota_refusal(_Refused(403, 'pods is forbidden: User "x" cannot create resource "pods"'), "p", "ns") is None
    assert quota_refusal(_Refused(409, "exceeded quota: compute"), "p", "ns") is None


# ------------------------------------------------------------------ on a real API server
@component(cache=False, resources={"cpu": "3"})
def greedy() -> int:
    return 1


@component(cache=False)
def padded_nap(seconds: float, pad: str) -> int:
    import time

    print("sleeping", flush=True)
    time.sleep(seconds)
    return len(pad)


def bucket_keys(real: Cluster, prefix: str) -> list[str]:
    """Every object name under ``prefix/`` in the rig's bucket (as the admin sees the bucket)."""
    from minio import Minio

    from nbpipe.stores.s3 import parse_endpoint

    from .conftest import ACCESS, SECRET

    host, secure = parse_endpoint(real.s3_endpoint, None)
    s3 = Minio(host, access_key=ACCESS, secret_key=SECRET, secure=secure)
    return [str(o.object_name) for o in s3.list_objects("nbpipe-k8s", prefix=prefix + "/", recursive=True)]


@pytest.mark.k8s
def test_two_profiles_pods_land_in_their_namespaces_and_a_quota_refusal_fails_the_step(
        real: Cluster, tmp_path: Path) -> None:
    spaces = profile_namespaces()
    assert {"team-a", "team-b"} <= set(spaces), f"the rig applied no profile overlays: {spaces}"
    users = users_file(tmp_path / "users.json", {p: spaces[p] for p in ("team-a", "team-b")})
    import uuid

    from nbpipe.executors.kubernetes import _job_from_pod

    root = "p" + uuid.uuid4().hex[:8]  # the runner's store prefix in the bucket
    r = real.runner(tmp_path / "runner", NBPIPE_USERS_FILE=str(users), NBPIPE_K8S_DELETE_PODS="never",
                    NBPIPE_S3_PREFIX=root)
    alice, bob = Client(r.url, token=ALICE), Client(r.url, token=BOB)
    api = real.api()

    def pods(namespace: str, run_id: str) -> list[dict[str, Any]]:
        sel = "app.kubernetes.io/managed-by=nbpipe" + (f",nbpipe.io/run={run_id}" if run_id else "")
        resp = api.list_namespaced_pod(namespace, label_selector=sel, _preload_content=False)
        return list(json.loads(resp.data)["items"])

    runs = {"team-a": alice.submit(cases.handoff, {"n": 4}), "team-b": bob.submit(cases.handoff, {"n": 6}),
            "default": r.client().submit(cases.handoff, {"n": 3})}  # the runner's own token: profile default
    expected = {"team-a": 6, "team-b": 15, "default": 3}
    homes = {"team-a": spaces["team-a"], "team-b": spaces["team-b"], "default": real.namespace}
    for profile, run in runs.items():
        run.wait(timeout=180)
        # the step read the S3 keys from its own namespace's Secret, as the runner's env named it
        assert run.outputs("sum_rows") == {"total": expected[profile], "secret_ok": True}, profile
        for ns in {*homes.values()}:
            names = sorted(p["metadata"]["labels"]["nbpipe.io/step"] for p in pods(ns, run.id))
            assert names == (["make_rows", "sum_rows"] if ns == homes[profile] else []), (profile, ns, names)
        for p in pods(homes[profile], run.id):
            assert p["spec"]["serviceAccountName"] == "nbpipe-step"
            assert {e["name"]: e.get("value") for e in p["spec"]["containers"][0]["env"]}["NBPIPE_PROFILE"] == profile
    assert [x["id"] for x in bob.runs()] == [runs["team-b"].id]  # and the API keeps them apart too

    # each profile's pods got only its view of the store (the prefix in their job), and wrote there only
    views = {"team-a": f"{root}/profiles/team-a", "team-b": f"{root}/profiles/team-b", "default": root}
    keys = bucket_keys(real, root)
    for profile, run in runs.items():
        for p in pods(homes[profile], run.id):
            assert _job_from_pod(p)["store"]["prefix"] == views[profile], profile
        written = [k for k in keys if f"runs/{run.id}/" in k]
        assert {k.split("/")[-1] for k in written} >= {"result.json", "log.txt"}, (profile, written)
        assert all(k.startswith(f"{views[profile]}/runs/{run.id}/") for k in written), (profile, written)
        data = run.steps["make_rows"]["outputs"]["data"]["digest"]
        holders = [k for k in keys if k.endswith(f"sha256/{data[:2]}/{data}")]
        assert holders == [f"{views[profile]}/sha256/{data[:2]}/{data}"], (profile, holders)  # n differs per run
    assert all(k.startswith((f"{root}/profiles/team-a/", f"{root}/profiles/team-b/", f"{root}/sha256/",
                             f"{root}/runs/{runs['default'].id}/")) for k in keys), keys

    # team-b's quota allows requests.cpu=2: a step asking for 3 is refused by the API server
    @pipeline
    def too_big():
        greedy()

    failed = bob.submit(too_big).wait(timeout=120, raise_on_failure=False)
    step = failed.steps["greedy"]
    assert failed.state == "failed" and step["state"] == "failed" and step["attempt"] == 1, step
    assert step["reason"].startswith(f"profile 'team-b' is out of its ResourceQuota 'compute' (namespace "
                                     f"{spaces['team-b']}): requested requests.cpu=3"), step["reason"]
    assert "limit requests.cpu=2" in step["reason"] and "ask an admin" in step["reason"]
    assert "internal error" not in step["reason"] and pods(spaces["team-b"], failed.id) == []

    # a runner killed mid-step finds the profile's pod in its namespace again: no retry. The job is too
    # large for the pod's env: it waits in the profile's view as job.json, which the pod reads from there
    import secrets

    @pipeline
    def nap():
        padded_nap(seconds=4.0, pad=secrets.token_hex(100_000))

    run = alice.submit(nap)
    cases.wait_for("the step to print", lambda: "sleeping" in run.logs("padded_nap"), 60)
    before = [p["metadata"]["name"] for p in pods(spaces["team-a"], run.id)]
    stand_in = _job_from_pod(pods(spaces["team-a"], run.id)[0])
    assert stand_in["job_key"] == f"runs/{run.id}/padded_nap/1/job.json" and "payload" not in stand_in
    assert stand_in["store"]["prefix"] == views["team-a"]
    r.stop(signal.SIGKILL)
    r.start()
    again = Client(r.url, token=ALICE).run(run.id).wait(timeout=60)
    assert (again.steps["padded_nap"]["state"], again.steps["padded_nap"]["attempt"]) == ("succeeded", 1)
    assert again.logs("padded_nap").count("sleeping") == 1 and again.output("padded_nap", "output") == 200_000
    assert [p["metadata"]["name"] for p in pods(spaces["team-a"], run.id)] == before
    step_keys = {k.rsplit("/", 1)[-1] for k in bucket_keys(real, f"{views['team-a']}/runs/{run.id}/padded_nap/1")}
    assert step_keys >= {"job.json", "log.txt", "result.json"}, step_keys
    assert not [k for k in bucket_keys(real, root) if f"runs/{run.id}/" in k and not k.startswith(views["team-a"])]
    for profile, ns in homes.items():  # kept by NBPIPE_K8S_DELETE_PODS=never: clean up as the admin
        for p in pods(ns, ""):
            if p["metadata"]["labels"].get("nbpipe.io/run") in {x.id for x in (*runs.values(), run)}:
                api.delete_namespaced_pod(p["metadata"]["name"], ns, grace_period_seconds=0)


# ------------------------------------------------------------------ the executor in-process, on the API double
def test_a_profiles_pod_is_started_killed_and_reattached_in_its_namespace(tmp_path: Path) -> None:
    """On the API double (``make test``): two namespaces; what the rig shows end to end, in-process."""
    import asyncio

    from nbpipe.stores.local import LocalStore

    from .apiserver import ApiServer
    from .conftest import NAMESPACE, _api
    from .test_executor import job_for, nap

    double = ApiServer(tmp_path / "api", namespaces=(NAMESPACE, "ns-team-x")).start()
    store = LocalStore(str(tmp_path / "store"))
    path = tmp_path / "users.yaml"
    path.write_text("profiles:\n  team-x: {namespace: ns-team-x}\n")
    api = _api(double.write_kubeconfig(tmp_path / "kubeconfig", NAMESPACE))

    def executor() -> KubernetesExecutor:  # with a per-run claim (the double links its folder at the mount path)
        return KubernetesExecutor(api=api, placements=Placements(path), namespace=NAMESPACE, run_volume_size="1Gi",
                                  volume_mount=str(tmp_path / "mnt" / "run"))

    def napping(step: str, seconds: float) -> dict[str, Any]:
        return job_for(nap, store, step=step) | {"profile": "team-x", "inputs": {
            "seconds": {"kind": "value", "value": seconds}}}

    async def go() -> None:
        ex = executor()
        log = tmp_path / "long.log"
        handle = await ex.start(napping("long", 120), "r1.long.1", str(log), str(tmp_path))
        ns, _, pod = handle.name.partition("/")
        assert ns == "ns-team-x" and [p["metadata"]["name"] for p in double.pods("ns-team-x")] == [pod]
        assert double.pods(NAMESPACE) == []
        while "napping" not in (log.read_text() if log.exists() else ""):
            await asyncio.sleep(0.05)
        await ex.close()  # a runner going away: the pod stays
        row = {"id": "r1.long.1", "run_id": "r1", "step": "long", "attempt": 1, "executor": "kubernetes",
               "log_key": str(log)}
        again = executor()
        found = await again.reattach(row | {"pod": handle.name})
        assert found is not None and found.name == handle.name
        other = executor()
        old_row = await other.reattach(row | {"pod": pod})  # a row from before it said where: searched
        assert old_row is not None and old_row.name == handle.name
        await other.close()
        await again.kill(found, grace=0)  # a cancel reaches the pod in the profile's namespace
        status = await asyncio.wait_for(found.done, 60)
        assert not status.ok and double.pods("ns-team-x") == []
        short = await again.start(napping("short", 0), "r1.short.1", str(tmp_path / "short.log"), str(tmp_path))
        assert (await asyncio.wait_for(short.done, 60)).ok and short.name.startswith("ns-team-x/")
        assert double.get("persistentvolumeclaims", "ns-team-x", claim_name("r1")) is not None  # the run's claim
        assert double.get("persistentvolumeclaims", NAMESPACE, claim_name("r1")) is None
        await again.run_finished("r1", "succeeded")
        async def claim_gone() -> None:  # deleted where it was made (once its pods are gone)
            while double.get("persistentvolumeclaims", "ns-team-x", claim_name("r1")) is not None:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(claim_gone(), 60)
        await again.close()

    try:
        asyncio.run(go())
    finally:
        double.stop()
