"""The loop a user runs all day, in a real kernel (nbclient) on the embedded runner, cell by cell:

run → a step fails → ``%nbpipe debug`` reproduces the exception *in the kernel* with the user's
source line (and ``%debug`` has it) → fix the component cell (only that cell) → ``%nbpipe rerun --failed`` →
it succeeds, the upstream step reused (same pid, same run) and the fixed step a new process.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

BUG = "    ratio = total / (len(data['xs']) - 5)  # the bug: n=5 divides by zero"
FIX = "    ratio = total / max(1, len(data['xs']) - 5)"

CELLS = [
    "%load_ext nbpipe\nimport json, nbpipe",
    """@nbpipe.component
def load(n: int) -> dict:
    import os
    return {"xs": list(range(n)), "pid": os.getpid(), "run": os.environ["NBPIPE_RUN_ID"]}""",
    f"""@nbpipe.component
def train(data: dict) -> dict:
    import os
    total = sum(data['xs'])
{BUG}
    return {{"ratio": ratio, "pid": os.getpid(), "run": os.environ["NBPIPE_RUN_ID"]}}""",
    """@nbpipe.pipeline
def loop(n: int = 5):
    train(data=load(n=n).output)""",
    "%nbpipe run loop\nmagics = get_ipython().magics_manager.registry['NbpipeMagics'].commands",
    "failed = magics.last_run.wait(timeout=300, raise_on_failure=False)\nprint(failed.state)",
    "%nbpipe debug {failed.id} train",
    """import linecache, sys
tb = sys.last_traceback
frames = []
while tb is not None:
    code = tb.tb_frame.f_code
    frames.append([code.co_name, code.co_filename, linecache.getline(code.co_filename, tb.tb_lineno).strip()])
    tb = tb.tb_next
print(json.dumps(frames))""",
    "%nbpipe rerun {failed.id} --failed",
    """again = magics.last_run.wait(timeout=300)
print(json.dumps({"steps": {s["name"]: [s["state"], s["attempt"], s["reason"]] for s in again.snapshot()["steps"]},
                  "load": again.output("load"), "first_load": failed.output("load"),
                  "train": again.output("train"), "ids": [failed.id, again.id]}))""",
]


def stream(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.mark.timeout(900)
def test_fail_debug_fix_rerun_from_failed_in_a_real_kernel(nb_home: Path, tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    client = NotebookClient(nb, timeout=400, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    with client.setup_kernel():
        for i in range(6):
            client.execute_cell(nb.cells[i], i)
        assert stream(nb.cells[5]).strip() == "failed"

        debug = nb.cells[6]
        debug.metadata["tags"] = ["raises-exception"]
        client.execute_cell(debug, 6)
        (err,) = [o for o in debug.outputs if o.output_type == "error"]
        assert err.ename == "ZeroDivisionError"
        shown = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(err.traceback))
        assert "ratio = total / (len(data['xs']) - 5)" in shown  # the user's source line
        assert "nbpipe/" not in shown and "kernel_magics" not in shown, shown  # no nbpipe frames
        assert "Step 'train' of run" in stream(debug) and "%debug" in stream(debug)

        client.execute_cell(nb.cells[7], 7)  # what %debug walks: the last frame is the user's line
        frames = json.loads(stream(nb.cells[7]))
        assert frames[-1][0] == "train" and frames[-1][2] == BUG.strip()

        nb.cells[2].source = nb.cells[2].source.replace(BUG, FIX)  # fix the component cell, run only it
        client.execute_cell(nb.cells[2], 2)
        client.execute_cell(nb.cells[8], 8)
        assert "from step 'train'" in stream(nb.cells[8]) and "this kernel's pipeline 'loop'" in stream(nb.cells[8])
        client.execute_cell(nb.cells[9], 9)
    out = json.loads(stream(nb.cells[9]))

    # After a kernel restart (nothing defined): the same debug still shows the user's source line.
    fresh = nbformat.v4.new_notebook()
    fresh.cells = [nbformat.v4.new_code_cell("%load_ext nbpipe"),
                   nbformat.v4.new_code_cell(f"%nbpipe debug {out['ids'][0]} train", metadata={"tags": ["raises-exception"]})]
    NotebookClient(fresh, timeout=400, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    (err,) = [o for o in fresh.cells[1].outputs if o.output_type == "error"]
    shown = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(err.traceback))
    assert err.ename == "ZeroDivisionError" and BUG.strip() in shown, shown
    assert "nbpipe/" not in shown and "kernel_magics" not in shown, shown
    first, second = out["ids"]
    assert out["steps"]["load"] == ["cached", 0, f"reused from run {first} (upstream of 'train', unchanged)"]
    assert out["load"] == out["first_load"] and out["load"]["run"] == first  # reused: same process
    assert out["steps"]["train"] == ["succeeded", 1, "re-executed: re-run from 'train'"]
    assert out["train"]["ratio"] == 10.0 and out["train"]["run"] == second
    assert out["train"]["pid"] != out["load"]["pid"]
