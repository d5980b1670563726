"""QA: a ``%%pipeline`` cell calling a def that is no component, through a real IPython shell.

A function cell whose ``%%component`` was refused (it captures an open file) keeps its plain def.
A pipeline cell calling it ran that def in the kernel (writing to the file) and then failed with
``AttributeError: 'int' object has no attribute 'output'`` under a traceback of nbpipe's own
frames. It now names the refused cell and why; a def never marked, or any other error the cell's
own code raises, is one line with the cell's line number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError


def test_pipeline_calling_a_refused_component_names_why(ip: Any, tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    ip.run_cell(f"FH = open({str(log)!r}, 'w')")
    with pytest.raises(UsageError, match=r"uses 'FH', an open file"):
        ip.run_cell_magic("component", "writes", "def writes(a: int) -> int:\n    FH.write('ran')\n    return a\n")
    ip.run_cell_magic("component", "double", "def double(a: int) -> int:\n    return 2 * a\n")
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("pipeline", "bad", "double(writes(1).output)\n")
    msg = str(err.value)
    assert msg.startswith("The pipeline calls 'writes', whose %%component cell failed"), msg
    assert "uses 'FH', an open file" in msg and "Fix that cell, run it, then this one." in msg
    ip.run_cell("FH.close()")
    assert log.read_text() == ""  # the refused def never ran in the kernel
    assert "bad" not in ip.user_ns

    # fixed: the same name is a component again, and the pipeline composes
    ip.run_cell_magic("component", "writes", "def writes(a: int) -> int:\n    return a\n")
    ip.run_cell_magic("pipeline", "good", "double(writes(1).output)\n")
    assert list(ip.user_ns["good"].steps) == ["writes", "double"]


def test_pipeline_cell_errors_are_one_line_with_the_cells_line(ip: Any) -> None:
    ip.run_cell("def helper(a: int) -> int:\n    return a\n")  # no %%component
    ip.run_cell_magic("component", "double", "def double(a: int) -> int:\n    return 2 * a\n")
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("pipeline", "p", "x = 1\ndouble(helper(x).output)\n")
    msg = str(err.value)
    assert msg.startswith("The pipeline cell raised AttributeError on line 3: 'int' object has no "
                          "attribute 'output'."), msg
    assert "It calls 'helper': plain function, not components" in msg  # what to do
    with pytest.raises(UsageError, match=r"^The pipeline cell raised ZeroDivisionError on line 2: "
                                         r"division by zero\.$"):
        ip.run_cell_magic("pipeline", "q", "double(1 / 0)\n")
