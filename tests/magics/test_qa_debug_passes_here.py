"""QA: ``%nbpipe debug`` of a step that failed in the run but runs fine in the kernel.

A plain ``%%component`` cell opens ``data.csv``, relative to the notebook's folder: the cell works in
the kernel, the step fails (it runs in a working folder of its own), and ``%nbpipe debug`` said only
"ran in this kernel without an exception" — leaving the user with a bug they cannot reproduce. It now
says what differs, and for a relative path that is not found, the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.mark.timeout(300)
def test_debug_says_what_differs_when_the_step_passes_here(ip: Any, nb_runner: Any, tmp_path: Path,
                                                           monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "qa_data.csv").write_text("1,2,3\n")
    ip.run_line_magic("nbpipe", f"config runner={nb_runner.url}")
    assert ip.run_cell("%%component qa_read\ntext = open('qa_data.csv').read()").success
    ip.run_line_magic("nbpipe", "run")
    run = ip.magics.commands.last_run
    assert run.wait(timeout=240, raise_on_failure=False).state == "failed"
    capsys.readouterr()
    ip.run_line_magic("nbpipe", "debug --no-pdb")
    out = capsys.readouterr().out
    assert "Step 'qa_read' ran in this kernel without an exception. In the run it failed (FileNotFoundError" in out
    assert ("a step runs in a working folder of its own, not the notebook's, so the relative path 'qa_data.csv' "
            "is not there. Use an absolute path, or pass the file in") in out, out
