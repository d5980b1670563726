"""Export errors name the cell and the fix; tags override the selection."""

from __future__ import annotations

from pathlib import Path

import pytest

import nbpipe
from nbpipe.export import ExportError, export_notebook, plan_export

from . import notebooks
from .notebooks import code


def _write(tmp_path: Path, nb: object, name: str = "nb.ipynb") -> Path:
    return notebooks.write(nb, tmp_path / name)


def _error(path: Path, **kw: object) -> ExportError:
    with pytest.raises(ExportError) as info:
        plan_export(path, **kw)  # type: ignore[arg-type]
    assert isinstance(info.value, nbpipe.NbpipeError)
    return info.value


def test_no_pipeline(tmp_path: Path) -> None:
    nb = notebooks.simple(pipeline_cell="print('no pipeline here')")
    err = _error(_write(tmp_path, nb))
    assert err.message.startswith("No pipeline in notebook nb.ipynb.")
    assert "Put %%component on the cells that are steps" in err.hint and "`@nbpipe.pipeline`" in err.hint


def test_syntax_error_names_the_cell(tmp_path: Path) -> None:
    nb = notebooks.simple([code("def broken(:\n    pass", count=12)])
    err = _error(_write(tmp_path, nb))
    assert err.cell == 4
    assert err.message.startswith("cell 4 (In [12]) has a syntax error")
    assert "tag the cell nbpipe:skip" in err.message


def test_skip_tag_ignores_a_broken_cell(tmp_path: Path) -> None:
    nb = notebooks.simple([code("def broken(:\n    pass", tags=("nbpipe:skip",))])
    program = plan_export(_write(tmp_path, nb))
    assert [c.cell for c in program.chunks] == [1, 2, 3]
    assert "cell 4: skipped (tagged nbpipe:skip)" in program.notes


def test_name_nothing_defines(tmp_path: Path) -> None:
    nb = notebooks.simple(pipeline_cell="@pipeline\ndef adder(x: int = 1):\n    add(a=x, b=mystery(2))")
    err = _error(_write(tmp_path, nb))
    assert err.cell == 3
    assert err.message.startswith("Cell 3 uses 'mystery', but no cell of the notebook defines it")
    assert "Define 'mystery' in a cell above" in err.message


def test_name_defined_only_below(tmp_path: Path) -> None:
    nb = notebooks.simple([code("LIMIT = 3")],
                          pipeline_cell="@pipeline\ndef adder(x: int = LIMIT):\n    add(a=x, b=2)")
    err = _error(_write(tmp_path, nb))
    assert "first defined in cell 4, below it" in err.message and "Move cell 4 above cell 3" in err.message


def test_value_only_compute_makes(tmp_path: Path) -> None:
    cells = [code("import json\nCONFIG = json.loads('{\"b\": 2}')")]
    nb = notebooks.simple(pipeline_cell="@pipeline\ndef adder(x: int = 1):\n    add(a=x, b=CONFIG['b'])")
    nb.cells[2:2] = cells
    path = _write(tmp_path, nb)
    err = _error(path)
    assert err.cell == 4
    assert "which cell 3 computes by running code (`CONFIG = json.loads(" in err.message
    assert "tag cell 3 with nbpipe:include" in err.message
    # The include tag runs that cell during export, so the same notebook now exports.
    nb.cells[2].metadata["tags"] = ["nbpipe:include"]
    data = export_notebook(_write(tmp_path, nb, "included.ipynb"))
    step = nbpipe.read_package(data).spec["steps"][0]
    assert step["inputs"]["b"] == {"value": 2}


def test_import_that_is_not_installed(tmp_path: Path) -> None:
    nb = notebooks.simple(pipeline_cell="@pipeline\ndef adder(x: int = 1):\n    add(a=x, b=nbpipe_nope.TWO)")
    nb.cells.insert(1, code("import nbpipe_nope_missing_module as nbpipe_nope", count=5))
    with pytest.raises(ExportError) as info:
        export_notebook(_write(tmp_path, nb))
    err = info.value
    assert err.cell == 2
    assert err.message.startswith("Cell 2 imports 'nbpipe_nope_missing_module', which is not installed")
    assert "pip install nbpipe_nope_missing_module" in err.message


def test_failing_kept_cell_reports_its_cell_and_traceback(tmp_path: Path) -> None:
    nb = notebooks.simple(pipeline_cell="@pipeline\ndef adder(x: int = 1):\n    add(a=x, b='two')")
    with pytest.raises(ExportError) as info:
        export_notebook(_write(tmp_path, nb))
    assert info.value.cell == 3
    assert info.value.message.startswith("Cell 3: Step 'add' input 'b' expects int, got 'two'")


def test_several_pipelines_need_a_name(tmp_path: Path) -> None:
    nb = notebooks.simple([code("@pipeline(name='twice')\ndef adder_twice(x: int = 1):\n"
                                "    add(a=add(a=x, b=1).output, b=2)")])
    path = _write(tmp_path, nb)
    err = _error(path)
    assert err.message == ("Notebook nb.ipynb defines 2 pipelines: 'adder' (cell 3), 'adder_twice' (cell 4). "
                           "Choose one with --pipeline NAME (or pipeline='adder').")
    assert plan_export(path, pipeline="twice").pipeline == "adder_twice"
    program = plan_export(path, pipeline="adder")
    assert [c.cell for c in program.chunks] == [1, 2, 3]  # the other pipeline's cell stays out
    assert "no pipeline named 'nope'" in _error(path, pipeline="nope").message


def test_statement_level_selection_in_a_mixed_cell(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    mixed = code(f"def helper(v):\n    return v + 1\nopen({str(marker)!r}, 'w').write('x')\nOFFSET = 4")
    nb = notebooks.simple(pipeline_cell="@pipeline\ndef adder(x: int = OFFSET):\n    add(a=x, b=2)")
    nb.cells.insert(1, mixed)
    nb.cells[2].source = "@component\ndef add(a: int, b: int) -> int:\n    return helper(a) + b"
    path = _write(tmp_path, nb)
    program = plan_export(path)
    assert program.chunks[1].keep == (0, 2)
    data = export_notebook(path)
    assert not marker.exists()
    assert nbpipe.read_package(data).parameters == [{"name": "x", "type": "int", "default": 4}]
