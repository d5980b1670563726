"""``%nbpipe run`` with no pipeline named, in a notebook with plain ``%%component`` cells *and* a
pipeline of its own: it runs the cells' pipeline (as before) and now says so, naming the other
pipeline and how to run it (it picked silently, and the user wondered why their @pipeline did not run)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.timeout(300)
def test_run_without_a_name_says_which_pipeline_ran(ip: Any, nb_runner: Any, capsys: Any) -> None:
    ip.run_line_magic("nbpipe", f"config runner={nb_runner.url}")
    ip.run_cell("n = 4")
    ip.run_cell_magic("component", "double", "m = n * 2")
    assert ip.run_cell("import nbpipe\n@nbpipe.component\ndef which_one(x: int) -> int:\n    return x\n"
                       "@nbpipe.pipeline\ndef mine(x: int = 1):\n    which_one(x=x)").success
    capsys.readouterr()
    ip.run_line_magic("nbpipe", "run")
    out = capsys.readouterr().out
    run = ip.magics.commands.last_run.wait(timeout=240)
    assert list(run.steps) == ["double"] and run.output("double", "m") == 8
    assert "Running the notebook's %%component cells as pipeline" in out, out
    assert "this kernel also has mine: %nbpipe run mine runs it." in out, out


def test_no_note_when_the_cells_are_the_only_pipeline(ip: Any, capsys: Any) -> None:
    ip.run_cell("n = 4")
    ip.run_cell_magic("component", "double", "m = n * 2")
    capsys.readouterr()
    ip.magics.commands._pipeline(None)
    assert "Running the notebook's" not in capsys.readouterr().out
