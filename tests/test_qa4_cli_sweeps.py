"""QA pass 4 on the command line and sweeps, as a Kubeflow Pipelines user meets them (real runner, real CLI process).

Found: ``nbpipe schedules create X --intervl 60`` printed nbpipe's top-level usage (the list of
commands) instead of the schedules command's usage and the option meant; ``nbpipe lineage RUN``
without STEP was a usage error instead of showing what there is to ask about, and a step with no
outputs of its own (a ParallelFor) printed an empty line; a sweep's typo in ``objective=`` was found
only after every trial ran; an early-stopped trial whose run still succeeded stayed "stopped".
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import nbpipe
from nbpipe import Metrics, Output, component, pipeline
from nbpipe.errors import NbpipeError


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nbpipe.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env, check=False)


@component
def qa4_score(c: float) -> float:
    return -((c - 2.0) ** 2)


@component
def qa4_report(c: float, metrics: Output[Metrics]) -> None:
    metrics.log_metric("loss", c)


@component
def qa4_slow(x: float, c: float) -> float:
    import time

    time.sleep(0.2 if c < 5 else 60)  # the worst trial would run a minute unless early stopping cancels it
    return x


@component
def qa4_square(x: float) -> float:
    return x * x


@pipeline
def qa4_last(c: float = 1.0):
    qa4_score(c=c)


@pipeline
def qa4_then_slow(c: float = 1.0):
    qa4_slow(x=qa4_score(c=c).output, c=c)


@pipeline
def qa4_mixed(c: float = 1.0):
    qa4_score(c=c)
    qa4_report(c=c)
    with nbpipe.ParallelFor([1.0, 2.0]) as x:
        qa4_square(x=x)


def test_an_unknown_option_shows_the_subcommands_usage_and_the_option_meant() -> None:
    proc = cli("schedules", "create", "pipe.py:p", "--intervl", "60")
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: nbpipe schedules"), proc.stderr
    assert "unrecognized arguments: --intervl 60 (did you mean --interval?)" in proc.stderr
    assert "{runner,run,runs" not in proc.stderr  # not the list of every command
    top = cli("--runer", "http://x", "runs")  # nbpipe's own option, before the command: nbpipe's usage
    assert top.returncode == 2 and top.stderr.startswith("usage: nbpipe [-h]"), top.stderr


def test_schedules_create_says_which_cli_options_set_when(nb_runner) -> None:
    env = {**os.environ, **nb_runner.client_env()}
    for extra, got in (((), "none"), (("--cron", "0 3 * * *", "--interval", "60"), "--cron and --interval")):
        proc = cli("schedules", "create", "nbpipe.examples.digits:digits", *extra, env=env)
        assert proc.returncode == 1  # it was the runner's "exactly one of cron, interval or trigger ... trigger={...}"
        assert proc.stderr.startswith(f"nbpipe: nbpipe schedules create needs one of --cron, --interval or --folder "
                                      f"(got {got}). e.g. --cron '0 3 * * *'"), proc.stderr


def test_lineage_of_a_run_lists_its_steps_outputs_and_how_to_ask(nb_runner, nb_client) -> None:
    run = nb_client.submit(qa4_mixed, {"c": 3.0}).wait(timeout=120)
    env = {**os.environ, **nb_runner.client_env()}
    proc = cli("lineage", run.id, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith(f"Run {run.id} (qa4-mixed, succeeded): the outputs of its steps"), out
    assert "qa4_score " in out and "output (value · json" in out and "= -1.0" in out
    assert 'metrics (Metrics · file' in out and '{"loss": 3.0}' in out
    assert "qa4_square" in out and "ran once per loop item, as qa4_square-it0, qa4_square-it1" in out
    assert f"nbpipe lineage {run.id} STEP [OUTPUT], e.g. nbpipe lineage {run.id} qa4_score output" in out
    loop = cli("lineage", run.id, "qa4_square", env=env)  # it printed an empty line
    assert loop.returncode == 0
    assert loop.stdout.strip() == (f"Step 'qa4_square' of run {run.id} ran once per loop item and has no outputs "
                                   f"of its own. Ask for one item: nbpipe lineage {run.id} qa4_square-it0.")


@pytest.mark.parametrize(("objective", "message"), [
    ("qa4_scor.output", r"objective='qa4_scor.output' names no output of pipeline 'qa4-mixed'. Did you mean "
                        r"'qa4_score.output'\? "
                 r"Its outputs that can be numbers: qa4_score, qa4_report.metrics.KEY\."),
    ("qa4_report.metric.loss", r"Did you mean 'qa4_report.metrics.loss'\?"),
    ("qa4_report.metrics", r"is a Metrics artifact \(name one of the metrics it logs: qa4_report.metrics.KEY\)"),
    ("qa4_report", r"names step 'qa4_report', which has no single return value"),
    ("qa4_square", r"runs once per item of a ParallelFor.*nbpipe.Collected"),
])
def test_a_wrong_objective_fails_before_any_trial_is_submitted(nb_client, objective, message) -> None:
    experiment = f"qa4 objective {objective}"
    with pytest.raises(NbpipeError, match=message) as ei:
        nbpipe.sweep(qa4_mixed, space={"c": [1.0, 2.0]}, objective=objective, experiment=experiment,
                     runner=nb_client)
    assert "no trial was submitted" in str(ei.value)
    assert nb_client.runs(experiment=experiment) == []


def test_objectives_that_a_trial_can_report_are_accepted(nb_client) -> None:
    for objective in ("qa4_score", "qa4_score.output", "qa4_report.metrics.loss", "loss"):
        res = nbpipe.sweep(qa4_mixed, space={"c": [1.0, 4.0]}, objective=objective, goal="min", runner=nb_client)
        assert res.best["c"] == (4.0 if objective.startswith("qa4_score") else 1.0), objective


def run_states(client, result) -> dict[int, str]:
    return {t.trial: client.get_run(t.run)["state"] for t in result.trials.itertuples()}


def test_an_early_stopped_trial_whose_run_succeeded_is_succeeded(nb_client) -> None:
    # The objective step is the last one: the run ends before the sweep's cancel arrives.
    res = nbpipe.sweep(qa4_last, space={"c": [2.0, 1.5, 2.5, 9.0]}, objective="qa4_score", parallelism=1,
                       early_stopping="median", runner=nb_client)
    runs = run_states(nb_client, res)
    for t in res.trials.itertuples():
        assert t.state == ("stopped" if runs[t.trial] == "cancelled" else runs[t.trial]), (t, runs)
    # Steps after the objective step are spared: the worst trial's run is cancelled and shown as stopped.
    res = nbpipe.sweep(qa4_then_slow, space={"c": [2.0, 1.5, 2.5, 9.0]}, objective="qa4_score", parallelism=1,
                       early_stopping="median", runner=nb_client)
    assert res.trials["state"].tolist() == ["succeeded", "succeeded", "succeeded", "stopped"]
    assert run_states(nb_client, res)[3] == "cancelled"
    assert res.best["c"] == 2.0


CHAIN = '''
from nbpipe import component, pipeline

@component
def make(n: int) -> list:
    return list(range(n))

@component
def ratio(xs: list, k: int = 3) -> float:
    return len(xs) / (k - 3)

@pipeline
def chain(n: int = 4, k: int = 3):
    ratio(xs=make(n=n).output, k=k)
'''


def test_run_names_the_pipelines_of_a_file_and_logs_defaults_to_the_failed_step(nb_runner, tmp_path) -> None:
    (tmp_path / "qa4_chain.py").write_text(CHAIN)
    env = {**os.environ, **nb_runner.client_env()}
    target = str(tmp_path / "qa4_chain.py")
    for arg, said in (  # "is not an @nbpipe.pipeline (got NoneType)", "The package ... is not a zip file"
            (f"{target}:chian", f"nbpipe: {target} has no 'chian'. Did you mean 'chain'? Its pipelines: chain."),
            (f"{target}:make", f"nbpipe: {target} has 'make', which is not an @nbpipe.pipeline (it is a Component). "
                               "Its pipelines: chain."),
            (target, f"nbpipe: {target} is a Python file; say which pipeline to run. Use {target}:chain.")):
        proc = cli("run", arg, env=env)
        assert (proc.returncode, proc.stderr.strip()) == (1, said)
    run = cli("run", f"{target}:chain", "--detach", env=env).stdout.strip()
    nb_runner.client().run(run).wait(timeout=120, raise_on_failure=False)
    logs = cli("logs", run, env=env)  # it was "the following arguments are required: step"
    assert logs.returncode == 0 and "ZeroDivisionError: division by zero" in logs.stdout, logs.stderr
    ok = cli("run", f"{target}:chain", "-p", "k=5", "--detach", env=env).stdout.strip()
    nb_runner.client().run(ok).wait(timeout=120)
    none = cli("logs", ok, env=env)
    assert none.returncode == 1 and none.stderr.strip() == (
        f"nbpipe: Run {ok} has no failed step (succeeded); name the step whose log to show. "
        f"nbpipe logs {ok} STEP (its steps: make, ratio).")


def test_ctrl_c_while_a_trial_is_being_submitted_names_its_run(nb_runner, nb_client, capsys) -> None:
    """Ctrl-C that lands after the runner took a trial but before its answer came (the run was "none")."""
    from nbpipe.client import Client

    class InterruptedOnSubmit(Client):
        def submit(self, *args, **kwargs):
            super().submit(*args, **kwargs)  # the runner has the run; the user's Ctrl-C comes now
            raise KeyboardInterrupt

    client = InterruptedOnSubmit(nb_runner.url, token=nb_runner.token)
    with pytest.raises(KeyboardInterrupt):
        nbpipe.sweep(qa4_last, space={"c": [1.0, 2.0, 3.0]}, objective="qa4_score", parallelism=1,
                     experiment="qa4 interrupted submit", runner=client)
    (run,) = nb_client.runs(experiment="qa4 interrupted submit")
    assert f"1 trial run(s) go on in the runner ({run['id']}), 2 trial(s) were not submitted" in capsys.readouterr().err
