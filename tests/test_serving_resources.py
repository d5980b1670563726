"""What a model server asks for on Kubernetes: per endpoint version, from ``nbpipe.serve(resources=)``.

Offline parts (``make test``): the bundle's manifest carries the resources, malformed ones are an
error in the kernel before anything is uploaded and a 400 from the runner for a hand-made bundle,
and the Deployment the runner builds takes the default version's (a rollback brings back the
older version's). The rig test (``tests/k8s/test_serving_k8s.py``) checks the same on the real API
server.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import kubernetes_validate
import pytest

import nbpipe
from nbpipe.errors import DefinitionError
from nbpipe.serving.bundle import make_bundle, read_manifest
from nbpipe.serving.k8s import K8sServing
from nbpipe.stores.local import LocalStore


def double(model: Any, x: Any) -> Any:
    return [2 * v for v in x]


def test_the_bundle_carries_the_resources_and_bad_ones_fail_in_the_kernel() -> None:
    manifest = read_manifest(make_bundle(3, double, name="twice", resources={"cpu": 1, "memory": "1Gi", "gpu": 1}))
    assert manifest["resources"] == {"cpu": "1", "memory": "1Gi", "gpu": 1}
    assert "resources" not in read_manifest(make_bundle(3, double, name="twice"))
    for bad, said in (({"cpu": "lots"}, "is not a CPU quantity"), ({"memory": "2 GB"}, "is not a memory quantity"),
                      ({"cpus": 2}, "Unknown endpoint resources 'cpus'"), ("2Gi", "must be a dict")):
        with pytest.raises(DefinitionError, match=said):
            nbpipe.serve(3, predict=double, name="twice", resources=bad, runner="http://127.0.0.1:9")  # never reached
        with pytest.raises(DefinitionError, match=said):
            nbpipe.serving.deployer("twice", double, resources=bad)


def test_the_runner_refuses_a_hand_made_bundle_with_bad_resources(nb_client) -> None:
    good = make_bundle(3, double, name="twice")
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(buf, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "manifest.json":
                data = json.dumps({**json.loads(data), "resources": {"memory": "1Gi; rm -rf /"}}).encode()
            dst.writestr(item, data)
    resp = nb_client._http.put("/api/v1/endpoints/twice/versions", content=buf.getvalue(),
                               headers={"Content-Type": "application/zip"})
    assert resp.status_code == 400, resp.text
    assert "is not a memory quantity" in resp.text
    assert nb_client._http.get("/api/v1/endpoints/twice").status_code == 404  # nothing was kept


def test_the_server_pod_asks_for_its_default_versions_resources(tmp_path) -> None:
    serving = K8sServing(LocalStore(str(tmp_path)), core=object(), apps=object())
    versions = {"1": {"key": "k1", "resources": {"cpu": "2", "memory": "3Gi", "gpu": 1}}, "2": {"key": "k2"}}

    def container(default: str) -> dict[str, Any]:
        config = json.dumps({"name": "iris", "default": default, "versions": versions})
        dep = serving.deployment("iris", config, 8080)
        kubernetes_validate.validate(dep, kubernetes_validate.latest_version(), strict=True)
        return dict(dep["spec"]["template"]["spec"]["containers"][0])

    assert container("1")["resources"] == {"requests": {"cpu": "2", "memory": "3Gi"},
                                           "limits": {"memory": "3Gi", "nvidia.com/gpu": "1"}}
    from nbpipe.executors.k8s_pod import _resources

    defaults = _resources({}, serving.place(None))  # version 2 asked for nothing: the runner's step defaults
    assert defaults.get("requests", {}).get("memory") != "3Gi"
    assert container("2").get("resources") == (defaults or None)
