"""The Lab's Endpoints routes on a real Jupyter server, the real embedded runner and a real model
server: list, a test request (an array or a v2 request), the model server's 4xx/5xx passed on with
its message, rollback and delete — read only through ``/nbpipe/api/endpoints...`` as the page does."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import tornado.httpclient


def scale_predict(model, x):
    if x.shape[-1] != 2:
        raise ValueError(f"expected 2 features, got {x.shape[-1]}")
    return x.sum(axis=-1) * model


async def deploy(model: float, name: str = "lab-ep") -> dict[str, Any]:
    from nbpipe import Client
    from nbpipe.serving import serve

    return await asyncio.to_thread(lambda: serve(model, predict=scale_predict, name=name, runner=Client()).info)


@pytest.mark.parametrize("path", ["endpoints", "endpoints/x/infer"])
async def test_endpoint_routes_refuse_requests_without_a_token(jp_fetch: Any, path: str) -> None:
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        await jp_fetch("nbpipe", "api", *path.split("/"), headers={"Authorization": ""}, follow_redirects=False)
    assert info.value.code in (401, 403)


async def test_list_test_request_rollback_delete(api: Any, nbpipe_home: Any) -> None:
    await deploy(10.0)
    await deploy(100.0)
    code, body = await api("endpoints")
    assert code == 200, body
    (ep,) = body["endpoints"]
    assert ep["name"] == "lab-ep" and ep["default_version"] == "2" and ep["state"] == "ready"
    assert [v["version"] for v in ep["versions"]] == ["1", "2"]
    assert "token" not in ep  # the endpoint's token stays in the Jupyter server

    code, out = await api("endpoints/lab-ep/infer", "POST", {"request": [[1, 2], [3, 4]]})
    assert code == 200, out
    assert out["model_version"] == "2" and out["outputs"][0]["data"] == [300.0, 700.0]
    v2 = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 1]}]}
    code, out = await api("endpoints/lab-ep/infer", "POST", {"request": v2, "version": "1"})
    assert code == 200 and out["outputs"][0]["data"] == [20.0]

    code, out = await api("endpoints/lab-ep/infer", "POST", {"request": {"inputs": []}})
    assert code == 400 and "non-empty 'inputs'" in out["message"]
    code, out = await api("endpoints/lab-ep/infer", "POST", {"request": "hello"})
    assert code == 400 and "JSON array or a v2 request" in out["message"]
    code, out = await api("endpoints/lab-ep/infer", "POST", {"request": [[1, 2, 3]]})
    assert code == 502 and "ValueError: expected 2 features, got 3" in out["message"]
    assert "scale_predict" in out["hint"]  # the predict function's traceback
    code, out = await api("endpoints/nope/infer", "POST", {"request": [1]})
    assert code == 404 and "No endpoint 'nope'" in out["message"]

    code, out = await api("endpoints/lab-ep/rollback", "POST", {})
    assert code == 200 and out["default_version"] == "1"
    code, out = await api("endpoints/lab-ep/infer", "POST", {"request": [[1, 2]]})
    assert out["model_version"] == "1" and out["outputs"][0]["data"] == [30.0]
    code, out = await api("endpoints/lab-ep", "DELETE", version="2")
    assert code == 200 and [v["version"] for v in out["versions"]] == ["1"]
    code, out = await api("endpoints/lab-ep", "DELETE")
    assert code == 200 and out == {"deleted": "lab-ep"}
    code, body = await api("endpoints")
    assert body["endpoints"] == []
