"""QA: re-running a run after the pipeline's parameter was renamed.

``%nbpipe rerun`` said "Pipeline 'pp' has no parameter 'x'" — a parameter the user never passed (the
old run's, which a re-run keeps). It now says so, names the pipeline's parameters now and the two
ways forward, before anything is uploaded.
"""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.error import UsageError

BEFORE = """
import nbpipe

@nbpipe.component
def qa_div(x: int) -> int:
    return 10 // x

@nbpipe.pipeline
def qa_renamed(x: int = 0):
    qa_div(x=x)
"""

AFTER = """
@nbpipe.component
def qa_div(y: int, z: int = 1) -> int:
    return 10 // (y + z)

@nbpipe.pipeline
def qa_renamed(y: int = 0, z: int = 1):
    qa_div(y=y, z=z)
"""


@pytest.mark.timeout(300)
def test_rerun_after_a_parameter_rename_says_what_to_do(ip: Any, nb_runner: Any) -> None:
    ip.run_line_magic("nbpipe", f"config runner={nb_runner.url}")
    assert ip.run_cell(BEFORE).success
    assert ip.run_cell("r = nbpipe.run(qa_renamed)\nr.wait(timeout=240, raise_on_failure=False)").success
    run = ip.user_ns["r"]
    assert ip.run_cell(AFTER).success
    before = {r["id"] for r in run.client.runs(limit=50)}
    for line in ("rerun --failed", "rerun"):
        with pytest.raises(UsageError) as err:
            ip.run_line_magic("nbpipe", line)
        assert str(err.value) == (
            f"Run {run.id} ran with parameter 'x', which this kernel's pipeline 'qa-renamed' no longer has, and a "
            "re-run keeps the run's parameters. Its parameters now: y, z. Start a new run instead (%nbpipe run "
            "qa_renamed y=... z=...), or add --same-code to re-run the run's own package.")
    assert {r["id"] for r in run.client.runs(limit=50)} == before  # nothing was started
