"""The runner (a real process) with ``NBPIPE_EXECUTOR=kubernetes``, end to end.

runner → Kubernetes HTTP API (the real ``kubernetes`` client) → pod → ``nbpipe.executors.entry``
→ S3 store (a real moto server) → events. Tests taking ``cluster`` run against the API double
(pods are local processes; what it simulates is listed in ``tests/k8s/kubelet.py``) and, with
``-m k8s``, against a real API server: ``make test-k8s`` runs them on the k8s-rig (kube-apiserver
and controller-manager 1.20, pods as processes of this machine), as the runner's least-privilege
ServiceAccount. Tests taking ``double`` need what the rig cannot do (pull images, enforce memory
limits, mount volumes) and say so.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from . import cases
from .conftest import Cluster
from .wheels import build_wheel


@pytest.fixture(scope="module")
def client(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One runner for the module; every run gets its own volume claim (the double mounts it in tmp)."""
    env = {"NBPIPE_K8S_RUN_VOLUME_SIZE": "1Gi"}
    if cluster.double is not None:  # the double links the claim's folder at the mount path
        env["NBPIPE_K8S_VOLUME_MOUNT"] = str(tmp_path_factory.mktemp("k8s-mount") / "run")
    elif cluster.shares_host:  # the rig mounts nothing: the mount path is a folder of this machine
        env["NBPIPE_K8S_VOLUME_MOUNT"] = str(tmp_path_factory.mktemp("k8s-mount"))
    yield cluster.runner(tmp_path_factory.mktemp("k8s-runner"), **env).client()


@pytest.fixture(scope="module")
def double_client(double: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield double.runner(tmp_path_factory.mktemp("k8s-runner")).client()


def test_pipeline_runs_end_to_end_as_pods(cluster: Cluster, client: Any) -> None:
    timing = cases.end_to_end(cluster, client)
    print(f"\nk8s {'double' if cluster.double else 'cluster'}: {json.dumps({k: round(v, 2) for k, v in timing.items()})}")
    if cluster.double is not None:
        assert cluster.double.watch_requests() >= 1  # a watch, not polling
    from minio import Minio

    from .conftest import ACCESS, SECRET

    run_id = client.runs()[0]["id"]
    s3 = Minio(cluster.s3_endpoint.split("//")[1], access_key=ACCESS, secret_key=SECRET, secure=False)
    names = [o.object_name for o in s3.list_objects("nbpipe-k8s", recursive=True) if run_id in o.object_name]
    log_keys = [n for n in names if n.endswith("make_rows/1/log.txt")]
    assert log_keys, names  # the entrypoint uploaded its full log
    assert b"wrote 5 rows" in s3.get_object("nbpipe-k8s", log_keys[0]).read()


def test_retry_creates_a_new_pod(cluster: Cluster, client: Any) -> None:
    cases.retry_makes_a_new_pod(cluster, client)


def test_cancel_and_timeout_delete_the_pod(cluster: Cluster, client: Any) -> None:
    cases.cancel_and_timeout_delete_pods(cluster, client)


@pytest.mark.k8s
def test_claims_are_released_under_every_pod_policy(real: Cluster, data_dir: Path) -> None:
    """On the real server only (a runner per policy: ~40 s); on the double, the retry case checks the
    default policy's kept pod releasing the claim."""
    cases.claims_released_under_every_policy(real, data_dir)


@pytest.mark.k8s
def test_failed_pods_are_kept_without_a_run_volume(real: Cluster, data_dir: Path) -> None:
    """On the real server only: the double keeps pods the same way, and this costs a runner."""
    cases.failed_pods_are_kept_without_a_run_volume(real, data_dir)


def test_image_pull_error_fails_fast_and_names_the_image(double: Cluster, double_client: Any) -> None:
    """On the double only: the k8s-rig ignores images (every image runs the local command)."""
    cases.image_pull_error_fails_fast(double, double_client)


def test_out_of_memory_is_reported_as_such(double: Cluster, double_client: Any) -> None:
    """On the double only: the k8s-rig has no cgroups, so no memory limit and no OOMKilled."""
    cases.oom_is_reported(double, double_client)


def test_packages_are_installed_in_the_pod(double: Cluster, double_client: Any, tmp_path: Path) -> None:
    """On the double only: the wheel is a file of this machine, which a real cluster's pods cannot read."""
    wheel = build_wheel(tmp_path / "wheels", f"nbpipe_pkg_{uuid.uuid4().hex[:6]}")
    cases.installed_packages(double, double_client, wheel)


def test_runner_restart_reattaches_to_the_running_pod(cluster: Cluster, data_dir: Path) -> None:
    cases.restart_reattaches(cluster, data_dir)


def test_a_cancel_answered_before_a_runner_crash_ends_the_run_after_the_restart(cluster: Cluster,
                                                                               data_dir: Path) -> None:
    cases.cancel_survives_a_restart(cluster, data_dir)


def test_per_run_volume_is_shared_by_steps_and_deleted_after_the_run(cluster: Cluster, client: Any) -> None:
    """On the rig the claim's lifecycle is real; the files are shared through a folder of this machine."""
    cases.run_volume_is_shared_and_deleted(cluster, client)
