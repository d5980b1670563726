"""Kale-tagged notebooks and %%component/%%pipeline notebooks export to real packages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nbformat.v4 import new_notebook

import nbpipe
from nbpipe.export import ExportError, export_notebook, plan_export

from . import notebooks
from .notebooks import code


@pytest.fixture(scope="module")
def kale(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("kale")
    marker = folder / "heavy-ran"
    path = notebooks.write(notebooks.kale(marker), folder / "kale.ipynb")
    return {"path": path, "marker": marker, "data": export_notebook(path), "folder": folder}


def test_kale_steps_become_components_with_marshalled_inputs(kale: dict[str, Any]) -> None:
    pkg = nbpipe.read_package(kale["data"])
    assert pkg.name == "kale-demo"
    assert pkg.parameters == [{"name": "FACTOR", "type": "int", "default": 3},
                              {"name": "NAME", "type": "str", "default": "kale"}]
    steps = {s["name"]: s for s in pkg.spec["steps"]}
    assert list(steps) == ["load", "transform", "report"]
    assert steps["transform"]["inputs"] == {"FACTOR": {"parameter": "FACTOR"},
                                            "data": {"step": "load", "output": "data"}}
    assert steps["report"]["inputs"] == {"NAME": {"parameter": "NAME"},
                                         "total": {"step": "transform", "output": "total"}}
    comps = pkg.spec["components"]
    assert [o["name"] for o in comps["load"]["outputs"]] == ["data"]  # unused_local is not marshalled
    assert "print(label)" in comps["report"]["source"]  # the untagged cell joined step report
    assert not kale["marker"].exists()
    program = plan_export(kale["path"])
    assert "cell 8: skipped (tagged skip)" in program.notes
    assert any("dropped IPython magic" in n and n.startswith("cell 5") for n in program.notes)


def test_kale_export_is_deterministic(kale: dict[str, Any]) -> None:
    assert export_notebook(kale["path"]) == kale["data"]


def test_kale_package_runs_on_the_runner(kale: dict[str, Any], nb_client: Any) -> None:
    run = nb_client.submit(kale["data"], {"FACTOR": 2}).wait(timeout=180)
    assert run.outputs("transform") == {"total": 90}
    assert "kale:90" in run.logs("report")


def test_kale_prev_to_an_unknown_step(tmp_path: Path) -> None:
    nb = new_notebook(cells=[code("a = 1", tags=("step:one",)), code("b = a", tags=("step:two", "prev:zero"))])
    with pytest.raises(ExportError) as info:
        plan_export(notebooks.write(nb, tmp_path / "k.ipynb"))
    assert info.value.cell == 2 and "has tag prev:zero, but no cell is tagged step:zero" in info.value.message


def test_kale_step_reading_a_name_no_upstream_step_makes(tmp_path: Path) -> None:
    nb = new_notebook(cells=[code("a = 1", tags=("step:one",)), code("b = a + c", tags=("step:two", "prev:one"))])
    with pytest.raises(ExportError) as info:
        plan_export(notebooks.write(nb, tmp_path / "k.ipynb"))
    assert info.value.cell == 2
    assert "(step 'two') reads 'c', but no upstream step" in info.value.message


def test_magic_cells_export_through_the_kernel_magics(tmp_path: Path) -> None:
    marker = tmp_path / "heavy-ran"
    nb = new_notebook(cells=[
        code("%load_ext nbpipe"),
        code("OFFSET = 10"),
        code("%%component double --retries 1\ndef double(x: int) -> int:\n    return 2 * x + OFFSET"),
        code("%%pipeline doubler\ndouble(x=3)"),
        code(notebooks.heavy(marker)),
    ])
    path = notebooks.write(nb, tmp_path / "magic.ipynb")
    program = plan_export(path)
    assert program.magics and [c.cell for c in program.chunks] == [2, 3, 4]
    first = export_notebook(path)
    assert export_notebook(path) == first
    assert not marker.exists()
    pkg = nbpipe.read_package(first)
    assert pkg.name == "doubler"
    assert pkg.spec["components"]["double"]["options"]["retries"] == 1


def test_a_refused_magic_line_is_its_own_message_without_nbpipes_frames(tmp_path: Path) -> None:
    """A %%component line the magic refuses (a bad option value) reads as the kernel shows it: the
    cell, the magic's one-line message and what to do, not IPython's and nbpipe's traceback."""
    nb = new_notebook(cells=[
        code("%load_ext nbpipe"),
        code("%%component double --retries x\ndef double(x: int) -> int:\n    return 2 * x"),
        code("%%pipeline doubler\ndouble(x=3)"),
    ])
    with pytest.raises(ExportError) as info:
        export_notebook(notebooks.write(nb, tmp_path / "bad.ipynb"))
    err = info.value
    assert err.cell == 2
    assert "argument --retries: invalid int value: 'x'" in err.message
    assert "Fix the cell's magic line" in err.message
    assert "Traceback" not in err.message and ".py\", line" not in err.message, err.message
