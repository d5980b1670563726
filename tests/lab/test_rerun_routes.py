"""The Lab panel's re-runs through ``/nbpipe/api``: "Re-run from failed" after fixing the saved notebook.

A run started from a notebook re-runs the notebook *as saved now* (exported again, as Run does):
the fixed cell runs, the step before it is reused (the same process's output, not recomputed);
``"notebook": false`` re-runs the run's own package, which fails again. Real Jupyter server, real
embedded runner, real step processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat

from test_notebook_routes import sse_events

BUG = "    return d['n'] / by"
FIX = "    return d['n'] / (by or 1)"
CELLS = [
    "import nbpipe",
    "@nbpipe.component\ndef prep(n: int) -> dict:\n    import os\n    return {'n': n, 'pid': os.getpid()}",
    f"@nbpipe.component\ndef divide(d: dict, by: int) -> float:\n{BUG}",
    "@nbpipe.component\ndef report(x: float) -> str:\n    return f'result {x}'",
    "@nbpipe.pipeline\ndef fixme(n: int = 4, by: int = 0):\n    report(divide(prep(n).output, by).output)",
]


def write(path: Path, cells: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


async def finish(api: Any, run_id: str) -> dict[str, Any]:
    code, text = await api(f"runs/{run_id}/events", after="0")
    assert code == 200 and any(e["type"] == "RunFinished" for e in sse_events(text))
    code, snap = await api(f"runs/{run_id}")
    assert code == 200
    return snap


async def test_rerun_from_failed_after_fixing_the_saved_notebook(api: Any, jp_root_dir: Path) -> None:
    write(jp_root_dir / "fixme.ipynb", CELLS)
    code, run = await api("notebook/run", "POST", {"path": "fixme.ipynb", "params": {"n": 6}})
    assert code == 201, run
    first = await finish(api, run["id"])
    assert [(s["name"], s["state"]) for s in first["steps"]] == [
        ("prep", "succeeded"), ("divide", "failed"), ("report", "skipped")]

    # Without the fix: the same failure again (and the old package is what "notebook": false runs).
    code, same = await api(f"runs/{run['id']}/rerun", "POST", {"from_step": "divide", "notebook": False})
    assert code == 201, same
    assert {s["name"]: s["state"] for s in (await finish(api, same["id"]))["steps"]}["divide"] == "failed"

    # The user fixes the divide cell and saves; the panel's "Re-run from failed" sends from_step.
    write(jp_root_dir / "fixme.ipynb", [c.replace(BUG, FIX) for c in CELLS])
    code, again = await api(f"runs/{run['id']}/rerun", "POST", {"from_step": "divide"})
    assert code == 201, again
    snap = await finish(api, again["id"])
    steps = {s["name"]: s for s in snap["steps"]}
    assert snap["state"] == "succeeded" and snap["package"] != first["package"]
    assert steps["prep"]["state"] == "cached" and steps["prep"]["attempt"] == 0
    assert steps["prep"]["reason"] == f"reused from run {run['id']} (upstream of 'divide', unchanged)"
    assert steps["prep"]["outputs"]["output"]["digest"] == first["steps"][0]["outputs"]["output"]["digest"]
    assert steps["divide"]["state"] == "succeeded" and steps["divide"]["attempt"] == 1
    assert steps["divide"]["reason"] == "re-executed: re-run from 'divide'"
    assert steps["report"]["state"] == "succeeded"
    assert snap["labels"]["notebook"] == "fixme.ipynb" and snap["labels"]["rerun_of"] == run["id"]

    # from_failed picks the failed step itself; a run without one says so
    code, body = await api(f"runs/{again['id']}/rerun", "POST", {"from_failed": True})
    assert code == 400 and f"Run {again['id']} has no failed step to re-run from" in body["message"]
    code, body = await api(f"runs/{run['id']}/rerun", "POST", {"from_step": "nope"})
    assert code == 404 and "no step 'nope'" in body["message"], body
