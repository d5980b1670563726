"""Fixtures for the Kubernetes executor: the API double, a moto S3 server, runners that use them.

``cluster`` yields a :class:`Cluster` twice: the API double, and the real cluster in
``KUBECONFIG`` (marked ``k8s``; skipped when ``KUBECONFIG`` is unset, the only skips allowed).
``double`` is the API double alone.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
from runner_process import RunnerProcess
from test_store_s3 import start_moto, stop

from .apiserver import ApiServer

NAMESPACE = "nbpipe-test"
# a real cluster's nbpipe-s3 Secret holds real keys: give them to the runner the same way
ACCESS = os.environ.get("NBPIPE_TEST_S3_ACCESS_KEY", "nbpipe-k8s-access")
SECRET = os.environ.get("NBPIPE_TEST_S3_SECRET_KEY", "nbpipe-k8s-secret-value")


@dataclass
class Cluster:
    """Where step pods go: the double (``double`` set) or a real cluster."""

    kubeconfig: Path
    namespace: str
    double: ApiServer | None
    s3_endpoint: str  # as the runner sees it
    made: list[RunnerProcess] = field(default_factory=list)

    def api(self) -> Any:
        from nbpipe.executors.kubernetes import load_api
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(str(self.kubeconfig), client_configuration=cfg)
        return load_api(cfg)

    def runner(self, data_dir: Path, **env: str) -> RunnerProcess:
        """A runner process with the kubernetes executor and the S3 store."""
        base = {
            "NBPIPE_EXECUTOR": "kubernetes", "KUBECONFIG": str(self.kubeconfig), "NBPIPE_K8S_NAMESPACE": self.namespace,
            "NBPIPE_STORE": "s3", "NBPIPE_S3_ENDPOINT": self.s3_endpoint, "NBPIPE_S3_BUCKET": "nbpipe-k8s",
            "NBPIPE_S3_PREFIX": uuid.uuid4().hex[:8], "NBPIPE_S3_ACCESS_KEY": ACCESS, "NBPIPE_S3_SECRET_KEY": SECRET,
            # step pods get the same credentials from a Secret, as in cluster/
            "NBPIPE_K8S_SECRET_ENV": "NBPIPE_S3_ACCESS_KEY=nbpipe-s3:access-key,NBPIPE_S3_SECRET_KEY=nbpipe-s3:secret-key",
            "NBPIPE_K8S_DELETE_PODS": "on-success",
        }
        if os.environ.get("NBPIPE_TEST_STEP_IMAGE"):
            base["NBPIPE_STEP_IMAGE"] = os.environ["NBPIPE_TEST_STEP_IMAGE"]
        r = RunnerProcess(data_dir, extra_env={**base, **env})
        self.made.append(r)
        return r.start()

    def pods(self, run_id: str = "") -> list[dict[str, Any]]:
        """Step pods (of one run), as API objects."""
        import json

        sel = "app.kubernetes.io/managed-by=nbpipe" + (f",nbpipe.io/run={run_id}" if run_id else "")
        resp = self.api().list_namespaced_pod(self.namespace, label_selector=sel, _preload_content=False)
        return list(json.loads(resp.data)["items"])


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    proc, url = start_moto()
    yield url
    stop(proc)


def _double(root: Path) -> ApiServer:
    api = ApiServer(root, namespaces=(NAMESPACE,)).start()
    api.create("secrets", NAMESPACE, {"metadata": {"name": "nbpipe-s3"},
                                      "stringData": {"access-key": ACCESS, "secret-key": SECRET}})
    return api


def _cluster(kind: str, s3_server: str) -> Cluster:
    if kind == "real":
        kubeconfig = os.environ.get("KUBECONFIG")
        if not kubeconfig:
            pytest.skip("KUBECONFIG is unset: no real cluster to run the k8s suite against")
        endpoint = os.environ.get("NBPIPE_TEST_S3_ENDPOINT", s3_server)
        return Cluster(Path(kubeconfig), os.environ.get("NBPIPE_TEST_NAMESPACE", "nbpipe"), None, endpoint)
    root = Path(tempfile.mkdtemp(prefix="nbpipe-k8s-double-"))
    api = _double(root)
    return Cluster(api.write_kubeconfig(root / "kubeconfig", NAMESPACE), NAMESPACE, api, s3_server)


def _close(c: Cluster) -> None:
    for r in c.made:
        r.stop()
    if c.double is not None:
        c.double.stop()


@pytest.fixture(scope="module", params=["double", pytest.param("real", marks=pytest.mark.k8s)])
def cluster(request: pytest.FixtureRequest, s3_server: str) -> Iterator[Cluster]:
    """The API double (fresh per module), then the real cluster in ``KUBECONFIG`` (``-m k8s``)."""
    c = _cluster(request.param, s3_server)
    yield c
    _close(c)


@pytest.fixture(scope="module")
def double(s3_server: str) -> Iterator[Cluster]:
    """The API double only (for tests that use its controls: compaction, eviction)."""
    c = _cluster("double", s3_server)
    yield c
    _close(c)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / f"runner-{secrets.token_hex(3)}"
