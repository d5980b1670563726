"""Model serving on the embedded runner: real runner process, real model-server processes, real HTTP.

Predictions over HTTP equal the kernel's; versions roll out, roll back and are deleted; bad
requests are 4xx with a clear message; a crashing predict is a 500 with the reason and the
server keeps serving; the server survives its own crash (restarted) and a runner restart. The
model server runs user code, so it gets its own token, never the runner's.
"""

from __future__ import annotations

import os
import signal
import stat
import time

import httpx
import numpy as np
import psutil
import pytest

import nbpipe
from nbpipe.errors import NbpipeError
from nbpipe.serving import EndpointError, endpoint, endpoints, serve


class Linear:
    def __init__(self, w: list[float], b: float):
        self.w, self.b = np.array(w), b


def lin_predict(model, x):
    return x @ model.w + model.b


def _wait(cond, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _gone(pid: int) -> bool:
    try:
        p = psutil.Process(pid)
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_serve_predict_versions_rollback_delete(nb_client):
    m1 = Linear([1.0, 2.0, 3.0], 0.5)
    ep = serve(m1, predict=lin_predict, name="lin", runner=nb_client)
    assert ep.info["state"] == "ready" and ep.version == "1"
    X = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.testing.assert_array_equal(ep.predict(X), lin_predict(m1, X))

    # KServe v2 protocol, raw (with the endpoint's own token, from the runner's API)
    h = {"Authorization": f"Bearer {ep.info['token']}"}
    assert httpx.get(f"{ep.url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{ep.url}/v2/health/ready").status_code == 200
    meta = httpx.get(f"{ep.url}/v2/models/lin", headers=h).json()
    assert meta["name"] == "lin" and meta["versions"] == ["1"]
    assert httpx.get(f"{ep.url}/v2/models/lin/ready", headers=h).json()["ready"] is True
    body = {"id": "r1", "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]}
    out = httpx.post(f"{ep.url}/v2/models/lin/infer", json=body, headers=h).json()
    assert out["id"] == "r1" and out["model_version"] == "1"
    assert out["outputs"][0]["shape"] == [2] and out["outputs"][0]["data"] == pytest.approx([14.5, 32.5])

    # a new version rolls out (same URL), the old one stays addressable
    m2 = Linear([0.0, 0.0, 1.0], -1.0)
    ep2 = serve(m2, predict=lin_predict, name="lin", runner=nb_client)
    assert ep2.version == "2" and ep2.url == ep.url and ep2.versions == ["1", "2"]
    np.testing.assert_array_equal(ep2.predict(X), lin_predict(m2, X))
    np.testing.assert_array_equal(ep2.predict(X, version="1"), lin_predict(m1, X))
    # the same bundle again is not a new version
    assert serve(m2, predict=lin_predict, name="lin", runner=nb_client).versions == ["1", "2"]

    ep2.rollback()
    assert ep2.version == "1"
    np.testing.assert_array_equal(ep2.predict(X), lin_predict(m1, X))
    with pytest.raises(NbpipeError, match="first version"):
        ep2.rollback()
    ep2.rollback("2")
    np.testing.assert_array_equal(endpoint("lin", runner=nb_client).predict(X), lin_predict(m2, X))
    with pytest.raises(NbpipeError, match="serves by default"):
        ep2.delete_version("2")
    ep2.delete_version("1")
    assert ep2.versions == ["2"]
    with pytest.raises(EndpointError, match="no version '1'") as ei:
        ep2.predict(X, version="1")
    assert ei.value.status == 404

    pid = ep2.info["pid"]
    ep2.delete()
    assert "lin" not in [e.name for e in endpoints(runner=nb_client)]
    _wait(lambda: _gone(pid), "the model server to stop")


def test_bad_requests_are_4xx_and_a_crashing_predict_is_500(nb_client):
    def picky(model, x):
        if x.shape[-1] != 2:
            raise ValueError(f"expected 2 features, got {x.shape[-1]}")
        return x.sum(axis=-1) * model

    ep = serve(10, predict=picky, name="picky", runner=nb_client)
    h = {"Authorization": f"Bearer {ep.info['token']}"}
    url = f"{ep.url}/v2/models/picky/infer"

    def post(body, **kw):
        return httpx.post(url, headers={**h, **kw.pop("headers", {})}, **({"json": body} if not isinstance(body, bytes) else {"content": body}), **kw)

    cases = [
        (b"{not json", 400, "not valid JSON"),
        ({}, 400, "non-empty 'inputs'"),
        ({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32"}]}, 400, "has no data"),
        ({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]}]}, 400, "needs 4 values"),
        ({"inputs": [{"name": "x", "shape": [2], "datatype": "FLOAT", "data": [1, 2]}]}, 400, "datatype 'FLOAT'"),
        ({"inputs": [{"name": "x", "shape": [2], "datatype": "INT32", "data": ["a", 2]}]}, 400, "must be numbers"),
        ({"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": []}]}, 400, "shape must be"),
    ]
    for body, status, text in cases:
        r = post(body)
        assert r.status_code == status, (body, r.text)
        assert text in r.json()["error"], (body, r.json())
    assert httpx.post(url, json={}).status_code == 401
    assert httpx.post(url, json={}, headers={**h, "Host": "evil.example"}).status_code == 403
    assert httpx.post(f"{ep.url}/v2/models/other/infer", json={}, headers=h).status_code == 404

    # the predict function raises: 500 with its reason and traceback
    r = post({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]})
    assert r.status_code == 500
    assert "ValueError: expected 2 features, got 3" in r.json()["error"]
    assert "picky" in r.json()["traceback"]
    with pytest.raises(EndpointError, match="expected 2 features") as ei:
        ep.predict(np.ones((1, 3)))
    assert ei.value.status == 500
    # ... and the server keeps serving
    np.testing.assert_array_equal(ep.predict(np.array([[1.0, 2.0]])), [30.0])
    ep.delete()


def test_model_server_crash_is_restarted_and_survives_runner_restart(nb_runner_factory):
    r = nb_runner_factory("restart")
    client = r.client()
    ep = serve(Linear([2.0], 1.0), predict=lin_predict, name="tough", runner=client)
    X = np.array([[1.0], [2.0]])
    np.testing.assert_array_equal(ep.predict(X), [3.0, 5.0])
    pid = ep.info["pid"]
    os.kill(pid, signal.SIGKILL)  # the model server dies: the runner starts it again
    info = _wait(lambda: (lambda i: i if i["state"] == "ready" and i["pid"] not in (None, pid) else None)(
        endpoint("tough", runner=client).info), "the restarted model server")
    assert info["restarts"] == 1 and info["url"] == ep.url
    np.testing.assert_array_equal(ep.predict(X), [3.0, 5.0])

    # a runner restart stops its model servers and starts them again on the same port
    pid2 = info["pid"]
    r.stop()
    _wait(lambda: _gone(pid2), "the model server to stop with the runner")
    r.start()
    client = r.client()
    again = endpoint("tough", runner=client)
    assert again.info["state"] == "ready" and again.url == ep.url and again.info["pid"] != pid2
    np.testing.assert_array_equal(again.predict(X), [3.0, 5.0])
    # ... with the same endpoint token (a client's copy keeps working), kept owner-only
    token_file = r.data_dir / "endpoints" / "tough" / "token"
    assert again.info["token"] == ep.info["token"] == token_file.read_text()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    np.testing.assert_array_equal(ep.predict(X), [3.0, 5.0])
    again.delete()
    assert not token_file.exists()


def environment_seen(model, x):
    """What user code in the model server can read of its environment (now and at exec)."""
    with open("/proc/self/environ", "rb") as fh:
        at_exec = fh.read().decode(errors="replace").split("\0")
    return np.array([f"{k}={v}" for k, v in os.environ.items()] + at_exec, dtype=object)


def test_the_model_server_gets_its_own_token_not_the_runners(nb_client):
    ep = serve(0, predict=environment_seen, name="envy", runner=nb_client)
    seen = "\n".join(ep.predict(np.zeros(1)).tolist())
    assert "PATH=" in seen  # it did read the environment
    assert nb_client.token not in seen  # ... and the runner's token is not there
    assert "NBPIPE_TOKEN=" not in seen

    token = ep.info["token"]
    assert token and token != nb_client.token and len(token) >= 40
    url = f"{ep.url}/v2/models/envy/infer"
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [0]}]}
    refused = httpx.post(url, json=body, headers={"Authorization": f"Bearer {nb_client.token}"})
    assert refused.status_code == 401 and "its own token" in refused.json()["error"]
    assert httpx.get(f"{ep.url}/v2/models/envy", headers={"Authorization": f"Bearer {nb_client.token}"}
                     ).status_code == 401
    ok = httpx.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and ok.json()["model_name"] == "envy"
    assert httpx.get(f"{ep.url}/v2/health/ready").status_code == 200  # the probes stay open
    # only an authenticated caller of the runner learns the endpoint's token
    assert httpx.get(f"{nb_client.url}/api/v1/endpoints/envy").status_code == 401
    # another endpoint has another token
    other = serve(1, predict=lin_predict, name="envy-two", runner=nb_client)
    assert other.info["token"] != token
    assert httpx.post(f"{other.url}/v2/models/envy-two/infer", json=body,
                      headers={"Authorization": f"Bearer {token}"}).status_code == 401
    other.delete()
    ep.delete()


def test_serve_errors_are_clear(nb_client, tmp_path):
    with pytest.raises(NbpipeError, match="predict="):
        nbpipe.serve(Linear([1.0], 0.0), name="x", runner=nb_client)
    with pytest.raises(NbpipeError, match="not valid"):
        nbpipe.serve(1, predict=lin_predict, name="Bad_Name", runner=nb_client)
    with pytest.raises(NbpipeError, match="does not exist"):
        nbpipe.serve(tmp_path / "missing.pkl", predict=lin_predict, name="x", runner=nb_client)
    # a model saved to a file, read by load=
    import pickle

    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps({"scale": 3.0}))

    def load(p):
        with open(p, "rb") as fh:
            return pickle.load(fh)

    ep = nbpipe.serve(path, predict=lambda m, x: x * m["scale"], load=load, name="from-file", version="v1",
                      runner=nb_client)
    assert ep.version == "v1"
    np.testing.assert_array_equal(ep.predict(np.array([1.0, 2.0])), [3.0, 6.0])
    with pytest.raises(NbpipeError, match="already has a version 'v1'"):
        nbpipe.serve(path, predict=lambda m, x: x, load=load, name="from-file", version="v1", runner=nb_client)
    # a load function that fails: the endpoint says why
    with pytest.raises(NbpipeError, match="failed"):
        nbpipe.serve(path, predict=lambda m, x: x, load=lambda p: 1 / 0, name="broken", runner=nb_client)
    assert "ZeroDivisionError" in endpoint("broken", runner=nb_client).info["reason"]
    ep.delete()
    endpoint("broken", runner=nb_client).delete()


def _cli(runner, *args: str, check: bool = True):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "nbpipe.cli", "--runner", runner.url, *args], capture_output=True,
                          text=True, env={**os.environ, **runner.client_env()}, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_cli_deploy_list_predict_rollback_delete(nb_runner, tmp_path):
    import json
    import pickle

    (tmp_path / "model.pkl").write_bytes(pickle.dumps([1.0, 10.0]))
    (tmp_path / "model2.pkl").write_bytes(pickle.dumps([2.0, 20.0]))
    (tmp_path / "serving_fns.py").write_text(
        "import pickle\nimport numpy as np\n\n"
        "def load(path):\n    with open(path, 'rb') as fh:\n        return np.array(pickle.load(fh))\n\n"
        "def predict(model, x):\n    return x @ model\n")
    fns = str(tmp_path / "serving_fns.py")
    out = _cli(nb_runner, "endpoints", "deploy", "cli-ep", "--model", str(tmp_path / "model.pkl"),
               "--predict", f"{fns}:predict", "--load", f"{fns}:load").stdout
    assert "cli-ep version 1 (ready)" in out
    _cli(nb_runner, "endpoints", "deploy", "cli-ep", "--model", str(tmp_path / "model2.pkl"),
         "--predict", f"{fns}:predict", "--load", f"{fns}:load", "--version", "two")
    listed = json.loads(_cli(nb_runner, "endpoints", "list", "--json").stdout)
    mine = next(e for e in listed if e["name"] == "cli-ep")
    assert [v["version"] for v in mine["versions"]] == ["1", "two"] and mine["default_version"] == "two"
    assert "cli-ep" in _cli(nb_runner, "endpoints", "list").stdout
    res = json.loads(_cli(nb_runner, "endpoints", "predict", "cli-ep", "--data", "[[1, 2], [3, 4]]").stdout)
    assert res["model_version"] == "two" and res["outputs"][0]["data"] == [42.0, 86.0]
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 1]}]})
    res = json.loads(_cli(nb_runner, "endpoints", "predict", "cli-ep", "--data", body, "--version", "1").stdout)
    assert res["outputs"][0]["data"] == [11.0]
    bad = _cli(nb_runner, "endpoints", "predict", "cli-ep", "--data", '{"inputs": []}', check=False)
    assert bad.returncode == 1 and "non-empty 'inputs'" in bad.stderr
    assert "version 1" in _cli(nb_runner, "endpoints", "rollback", "cli-ep").stdout
    _cli(nb_runner, "endpoints", "delete", "cli-ep", "--version", "two")
    missing = _cli(nb_runner, "endpoints", "rollback", "nope", check=False)
    assert missing.returncode == 1 and "No endpoint 'nope'" in missing.stderr
    assert "deleted endpoint cli-ep" in _cli(nb_runner, "endpoints", "delete", "cli-ep").stdout
