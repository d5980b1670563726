"""Steps that fail the hard ways — a timeout, a kill — debugged in a real kernel (nbclient) on the embedded
runner, then fixed and re-run from the failed step.

- ``%nbpipe debug`` of a step that timed out applies the step's timeout in the kernel too: after it, the
  call stops with a ``TimeoutError`` at the user's line where it hung (``%debug`` opens there), instead of
  blocking the kernel for as long as the hang lasts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

HANG = "    time.sleep(n)  # the bug: it waits far too long"

CELLS = [
    "%load_ext nbpipe\nimport json, nbpipe",
    f"""@nbpipe.component(timeout=3)
def wait_for(n: int) -> int:
    import time
{HANG}
    return n""",
    """@nbpipe.pipeline
def hangs(n: int = 3600):
    wait_for(n=n)""",
    "run = nbpipe.run(hangs)\nprint(run.wait(timeout=300, raise_on_failure=False).steps['wait_for']['reason'])",
    "%nbpipe debug --no-pdb",
    "print(json.dumps([type(sys.last_value).__name__, str(sys.last_value)]))",
]


def stream(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.mark.timeout(900)
def test_debugging_a_timed_out_step_stops_at_its_timeout_on_the_hanging_line(nb_home: Path, tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nb.cells[4].metadata["tags"] = ["raises-exception"]
    nb.cells[5].source = "import sys\n" + nb.cells[5].source
    # a cell that blocks for the step's hour fails the test at nbclient's cell timeout
    client = NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    with client.setup_kernel():
        for i in range(4):
            client.execute_cell(nb.cells[i], i)
        assert stream(nb.cells[3]).strip() == "timed out after 3 s and was killed"
        client.execute_cell(nb.cells[4], 4)
        client.execute_cell(nb.cells[5], 5)
    (err,) = [o for o in nb.cells[4].outputs if o.output_type == "error"]
    shown = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(err.traceback))
    assert err.ename == "TimeoutError", shown
    assert HANG.strip() in shown and "nbpipe/" not in shown, shown  # stopped on the user's hanging line
    name, message = json.loads(stream(nb.cells[5]))
    assert name == "TimeoutError"
    assert message.startswith("Step 'wait_for' ran past its timeout of 3 s here too (in the run it was killed)")
    assert "timeout 3 s" in stream(nb.cells[4])  # the description says the call has the step's timeout


# The user presses Interrupt while the kernel waits on a run. The test sends the same SIGINT the kernel's
# Interrupt sends, from a thread in the kernel, once the main thread is inside the wait (a state, no timer).
INTERRUPT_WHEN_WAITING = """
import os, signal, sys, threading
def _interrupt_when_waiting(main=threading.main_thread().ident):
    while True:
        frame = sys._current_frames().get(main)
        names = set()
        while frame is not None:
            names.add(frame.f_code.co_name)
            frame = frame.f_back
        if "_follow" in names or "wait" in names and "cmd_pull" in names:
            os.kill(os.getpid(), signal.SIGINT)
            return
        threading.Event().wait(0.01)
threading.Thread(target=_interrupt_when_waiting, daemon=True).start()
"""

SLOW = [
    "%load_ext nbpipe\nimport json, nbpipe",
    """@nbpipe.component
def slow(n: int) -> int:
    import time
    time.sleep(n)
    return n
@nbpipe.pipeline
def sleepy(n: int = 3600):
    slow(n=n)""",
    "run = nbpipe.run(sleepy)",
]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("wait", ["run.wait()", "%nbpipe pull"])
def test_interrupting_the_wait_says_the_run_goes_on_and_cancel_stops_it(wait: str, nb_home: Path, tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    cells = [*SLOW, INTERRUPT_WHEN_WAITING, wait, "print(run.snapshot()['state'])", "%nbpipe cancel",
             "print(run.wait(timeout=300, raise_on_failure=False).state)"]
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nb.cells[4].metadata["tags"] = ["raises-exception"]
    client = NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    with client.setup_kernel():
        for i in range(len(cells)):
            client.execute_cell(nb.cells[i], i)
    (err,) = [o for o in nb.cells[4].outputs if o.output_type == "error"]
    shown = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(err.traceback))
    run_id = re.search(r"r\d{8}-\d{6}-[0-9a-f]{6}", shown)
    assert err.ename == "KeyboardInterrupt" and run_id, shown
    assert f"stopped waiting for run {run_id[0]} (sleepy, running); the run goes on in the runner." in shown, shown
    assert f"%nbpipe cancel {run_id[0]} stops it" in shown and len(shown.splitlines()) <= 4, shown  # one screen
    assert "nbpipe/" not in shown and "kernel_magics" not in shown, shown
    assert stream(nb.cells[5]).strip() == "running"  # it did go on
    assert stream(nb.cells[6]).startswith(f"Cancelling run {run_id[0]}")
    assert stream(nb.cells[7]).strip() == "cancelled"


# Interrupt while the kernel packages a large capture for nbpipe.run / %nbpipe run: the frames are nbpipe's,
# the state is "no run started" (the same SIGINT as the kernel's Interrupt, once the main thread packages).
INTERRUPT_WHEN_PACKAGING = INTERRUPT_WHEN_WAITING.replace(
    '"_follow" in names or "wait" in names and "cmd_pull" in names', '"write_package" in names')
BIG = [
    "%load_ext nbpipe\nimport nbpipe, numpy as np",
    """big = np.random.default_rng(0).random(10_000_000)  # 80 MB that compresses badly
@nbpipe.component
def first(i: int) -> float:
    return float(big[i])
@nbpipe.pipeline
def large(i: int = 0):
    first(i=i)""",
]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("submit", ["run = nbpipe.run(large)", "%nbpipe run large"])
def test_interrupting_a_submit_says_no_run_was_started(submit: str, nb_home: Path, tmp_path: Path) -> None:
    """It showed a screen of client.py, package.py and zipfile frames, and no word on whether a run began."""
    nb = nbformat.v4.new_notebook()
    cells = [*BIG, INTERRUPT_WHEN_PACKAGING, submit, "%nbpipe runs"]
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nb.cells[3].metadata["tags"] = ["raises-exception"]
    NotebookClient(nb, timeout=400, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    (err,) = [o for o in nb.cells[3].outputs if o.output_type == "error"]
    shown = [ln for ln in re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(err.traceback)).splitlines() if ln.strip()]
    assert err.ename == "KeyboardInterrupt" and len(shown) == 3, shown
    assert re.fullmatch(r"Cell In\[\d+\], line 1", shown[0]) and shown[1].strip() == submit, shown
    assert shown[2] == ("KeyboardInterrupt: stopped submitting pipeline 'large' while packaging it; no run was "
                        "started. Run the cell again to submit it."), shown
    assert stream(nb.cells[4]).strip() == "No runs yet."
