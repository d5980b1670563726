"""Serving mistakes a user makes from the kernel get errors that say what is wrong and what to do.

Real runner, real model server: asking for a version that does not exist says where the versions
are (not "check the request's inputs"); a failing predict's traceback shows the user's frames, not
the web framework's; a ragged input is named before anything is sent.
"""

from __future__ import annotations

import numpy as np
import pytest

from nbpipe.errors import NbpipeError
from nbpipe.serving import EndpointError, serve


def scale(model, x):
    return x * model


def boom(model, x):
    return x / model["missing"]


def test_unknown_version_hint_and_user_traceback(nb_client):
    ep = serve(3.0, predict=scale, name="qa2-scale", runner=nb_client)
    with pytest.raises(EndpointError) as ei:
        ep.predict(np.array([1.0]), version="nope")
    assert ei.value.status == 404
    assert "versions" in ei.value.hint and "inputs" not in ei.value.hint

    bad = serve({"w": 1}, predict=boom, name="qa2-boom", runner=nb_client)
    with pytest.raises(EndpointError) as ei:
        bad.predict(np.array([1.0]))
    assert ei.value.status == 500
    tb = ei.value.traceback
    assert "KeyError" in tb and "in boom" in tb
    assert "starlette" not in tb and "anyio" not in tb and "concurrent" not in tb


def test_ragged_input_is_named(nb_client):
    ep = serve(2.0, predict=scale, name="qa2-ragged", runner=nb_client)
    with pytest.raises(NbpipeError, match="Input 'input-0' cannot be sent to endpoint 'qa2-ragged'") as ei:
        ep.predict([[1.0, 2.0], [3.0]])
    assert "rectangular" in ei.value.hint
    np.testing.assert_array_equal(ep.predict(np.array([[1.0, 2.0]])), [[2.0, 4.0]])


def test_deploy_without_model_is_refused_before_serving(nb_client, nb_runner, tmp_path, monkeypatch, capsys):
    from nbpipe.cli import main

    (tmp_path / "pm.py").write_text("def predict(model, x):\n    return x * model\n")
    (tmp_path / "model.txt").write_text("3")
    monkeypatch.chdir(tmp_path)
    assert main(["--runner", nb_runner.url, "endpoints", "deploy", "qa2-cli", "--model", "model.txt",
                 "--predict", "pm.py:predict"]) == 0
    capsys.readouterr()
    # forgot --model: used to deploy version 2 as "ready", then every request was a 500
    assert main(["--runner", nb_runner.url, "endpoints", "deploy", "qa2-cli", "--predict", "pm.py:predict"]) != 0
    err = capsys.readouterr().err
    assert "predict takes the model first, but no model was given" in err and "--model FILE" in err
    assert nb_client._request("GET", "/api/v1/endpoints/qa2-cli").json()["default_version"] == "1"
    with pytest.raises(NbpipeError, match="no model was given"):
        serve(predict=scale, name="qa2-cli", runner=nb_client)
    # a model-less endpoint whose predict takes only the inputs still deploys
    ep = serve(predict=lambda x: x + 1, name="qa2-nomodel", runner=nb_client)
    np.testing.assert_array_equal(ep.predict(np.array([1.0])), [2.0])
    assert main(["--runner", nb_runner.url, "endpoints", "predict", "qa2-cli", "--data", "[[1, 2], [3]]"]) != 0
    assert "same length" in capsys.readouterr().err


def test_endpoint_object_after_delete_or_redeploy(nb_client):
    ep = serve(3.0, predict=scale, name="qa2-stale", runner=nb_client)
    ep.delete()
    with pytest.raises(NbpipeError, match="No endpoint 'qa2-stale'"):  # was httpx's "Connection refused"
        ep.predict(np.array([1.0]))
    serve(4.0, predict=scale, name="qa2-stale", runner=nb_client)
    # the object from before the redeploy follows the endpoint to its new server
    np.testing.assert_array_equal(ep.predict(np.array([1.0])), [4.0])
    assert ep.info["state"] == "ready"
