"""A failed run, then the kernel restarts (the runner keeps the run), in real kernels (nbclient) on the
embedded runner: the new kernel knows no run, so ``%nbpipe rerun --failed`` names the runner's newest
run instead of only "No run yet"; ``%nbpipe logs RUN`` shows the failed step's traceback; the fixed
cells are run and ``%nbpipe rerun RUN --failed`` twice in a row re-executes only the failed step and
the one after it, with the new code, reusing the upstream step of the first run each time.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

DEFS = """import json, nbpipe
@nbpipe.component
def load(n: int) -> list:
    import os
    return [list(range(n)), os.environ["NBPIPE_RUN_ID"]]
@nbpipe.component
def train(data: list) -> float:
    xs = data[0]
    return sum(xs) / {den}
@nbpipe.component
def report(v: float) -> str:
    return f"ratio={{v}}"
@nbpipe.pipeline
def exp(n: int = 5):
    report(v=train(data=load(n=n).output).output)"""
BUG, FIX = "(len(xs) - 5)", "max(1, len(xs) - 5)"
STATES = """r = get_ipython().magics_manager.registry['NbpipeMagics'].commands.last_run.wait(timeout=300, raise_on_failure=False)
print(json.dumps({"id": r.id, "steps": {s["name"]: [s["state"], s["reason"]] for s in r.snapshot()["steps"]},
                  "report": r.output("report"), "load": r.output("load")}))"""


def stream(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def kernel(cells: list[str], tmp_path: Path) -> list[Any]:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    NotebookClient(nb, timeout=400, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    return list(nb.cells)


@pytest.mark.timeout(900)
def test_rerun_from_failed_after_a_kernel_restart_twice(nb_home: Path, tmp_path: Path) -> None:
    first = kernel(["%load_ext nbpipe", DEFS.format(den=BUG), "run = nbpipe.run(exp)\n"
                    "print(run.id, run.wait(timeout=300, raise_on_failure=False).state)"], tmp_path)
    run_id, state = stream(first[2]).split()
    assert state == "failed"

    cells = kernel(["%load_ext nbpipe", "%nbpipe rerun --failed", f"%nbpipe logs {run_id}",
                    DEFS.format(den=FIX), f"%nbpipe rerun {run_id} --failed", STATES,
                    f"%nbpipe rerun {run_id} --failed", STATES], tmp_path)
    (err,) = [o for o in cells[1].outputs if o.output_type == "error"] or [None]
    said = re.sub(r"\x1b\[[0-9;]*m", "", stream(cells[1]) + (err.evalue if err else ""))
    assert (f"No run yet in this kernel; start one with %nbpipe run, or name a run id (the runner's newest is "
            f"{run_id}: exp, failed; %nbpipe runs lists them).") in said, said
    assert "ZeroDivisionError: division by zero" in stream(cells[2]) and BUG in stream(cells[2])
    for rerun, states in ((cells[4], cells[5]), (cells[6], cells[7])):
        assert f"Re-running run {run_id} from step 'train'" in stream(rerun), stream(rerun)
        out = json.loads(stream(states))
        assert out["id"] != run_id and out["report"] == "ratio=10.0"  # the fix ran
        assert out["steps"] == {
            "load": ["cached", f"reused from run {run_id} (upstream of 'train', unchanged)"],
            "train": ["succeeded", "re-executed: re-run from 'train'"],
            "report": ["succeeded", "re-executed: downstream of 'train'"]}
        assert out["load"][1] == run_id  # the first run's own output, from before the restart


SET_CELLS = ["%load_ext nbpipe", """import json, nbpipe
LABELS = {"cat", "dog", "bird", "fish", "cow", "owl", "eel"}
KEEP = {"by": frozenset({"a", "b", "c", "d", "e"})}
@nbpipe.component
def count(n: int) -> int:
    return n * len(LABELS) + len(KEEP["by"])
@nbpipe.pipeline
def labels(n: int = 2):
    count(n=n)""", """run = nbpipe.run(labels).wait(timeout=300)
print(json.dumps([list(LABELS), run.steps["count"]["state"], run.output("count")]))"""]


@pytest.mark.timeout(900)
def test_a_component_reading_a_set_is_reused_after_a_kernel_restart(nb_home: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A set of strings iterates in an order each process's hash seed picks: its digest, and so the step's
    cache key, changed with every kernel restart and the step ran again although nothing had changed."""
    seen = []
    for seed in ("1", "2"):  # two kernels whose sets iterate in different orders
        monkeypatch.setenv("PYTHONHASHSEED", seed)
        seen.append(json.loads(stream(kernel(SET_CELLS, tmp_path)[2])))
    (order1, state1, out1), (order2, state2, out2) = seen
    assert order1 != order2  # the precondition: the kernels' sets really did iterate differently
    assert (state1, out1) == ("succeeded", 19) and (state2, out2) == ("cached", 19)
