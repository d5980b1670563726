"""The Lab panel's re-runs of a run started in a kernel (``%nbpipe run``, ``nbpipe.run``), not from the panel.

A new user runs ``%nbpipe run fixme`` in JupyterLab, a step fails, they fix the cell and click the
panel's "Re-run from failed": it must run the fix (the notebook as saved now), reusing the step
before it — not the run's old package again. Jupyter tells a kernel its notebook
(``JPY_SESSION_NAME``); runs submitted there carry it, so the server finds the notebook. A run of a
pipeline the saved notebook does not define by that name re-runs its own package, never another
pipeline of the notebook. Real Jupyter server, real embedded runner, real step processes.
"""

from __future__ import annotations

import linecache
from pathlib import Path
from typing import Any

import nbformat
import pytest

import nbpipe
from test_rerun_routes import BUG, CELLS, FIX, finish, write


def kernel_pipeline(name: str = "fixme") -> Any:
    """The pipeline as a kernel that ran the notebook's cells holds it (defined in ``__main__``)."""
    ns: dict[str, Any] = {"__name__": "__main__"}
    for i, cell in enumerate(CELLS):
        source = cell.replace("def fixme", f"def {name}") + "\n"  # as a kernel has it: a final newline
        filename = f"<kernel cell {name} {i}>"  # IPython keeps each cell's source in linecache too
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), ns)  # noqa: S102
    return ns[name]


@pytest.fixture
def in_kernel_of(nbpipe_home: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point this process (the "kernel") at a notebook; its client uses this test's embedded runner."""

    def point(notebook: Path) -> None:
        monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))  # as Jupyter Server sets it for a kernel

    nbpipe.client.configure()  # forget an earlier test's runner (another NBPIPE_HOME)
    yield point
    nbpipe.client.configure()


async def test_panel_rerun_from_failed_of_a_kernel_run_runs_the_fixed_notebook(
    api: Any, jp_root_dir: Path, in_kernel_of: Any
) -> None:
    cells = [c.replace("def fixme", "def fix_me") for c in CELLS]  # the run calls it "fix-me"
    write(jp_root_dir / "fixme.ipynb", cells)
    in_kernel_of(jp_root_dir / "fixme.ipynb")
    run = nbpipe.run(kernel_pipeline("fix_me"), n=6)
    assert run.last_snapshot["labels"] == {"kernel_notebook": str((jp_root_dir / "fixme.ipynb").resolve())}
    first = await finish(api, run.id)
    assert [(s["name"], s["state"]) for s in first["steps"]] == [
        ("prep", "succeeded"), ("divide", "failed"), ("report", "skipped")]

    write(jp_root_dir / "fixme.ipynb", [c.replace(BUG, FIX) for c in cells])  # the fix, saved
    code, again = await api(f"runs/{run.id}/rerun", "POST", {"from_step": "divide"})
    assert code == 201, again
    snap = await finish(api, again["id"])
    steps = {s["name"]: s for s in snap["steps"]}
    assert snap["state"] == "succeeded" and snap["pipeline"] == "fix-me", steps["divide"].get("error")
    assert steps["prep"]["state"] == "cached" and steps["prep"]["attempt"] == 0
    assert steps["divide"]["state"] == "succeeded" and steps["divide"]["attempt"] == 1
    assert snap["labels"]["kernel_notebook"] == run.last_snapshot["labels"]["kernel_notebook"]


async def test_a_kernel_run_of_a_pipeline_the_notebook_does_not_name_reruns_its_own_package(
    api: Any, jp_root_dir: Path, in_kernel_of: Any
) -> None:
    write(jp_root_dir / "fixme.ipynb", [c.replace(BUG, FIX) for c in CELLS])
    in_kernel_of(jp_root_dir / "fixme.ipynb")
    run = nbpipe.run(kernel_pipeline("made_elsewhere"), n=6)  # buggy, and not in the notebook
    first = await finish(api, run.id)
    code, again = await api(f"runs/{run.id}/rerun", "POST", {"from_step": "divide"})
    assert code == 201, again
    snap = await finish(api, again["id"])
    assert snap["package"] == first["package"] and snap["pipeline"] == "made-elsewhere"
    assert {s["name"]: s["state"] for s in snap["steps"]}["divide"] == "failed"


async def test_a_kernel_outside_the_jupyter_root_reruns_its_own_package(
    api: Any, jp_root_dir: Path, tmp_path: Path, in_kernel_of: Any
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write(elsewhere / "fixme.ipynb", [c.replace(BUG, FIX) for c in CELLS])
    in_kernel_of(elsewhere / "fixme.ipynb")
    run = nbpipe.run(kernel_pipeline(), n=6)
    first = await finish(api, run.id)
    code, again = await api(f"runs/{run.id}/rerun", "POST", {"from_step": "divide"})
    assert code == 201, again
    assert (await finish(api, again["id"]))["package"] == first["package"]


PLAIN = ["%load_ext nbpipe", "n = 6", "%%component prep\nxs = list(range(n))",
         # the bug bites only in a step (the cell also runs in the kernel, where it must pass)
         "%%component divide\nimport os\nratio = sum(xs) / ('NBPIPE_RUN_ID' not in os.environ)",
         "%%component report\ntext = f'ratio {ratio}'"]


async def test_panel_rerun_of_a_plain_cell_kernel_run_runs_the_fixed_cells(
    api: Any, jp_root_dir: Path, in_kernel_of: Any
) -> None:
    """``%nbpipe run`` in a kernel that knows its notebook names the plain-cell pipeline after the
    notebook, as the panel and export do; the panel's re-run runs the fixed cells, reusing the first."""
    from IPython.core.getipython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    write(jp_root_dir / "plain.ipynb", PLAIN)
    in_kernel_of(jp_root_dir / "plain.ipynb")
    shell = start_ipython() or get_ipython()
    shell.reset(new_session=False)
    for cell in PLAIN:
        shell.run_cell(cell)
    shell.run_line_magic("nbpipe", "run")
    run = shell.magics_manager.registry["NbpipeMagics"].commands.last_run
    assert run.last_snapshot["pipeline"] == "plain"
    first = await finish(api, run.id)
    assert [s["state"] for s in first["steps"]] == ["succeeded", "failed", "skipped"]

    write(jp_root_dir / "plain.ipynb", [c.replace("('NBPIPE_RUN_ID' not in os.environ)", "1") for c in PLAIN])
    code, again = await api(f"runs/{run.id}/rerun", "POST", {"from_failed": True})
    assert code == 201, again
    snap = await finish(api, again["id"])
    steps = {s["name"]: s for s in snap["steps"]}
    assert snap["state"] == "succeeded", steps["divide"].get("error")
    assert steps["divide"]["state"] == "succeeded" and steps["divide"]["attempt"] == 1, steps["prep"]["reason"]
    assert steps["report"]["state"] == "succeeded" and snap["pipeline"] == "plain"
    assert steps["prep"]["state"] == "cached", steps["prep"].get("reason")  # the kernel's step, reused


UNNAMED = ["%load_ext nbpipe", "n = 6", "%%component\nxs = list(range(n))",
           "%%component\nimport os\nratio = sum(xs) / ('NBPIPE_RUN_ID' not in os.environ)",
           "%%component\ntext = f'ratio {ratio}'"]


async def test_unnamed_plain_cells_are_the_same_steps_in_the_kernel_and_the_panel(
    api: Any, jp_root_dir: Path, in_kernel_of: Any
) -> None:
    """Unnamed ``%%component`` cells run in Lab (each run carries its cell id) get the step names the
    saved notebook gives them (``cell_<position>``), also after a re-run of a cell, so the panel's
    "Re-run from failed" of the kernel's run finds the failed step in the fixed notebook."""
    from IPython.core.getipython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    def save(cells: list[str]) -> None:
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(c, id=f"c{i}") for i, c in enumerate(cells)]
        nbformat.write(nb, jp_root_dir / "unnamed.ipynb")

    save(UNNAMED)
    in_kernel_of(jp_root_dir / "unnamed.ipynb")
    shell = start_ipython() or get_ipython()
    shell.reset(new_session=False)
    shell.run_line_magic("reload_ext", "nbpipe")  # a fresh kernel's magics: no plain cells of other tests
    for i, cell in enumerate(UNNAMED):
        assert shell.run_cell(cell, store_history=True, cell_id=f"c{i}").success
    assert shell.run_cell(UNNAMED[3], store_history=True, cell_id="c3").success  # run that cell again
    shell.run_line_magic("nbpipe", "run")
    run = shell.magics_manager.registry["NbpipeMagics"].commands.last_run
    first = await finish(api, run.id)
    assert {s["name"]: s["state"] for s in first["steps"]} == {
        "cell_3": "succeeded", "cell_4": "failed", "cell_5": "skipped"}

    save([c.replace("('NBPIPE_RUN_ID' not in os.environ)", "1") for c in UNNAMED])
    code, again = await api(f"runs/{run.id}/rerun", "POST", {"from_failed": True})
    assert code == 201, again
    snap = await finish(api, again["id"])
    steps = {s["name"]: s for s in snap["steps"]}
    assert snap["state"] == "succeeded", steps
    assert steps["cell_3"]["state"] == "cached", steps["cell_3"].get("reason")
    assert steps["cell_4"]["state"] == "succeeded"
