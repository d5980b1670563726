"""Sweeps, run comparison and the experiments/compare/schedules CLI on a real runner."""

from __future__ import annotations

import pytest

import nbpipe
from nbpipe import Metrics, Output, component, pipeline
from nbpipe.cli import main
from nbpipe.errors import NbpipeError


@component(cache=True)
def prepare(rows: int) -> int:
    import os

    return os.getpid()  # a second execution would return another pid: proves the cache shared it


@component(cache=False)
def evaluate(prepared: int, c: float, gamma: float, metrics: Output[Metrics]) -> float:
    accuracy = 1.0 - abs(c - 1.0) / 10 - abs(gamma - 0.005) * 10
    metrics.log_metric("accuracy", accuracy)
    return accuracy


@pipeline
def fit(c: float = 1.0, gamma: float = 0.001, rows: int = 100):
    p = prepare(rows=rows)
    evaluate(prepared=p.output, c=c, gamma=gamma)


def test_grid_sweep_picks_the_best_trial_and_shares_upstream_work(nb_client) -> None:
    result = nbpipe.sweep(fit, space={"c": [0.1, 1.0, 10.0], "gamma": [0.001, 0.005]},
                          objective="evaluate.metrics.accuracy", goal="max", parallelism=3,
                          experiment="svm-sweep", runner=nb_client)
    t = result.trials
    assert len(t) == 6 and set(t["state"]) == {"succeeded"}
    best = result.best
    assert (best["c"], best["gamma"]) == (1.0, 0.005) and best["objective"] == pytest.approx(1.0)
    pids = {nb_client.run(r).output("prepare") for r in t["run"]}
    assert len(pids) == 1, "the shared upstream step ran more than once"
    assert {e["name"]: e["runs"] for e in nb_client.experiments()}["svm-sweep"] == 6
    worst = nbpipe.sweep(fit, space={"c": [0.1, 10.0]}, objective="evaluate", goal="min", runner=nb_client)
    assert worst.best["c"] == 10.0


def test_random_sweep_samples_ranges_with_a_seed(nb_client) -> None:
    result = nbpipe.sweep(fit, space={"c": nbpipe.loguniform(0.1, 10), "gamma": nbpipe.uniform(0.001, 0.01)},
                          objective="accuracy", algorithm="random", max_runs=3, seed=7, runner=nb_client)
    assert len(result.trials) == 3 and result.trials["c"].between(0.1, 10).all()
    assert result.best["objective"] == result.trials["objective"].max()
    with pytest.raises(NbpipeError, match="Grid search needs a list"):
        nbpipe.sweep(fit, space={"c": nbpipe.uniform(0, 1)}, objective="evaluate", runner=nb_client)
    with pytest.raises(NbpipeError, match="not a parameter of pipeline 'fit'"):
        nbpipe.sweep(fit, space={"C": [1]}, objective="evaluate", runner=nb_client)


def test_compare_and_the_cli(nb_client, nb_runner, capsys) -> None:
    a = nb_client.submit(fit, {"c": 1.0}, experiment="cmp").wait(timeout=60)
    b = nb_client.submit(fit, {"c": 3.0}, experiment="cmp").wait(timeout=60)
    df = nbpipe.compare([a, b.id], client=nb_client)
    assert list(df.index) == [a.id, b.id]
    assert df.loc[a.id, "param.c"] == 1.0 and df.loc[b.id, "param.c"] == 3.0
    assert df.loc[a.id, "evaluate.metrics.accuracy"] > df.loc[b.id, "evaluate.metrics.accuracy"]
    assert df.loc[b.id, "evaluate.output"] == pytest.approx(0.76)
    assert main(["--runner", nb_runner.url, "compare", a.id, b.id]) == 0
    out = capsys.readouterr().out
    assert "evaluate.metrics.accuracy" in out and a.id in out and "param.c" in out
    assert main(["--runner", nb_runner.url, "experiments"]) == 0
    assert "cmp" in capsys.readouterr().out
    assert main(["--runner", nb_runner.url, "schedules", "create", "tests/flow/test_sweep_compare.py:fit",
                 "--interval", "3600", "-p", "c=2.0", "--name", "hourly"]) == 0
    sid = capsys.readouterr().out.strip()
    assert nb_client.schedule(sid)["params"] == {"c": 2.0}
    assert main(["--runner", nb_runner.url, "schedules", "pause", sid]) == 0
    assert main(["--runner", nb_runner.url, "schedules", "list"]) == 0
    out = capsys.readouterr().out
    assert "hourly" in out and "paused" in out and "every 3600 s" in out
    assert main(["--runner", nb_runner.url, "schedules", "delete", sid]) == 0
    assert nb_client.schedules() == [] or all(s["id"] != sid for s in nb_client.schedules())
