"""The Kubernetes executor in-process: pod specs (schema-checked offline), status mapping, and the
watch / pod lifecycle against the API double (real HTTP, real pod processes, a local store) and,
with ``-m k8s``, the k8s-rig's real API server for the cases that need none of the double's controls.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path
from typing import Any
from unittest import mock

import kubernetes_validate
import pytest

from nbpipe import component
from nbpipe.errors import NbpipeError
from nbpipe.executors.base import ExitStatus
from nbpipe.executors.k8s_pod import PodSettings, build_claim, build_pod, label_value, pod_name
from nbpipe.executors.k8s_watch import classify
from nbpipe.executors.kubernetes import KubernetesExecutor
from nbpipe.stores.local import LocalStore

from .conftest import NAMESPACE, Cluster

K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())


def job_for(comp: Any, store: LocalStore, step: str = "s", attempt: int = 1, **extra: Any) -> dict[str, Any]:
    key = store.put_bytes(comp.payload).key
    job = {"run_id": "r1", "step": step, "attempt": attempt, "component": comp.name, "store": store.config(),
           "payload": {"key": key, "serializer": comp.serializer}, "python": comp.python, "inputs": {},
           "outputs": [o.to_json() for o in comp.outputs], "return_style": comp.return_style,
           "result_key": f"runs/r1/{step}/{attempt}/result.json", "env": {}, "image": "nbpipe/base:test",
           "packages": [], "resources": {}, "timeout": None}
    job.update(extra)
    return job


# ------------------------------------------------------------------ pod spec (pure)
def test_pod_spec_is_valid_kubernetes_and_carries_every_setting() -> None:
    settings = PodSettings(namespace="ml", service_account="nbpipe-step", image_pull_secrets=["regcred"],
                           node_selector={"pool": "gpu"}, tolerations=[{"key": "dedicated", "operator": "Exists"}],
                           env_from_secrets=["team-env"], secret_env={"TOKEN": "api:token"},
                           s3_credentials_secret="nbpipe-s3", run_volume_size="5Gi",
                           package_cache_claim="pip-cache")
    job = {"run_id": "r20260101-000000-abcdef", "step": "Train Model (v2)/é", "attempt": 3, "component": "train",
           "store": {"type": "local", "root": "/x"}, "env": {"LR": "0.1"}, "image": "", "packages": ["numpy<3"],
           "resources": {"cpu": "500m", "memory": "2Gi", "gpu": 1}}
    pod = build_pod(job, "r20260101-000000-abcdef.Train Model (v2)/é.3", settings, timeout=600)
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(pod, version, strict=True)
        kubernetes_validate.validate(build_claim(job["run_id"], settings), version, strict=True)
    meta, spec = pod["metadata"], pod["spec"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", meta["name"]) and len(meta["name"]) <= 63
    assert meta["labels"]["nbpipe.io/attempt"] == "3" and meta["labels"]["nbpipe.io/run"] == job["run_id"]
    assert re.fullmatch(r"Train-Model-v2-[0-9a-f]{8}", meta["labels"]["nbpipe.io/step"])
    assert meta["annotations"]["nbpipe.io/attempt-id"].endswith("/é.3")
    c = spec["containers"][0]
    assert c["image"] == settings.image  # no image on the job: the runner's default
    assert c["resources"] == {"requests": {"cpu": "500m", "memory": "2Gi"},
                              "limits": {"memory": "2Gi", "nvidia.com/gpu": "1"}}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["activeDeadlineSeconds"] == 660 and spec["restartPolicy"] == "Never"
    assert spec["serviceAccountName"] == "nbpipe-step" and spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["nodeSelector"] == {"pool": "gpu"} and c["envFrom"] == [{"secretRef": {"name": "team-env"}}]
    env = {e["name"]: e for e in c["env"]}
    assert env["TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "api", "key": "token"}
    assert env["LR"]["value"] == "0.1" and env["NBPIPE_S3_CREDENTIALS_DIR"]["value"] == settings.s3_credentials_dir
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts == {"s3-credentials": settings.s3_credentials_dir, "data": "/mnt/nbpipe",
                      "packages": "/var/cache/nbpipe/packages"}
    assert env["NBPIPE_PACKAGE_CACHE"]["value"] == "/var/cache/nbpipe/packages"  # the entrypoint installs there


def test_step_pods_get_default_requests_and_limits_that_components_and_runners_override() -> None:
    job = {"run_id": "r1", "step": "s", "attempt": 1, "store": {"type": "local", "root": "/x"}}

    def resources(settings: PodSettings, **res: Any) -> Any:
        pod = build_pod(job | {"resources": res}, "r1.s.1", settings)
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(pod, version, strict=True)
        return pod["spec"]["containers"][0].get("resources")

    default = PodSettings.from_env({})
    assert resources(default) == {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}}
    assert resources(default, cpu="2") == {"requests": {"cpu": "2", "memory": "256Mi"}, "limits": {"memory": "2Gi"}}
    assert resources(default, memory="8Gi") == {"requests": {"cpu": "100m", "memory": "8Gi"},
                                                "limits": {"memory": "8Gi"}}
    runner = PodSettings.from_env({"NBPIPE_K8S_DEFAULT_REQUESTS": "cpu=250m,memory=1Gi",
                                   "NBPIPE_K8S_DEFAULT_LIMITS": "cpu=1,memory=4Gi"})
    assert resources(runner) == {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "4Gi"}}
    assert resources(runner, cpu="1500m")["limits"]["cpu"] == "1500m"  # a limit below the request is refused
    none = PodSettings.from_env({"NBPIPE_K8S_DEFAULT_REQUESTS": "", "NBPIPE_K8S_DEFAULT_LIMITS": ""})
    assert resources(none) is None and resources(none, memory="1Gi") == {"requests": {"memory": "1Gi"},
                                                                        "limits": {"memory": "1Gi"}}
    with pytest.raises(NbpipeError, match="NBPIPE_K8S_DEFAULT_REQUESTS entry memory=lots is not"):
        PodSettings.from_env({"NBPIPE_K8S_DEFAULT_REQUESTS": "memory=lots"})
    with pytest.raises(NbpipeError, match="default memory request 4Gi is above its limit 2Gi"):
        PodSettings.from_env({"NBPIPE_K8S_DEFAULT_REQUESTS": "memory=4Gi"})


def test_runner_policies_reach_pods_unless_the_component_sets_them() -> None:
    job = {"run_id": "r1", "step": "s", "attempt": 1, "store": {"type": "local", "root": "/x"}}
    settings = PodSettings.from_env({"NBPIPE_PACKAGE_SKEW": "warn", "NBPIPE_S3_LIGHT": "0"})

    def env(j: dict[str, Any]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for e in build_pod(j, "r1.s.1", settings)["spec"]["containers"][0]["env"]:
            out.setdefault(e["name"], []).append(e.get("value", ""))
        return out

    assert env(job)["NBPIPE_PACKAGE_SKEW"] == ["warn"] and env(job)["NBPIPE_S3_LIGHT"] == ["0"]
    assert env(job | {"env": {"NBPIPE_PACKAGE_SKEW": "off"}})["NBPIPE_PACKAGE_SKEW"] == ["off"]  # once: the component's
    assert "NBPIPE_PACKAGE_SKEW" not in env_of_default(job)
    with pytest.raises(NbpipeError, match="package_skew='maybe' is not one of error, warn, off"):
        PodSettings.from_env({"NBPIPE_PACKAGE_SKEW": "maybe"})
    command = build_pod(job, "r1.s.1", settings)["spec"]["containers"][0]["command"]
    # no shell: the bootstrap runs the entrypoint as `python -m` would, which decodes the job from the variable
    assert command[:2] == ["python", "-c"] and "runpy.run_module" in command[2]
    assert command[3:] == ["-m", "nbpipe.executors.entry", "env:NBPIPE_JOB"]


def env_of_default(job: dict[str, Any]) -> set[str]:
    return {e["name"] for e in build_pod(job, "r1.s.1", PodSettings.from_env({}))["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("value", ["simple", "-lead.and.trail-", "x" * 80, "ünïcode step", "a/b:c", "___"])
def test_label_values_follow_kubernetes_rules_and_stay_distinct(value: str) -> None:
    out = label_value(value)
    assert len(out) <= 63 and re.fullmatch(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", out), out
    assert out != label_value(value + "!")
    assert pod_name("r1." + value + ".1") != pod_name("r1." + value + ".2")


def test_settings_from_env_reject_wrong_values() -> None:
    s = PodSettings.from_env({"NBPIPE_K8S_NAMESPACE": "ml", "NBPIPE_K8S_NODE_SELECTOR": "a=b, c=d",
                              "NBPIPE_K8S_TOLERATIONS": '[{"key": "k", "operator": "Exists"}]',
                              "NBPIPE_INSTALL_PACKAGES": "0"})
    assert (s.namespace, s.node_selector, s.install_packages) == ("ml", {"a": "b", "c": "d"}, False)
    with pytest.raises(NbpipeError, match="NBPIPE_K8S_TOLERATIONS is not JSON"):
        PodSettings.from_env({"NBPIPE_K8S_TOLERATIONS": "[oops"})
    with pytest.raises(NbpipeError, match="delete_pods='sometimes' is not one of always, on-success, never"):
        PodSettings.from_env({}, delete_pods="sometimes")
    with pytest.raises(NbpipeError, match="NBPIPE_K8S_SECRET_ENV entry TOKEN=api does not name a key"):
        PodSettings.from_env({"NBPIPE_K8S_SECRET_ENV": "TOKEN=api"})


def _pod(phase: str, state: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "spec": {"activeDeadlineSeconds": 90, "containers": [
        {"name": "step", "image": "reg/img:1", "resources": {"limits": {"memory": "1Gi"}}}]},
        "status": {"phase": phase, "containerStatuses": [{"state": state}], **status}}


@pytest.mark.parametrize("pod, expect", [
    (_pod("Pending", {"waiting": {"reason": "ContainerCreating"}}), None),
    (_pod("Running", {"running": {}}), None),
    (_pod("Succeeded", {"terminated": {"exitCode": 0}}), "code=0"),
    (_pod("Failed", {"terminated": {"exitCode": 1, "reason": "Error"}}), "code=1"),
    (_pod("Failed", {"terminated": {"exitCode": 139, "reason": "Error"}}), "signal=11"),
    (_pod("Failed", {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}), "went over 1Gi.*OOMKilled.*memory="),
    (_pod("Failed", {"terminated": {"exitCode": 137}}, reason="Evicted", message="low on memory"),
     "evicted.*low on memory.*resources=Resources"),
    (_pod("Failed", {"terminated": {"exitCode": 137}}, reason="DeadlineExceeded"),
     "activeDeadlineSeconds=90.*timeout="),
    (_pod("Pending", {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off"}}),
     "cannot pull image 'reg/img:1'.*IMAGE_PULL_SECRETS"),
    (_pod("Pending", {"waiting": {"reason": "InvalidImageName", "message": "bad"}}), "cannot pull image"),
    (_pod("Pending", {"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "x" not found'}}),
     'secret "x" not found.*create it'),
])
def test_pod_status_maps_to_an_exit_status_that_says_what_to_do(pod: dict[str, Any], expect: str | None) -> None:
    status = classify(pod)
    if expect is None:
        assert status is None
        return
    assert status is not None
    text = f"code={status.code} signal={status.signal} {status.reason}"
    assert re.search(expect, text), text


# ------------------------------------------------------------------ against the double (and the rig)
@component(cache=False)
def nap(seconds: float) -> float:
    import time

    print("napping", flush=True)
    time.sleep(seconds)
    return seconds


@component(cache=False)
def length(blob: str) -> int:
    return len(blob)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(str(tmp_path / "store"))


def _executor(c: Cluster, **options: Any) -> KubernetesExecutor:
    """An in-process executor with the runner's identity (on the k8s-rig: its ServiceAccount token)."""
    if c.double is None and os.environ.get("NBPIPE_TEST_STEP_SERVICE_ACCOUNT"):
        options.setdefault("service_account", os.environ["NBPIPE_TEST_STEP_SERVICE_ACCOUNT"])
    return KubernetesExecutor(api=c.runner_api(), namespace=c.namespace, **options)


@pytest.fixture
def local(cluster: Cluster) -> Cluster:
    """The double, then (``-m k8s``) a real cluster whose pods run on this machine (the k8s-rig):
    these cases give pods a store in a local folder."""
    if not cluster.shares_host:
        pytest.skip("the pods of a remote cluster cannot read this machine's local store")
    return cluster


async def _run(ex: KubernetesExecutor, job: dict[str, Any], tmp_path: Path, during: Any = None) -> ExitStatus:
    attempt_id = f"{job['run_id']}.{job['step']}.{job['attempt']}"
    handle = await ex.start(job, attempt_id, str(tmp_path / f"{job['step']}.log"), str(tmp_path / "work"))
    if during is not None:
        await during(handle)
    status = await asyncio.wait_for(handle.done, 60)
    return status


async def _until_logged(log: Path, text: str) -> None:
    while not (log.exists() and text in log.read_text(errors="replace")):
        await asyncio.sleep(0.05)


def test_a_list_in_flight_while_a_pod_is_created_does_not_count_as_a_deletion(local: Cluster, store: LocalStore,
                                                                             tmp_path: Path) -> None:
    """A (re)list requested before a pod was created does not contain it; that is no deletion.

    Seen under load: a new executor's first list raced its first pod, which was then reported as
    "deleted before it finished". Driven here by handing the executor such a list directly.
    """
    async def go() -> None:
        ex = _executor(local)
        await ex._ready()
        asked = time.monotonic()  # a list requested now, answered after the create below
        handle = await ex.start(job_for(nap, store, step="fresh") | {"inputs": {
            "seconds": {"kind": "value", "value": 0.5}}}, "r1.fresh.1", str(tmp_path / "fresh.log"), str(tmp_path))
        ex._on_sync(set(), asked)
        assert not handle.done.done()
        status = await asyncio.wait_for(handle.done, 60)
        assert status.ok, status
        # ...while a list requested after the create that lacks the pod does mean it was deleted
        gone = await ex.start(job_for(nap, store, step="gone") | {"inputs": {
            "seconds": {"kind": "value", "value": 30}}}, "r1.gone.1", str(tmp_path / "gone.log"), str(tmp_path))
        ex._on_sync(set(), time.monotonic())
        status = await asyncio.wait_for(gone.done, 60)
        assert "was deleted before it finished" in status.reason
        await ex.kill(gone, grace=0)
        await ex.close()

    asyncio.run(go())


def test_close_ends_the_open_pod_watch_at_once(local: Cluster, store: LocalStore) -> None:
    """A runner's stop ends its pod watch now, not when the watch request times out (240 s).

    Closing the watch's response from the stopping thread waited for the lock its reading thread
    holds while blocked in the read: every runner stop on a real cluster hung until a supervisor
    killed it (the suite's runners took their 20 s each). The bounds below only stop a hang.
    """
    async def go() -> None:
        ex = _executor(local)
        await ex._ready()
        watcher = ex._watcher
        assert watcher is not None
        while watcher._watch is None:  # the watch request is open and its thread blocked reading it
            await asyncio.sleep(0.02)
        await asyncio.wait_for(ex.close(), 60)
        watcher._thread.join(60)
        assert not watcher._thread.is_alive()

    asyncio.run(go())


def test_watch_relists_after_410_and_reconnects_after_drops(double: Cluster, store: LocalStore,
                                                           tmp_path: Path) -> None:
    """On the double only: it compacts its history and drops watches on demand."""
    assert double.double is not None

    async def go() -> None:
        ex = _executor(double)

        async def disturb(handle: Any) -> None:
            log = tmp_path / "w.log"
            while not (log.exists() and "napping" in log.read_text(errors="replace")):
                await asyncio.sleep(0.05)
            double.double.drop_watches()
            await asyncio.sleep(0.2)
            double.double.compact()  # the resumed watch gets 410 Expired and must list again

        status = await _run(ex, job_for(nap, store, step="w") | {"inputs": {
            "seconds": {"kind": "value", "value": 1.5}}}, tmp_path, disturb)
        assert status.ok, status
        assert ex._watcher is not None and ex._watcher.lists >= 2
        await ex.close()

    asyncio.run(go())
    assert (tmp_path / "w.log").read_text().count("napping") == 1  # log streamed once, not duplicated


def test_eviction_deadline_and_missing_secret_end_the_attempt_with_a_reason(double: Cluster, store: LocalStore,
                                                                          tmp_path: Path) -> None:
    """On the double only: eviction is its control; the rig enforces no activeDeadlineSeconds, and its
    process kubelet fails a pod with a missing Secret (StartError) instead of keeping it waiting."""
    assert double.double is not None
    sleep_long = {"inputs": {"seconds": {"kind": "value", "value": 30}}}

    async def go() -> None:
        ex = _executor(double, deadline_margin=0)

        async def evict(handle: Any) -> None:
            await _until_logged(tmp_path / "evicted.log", "napping")  # running, whatever the load
            double.double.kubelet.evict(NAMESPACE, handle.name)

        status = await _run(ex, job_for(nap, store, step="evicted") | sleep_long, tmp_path, evict)
        assert "evicted" in status.reason and "low on resource: memory" in status.reason
        status = await _run(ex, job_for(nap, store, step="deadline", timeout=1) | sleep_long, tmp_path)
        assert "activeDeadlineSeconds=1" in status.reason
        bad = _executor(double, secret_env={"TOKEN": "no-such-secret:token"})
        status = await _run(bad, job_for(nap, store, step="secret") | sleep_long, tmp_path)
        assert 'secret "no-such-secret" not found' in status.reason
        await ex.close()
        await bad.close()

    asyncio.run(go())


@pytest.mark.parametrize("end_line", [True, False], ids=["end-line", "no-end-line"])
def test_a_finished_step_takes_its_whole_log_without_waiting_for_the_stream_to_close(
        double: Cluster, store: LocalStore, tmp_path: Path, end_line: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attempt ends on the pod's terminated state, with its whole log, while the stream stays open.

    A real kubelet closes a finished container's ``follow`` stream only on its next check (every
    second): the double holds such streams open here, as long as the test wants. The entrypoint's
    last line (``log_end_line``) says the log is complete; an image whose entrypoint does not print
    it (here: a runner that does not recognize it) gets its log read whole in one request instead.
    """
    from nbpipe.executors import k8s_logs

    assert double.double is not None
    api = double.double
    if not end_line:
        monkeypatch.setattr(k8s_logs, "log_end_line", lambda token: b"a line no entrypoint prints\n")

    async def go() -> ExitStatus:
        ex = _executor(double)
        status = await _run(ex, job_for(nap, store, step=step) | {"inputs": {
            "seconds": {"kind": "value", "value": 0.3}}}, tmp_path)
        await ex.close()
        return status

    step = f"held-{end_line}"  # a pod (and container log) of its own per case
    api.hold_log_streams.set()
    try:
        status = asyncio.run(go())
    finally:
        api.hold_log_streams.clear()
    assert status.ok, status
    pod = pod_name(f"r1.{step}.1")
    reads = [p.lower() for m, p in api.requests if m == "GET" and f"/pods/{pod}/log" in p]
    container_log = api.kubelet.log_path(NAMESPACE, pod).read_bytes()
    log = (tmp_path / f"{step}.log").read_bytes()
    assert log.count(b"napping") == 1
    if end_line:  # complete by the end line, or (the pod's end came first) from the copy the entrypoint
        # uploaded to the store: never a whole read through the API; the line stays in the container's log only
        assert all("follow=true" in p for p in reads), reads
        assert re.fullmatch(rb"nbpipe: end of step log [0-9a-f]{16}\n", container_log[len(log):]), container_log
        assert container_log.startswith(log) and b"end of step log" not in log
    else:  # the whole log once the container ended: read whole through the API, or, when the pod's end
        # came first, completed from the copy the entrypoint uploaded to the store (which of the two
        # depends on the order the watch and the held stream report in; both give the whole log)
        # (the store's copy was uploaded before the entrypoint printed its end line, which this runner
        # does not recognize here: it is the one difference the store path may show)
        assert container_log.startswith(log) and (log == container_log or re.fullmatch(
            rb"nbpipe: end of step log [0-9a-f]{16}\n", container_log[len(log):])), (reads, log, container_log)
        assert log.count(b"napping") == 1
        assert reads and reads[0].endswith("follow=true"), reads  # it followed the stream first


def test_a_large_job_travels_through_the_store(local: Cluster, store: LocalStore, tmp_path: Path) -> None:
    blob = os.urandom(150_000).hex()  # incompressible: too large for an environment variable in a pod spec

    async def go() -> None:
        ex = _executor(local, delete_pods="never")
        job = job_for(length, store, step="big") | {"inputs": {"blob": {"kind": "value", "value": blob}}}
        status = await _run(ex, job, tmp_path)
        assert status.ok, (tmp_path / "big.log").read_text()
        await ex.close()

    asyncio.run(go())
    assert store.exists("runs/r1/big/1/job.json")
    result = json.loads(store.get_bytes("runs/r1/big/1/result.json"))
    assert result["status"] == "succeeded" and result["outputs"]["output"]["value"] == len(blob)


def test_api_errors_say_what_to_do(local: Cluster, store: LocalStore, tmp_path: Path) -> None:
    from kubernetes.client.exceptions import ApiException

    async def go() -> None:
        ex = _executor(local)
        denied = ApiException(status=403, reason="Forbidden")
        denied.body = json.dumps({"message": 'pods is forbidden: User "x" cannot create resource "pods"'})
        with mock.patch.object(ex.api, "create_namespaced_pod", side_effect=denied):
            with pytest.raises(NbpipeError, match=r"refused to create pod .*HTTP 403.*cannot create.*rbac.yaml"):
                await ex.start(job_for(nap, store), "r1.s.1", str(tmp_path / "x.log"), str(tmp_path))
        assert await ex.reattach({"id": "r1.gone.1", "run_id": "r1", "step": "gone", "attempt": 1,
                                  "executor": "kubernetes", "pod": "nbp-no-such-pod", "log_key": "x"}) is None
        await ex.close()

    asyncio.run(go())


def test_python_mismatch_fails_in_the_pod_naming_both_versions_and_the_fix(local: Cluster, store: LocalStore,
                                                                          tmp_path: Path) -> None:
    import sys

    have = "%d.%d.%d" % sys.version_info[:3]

    async def go() -> ExitStatus:
        ex = _executor(local)
        job = job_for(nap, store, step="py") | {"python": "3.9.18", "inputs": {"seconds": {"kind": "value", "value": 0}}}
        status = await _run(ex, job, tmp_path)
        await ex.close()
        return status

    status = asyncio.run(go())
    assert status.code == 2  # a job/environment problem, not the user's code
    message = json.loads(store.get_bytes("runs/r1/py/1/result.json"))["error"]["message"]
    assert f"pickled on Python 3.9.18, but this step runs Python {have}" in message
    assert "nbpipe/base:py3.9" in message and "PYTHON_VERSION=3.9" in message
    uploaded = store.get_bytes("runs/r1/py/1/log.txt").decode()  # the entrypoint's own copy of its log
    assert "pickled on Python 3.9.18" in uploaded and uploaded == (tmp_path / "py.log").read_text()


def test_the_entrypoint_reads_its_job_from_the_pods_variable(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from nbpipe.executors import entry
    from nbpipe.executors.k8s_pod import encode_job

    job = {"run_id": "r1", "step": "s", "attempt": 1, "store": {"type": "local", "root": "/x"}, "env": {"A": "é"}}
    monkeypatch.setenv("NBPIPE_JOB", encode_job(job))
    assert entry.read_job("env:NBPIPE_JOB") == job
    assert "NBPIPE_JOB" not in os.environ  # the step's own subprocesses do not carry it
    assert entry.main(["env:NBPIPE_JOB"]) == 2
    assert "cannot read job env:NBPIPE_JOB: the variable NBPIPE_JOB is not set" in capsys.readouterr().err
    monkeypatch.setenv("NBPIPE_JOB", "bm90IGd6aXA=")  # base64 of something that is not gzip
    assert entry.main(["env:NBPIPE_JOB"]) == 2
    assert "NBPIPE_JOB is not base64 of gzipped JSON" in capsys.readouterr().err


def test_the_log_stream_ends_at_the_entrypoints_last_line_wherever_the_chunks_split(tmp_path: Path) -> None:
    """The end line completes the log (not written to it); a chunk cut anywhere in it changes nothing,
    and what cannot be the start of it is written at once (a live log never lags behind the step)."""
    from nbpipe.executors.base import Handle
    from nbpipe.executors.k8s_watch import log_end_line
    from nbpipe.executors.kubernetes import KubernetesExecutor, _Attempt

    token = "0123456789abcdef"
    before = b"epoch 1\nnbpipe: almost the end\n"
    data = before + log_end_line(token) + b"a leftover child's line\n"
    for cut in range(1, len(data)):
        written_after_first_chunk: list[bytes] = []

        class Resp:
            def stream(self, amt: int) -> Any:
                yield data[:cut]
                written_after_first_chunk.append(path.read_bytes())
                yield data[cut:]

            def close(self) -> None:
                pass

            def release_conn(self) -> None:
                pass

        class Api:
            def read_namespaced_pod_log(self, *args: Any, **kwargs: Any) -> Resp:
                return Resp()

        async def handle() -> Handle:  # (a Handle belongs to an event loop)
            return Handle("r1.s.1")

        path = tmp_path / f"{cut}.log"
        ex = KubernetesExecutor.__new__(KubernetesExecutor)
        ex._api = Api()
        att = _Attempt(asyncio.run(handle()), "p", "ns", str(path), "k", {}, log_end=token)
        assert ex._stream_logs(att) is True and att.log_taken
        assert path.read_bytes() == before and att.written == len(before), cut
        if cut < len(before) + len(log_end_line(token)):  # (else the first chunk held the whole end line)
            first, live = data[:cut], written_after_first_chunk[0]
            # written at once: all of the first chunk but a tail that may be the end line's start
            assert first.startswith(live) and log_end_line(token).startswith(first[len(live):]), cut
