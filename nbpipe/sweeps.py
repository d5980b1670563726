"""Hyperparameter sweeps (Katib's role): run a pipeline over a search space as an experiment.

``nbpipe.sweep(p, space={"c": [0.1, 1, 10], "gamma": nbpipe.uniform(1e-4, 1e-2)},
objective="evaluate.accuracy", goal="max")`` submits one run per trial to the runner, at most
``parallelism`` at a time, and follows them on the runner's event stream (no polling). Steps
whose inputs do not depend on the swept parameters hit the runner's cache, so shared upstream
work runs once. The objective is read from output previews (see :mod:`nbpipe.comparison`).

Early stopping (``early_stopping="median"``): once three trials have finished, a running
trial whose objective step has reported a value worse than the median of the finished ones
is cancelled (state ``stopped``), sparing its remaining steps.

Non-goals: Bayesian optimisation, multi-objective search, resuming a sweep across sessions.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

from . import events as ev
from .comparison import metrics_of, objective_of, require_pandas
from .errors import NbpipeError

__all__ = ["Distribution", "SweepResult", "loguniform", "sweep", "uniform"]


@dataclass(frozen=True)
class Distribution:
    """A continuous range to sample from (random search only)."""

    low: float
    high: float
    log: bool = False

    def sample(self, rng: random.Random) -> float:
        if self.log:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)


def uniform(low: float, high: float) -> Distribution:
    """Values drawn uniformly from [low, high]."""
    if not low < high:
        raise NbpipeError(f"uniform({low}, {high}) is empty", hint="Pass low < high.")
    return Distribution(float(low), float(high))


def loguniform(low: float, high: float) -> Distribution:
    """Values whose logarithm is uniform in [log low, log high] (learning rates, regularisation)."""
    if not 0 < low < high:
        raise NbpipeError(f"loguniform({low}, {high}) needs 0 < low < high")
    return Distribution(float(low), float(high), log=True)


class SweepResult:
    """The trials of a sweep: ``.trials`` (DataFrame), ``.best`` (the best finished trial)."""

    def __init__(self, trials: list[dict[str, Any]], objective: str, goal: str, experiment: str,
                 metrics: Any = ()):
        pd = require_pandas("nbpipe.sweep")
        self.objective, self.goal, self.experiment = objective, goal, experiment
        self.metrics = sorted(metrics)  # every metric a trial reported: what objective= may name
        self.trials = pd.DataFrame(trials)

    @property
    def best(self) -> dict[str, Any]:
        """The succeeded trial with the best objective: params, objective, run id."""
        ok = self.trials[(self.trials["state"] == "succeeded") & self.trials["objective"].notna()]
        if ok.empty:
            states = ", ".join(f"{n} {s}" for s, n in self.trials["state"].value_counts().items())
            reported = (f"The trials reported: {', '.join(self.metrics)}." if self.metrics
                        else "No trial reported any numeric output.")
            raise NbpipeError(f"No trial of the sweep reported '{self.objective}' (trials: {states})", reported,
                              hint="Sweep again with objective= one of the reported names, or see the failed "
                                   "runs' errors: nbpipe show RUN (the run ids are in .trials).")
        row = ok.loc[ok["objective"].idxmax() if self.goal == "max" else ok["objective"].idxmin()]
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}

    def __repr__(self) -> str:
        return f"<nbpipe SweepResult {len(self.trials)} trials, objective {self.objective} ({self.goal})>"


def _points(space: dict[str, Any], algorithm: str, max_runs: int | None, seed: int | None) -> list[dict[str, Any]]:
    if algorithm == "grid":
        bad = [k for k, v in space.items() if not isinstance(v, (list, tuple))]
        if bad:
            raise NbpipeError(f"Grid search needs a list of values for every parameter; '{bad[0]}' is a range",
                              hint="Use algorithm='random' for ranges, or list the values to try.")
        keys = list(space)
        grid = [dict(zip(keys, combo)) for combo in itertools.product(*(list(space[k]) for k in keys))]
        return grid[:max_runs] if max_runs else grid
    if algorithm == "random":
        rng = random.Random(seed)
        return [{k: (v.sample(rng) if isinstance(v, Distribution) else rng.choice(list(v))) for k, v in space.items()}
                for _ in range(max_runs or 10)]
    raise NbpipeError(f"Unknown sweep algorithm {algorithm!r}", hint="Use 'grid' or 'random'.")


_NOT_NUMBERS = {"str", "list", "bytes", "bool", "None", "NoneType", "tuple", "set"}
_KEYED_ARTIFACTS = ("Metrics", "ClassificationMetrics")  # their logged metrics are the keys (see metrics_of)


def _objective_names(spec: dict[str, Any]) -> tuple[dict[str, str], set[str], dict[str, str]]:
    """What a trial of ``spec`` can report, as :func:`~nbpipe.comparison.metrics_of` names it:
    ``step.output`` → "" for a value that may be a number (else what it is), the ``step.output`` names
    whose numbers are keys below them (Metrics artifacts, dicts), and the steps inside a ParallelFor
    (their values are per iteration, which trials do not report)."""
    from .compiler import group_chain

    groups = {g["id"]: g for g in spec.get("groups", [])}
    values: dict[str, str] = {}
    keyed: set[str] = set()
    looped: dict[str, str] = {}
    for step in spec["steps"]:
        if any(g.get("kind") == "for" for g in group_chain(groups, step.get("group", ""))):
            looped[step["name"]] = step.get("group", "")
            continue
        for out in spec["components"].get(step["component"], {}).get("outputs", []):
            name, kind, typ = f"{step['name']}.{out['name']}", out.get("kind"), str(out.get("type", ""))
            base = typ.removeprefix("Optional[").split("[", 1)[0].rstrip("]")
            if kind == "artifact":
                art = out.get("artifact_type") or typ
                values[name] = f"a {art} artifact"
                if art in _KEYED_ARTIFACTS:
                    values[name] += f" (name one of the metrics it logs: {name}.KEY)"
                    keyed.add(name)
            else:
                values[name] = f"a {typ}" if base in _NOT_NUMBERS else \
                    f"a dict (name one of its keys: {name}.KEY)" if base == "dict" else ""
                if base in ("dict", "any", "Any"):
                    keyed.add(name)
    return values, keyed, looped


def check_objective(pipeline: Any, objective: str) -> None:
    """Refuse an ``objective`` no trial of ``pipeline`` could report, before any trial is submitted.

    Mirrors :func:`~nbpipe.comparison.objective_of`: ``step``, ``step.output``, ``step.output.key`` or a
    unique suffix of one (a bare metric key). A key logged into a Metrics artifact is only known when the
    step runs, so a name that could be one is let through (``SweepResult.best`` names what was reported).
    """
    from .errors import did_you_mean

    capture = getattr(pipeline, "capture", None)
    spec = capture()[0] if callable(capture) else getattr(pipeline, "spec", None)
    if not isinstance(spec, dict) or "steps" not in spec or not isinstance(objective, str):
        return
    values, keyed, looped = _objective_names(spec)
    numbers = sorted(n for n, what in values.items() if not what)
    name = getattr(pipeline, "name", "")
    shown = [n.removesuffix(".output") for n in numbers] + [f"{k}.KEY" for k in sorted(keyed) if values[k]]
    listed = f"Its outputs that can be numbers: {', '.join(dict.fromkeys(shown)) or 'none'}"
    fix = "Fix objective= (no trial was submitted)."
    for key in (objective, f"{objective}.output"):
        if key in values:
            if values[key]:
                raise NbpipeError(f"objective='{objective}' is {values[key]}, not a number a trial can be ranked by",
                                  listed, fix)
            return
    outs = [n for n in values if n.startswith(objective + ".") and "." not in n[len(objective) + 1:]]
    if outs:  # a step's name, and the step has no single return value
        raise NbpipeError(f"objective='{objective}' names step '{objective}', which has no single return value to "
                          "rank by", f"Its outputs: {', '.join(o + (f' ({values[o]})' if values[o] else '') for o in outs)}",
                          f"Name one as step.output. {fix}" if any(not values[o] or o in keyed for o in outs) else
                          f"Return the number from step '{objective}' (-> float) or log it into an "
                          f"Output[Metrics], or name another step. {fix}")
    step = objective.split(".", 1)[0]
    if step in looped:
        raise NbpipeError(f"objective='{objective}' names step '{step}', which runs once per item of a "
                          "ParallelFor, so a trial has no single value of it",
                          listed, "Collect its values into a step after the loop (nbpipe.Collected) that returns "
                          f"the number to rank by, and name that step. {fix}")
    if any(objective.startswith(k + ".") for k in keyed):
        return  # step.output.key of a Metrics artifact or a dict: keys are known once the step ran
    suffix = [n for n in numbers if n.endswith("." + objective)]
    parts = objective.split(".")
    could_be_key = any(len(parts) == 1 or ("." + k).endswith("." + ".".join(parts[:-1])) for k in keyed)
    if len(suffix) == 1 or (not suffix and could_be_key):
        return
    if len(suffix) > 1:
        raise NbpipeError(f"objective='{objective}' is ambiguous in pipeline '{name}': "
                          f"{', '.join(n.removesuffix('.output') for n in suffix)} all end with it",
                          hint=f"Name one of them as step.output. {fix}")
    choices = set(numbers) | {n.removesuffix(".output") for n in numbers} | {f"{k}.{parts[-1]}" for k in keyed}
    raise NbpipeError(f"objective='{objective}' names no output of pipeline '{name}'.{did_you_mean(objective, choices)}",
                      listed, fix)


def _submitted_unseen(client: Any, experiment: str, submitting: list[int], since: float, known: set[str]) -> list[str]:
    """The run of the trial whose submission Ctrl-C interrupted, if the runner took it (its answer never came)."""
    if not submitting:
        return []
    try:
        runs = client.runs(experiment=experiment, limit=20)
    except NbpipeError:
        return []  # the runner is not answering: the message still names the experiment to look at
    runs = runs["runs"] if isinstance(runs, dict) else runs
    return [r["id"] for r in runs if r["id"] not in known and r.get("created_at", 0) >= since - 1
            and (r.get("labels") or {}).get("sweep_trial") == str(submitting[0])]


def sweep(pipeline: Any, space: dict[str, Any], objective: str, goal: str = "max", algorithm: str = "grid",
          max_runs: int | None = None, parallelism: int = 2, experiment: str | None = None,
          params: dict[str, Any] | None = None, early_stopping: str | None = None, seed: int | None = None,
          runner: Any = None) -> SweepResult:
    """Run ``pipeline`` once per point of ``space`` and rank the trials by ``objective``.

    Parameters
    ----------
    pipeline
        An ``@nbpipe.pipeline``.
    space
        Parameter name → list of values, or :func:`uniform`/:func:`loguniform` (random search).
    objective
        ``"step"``, ``"step.output"``, ``"step.output.key"`` (a Metrics artifact's or a dict's key),
        or a bare metric key if only one step reports it.
    goal
        ``"max"`` or ``"min"``.
    algorithm
        ``"grid"`` (every combination, up to ``max_runs``) or ``"random"`` (``max_runs`` samples, default 10).
    parallelism
        Trials running at once.
    experiment
        The runs' experiment (default ``"<pipeline> sweep"``).
    params
        Fixed values for the pipeline's other parameters.
    early_stopping
        ``"median"`` to cancel trials already worse than the median of finished ones.

    Returns
    -------
    SweepResult
    """
    from .client import Client, default_client

    if goal not in ("max", "min"):
        raise NbpipeError(f"goal={goal!r} must be 'max' or 'min'")
    if early_stopping not in (None, "median"):
        raise NbpipeError(f"early_stopping={early_stopping!r} is not supported", hint="Use None or 'median'.")
    names = {p["name"] for p in pipeline.parameters}
    unknown = sorted(set(space) - names)
    if unknown:
        raise NbpipeError(f"The sweep space names {unknown[0]!r}, not a parameter of pipeline '{pipeline.name}'",
                          f"Its parameters are: {', '.join(sorted(names)) or 'none'}.")
    if not isinstance(parallelism, int) or isinstance(parallelism, bool) or parallelism < 1:
        raise NbpipeError(f"parallelism={parallelism!r} must be a whole number >= 1 (trials running at once)")
    empty = [k for k, v in space.items() if not isinstance(v, Distribution) and not list(v)]
    if not space or empty:
        raise NbpipeError(f"The sweep space has no values to try for {repr(empty[0]) if empty else 'any parameter'}",
                          hint="Give each parameter a non-empty list of values or a range (nbpipe.uniform), "
                               'e.g. space={"c": [0.1, 1, 10]}.')
    if max_runs is not None and max_runs < 1:
        raise NbpipeError(f"The sweep has no trials to run (max_runs={max_runs!r})",
                          hint="Pass max_runs >= 1, or leave it out (grid: every combination; random: 10).")
    check_objective(pipeline, objective)
    client = runner if isinstance(runner, Client) else (Client(runner) if runner else default_client())
    experiment = experiment or f"{pipeline.name} sweep"
    points = _points(space, algorithm, max_runs, seed)
    from .pipeline import resolve_params

    for i, point in enumerate(points):  # every trial's values before the first is submitted: no half sweeps
        try:
            resolve_params(pipeline.name, pipeline.parameters, {**(params or {}), **point})
        except NbpipeError as exc:
            raise NbpipeError(f"Trial {i} of the sweep ({point}) cannot run: {exc.headline}", exc.detail,
                              "Fix the values in space= (or params=); no trial was submitted.") from None
    trials: list[dict[str, Any]] = []
    seen: set[str] = set()
    by_run: dict[str, dict[str, Any]] = {}
    pending = list(enumerate(points))
    objective_step = objective.split(".", 1)[0]
    better = (lambda a, b: a > b) if goal == "max" else (lambda a, b: a < b)

    submitting: list[int] = []  # the trial being submitted: Ctrl-C may land after the runner took it
    since = time.time()

    def submit_next() -> None:
        i, point = pending[0]
        submitting[:] = [i]
        run = client.submit(pipeline, {**(params or {}), **point}, experiment=experiment,
                            name=f"{pipeline.name} trial {i}", labels={"sweep_trial": str(i)})
        pending.pop(0)
        trial = {"trial": i, "run": run.id, "state": "running", "objective": None, **point}
        trials.append(trial)
        by_run[run.id] = trial
        submitting.clear()

    def finished_values() -> list[float]:
        return [t["objective"] for t in trials if t["state"] == "succeeded" and t["objective"] is not None]

    def read(run_id: str) -> dict[str, Any]:
        snap = client.get_run(run_id)
        got = metrics_of(snap)
        seen.update(got)
        by_run[run_id]["objective"] = objective_of(got, objective)
        return snap

    try:
        while pending and len(by_run) < parallelism:
            submit_next()
        after = min(client.get_run(r)["last_event_id"] for r in by_run) - 1 if by_run else 0
        open_runs = set(by_run)
        for event in client.events(after=after):
            trial = by_run.get(event.run_id)
            if trial is None:
                continue
            if isinstance(event, ev.StepFinished) and event.step == objective_step and early_stopping \
                    and trial["state"] == "running" and event.state in ev.STEP_OK:
                read(event.run_id)
                done = finished_values()
                if len(done) >= 3 and trial["objective"] is not None and better(statistics.median(done), trial["objective"]):
                    trial["state"] = "stopped"
                    client.cancel(event.run_id)
            if isinstance(event, ev.RunFinished) and event.run_id in open_runs:
                open_runs.discard(event.run_id)
                if trial["state"] != "stopped" or event.state == "succeeded":
                    # a trial stopped early whose run still succeeded (its last steps ended before the cancel
                    # came) is a succeeded trial, not a "stopped" one: its run has every output
                    trial["state"] = event.state
                    read(event.run_id)
                while pending and len(open_runs) < parallelism:
                    submit_next()
                    open_runs.add(trials[-1]["run"])
                if not open_runs:
                    break
    except KeyboardInterrupt:
        # Interrupting stops the waiting, not the trials: say which go on and how to stop them.
        going = sorted(r for r, t in by_run.items() if t["state"] == "running")
        taken = _submitted_unseen(client, experiment, submitting, since, set(by_run))
        if taken and pending and pending[0][0] == submitting[0]:
            pending = pending[1:]
        going = sorted(going + taken)
        sys.stderr.write(f"nbpipe.sweep: stopped waiting for sweep '{experiment}'; {len(going)} trial run(s) go on "
                         f"in the runner ({', '.join(going) or 'none'}), {len(pending)} trial(s) were not "
                         f"submitted. Stop them: nbpipe cancel RUN; see them: nbpipe runs --experiment "
                         f"'{experiment}'.\n")
        raise
    return SweepResult(trials, objective, goal, experiment, seen)
