"""``%nbpipe debug`` as a new user types it right after a run failed: no run id, no step name.

It debugs the last run's failed step (``%nbpipe debug RUN`` that run's); a run without a failed
step says so and how to name one. ``%nbpipe logs`` takes the same defaults. A real IPython shell, the real embedded runner and step processes.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

SETUP = """
import nbpipe

@nbpipe.component
def make(n: int) -> list:
    return list(range(n))

@nbpipe.component
def mean(xs: list) -> float:
    return sum(xs) / len(xs[5:])

@nbpipe.pipeline
def broken(n: int = 5):
    mean(xs=make(n=n).output)
"""


def debug(ip: Any, line: str) -> tuple[str, str]:
    with capture_output() as out:
        result = ip.run_cell(f"%nbpipe debug {line}".rstrip(), store_history=True)
    assert not result.success and isinstance(result.error_in_exec, ZeroDivisionError), result
    return out.stdout, re.sub(r"\x1b\[[0-9;]*m", "", out.stderr + out.stdout)


@pytest.mark.timeout(600)
def test_debug_with_no_arguments_debugs_the_last_runs_failed_step(ip: Any) -> None:
    assert ip.run_cell(SETUP).success
    ip.run_line_magic("nbpipe", "run broken")
    run = ip.magics.commands.last_run
    assert run.wait(timeout=300, raise_on_failure=False).state == "failed"

    stdout, shown = debug(ip, "--no-pdb")
    assert f"Step 'mean' of run {run.id}" in stdout and "ZeroDivisionError" in stdout
    assert "return sum(xs) / len(xs[5:])" in shown  # the user's line
    assert ip.user_ns["_nbpipe_debug"].inputs == {"xs": [0, 1, 2, 3, 4]}

    stdout, _ = debug(ip, f"{run.id} --no-pdb")  # a run id alone: that run's failed step
    assert f"Step 'mean' of run {run.id}" in stdout

    # %nbpipe logs takes the same defaults (it needed RUN and STEP: "the following arguments are required")
    for line in ("logs", f"logs {run.id}", "logs mean"):
        with capture_output() as out:
            assert ip.run_cell(f"%nbpipe {line}").success
        assert "ZeroDivisionError: division by zero" in out.stdout and "len(xs[5:])" in out.stdout, (line, out.stdout)
    with pytest.raises(UsageError, match=rf"^Run {run.id} has no step 'maen'\. Did you mean 'mean'\?"):
        ip.run_line_magic("nbpipe", "logs maen")
    with pytest.raises(UsageError, match=rf"^Step 'mean' of run {run.id} has no attempt 2: it ran 1 attempt; "):
        ip.run_line_magic("nbpipe", "logs mean --attempt 2")  # it said "has written no logs yet"
    with pytest.raises(UsageError, match=r"^--limit is how many runs to list: 1 or more \(got 0\)\.$"):
        ip.run_line_magic("nbpipe", "runs --limit 0")  # the runner's "query.limit: Input should be ..."

    ip.run_line_magic("nbpipe", "run broken n=7")
    ok = ip.magics.commands.last_run
    assert ok.wait(timeout=300).state == "succeeded"
    with pytest.raises(UsageError, match=rf"Run {ok.id} has no failed step \(succeeded\); name the step to "
                                         rf"call: %nbpipe debug {ok.id} STEP \(its steps: make, mean\)\.$"):
        ip.run_line_magic("nbpipe", "debug --no-pdb")


@pytest.mark.timeout(600)
def test_the_last_run_is_also_one_from_nbpipe_run_or_from_a_graph_button(ip: Any) -> None:
    """The README's way to run (``run = nbpipe.run(...)``), then ``%nbpipe debug``: that run's failed
    step, not "No run yet in this kernel". A graph's Rerun button makes the newest run the last one."""
    from nbpipe.widgets import show

    assert ip.run_cell(SETUP).success
    assert ip.run_cell("run = nbpipe.run(broken)").success
    run = ip.user_ns["run"]
    assert run.wait(timeout=300, raise_on_failure=False).state == "failed"
    stdout, shown = debug(ip, "--no-pdb")
    assert f"Step 'mean' of run {run.id}" in stdout and "return sum(xs) / len(xs[5:])" in shown

    view = show(run)
    view._on_msg(view, {"type": "action", "action": "rerun", "payload": {}}, [])  # as the button sends it
    assert view.run.id != run.id, view.notice
    assert view.run.wait(timeout=300, raise_on_failure=False).state == "failed"
    stdout, _ = debug(ip, "--no-pdb")
    assert f"Step 'mean' of run {view.run.id}" in stdout
