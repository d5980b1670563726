"""Fixtures for the Kubernetes executor: the API double, a moto S3 server, runners that use them.

``cluster`` yields a :class:`Cluster` twice: the API double, and a real cluster (marked ``k8s``).
``double`` is the API double alone, for what a real cluster (or the k8s-rig) cannot do on demand.

The real cluster is used only with ``-m k8s`` and a kubeconfig: ``NBPIPE_TEST_KUBECONFIG`` (the
runner's identity, e.g. the ``nbpipe-runner`` ServiceAccount token, as ``make test-k8s`` writes it),
else ``KUBECONFIG``. Tests look at the cluster through ``NBPIPE_TEST_ADMIN_KUBECONFIG`` when set,
so their own requests neither need the runner's Role nor show up as the runner's in the audit log.
Without ``-m k8s`` the real-cluster cases are deselected (a ``KUBECONFIG`` in a developer's shell
never sends test pods to their cluster); ``-m k8s`` without a kubeconfig is a usage error.
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
    admin_kubeconfig: Path | None = None  # what tests inspect the cluster with (default: kubeconfig)
    shares_host: bool = True  # pods are processes of this machine (the double, the k8s-rig)

    def api(self) -> Any:
        """A ``CoreV1Api`` for the tests' own look at the cluster (the admin's, when there is one)."""
        return _api(self.admin_kubeconfig or self.kubeconfig)

    def runner_api(self) -> Any:
        """A ``CoreV1Api`` with the runner's identity."""
        return _api(self.kubeconfig)

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
        if os.environ.get("NBPIPE_TEST_STEP_SERVICE_ACCOUNT") and self.double is None:
            base["NBPIPE_K8S_STEP_SERVICE_ACCOUNT"] = os.environ["NBPIPE_TEST_STEP_SERVICE_ACCOUNT"]
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


def _api(kubeconfig: Path) -> Any:
    from kubernetes import client, config

    from nbpipe.executors.kubernetes import load_api

    cfg = client.Configuration()
    config.load_kube_config(str(kubeconfig), client_configuration=cfg)
    return load_api(cfg)


def real_kubeconfig() -> str:
    return os.environ.get("NBPIPE_TEST_KUBECONFIG") or os.environ.get("KUBECONFIG") or ""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Real-cluster cases only with ``-m k8s`` (deselected otherwise; see the module docstring)."""
    markexpr = config.getoption("markexpr") or ""
    asked = "k8s" in markexpr and "not k8s" not in markexpr
    k8s = [i for i in items if i.get_closest_marker("k8s") is not None]
    if asked and k8s and not real_kubeconfig():
        raise pytest.UsageError("-m k8s needs a cluster: run `make test-k8s` (a real API server on this "
                                "machine), or set NBPIPE_TEST_KUBECONFIG / KUBECONFIG (see cluster/README.md).")
    if not asked and k8s:
        config.hook.pytest_deselected(items=k8s)
        items[:] = [i for i in items if i.get_closest_marker("k8s") is None]


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
        endpoint = os.environ.get("NBPIPE_TEST_S3_ENDPOINT", s3_server)
        admin = os.environ.get("NBPIPE_TEST_ADMIN_KUBECONFIG")
        return Cluster(Path(real_kubeconfig()), os.environ.get("NBPIPE_TEST_NAMESPACE", "nbpipe"), None, endpoint,
                       admin_kubeconfig=Path(admin) if admin else None,
                       shares_host=os.environ.get("NBPIPE_TEST_CLUSTER") == "k8s-rig")
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
    """The API double (fresh per module), then the real cluster (``-m k8s``)."""
    c = _cluster(request.param, s3_server)
    yield c
    _close(c)


@pytest.fixture(scope="module")
def real(s3_server: str) -> Iterator[Cluster]:
    """The real cluster only, for slow matrices whose gist ``make test`` already checks on the double
    (use with ``@pytest.mark.k8s``)."""
    c = _cluster("real", s3_server)
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
