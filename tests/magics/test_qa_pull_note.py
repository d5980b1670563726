"""QA: the call ``%nbpipe pull`` tells the user to run for a failed step works as typed.

- An input named like another step's output is loaded as ``<step>_<name>``, but the note said
  ``call use.func(xs=xs)``: a NameError (or, worse, the other step's value) when followed.
- A function that also takes ``Output[...]`` files cannot be called with the inputs alone (a
  TypeError for the missing ``model``): the note now sends the user to ``%nbpipe debug``, which makes them.
"""

from __future__ import annotations

from typing import Any

import pytest

CELL = """
import nbpipe
from typing import NamedTuple
from nbpipe import Input, Output, Dataset, Model

@nbpipe.component
def qa_prep(n: int) -> NamedTuple("Prepared", [("xs", list)]):
    return (list(range(n)),)

@nbpipe.component
def qa_use(xs: list, k: int = 0) -> float:
    return sum(xs) / k

@nbpipe.pipeline
def qa_collide(n: int = 3):
    qa_use(xs=qa_prep(n=n).outputs["xs"])

@nbpipe.component
def qa_fit(k: int, model: Output[Model]) -> float:
    return 1 / k

@nbpipe.pipeline
def qa_files(k: int = 0):
    qa_fit(k=k)
"""


@pytest.mark.timeout(300)
def test_the_pull_note_names_the_loaded_variables_or_debug(ip: Any, nb_runner: Any, capsys: Any) -> None:
    ip.run_line_magic("nbpipe", f"config runner={nb_runner.url}")
    assert ip.run_cell(CELL).success
    assert ip.run_cell("r1 = nbpipe.run(qa_collide)\nr1.wait(timeout=240, raise_on_failure=False)").success
    capsys.readouterr()
    ip.run_line_magic("nbpipe", "pull r1")
    out = capsys.readouterr().out
    assert "Loaded: qa_prep_xs (list), qa_use_xs (list)." in out, out
    assert "call qa_use.func(xs=qa_use_xs) to reproduce it." in out, out
    assert isinstance(ip.run_cell("qa_use.func(xs=qa_use_xs)").error_in_exec, ZeroDivisionError)

    assert ip.run_cell("r2 = nbpipe.run(qa_files)\nr2.wait(timeout=240, raise_on_failure=False)").success
    run_id = ip.user_ns["r2"].id
    capsys.readouterr()
    ip.run_line_magic("nbpipe", "pull r2")
    out = capsys.readouterr().out
    assert (f"Its inputs are loaded; %nbpipe debug {run_id} qa_fit calls it with them and with its output "
            "files (model).") in out, out
