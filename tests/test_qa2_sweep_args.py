"""Sweep arguments a user gets wrong fail at once with what to do, instead of hanging.

An empty list of values (e.g. built from a filter that matched nothing) used to submit nothing
and then wait forever on the runner's event stream; parallelism=0 did the same.
"""

from __future__ import annotations

import pytest

import nbpipe
from nbpipe import component, pipeline
from nbpipe.errors import NbpipeError


@component
def score(c: float) -> float:
    return -((c - 2.0) ** 2)


@pipeline
def qa2_sweep(c: float = 1.0):
    score(c=c)


@pytest.mark.timeout(60)
def test_empty_space_and_zero_parallelism_fail_fast(nb_client) -> None:
    with pytest.raises(NbpipeError, match="no values to try for 'c'"):
        nbpipe.sweep(qa2_sweep, space={"c": []}, objective="score", runner=nb_client)
    with pytest.raises(NbpipeError, match="no values to try"):
        nbpipe.sweep(qa2_sweep, space={}, objective="score", runner=nb_client)
    with pytest.raises(NbpipeError, match="parallelism=0"):
        nbpipe.sweep(qa2_sweep, space={"c": [1.0]}, objective="score", parallelism=0, runner=nb_client)
    with pytest.raises(NbpipeError, match="no trials"):
        nbpipe.sweep(qa2_sweep, space={"c": nbpipe.uniform(0, 1)}, objective="score", algorithm="random",
                     max_runs=0, runner=nb_client)
    res = nbpipe.sweep(qa2_sweep, space={"c": [1.0, 2.0]}, objective="score", runner=nb_client)
    assert res.best["c"] == 2.0


def test_bad_value_in_space_submits_no_trial(nb_client) -> None:
    with pytest.raises(NbpipeError, match=r"Trial 1 of the sweep \({'c': 'a'}\) cannot run: .*is float") as ei:
        nbpipe.sweep(qa2_sweep, space={"c": [1.0, "a"]}, objective="score", experiment="qa2 half",
                     runner=nb_client)
    assert "no trial was submitted" in ei.value.hint
    assert nbpipe.compare(nbpipe.sweep(qa2_sweep, space={"c": [3.0]}, objective="score", experiment="qa2 half",
                                       runner=nb_client).best["run"], client=nb_client)["param.c"].tolist() == [3.0]
    runs = nb_client.runs(experiment="qa2 half")
    runs = runs["runs"] if isinstance(runs, dict) else runs
    assert len(runs) == 1  # only the good sweep's trial; the bad sweep submitted none


def test_wrong_objective_names_what_the_trials_reported(nb_client) -> None:
    # A name no output of the pipeline has is refused before any trial runs (tests/test_qa4_cli_sweeps.py);
    # one that could be a Metrics key is only known afterwards, where .best names what was reported.
    with pytest.raises(NbpipeError, match=r"names no output of pipeline 'qa2-sweep'. Its outputs that can be "
                                          r"numbers: score\."):
        nbpipe.sweep(qa2_sweep, space={"c": [1.0, 2.0]}, objective="accuracy", runner=nb_client)
    res = nbpipe.sweep(qa2_sweep, space={"c": [1.0, 2.0]}, objective="score", runner=nb_client)
    res.objective, res.trials["objective"] = "accuracy", None  # as if a Metrics artifact's key no trial logged
    with pytest.raises(NbpipeError, match=r"reported 'accuracy' \(trials: 2 succeeded\)") as ei:
        res.best
    assert "The trials reported: score.output." in str(ei.value)
    assert res.metrics == ["score.output"]
