"""QA: an unnamed ``%%pipeline`` cell holding the pipeline's ``def`` exports, named by the def.

The magic makes such a cell the pipeline of its def (``flow``); export expected the unnamed cell's
pipeline to be called ``notebook`` and said "'notebook' is a NoneType, not an nbpipe pipeline".
"""

from __future__ import annotations

from pathlib import Path

from nbformat.v4 import new_notebook

from nbpipe.export import export_notebook
from nbpipe.package import read_package

from . import notebooks
from .notebooks import code

CELLS = [
    "import nbpipe",
    "%%component\ndef add_one(x: int) -> int:\n    return x + 1",
    "%%pipeline\ndef flow(x: int = 2):\n    add_one(x=add_one(x=x).output)",
]


def test_an_unnamed_pipeline_def_cell_exports_under_its_def_name(tmp_path: Path) -> None:
    nb = new_notebook(cells=[code(c) for c in CELLS])
    path = notebooks.write(nb, tmp_path / "defs.ipynb")
    pkg = read_package(export_notebook(path))
    assert pkg.name == "flow"
    assert [s["name"] for s in pkg.spec["steps"]] == ["add_one", "add_one-2"]
    assert read_package(export_notebook(path, pipeline="flow")).data == pkg.data
