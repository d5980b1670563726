"""A step of an exported notebook (``nbpipe export``, the Lab panel's Run/Export) fails with a traceback
that names the notebook cell as a kernel run does (``Cell In[4]``, 4 being the cell's place in the
notebook), for ``%%component`` def cells, ``@component`` cells and plain ``%%component`` cells alike.
QA saw ``File "Cell In[0]"`` (every magic cell) and ``<nbpipe-cell-5>`` (decorator cells).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cloudpickle
import nbformat

import nbpipe
from nbpipe.export import export_notebook

from . import notebooks
from .notebooks import code


def _notebook(tmp_path: Path) -> Path:
    nb = nbformat.v4.new_notebook(cells=[
        code("%load_ext nbpipe"),
        nbformat.v4.new_markdown_cell("# Cells count by their place, markdown too"),
        code("from nbpipe import component, pipeline\nn = 2"),
        code("%%component\ndef boom(x: int) -> int:\n    return 10 // x"),
        code("@component\ndef deco(x: int) -> int:\n    return 10 // x"),
        code("%%component half\nh = 10 // n"),
        code("@pipeline\ndef p(a: int = 1, b: int = 1):\n    boom(x=a)\n    deco(x=b)"),
    ])
    return notebooks.write(nb, tmp_path / "t.ipynb")


def _labels(data: bytes) -> dict[str, set[str]]:
    """Component name -> the file labels its payload's traceback record uses."""
    pkg = nbpipe.read_package(data)
    found = {}
    for name, comp in pkg.spec["components"].items():
        func = cloudpickle.loads(pkg.payloads[comp["payload"]["digest"]])
        record = getattr(getattr(func, "func", func), "__nbpipe_sources__", {})
        found[name] = {label for label in record.get("code", {}).values() if label.startswith(("Cell", "<"))}
    return found


def test_exported_steps_name_their_notebook_cell(tmp_path: Path, nb_client: Any) -> None:
    path = _notebook(tmp_path)
    data = export_notebook(path, pipeline="p")
    assert _labels(data) == {"boom": {"Cell In[4]"}, "deco": {"Cell In[5]"}}
    assert _labels(export_notebook(path)) == {"half": {"Cell In[6]"}}  # the plain cell's inferred pipeline
    run = nb_client.submit(data, {"a": 0}).wait(timeout=180, raise_on_failure=False)
    assert run.state == "failed"
    log = run.logs("boom")
    assert 'File "Cell In[4]", line 2, in boom' in log and "return 10 // x" in log, log[-2000:]
    assert "Cell In[0]" not in log


def test_a_component_in_the_first_cell_is_cell_1(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[
        code("%%component\ndef boom(x: int) -> int:\n    return 10 // x"),
        code("from nbpipe import pipeline\n\n@pipeline\ndef p():\n    boom(x=1)"),
    ])
    assert _labels(export_notebook(notebooks.write(nb, tmp_path / "first.ipynb"))) == {"boom": {"Cell In[1]"}}
