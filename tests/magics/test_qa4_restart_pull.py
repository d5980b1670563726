"""After a kernel restart, ``%nbpipe pull RUN STEP`` of a failed step said "call use.func(data=data, k=k) to
reproduce it", but the new kernel has no ``use`` (a NameError). It now says so and gives the
``%nbpipe debug`` call, which loads the function that ran. Real kernels (nbclient), the embedded runner.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from .test_restart_loop import kernel

FAILING = """import nbpipe
from nbpipe import Dataset, Input, Output

@nbpipe.component
def make(n: int, data: Output[Dataset]) -> None:
    with open(data.path, "w") as f:
        f.write(",".join(str(i) for i in range(n)))

@nbpipe.component
def use(data: Input[Dataset], k: int) -> float:
    return len(open(data.path).read().split(",")) / (k - 3)

@nbpipe.pipeline
def art(n: int = 4, k: int = 3):
    use(data=make(n=n).outputs["data"], k=k)

r = nbpipe.run(art)
print(r.id, r.wait(timeout=300, raise_on_failure=False).state)"""


def said(cell: Any) -> str:
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    text += "".join("\n".join(o.traceback) for o in cell.outputs if o.output_type == "error")
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


@pytest.mark.timeout(600)
def test_pull_after_a_restart_says_how_to_reproduce_without_the_component(nb_home: Path, tmp_path: Path) -> None:
    first = kernel(["%load_ext nbpipe", FAILING], tmp_path)
    run_id, state = said(first[1]).split()
    assert state == "failed"
    cells = kernel(["%load_ext nbpipe", f"%nbpipe pull {run_id} use", "print(k, open(data.path).read())",
                    f"%nbpipe debug {run_id} use --no-pdb"], tmp_path)
    assert said(cells[1]).splitlines()[-1] == (
        f"Step 'use' failed: ZeroDivisionError: division by zero. Its inputs are loaded; component 'use' is not "
        f"defined in this kernel, so reproduce it with %nbpipe debug {run_id} use (it loads the function that "
        "ran), or run the cell that defines it and call use.func(data=data, k=k).")
    assert said(cells[2]).strip() == "3 0,1,2,3"
    assert "return len(open(data.path).read().split(\",\")) / (k - 3)" in said(cells[3])  # what it says works
    assert "ZeroDivisionError: division by zero" in said(cells[3])
