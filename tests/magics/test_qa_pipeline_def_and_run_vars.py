"""Edit-run loop mistakes a new user makes, in a real IPython shell with the magics loaded.

- A ``%%pipeline`` cell written as a ``def`` (as ``%%component`` cells are, and as ``@pipeline`` is)
  is the pipeline: it was traced as a cell body that only defines a function, and refused with
  "has no steps".
- ``%nbpipe cancel r`` / ``logs r`` / ``attach r`` with ``r`` the notebook variable holding the run
  (``r = nbpipe.run(p)``) act on that run; they said "No run r".
"""

from __future__ import annotations

from typing import Any

import pytest

COMPONENTS = """
import nbpipe

@nbpipe.component
def add(x: int) -> int:
    return x + 1
"""


def test_a_pipeline_cell_holding_a_def_is_that_pipeline(ip: Any) -> None:
    assert ip.run_cell(COMPONENTS).success
    assert ip.run_cell("%%pipeline twice\ndef twice(x: int = 5):\n    add(x=add(x=x).output)").success
    pipe = ip.user_ns["twice"]
    assert list(pipe.steps) == ["add", "add-2"]
    assert [p["name"] for p in pipe.parameters] == ["x"]

    # unnamed: named by its def, as @pipeline names it
    assert ip.run_cell("%%pipeline\ndef my_flow(n: int = 1):\n    add(x=n)").success
    assert ip.user_ns["my_flow"].name == "my-flow" and list(ip.user_ns["my_flow"].steps) == ["add"]


def test_a_pipeline_def_cell_with_a_mistake_names_it(ip: Any) -> None:
    assert ip.run_cell(COMPONENTS).success
    result = ip.run_cell("%%pipeline\ndef flow(x: int = 5):\n    add(y=x)")
    assert not result.success
    assert "component 'add' has no input 'y'" in str(result.error_in_exec)
    result = ip.run_cell("%%pipeline\ndef flow(x: int = 5):\n    s = add(x=x)\n    add(x=s + 1)")
    assert not result.success
    said = str(result.error_in_exec)  # (step + 1: what is wrong and the fix, the expression located by its text)
    assert "Step 'add' is a step of the pipeline, not a value, so `add + 1` cannot be computed" in said, said
    assert "Pass add.output" in said, said


def test_a_pipeline_def_calling_a_refused_component_cell_names_that_cell(ip: Any) -> None:
    """The refused cell's def is a plain function: traced, it ran in the kernel and the pipeline "has no steps"."""
    assert ip.run_cell("import threading\nqa_lock = threading.Lock()").success
    assert not ip.run_cell("%%component\ndef qa_train(x: int) -> int:\n    with qa_lock:\n        return x").success
    result = ip.run_cell("%%pipeline\ndef qa_flow(x: int = 1):\n    qa_train(x=x)")
    assert str(result.error_in_exec).startswith(
        "The pipeline calls 'qa_train', whose %%component cell failed, so 'qa_train' is a plain function and no "
        "step: Component 'qa_train' uses 'qa_lock', a lock")
    assert "qa_flow" not in ip.user_ns  # the cell did not run


def test_a_pipeline_cell_body_still_composes(ip: Any) -> None:
    assert ip.run_cell(COMPONENTS).success
    ip.user_ns["n"] = 3
    assert ip.run_cell("%%pipeline\nadd(x=n)").success
    assert list(ip.user_ns["notebook"].steps) == ["add"]


SLOW = """
import threading
import nbpipe

gate = {path!r}

@nbpipe.component
def wait_for_gate(x: int) -> int:
    import os, time
    while not os.path.exists(gate):
        time.sleep(0.05)
    return x

@nbpipe.pipeline
def gated(x: int = 1):
    wait_for_gate(x=x)
"""


@pytest.mark.timeout(300)
def test_run_commands_take_the_variable_holding_the_run(ip: Any, nb_runner: Any, tmp_path: Any) -> None:
    ip.run_line_magic("nbpipe", f"config runner={nb_runner.url}")
    assert ip.run_cell(SLOW.format(path=str(tmp_path / "never"))).success
    assert ip.run_cell("r = nbpipe.run(gated)").success
    run = ip.user_ns["r"]
    ip.run_line_magic("nbpipe", "attach r")
    assert ip.magics.commands.last_run is run
    ip.run_line_magic("nbpipe", "cancel r")
    assert run.wait(timeout=240, raise_on_failure=False).state == "cancelled"
    ip.run_line_magic("nbpipe", "logs r wait_for_gate")  # a step that logged nothing: no error
