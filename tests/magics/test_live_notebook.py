"""A real kernel (nbclient) runs the notebook loop a user runs all day, against the kernel's
embedded runner: run → edit a global → run (that step misses, the upstream step is reused)
→ edit and re-run a ``%%component`` cell → ``%nbpipe run`` runs the new body → a step fails
with the cell and line in its traceback → a definition mistake is one screen, no nbpipe frames.

Re-running an edited cell is a later cell with the new text, as the kernel sees the same thing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

SHOW = ("_r.wait(timeout=120, raise_on_failure=False)\n"
        "print('RESULT', json.dumps({'state': _r.state, 'steps': {k: ('cached' if v.get('cached') else v['state']) "
        "for k, v in _r.steps.items()}, 'value': _r.output('count_big') if _r.state == 'succeeded' else None}))")
LAST = "_r = nbpipe.attach(nbpipe.Client().runs(limit=1)[0]['id'])\n" + SHOW

CELLS = [
    "%load_ext nbpipe",
    "import json\nimport nbpipe\nfrom nbpipe import component, pipeline",
    "THRESH = 3",
    "def clean(xs):\n    return [x for x in xs if x is not None]",
    "%%component make\ndef make() -> list:\n    return [1, 4, 5, 6, None]",
    "%%component count_big\ndef count_big(xs: list) -> int:\n    return sum(1 for x in clean(xs) if x > THRESH)",
    "%%pipeline demo\ncount_big(xs=make())",
    "_r = nbpipe.run(demo)\n" + SHOW,
    "THRESH = 5",                                   # the user edits the global's cell and re-runs it
    "_r = nbpipe.run(demo)\n" + SHOW,
    "%%component count_big\ndef count_big(xs: list) -> int:\n    return len(clean(xs)) * 100",  # edited cell
    "%nbpipe run demo",
    LAST,
    "%%component count_big\ndef count_big(xs: list) -> int:\n    total = len(xs)\n    return total // 0",
    "%nbpipe run demo",
    LAST + "\ntry:\n    _r.raise_for_failure()\nexcept nbpipe.NbpipeError as e:\n    print('TRACEBACK', json.dumps(str(e)))",
    "@pipeline\ndef broken():\n    make_numbers = make\n    count_big(xs='ten')",
]


def printed(cell: Any, tag: str) -> list[Any]:
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    return [json.loads(line[len(tag) + 1:]) for line in text.splitlines() if line.startswith(tag + " ")]


def test_the_edit_rerun_loop_on_a_real_kernel(nb_home: Path, tmp_path: Path) -> None:
    nb = new_notebook(cells=[new_code_cell(c) for c in CELLS])
    nb.cells[-1].metadata["tags"] = ["raises-exception"]
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    nbformat.write(nb, tmp_path / "loop.ipynb")  # kept next to the test's tmp dir for a look on failure

    first, second, fixed, failed = (printed(nb.cells[i], "RESULT")[0] for i in (7, 9, 12, 15))
    assert first == {"state": "succeeded", "steps": {"make": "succeeded", "count_big": "succeeded"}, "value": 3}
    assert second == {"state": "succeeded", "steps": {"make": "cached", "count_big": "succeeded"}, "value": 1}
    assert fixed == {"state": "succeeded", "steps": {"make": "cached", "count_big": "succeeded"}, "value": 400}
    assert failed["state"] == "failed" and failed["steps"]["make"] == "cached"

    traceback = printed(nb.cells[15], "TRACEBACK")[0]
    count = nb.cells[13].execution_count  # the %%component cell: its body's line 3 (as IPython counts it)
    assert f'File "Cell In[{count}]", line 3, in count_big\n    return total // 0' in traceback, traceback
    assert "<dynamic-code>" not in traceback

    error = next(o for o in nb.cells[-1].outputs if o.output_type == "error")
    shown = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error["traceback"]))
    assert error["ename"] == "DefinitionError"
    assert "count_big(xs='ten')" in shown and "Step 'count_big' input 'xs' expects list, got 'ten'" in shown
    assert "nbpipe/" not in shown and "site-packages" not in shown and len(shown.splitlines()) <= 4, shown


def test_a_component_cell_with_its_pipeline_traces_the_component_on_a_real_kernel(nb_home: Path,
                                                                                  tmp_path: Path) -> None:
    """QA: the def and a @pipeline calling it in one %%component cell ran the plain function while
    tracing, so a time.sleep(300) in it blocked the kernel; now the trace sees the component."""
    nb = new_notebook(cells=[new_code_cell(c) for c in [
        "%load_ext nbpipe",
        "import json\nimport time\nfrom nbpipe import Component, pipeline",
        "%%component\ndef nap(s: int) -> int:\n    time.sleep(300)\n    return s\n\n"
        "@pipeline\ndef napper():\n    nap(s=1)",
        "print('RESULT', json.dumps([isinstance(nap, Component), list(napper.trace.steps)]))",
    ]])
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert printed(nb.cells[3], "RESULT") == [[True, ["nap"]]]


def test_a_refused_def_with_its_pipeline_says_why_once_on_a_real_kernel(nb_home: Path, tmp_path: Path) -> None:
    """QA: a %%component def that cannot be a component (it uses a lock; it takes *a), in a cell with a
    @pipeline, showed its message twice: the cell's DefinitionError, then the magic's UsageError."""
    nb = new_notebook(cells=[new_code_cell(c) for c in [
        "%load_ext nbpipe",
        "import json\nimport threading\nfrom nbpipe import pipeline\nLOCK = threading.Lock()",
        "%%component\ndef guarded(n: int) -> int:\n    with LOCK:\n        return n\n\n@pipeline\ndef locked():\n"
        "    guarded(n=1)",
        "%%component starred\ndef star(*a):\n    return 1\n\n@pipeline\ndef sp():\n    star(1)",
        "print('RESULT', json.dumps([n in globals() for n in ('locked', 'sp', 'starred')]\n"
        "                           + [[e.__name__ for e in get_ipython().custom_exceptions]]))",
    ]])
    for cell in nb.cells[2:4]:
        cell.metadata["tags"] = ["raises-exception"]
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    for i, message in ((2, "Component 'guarded' uses 'LOCK', a lock"), (3, "Component 'starred' takes *a.")):
        outputs = nb.cells[i].outputs
        shown = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(
            "\n".join(o["traceback"]) if o.output_type == "error" else o.get("text", "") for o in outputs))
        assert shown.count(message) == 1, shown
        assert shown.strip().startswith(f"UsageError: {message}") and len(shown.strip().splitlines()) == 1, shown
        assert "nbpipe/" not in shown and "Traceback" not in shown and "DefRefused" not in shown, shown
    # the cells stopped before their @pipeline; the kernel's interrupt handler is nbpipe's again
    assert printed(nb.cells[4], "RESULT") == [[False, False, False, ["KeyboardInterrupt"]]]
