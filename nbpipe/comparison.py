"""Compare runs side by side: parameters and metrics as one pandas DataFrame.

Metrics come from the runner's previews of step outputs, so nothing is downloaded or
unpickled: numeric return values (``train.output``), dicts of numbers (``evaluate.output.acc``)
and ``Metrics`` artifacts' logged values (``evaluate.metrics.accuracy``). Loop iteration steps
(``train-it0``) are left out; their loop's ``Collected`` consumer usually reports the summary.

Non-goals: plots (use the DataFrame) and metrics of steps that did not succeed.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from . import events as ev
from .errors import NbpipeError

__all__ = ["compare", "metrics_of"]
_ITERATION = re.compile(r"-it\d+$")  # loop iteration steps (nbpipe.runner.expand)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def metrics_of(snapshot: dict[str, Any], iterations: bool = False) -> dict[str, float]:
    """``{"step.output[.key]": number}`` for every numeric output preview of a run snapshot."""
    out: dict[str, float] = {}
    for s in snapshot["steps"]:
        if s["state"] not in ev.STEP_OK or (not iterations and _ITERATION.search(s["name"])):
            continue
        for name, o in (s.get("outputs") or {}).items():
            p = o.get("preview") or {}
            items = p.get("items", [p]) if p.get("type") == "multi" else [p]
            for item in items:
                if item.get("type") == "metrics":
                    for k, v in (item.get("metrics") or {}).items():
                        if _number(v):
                            out[f"{s['name']}.{name}.{k}"] = v
                elif item.get("type") == "json" and _number(item.get("value")):
                    out[f"{s['name']}.{name}"] = item["value"]
    return out


def objective_of(metrics: dict[str, float], objective: str) -> float | None:
    """The value of ``objective`` ("step", "step.output", "step.output.key" or a bare metric key)."""
    for key in (objective, f"{objective}.output"):
        if key in metrics:
            return metrics[key]
    hits = [v for k, v in metrics.items() if k.endswith("." + objective)]
    return hits[0] if len(hits) == 1 else None


def require_pandas(what: str) -> Any:
    try:
        import pandas
    except ImportError:
        raise NbpipeError(f"{what} returns a pandas DataFrame, but pandas is not installed",
                          hint="Install it: pip install pandas.") from None
    return pandas


def compare(runs: Iterable[Any], client: Any = None) -> Any:
    """One row per run: id, name, experiment, state, duration, ``param.*`` and metric columns.

    Parameters
    ----------
    runs
        Run ids or :class:`~nbpipe.client.Run` objects.
    client
        The :class:`~nbpipe.client.Client` for run ids (default: the configured runner).

    Returns
    -------
    pandas.DataFrame
        Indexed by run id; missing values are NaN.
    """
    pd = require_pandas("nbpipe.compare")
    from .client import Run, default_client

    if isinstance(runs, (str, Run)):  # compare("r1") would iterate the id's characters
        runs = [runs]
    rows = []
    for r in runs:
        if isinstance(r, Run):
            snap = r.snapshot()
        else:
            snap = (client or default_client()).get_run(str(r))
        row: dict[str, Any] = {"run": snap["id"], "name": snap["name"], "experiment": snap["experiment"],
                               "state": snap["state"], "duration": snap.get("duration")}
        row.update({f"param.{k}": v for k, v in sorted(snap["params"].items())})
        row.update(metrics_of(snap))
        rows.append(row)
    return pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame()
