"""QA: ``nbpipe.run(p).wait()`` fails a step, then ``%nbpipe debug`` / ``pull`` / ``logs``.

The commands default to "the last run of this kernel", but a run started and waited on in one
expression is kept nowhere (no variable, no graph shown, no ``%nbpipe run``), so they said "No run
yet in this kernel" right after the kernel showed that run's failure. They now take the run whose
``wait()`` raised, and keep it across the commands that follow (``%nbpipe debug`` raises again).
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

CELL = """
import nbpipe

@nbpipe.component
def qa_halve(x: int) -> float:
    return 1 / (x - x)

@nbpipe.pipeline
def qa_halving(x: int = 4):
    qa_halve(x=x)
"""


@pytest.mark.timeout(300)
def test_debug_pull_and_logs_find_the_run_whose_wait_raised(ip: Any, nb_runner: Any, capsys: Any) -> None:
    ip.run_line_magic("nbpipe", f"config runner={nb_runner.url}")
    assert ip.run_cell(CELL).success
    result = ip.run_cell("nbpipe.run(qa_halving).wait(timeout=240)")
    assert type(result.error_in_exec).__name__ == "StepFailed"
    run_id = str(result.error_in_exec.hint).split()[-2]  # "Logs: nbpipe logs RUN STEP"
    capsys.readouterr()

    result = ip.run_cell("%nbpipe debug --no-pdb")
    assert isinstance(result.error_in_exec, ZeroDivisionError)  # reproduced in the kernel
    assert f"Step 'qa_halve' of run {run_id}" in capsys.readouterr().out

    ip.run_line_magic("nbpipe", "pull")  # after debug's own error: still that run
    assert f"Run {run_id} failed. Loaded: x (int)." in capsys.readouterr().out
    assert ip.user_ns["x"] == 4
    ip.run_line_magic("nbpipe", "logs")
    assert "ZeroDivisionError" in capsys.readouterr().out
    sys.last_type = sys.last_value = sys.last_traceback = None  # the shell is shared by the next tests
