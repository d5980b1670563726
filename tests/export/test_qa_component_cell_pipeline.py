"""QA: a ``%%component`` cell whose ``def`` is followed by the ``@pipeline`` that calls it.

The magic runs such a cell (the component is made right after its def, then the pipeline traces),
so it works in the kernel; export said "No pipeline in notebook": it described a ``%%component``
cell as a component only and never looked for the pipeline in it. The cell's pipeline is found,
and exports (and its package runs the component the cell made).
"""

from __future__ import annotations

from pathlib import Path

from nbformat.v4 import new_notebook

from nbpipe.export import export_notebook
from nbpipe.package import read_package

from . import notebooks
from .notebooks import code

CELL = """%%component scale
def scale(x: int) -> int:
    return x * 10

@nbpipe.pipeline
def scaled(x: int = 2):
    scale(x=x)"""


def test_a_pipeline_in_a_component_cell_exports(tmp_path: Path) -> None:
    nb = new_notebook(cells=[code("import nbpipe"), code(CELL)])
    pkg = read_package(export_notebook(notebooks.write(nb, tmp_path / "cell.ipynb")))
    assert pkg.name == "scaled"
    assert [s["component"] for s in pkg.spec["steps"]] == ["scale"]
    assert "return x * 10" in pkg.spec["components"]["scale"]["source"]
