"""A deploy step inside a pipeline, gated by ``If(accuracy > threshold)``: real runner, real steps,
real model server. A deploy that the condition skips leaves no endpoint; a re-run with a better
model rolls out a new version; a cached deploy step does not add one."""

from __future__ import annotations

import time

import numpy as np

import nbpipe
from nbpipe import component, pipeline
from nbpipe.serving import deployer, endpoint, endpoints


@component
def train(scale: float) -> dict:
    return {"w": [scale, -scale], "b": 0.25}


@component
def evaluate(model: dict) -> float:
    return 1.0 if model["w"][0] > 0 else 0.0


def predict(model, x):
    return x @ np.array(model["w"]) + model["b"]


deploy = deployer("gated", predict=predict)


@pipeline
def train_and_deploy(scale: float = 1.0, threshold: float = 0.5):
    m = train(scale=scale)
    acc = evaluate(model=m.output)
    with nbpipe.If(acc.output > threshold):
        deploy(model=m.output)


def _endpoint_version(client, version: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in endpoints(runner=client) if e.name == "gated"]
        if found and found[0].version == version and found[0].info["state"] == "ready":
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"endpoint 'gated' did not reach version {version}: {[e.info for e in endpoints(runner=client)]}")


def test_if_gates_the_deploy_step_and_versions_roll_out(nb_client):
    skipped = nb_client.submit(train_and_deploy, {"scale": -1.0}).wait(timeout=120)
    assert skipped.steps["deploy-gated"]["state"] == "skipped"
    run = nb_client.submit(train_and_deploy, {"scale": 2.0}).wait(timeout=120)
    assert run.steps["deploy-gated"]["state"] == "succeeded"
    ep = _endpoint_version(nb_client, "1")
    assert ep.info["versions"][0]["source"] == {"kind": "run", "run_id": run.id, "step": "deploy-gated"}
    X = np.array([[1.0, 0.5], [0.0, 2.0]])
    np.testing.assert_array_equal(ep.predict(X), predict({"w": [2.0, -2.0], "b": 0.25}, X))

    # the same run again: the deploy step is cached and the endpoint keeps version 1
    again = nb_client.submit(train_and_deploy, {"scale": 2.0}).wait(timeout=120)
    assert again.steps["deploy-gated"]["state"] == "cached"
    # a better model: version 2 rolls out; rollback serves version 1 again
    nb_client.submit(train_and_deploy, {"scale": 3.0}).wait(timeout=120)
    ep = _endpoint_version(nb_client, "2")
    np.testing.assert_array_equal(ep.predict(X), predict({"w": [3.0, -3.0], "b": 0.25}, X))
    assert endpoint("gated", runner=nb_client).versions == ["1", "2"]
    ep.rollback()
    np.testing.assert_array_equal(ep.predict(X), predict({"w": [2.0, -2.0], "b": 0.25}, X))
    ep.delete()


@component
def train_to_file(scale: float, model: nbpipe.Output[nbpipe.Model]) -> None:
    import pickle

    with open(model.path, "wb") as fh:
        pickle.dump({"w": [scale, 1.0], "b": 0.0}, fh)


def load_pickle(path):
    import pickle

    with open(path, "rb") as fh:
        return pickle.load(fh)


deploy_file = deployer("from-artifact", predict=predict, load=load_pickle)


@pipeline
def artifact_deploy(scale: float = 5.0):
    m = train_to_file(scale=scale)
    deploy_file(model=m.outputs["model"])


def test_a_model_artifact_is_deployed_through_load(nb_client):
    run = nb_client.submit(artifact_deploy, {"scale": 5.0}).wait(timeout=120)
    assert run.steps["deploy-from-artifact"]["state"] == "succeeded"
    ep = endpoint("from-artifact", runner=nb_client, wait=120)
    assert ep.info["versions"][0]["model"]["kind"] == "file"
    X = np.array([[1.0, 2.0]])
    np.testing.assert_array_equal(ep.predict(X), predict({"w": [5.0, 1.0], "b": 0.0}, X))
    ep.delete()
