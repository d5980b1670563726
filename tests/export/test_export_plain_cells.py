"""Plain ``%%component`` cells export as the pipeline ``%nbpipe run`` infers: steps in cell order,
inputs wired from the variables they share, constants as parameters — without running a cell.

The repo's own ``notebooks/plain_cells.ipynb`` is exported with the CLI in both formats (the KFP
YAML parsed strictly by kfp), run from a real kernel with ``%nbpipe run`` and ``%nbpipe export``
(nbclient), and the exported package run on the real runner must give the kernel's answer.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

from nbpipe.export import ExportError, export_notebook, plan_export
from nbpipe.export.describe import package_summary

from . import notebooks
from .conftest import run_kfp_check
from .notebooks import code

REPO_NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "plain_cells.ipynb"
NBPIPE = [str(Path(sys.executable).with_name("nbpipe"))]


def _cli(*args: str, cwd: Path) -> str:
    proc = subprocess.run(NBPIPE + list(args), cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("plain")
    return Path(shutil.copy(REPO_NOTEBOOK, folder / "plain_cells.ipynb"))


def test_cli_exports_the_repo_notebook_as_the_inferred_pipeline(repo_copy: Path, kfp_python: Path,
                                                               tmp_path: Path) -> None:
    folder = repo_copy.parent
    before = repo_copy.read_bytes()
    out = _cli("export", repo_copy.name, cwd=folder)
    assert re.match(r"Wrote plain_cells\.nbpipe \([\d,]+ bytes\)", out)
    summary = package_summary(folder / "plain_cells.nbpipe")
    assert summary["name"] == "plain_cells"
    assert [(s["name"], sorted(s["upstream"])) for s in summary["steps"]] == [
        ("load_data", []), ("split", ["load_data"]), ("train", ["split"]), ("evaluate", ["split", "train"])]
    assert {p["name"]: p["default"] for p in summary["parameters"]} == {"test_size": 0.25, "gamma": 0.001}
    comps = summary["components"]
    io = {k: ([i["name"] for i in c["inputs"]], [o["name"] for o in c["outputs"]]) for k, c in comps.items()}
    assert io == {  # the kernel's inputs (reads of earlier variables) and outputs (assigned, not _private)
        "load_data": ([], ["X", "y"]),
        "split": (["X", "y", "test_size"], ["X_train", "X_test", "y_train", "y_test"]),
        "train": (["gamma", "X_train", "y_train"], ["clf"]),
        "evaluate": (["clf", "X_test", "y_test"], ["accuracy"]),
    }
    _cli("export", repo_copy.name, "--format", "kfp", cwd=folder)
    spec = yaml.safe_load((folder / "plain_cells.yaml").read_text())
    assert sorted(spec["root"]["dag"]["tasks"]) == ["evaluate", "load-data", "split", "train"]
    assert spec["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]["gamma"] == {
        "componentInputParameter": "gamma"}
    report = run_kfp_check(kfp_python, folder / "plain_cells.yaml", tmp_path, run=False)  # strict PipelineSpec
    assert report["name"] == "plain-cells" and report["inputs"] == ["gamma", "test_size"]
    assert repo_copy.read_bytes() == before  # export reads the notebook, never writes it
    plan = _cli("export", repo_copy.name, "--plan", cwd=folder)
    assert "note cell 4: a step (plain %%component cell; its code runs only in the step)" in plan


def _marked(marker: Path, name: str, body: str, line: str = "") -> Any:
    """A plain component cell that leaves ``marker/name`` wherever its body runs."""
    return code(f"%%component {name} {line}\nfrom pathlib import Path as _P\n"
                f"_P({str(marker)!r}, {name!r}).write_text('ran')\n{body}")


def test_plain_cells_never_run_during_export_and_run_in_their_steps(tmp_path: Path, nb_client: Any) -> None:
    marker = tmp_path / "ran"
    marker.mkdir()
    nb = nbformat.v4.new_notebook(cells=[
        code("%load_ext nbpipe\nimport math\n\ndef double(v):\n    return 2 * v"),
        code("n = 10\nscale = 3"),
        _marked(marker, "make", "xs = list(range(n))\nunused = 'never read later'\n_hidden = 1"),
        _marked(marker, "total", "s = sum(double(x) for x in xs) * scale\nroot = math.sqrt(s)", "--retries 2"),
        code("%nbpipe run"),
        code("print(s, root)"),
    ])
    path = notebooks.write(nb, tmp_path / "p.ipynb")
    data = export_notebook(path)
    assert sorted(p.name for p in marker.iterdir()) == []  # no cell body ran during export
    summary = package_summary(data)
    comps = summary["components"]
    assert [o["name"] for o in comps["make"]["outputs"]] == ["xs"]  # `unused` is read by no later cell
    assert [i["name"] for i in comps["total"]["inputs"]] == ["xs", "scale"]  # double, math: captured code
    assert [o["name"] for o in comps["total"]["outputs"]] == ["s", "root"]
    assert comps["total"]["retries"] == 2
    assert {p["name"]: p["default"] for p in summary["parameters"]} == {"n": 10, "scale": 3}
    run = nb_client.submit(data, {"n": 4}).wait(timeout=180)
    assert run.state == "succeeded"
    assert run.outputs("total") == {"s": 36, "root": 6.0}
    assert sorted(p.name for p in marker.iterdir()) == ["make", "total"]  # the steps ran the bodies


def test_value_only_a_compute_cell_makes_is_an_error_naming_both_cells(tmp_path: Path) -> None:
    heavy = tmp_path / "heavy"
    nb = nbformat.v4.new_notebook(cells=[
        code("from sklearn.datasets import load_digits"),
        code(notebooks.heavy(heavy)),
        code("%%component count\nk = len(X)"),
    ])
    path = notebooks.write(nb, tmp_path / "c.ipynb")
    with pytest.raises(ExportError) as info:
        plan_export(path)
    err = info.value
    assert err.cell == 3
    assert err.headline.startswith("Cell 3 (step 'count') reads 'X', which cell 2 computes by running code")
    assert "Put %%component on cell 2" in err.hint and "tag cell 2 nbpipe:include" in err.hint
    assert not heavy.exists()


def test_included_cell_value_becomes_a_parameter_and_undefined_names_fail(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[
        code("sizes = [int(s) for s in '1 2 3'.split()]", tags=("nbpipe:include",)),
        code("%%component count\nk = len(sizes)"),
    ])
    summary = package_summary(export_notebook(notebooks.write(nb, tmp_path / "i.ipynb")))
    assert summary["parameters"][0]["name"] == "sizes" and summary["parameters"][0]["default"] == [1, 2, 3]
    nb.cells[1] = code("%%component count\nk = len(nowhere)")
    with pytest.raises(ExportError) as info:
        plan_export(notebooks.write(nb, tmp_path / "u.ipynb"))
    assert "uses 'nowhere', but no cell of the notebook defines it" in info.value.headline
    assert info.value.cell == 2


def test_reading_a_private_name_of_an_earlier_step_says_how_to_pass_it_on(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[
        code("%%component make\n_xs = list(range(3))\nn = len(_xs)"),
        code("%%component use\ntotal = sum(_xs) + n"),
    ])
    with pytest.raises(ExportError) as info:
        plan_export(notebooks.write(nb, tmp_path / "p.ipynb"))
    assert info.value.headline == ("Cell 2 (step 'use') reads '_xs', which step 'make' (cell 1) assigns but does "
                                   "not output (it starts with _)")
    assert "list it in --outputs of cell 1" in info.value.hint and info.value.cell == 2


def test_plain_cells_choose_the_pipeline_like_nbpipe_run(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[
        code("import nbpipe\n\n@nbpipe.component\ndef one() -> int:\n    return 1\n\n"
             "@nbpipe.pipeline\ndef explicit():\n    one()"),
        code("%%component make\nxs = list(range(2))"),
    ])
    path = notebooks.write(nb, tmp_path / "both.ipynb")
    assert plan_export(path).pipeline == "both"  # %nbpipe run with no name runs the plain cells too
    assert plan_export(path, "notebook").inferred
    assert plan_export(path, "explicit").pipeline == "explicit"


@pytest.mark.timeout(900)
def test_kernel_run_and_export_match_the_exported_package_on_the_runner(
        repo_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nb_client: Any) -> None:
    """Restart-and-run-all of plain_cells.ipynb (with %nbpipe export in both formats added) in a real
    kernel; the package that %nbpipe export wrote runs on a separate real runner with the same answer."""
    monkeypatch.setenv("NBPIPE_HOME", str(tmp_path / "home"))
    folder = tmp_path / "nb"
    folder.mkdir()
    path = Path(shutil.copy(repo_copy, folder / "plain_cells.ipynb"))
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(code(f"%nbpipe export --notebook {path} -o k.nbpipe"))
    nb.cells.append(code(f"%nbpipe export --notebook {path} --format kfp -o k.yaml"))
    try:
        NotebookClient(nb, timeout=400, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    finally:
        from nbpipe._embedded import stop_local_runner

        stop_local_runner()
    texts = ["".join(o.get("text", "") for o in c.outputs if o.output_type == "stream") for c in nb.cells
             if c.cell_type == "code"]
    kernel_acc = float(re.search(r"pulled accuracy (\d\.\d+)", texts[-3]).group(1))  # type: ignore[union-attr]
    assert "Wrote k.nbpipe" in texts[-2] and "Wrote k.yaml" in texts[-1]
    assert yaml.safe_load((folder / "k.yaml").read_text())["pipelineInfo"]["name"] == "plain-cells"
    data = (folder / "k.nbpipe").read_bytes()
    assert data == export_notebook(path)  # the kernel's %nbpipe export == nbpipe export: same bytes
    run = nb_client.submit(data, {}).wait(timeout=300)
    assert {s["name"]: s["state"] for s in run.snapshot()["steps"]} == dict.fromkeys(
        ["load_data", "split", "train", "evaluate"], "succeeded")
    assert round(run.outputs("evaluate")["accuracy"], 3) == kernel_acc > 0.95


@pytest.mark.slow
def test_kfp_local_runs_the_plain_cells_yaml_like_nbpipe(repo_copy: Path, kfp_python: Path, tmp_path: Path,
                                                         nb_client: Any) -> None:
    """The KFP YAML of plain cells runs under kfp.local and gives the nbpipe run's answer."""
    yaml_path = tmp_path / "plain.yaml"
    export_notebook(repo_copy, yaml_path, format="kfp")
    report = run_kfp_check(kfp_python, yaml_path, tmp_path / "kfp-root", {"gamma": 0.002})
    kfp_acc = report["tasks"]["evaluate"]["artifacts"]["accuracy"]["artifacts"][0]["value"]
    run = nb_client.submit(export_notebook(repo_copy), {"gamma": 0.002}).wait(timeout=300)
    assert kfp_acc == run.outputs("evaluate")["accuracy"] > 0.9
