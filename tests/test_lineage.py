"""Lineage on the real runner: a model artifact across two runs where the training step was cached.

Run 1 computes prepare → train → evaluate. Run 2 changes only evaluate's threshold, so prepare and
train are cached: the model in run 2 must name run 1's train as its producer (with train's inputs
and code digest), list run 2 as a cache reuse, and both runs' evaluate steps as consumers. The
``nbpipe lineage`` command prints the same, as a real process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

PIPELINE = textwrap.dedent('''
    from nbpipe import Input, Model, Output, component, pipeline

    @component
    def prepare(n: int) -> list:
        return list(range(n))

    @component
    def train(data: list, model: Output[Model], lr: float = 0.1) -> None:
        with open(model.path, "w") as fh:
            fh.write(f"weights {sum(data) * lr}")

    @component
    def evaluate(model: Input[Model], threshold: float) -> float:
        with open(model.path) as fh:
            return float(fh.read().split()[1]) - threshold

    @pipeline
    def lineage_demo(n: int = 5, lr: float = 0.5, threshold: float = 0.0):
        m = train(data=prepare(n=n).output, lr=lr)
        evaluate(model=m.outputs["model"], threshold=threshold)
''')


@pytest.fixture(scope="module")
def two_runs(nb_runner, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lineage")
    (folder / "lineage_pipe.py").write_text(PIPELINE)
    sys.path.insert(0, str(folder))
    try:
        import lineage_pipe
    finally:
        sys.path.remove(str(folder))
    client = nb_runner.client()
    first = client.submit(lineage_pipe.lineage_demo, {"threshold": 0.0}).wait(timeout=300)
    second = client.submit(lineage_pipe.lineage_demo, {"threshold": 1.0}).wait(timeout=300)
    return client, first.snapshot(), second.snapshot(), folder


def states(snap):
    return {s["name"]: s["state"] for s in snap["steps"]}


def test_a_cached_model_names_the_run_that_computed_it(nb_runner, two_runs) -> None:
    client, first, second, _ = two_runs
    assert states(first) == {"prepare": "succeeded", "train": "succeeded", "evaluate": "succeeded"}
    assert states(second) == {"prepare": "cached", "train": "cached", "evaluate": "succeeded"}

    r = httpx.get(f"{nb_runner.url}/api/v1/lineage/runs/{second['id']}/steps/train", params={"output": "model"},
                  headers=nb_runner.headers())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["run"] == second["id"] and body["state"] == "cached"
    [art] = body["artifacts"]
    assert art["output"] == "model" and art["cached"] is True and len(art["digest"]) == 64
    model_out = next(s for s in second["steps"] if s["name"] == "train")["outputs"]["model"]
    assert art["digest"] == model_out["digest"]

    p = art["producer"]
    assert (p["run"], p["step"], p["component"], p["state"]) == (first["id"], "train", "train", "succeeded")
    assert len(p["code_digest"]) == 64
    inputs = {i["name"]: i for i in p["inputs"]}
    assert inputs["lr"] == {"name": "lr", "kind": "parameter", "parameter": "lr", "value": 0.5}
    data = inputs["data"]
    assert (data["kind"], data["run"], data["step"], data["output"], data["state"]) == \
        ("artifact", first["id"], "prepare", "output", "succeeded")
    prep_out = next(s for s in first["steps"] if s["name"] == "prepare")["outputs"]["output"]
    assert data["digest"] == prep_out["digest"]

    how = {(o["run"], o["step"]): o["how"] for o in art["occurrences"]}
    assert how == {(first["id"], "train"): "produced", (second["id"], "train"): "cached"}
    consumers = {(c["run"], c["step"], c["input"]): c for c in art["consumers"]}
    assert set(consumers) == {(first["id"], "evaluate", "model"), (second["id"], "evaluate", "model")}
    assert all(c["state"] == "succeeded" and not c["cached"] for c in consumers.values())
    assert set(art["runs"]) == {first["id"], second["id"]}
    assert art["runs"][first["id"]]["pipeline"] == "lineage-demo"


def test_an_executed_step_is_its_own_producer_and_walks_up(nb_runner, two_runs) -> None:
    _, first, second, _ = two_runs
    r = httpx.get(f"{nb_runner.url}/api/v1/lineage/runs/{first['id']}/steps/prepare", headers=nb_runner.headers())
    [art] = r.json()["artifacts"]
    assert art["producer"]["run"] == first["id"] and art["producer"]["inputs"] == [
        {"name": "n", "kind": "parameter", "parameter": "n", "value": 5}]
    # prepare's output was consumed by train in run 1 and (from the cache) by train in run 2
    assert {(c["run"], c["step"], c["cached"]) for c in art["consumers"]} == {
        (first["id"], "train", False), (second["id"], "train", True)}


@pytest.mark.parametrize(("path", "params", "message"), [
    ("runs/nope/steps/train", {}, "No run nope"),
    ("runs/{run}/steps/nope", {}, "has no step 'nope'"),
    ("runs/{run}/steps/train", {"output": "nope"}, "has no output 'nope'"),
])
def test_unknown_run_step_or_output_is_a_404_that_says_what_exists(nb_runner, two_runs, path, params, message):
    _, first, _, _ = two_runs
    r = httpx.get(f"{nb_runner.url}/api/v1/lineage/{path.format(run=first['id'])}", params=params,
                  headers=nb_runner.headers())
    assert r.status_code == 404
    body = r.json()
    assert message in body["message"]
    if "step" in message or "output" in message:
        assert body["hint"].startswith(("Its steps:", "Its outputs:"))


def test_the_command_line_prints_producer_inputs_and_consumers(nb_runner, two_runs) -> None:
    _, first, second, _ = two_runs
    env = {**os.environ, **nb_runner.client_env()}
    proc = subprocess.run([sys.executable, "-m", "nbpipe.cli", "lineage", second["id"], "train", "model"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("train.model  (artifact")
    assert f"made by    train in run {first['id']}" in out
    assert f"this run ({second['id']}) reused it from the cache" in out
    assert f"data ← prepare.output  sha256" in out and "lr = 0.5  (parameter lr)" in out
    assert f"reused by  run {second['id']}" in out
    assert f"evaluate.model in run {first['id']}" in out and f"evaluate.model in run {second['id']}" in out

    js = subprocess.run([sys.executable, "-m", "nbpipe.cli", "lineage", second["id"], "train", "--json"],
                        capture_output=True, text=True, env=env, timeout=120)
    assert js.returncode == 0, js.stderr
    assert json.loads(js.stdout)["artifacts"][0]["producer"]["run"] == first["id"]

    bad = subprocess.run([sys.executable, "-m", "nbpipe.cli", "lineage", first["id"], "nope"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 1
    assert bad.stderr.startswith("nbpipe: ") and "has no step 'nope'" in bad.stderr and "Its steps:" in bad.stderr
    assert "Traceback" not in bad.stderr


LOOP = textwrap.dedent('''
    import nbpipe
    from nbpipe import component, pipeline

    @component
    def numbers(n: int) -> list:
        return list(range(n))

    @component
    def square(x: int) -> int:
        return x * x

    @component
    def total(xs: list) -> int:
        return sum(xs)

    @pipeline(name="lineage-loop")
    def looped(n: int = 3):
        with nbpipe.ParallelFor(numbers(n=n).output) as x:
            sq = square(x=x)
        total(xs=nbpipe.Collected(sq.output))
''')


def test_lineage_through_a_loop_and_its_collected_consumer(nb_runner, tmp_path) -> None:
    (tmp_path / "lineage_loop.py").write_text(LOOP)
    sys.path.insert(0, str(tmp_path))
    try:
        import lineage_loop
    finally:
        sys.path.remove(str(tmp_path))
    run = nb_runner.client().submit(lineage_loop.looped, {"n": 3}).wait(timeout=300)
    assert run.steps["total"]["state"] == "succeeded"
    get = lambda step: httpx.get(f"{nb_runner.url}/api/v1/lineage/runs/{run.id}/steps/{step}",  # noqa: E731
                                 headers=nb_runner.headers()).json()
    [it] = get("square-it1")["artifacts"]
    assert it["producer"]["run"] == run.id and it["producer"]["step"] == "square-it1"
    assert [(c["step"], c["input"]) for c in it["consumers"]] == [("total", "xs")]
    [tot] = get("total")["artifacts"]
    [xs] = tot["producer"]["inputs"]
    assert (xs["name"], xs["kind"], xs["step"], xs["output"]) == ("xs", "collected", "square", "output")
    # a loop iteration's item is recorded as its value (the loop, not the step, read the list)
    assert it["producer"]["inputs"] == [{"name": "x", "kind": "value", "value": 1}]
