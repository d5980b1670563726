"""QA: ``%nbpipe export`` on a notebook with two pipelines, through a real IPython shell.

The refusal told the user to "Choose one with --pipeline NAME", an option the magic does not have
(it takes the pipeline's name first, as ``%nbpipe export --help`` says): following the advice
gave a second error. It now names the command that works, and that command does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from IPython.core.error import UsageError

CELLS = [
    "import nbpipe",
    "@nbpipe.component\ndef one() -> int:\n    return 1",
    "@nbpipe.pipeline\ndef first():\n    one()",
    "@nbpipe.pipeline\ndef second():\n    one()",
]


def test_export_names_the_magic_form_of_the_choice(ip: Any, tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    path = tmp_path / "two.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(UsageError) as err:
        ip.run_line_magic("nbpipe", f"export --notebook {path} --format kfp")
    msg = str(err.value)
    assert msg.startswith("Notebook two.ipynb defines 2 pipelines: 'first' (cell 3), 'second' (cell 4)"), msg
    assert msg.endswith("Name one: %nbpipe export first --format kfp."), msg
    assert "--pipeline" not in msg
    out = tmp_path / "first.nbpipe"
    ip.run_line_magic("nbpipe", f"export first --notebook {path} -o {out}")  # the advice works
    assert out.stat().st_size > 0
