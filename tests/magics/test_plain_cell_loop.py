"""The edit → run loop on plain ``%%component`` cells, in a real IPython shell run the way Lab runs
cells (each execution carries the frontend's cell id). No runner is needed: ``%nbpipe run`` refuses
before it submits, and the inferred pipeline is checked as the kernel would submit it.

- An unnamed cell edited and run again replaces its step (same cell id, same step name) instead of
  adding a second step that still runs the old text.
- A cell that fails is not silently left out: its stale component leaves the namespace, the variables
  the failed run left behind do not become pipeline parameters, and ``%nbpipe run`` names the cell;
  running the fixed cell brings it back with the new code.
- A cell whose ``%%component`` line is removed (and run) is no step any more.
"""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.error import UsageError


def cell(ip: Any, source: str, cell_id: str) -> Any:
    """Run ``source`` as Lab runs the cell ``cell_id``; the result says if it raised."""
    return ip.run_cell(source, store_history=True, cell_id=cell_id)


def steps(ip: Any) -> dict[str, str]:
    """The inferred pipeline's steps → each one's component source."""
    return {name: step.component.source for name, step in ip.magics.notebook_pipeline().steps.items()}


def test_an_edited_unnamed_cell_replaces_its_own_step(ip: Any) -> None:
    cell(ip, "n = 3", "params")
    assert cell(ip, "%%component\nxs = list(range(n))", "make").success
    first = [c.component.name for c in ip.magics.cells]
    assert cell(ip, "%%component\nxs = list(range(n + 1))", "make").success
    assert cell(ip, "%%component\ntotal = sum(xs)", "sum").success
    names = [c.component.name for c in ip.magics.cells]
    assert len(names) == 2 and names[0] == first[0], names  # one step per cell; the name is kept
    assert "n + 1" in steps(ip)[names[0]] and ip.user_ns["total"] == 6


def test_a_failing_cell_is_named_not_dropped_and_its_fix_runs(ip: Any) -> None:
    cell(ip, "n = 4\nfactor = 2", "params")
    cell(ip, "%%component load\nxs = list(range(n))", "load")
    assert cell(ip, "%%component scale\nys = [x * factor for x in xs]", "scale").success
    cell(ip, "%%component summarize\ntotal = sum(ys)", "summarize")
    assert list(steps(ip)) == ["load", "scale", "summarize"]

    # The user edits 'scale' into a broken version: it raises in the kernel after assigning ys.
    broken = cell(ip, "%%component scale\nys = [x * factor for x in xs]\nbad = 1 / 0", "scale")
    assert not broken.success
    assert "scale" not in ip.user_ns  # the old version is not the notebook's any more
    with pytest.raises(UsageError, match=r"The %%component cell of 'scale' failed when it last ran.*fix the "
                                         r"cell and run it again"):
        ip.run_line_magic("nbpipe", "run")
    with pytest.raises(UsageError, match="'scale' failed"):
        ip.magics.notebook_pipeline()

    # Fixed and run again: back in its place, with the new code.
    assert cell(ip, "%%component scale\nys = [x * factor * 10 for x in xs]", "scale").success
    got = steps(ip)
    assert list(got) == ["load", "scale", "summarize"] and "factor * 10" in got["scale"]
    assert [p["name"] for p in ip.magics.notebook_pipeline().parameters] == ["n", "factor"]


def test_a_cell_that_never_worked_leaves_no_parameter_behind(ip: Any) -> None:
    cell(ip, "n = 5", "params")
    cell(ip, "%%component load\nxs = list(range(n))", "load")
    assert not cell(ip, "%%component scale\nys = [x * 2 for x in xs]\nbad = 1 / 0", "scale").success
    assert ip.user_ns["ys"] == [0, 2, 4, 6, 8]  # what the failed run left in the kernel
    assert cell(ip, "%%component summarize\ntotal = sum(ys)", "summarize").success
    with pytest.raises(UsageError, match="'scale' failed when it last ran"):
        ip.run_line_magic("nbpipe", "run")

    # The user gives up on the step: the cell stays, without %%component.
    assert cell(ip, "ys = [x * 2 for x in xs]", "scale").success
    pipe = ip.magics.notebook_pipeline()
    assert list(pipe.steps) == ["load", "summarize"]
    assert [p["name"] for p in pipe.parameters] == ["n", "ys"]


def test_a_cell_that_loses_its_magic_is_no_step(ip: Any) -> None:
    cell(ip, "n = 2", "params")
    cell(ip, "%%component\nxs = list(range(n))", "make")
    cell(ip, "%%component\ntotal = sum(xs)", "sum")
    assert len(ip.magics.cells) == 2
    cell(ip, "total = sum(xs)", "sum")
    assert [c.key for c in ip.magics.cells] == ["make"]


def test_a_cell_fixed_after_the_cells_below_it_ran_keeps_its_place(ip: Any) -> None:
    cell(ip, "n = 3", "params")
    cell(ip, "%%component load\nxs = list(range(n))", "load")
    assert not cell(ip, "%%component scale\nys = [x * 2 for x in xs]\n1 / 0", "scale").success
    cell(ip, "%%component summarize\ntotal = sum(ys)", "summarize")
    assert cell(ip, "%%component scale\nys = [x * 2 for x in xs]", "scale").success
    pipe = ip.magics.notebook_pipeline()
    assert list(pipe.steps) == ["load", "scale", "summarize"]
    assert pipe.steps["summarize"].inputs == {"ys": {"step": "scale", "output": "ys"}}
    assert [p["name"] for p in pipe.parameters] == ["n"]


@pytest.mark.timeout(600)
def test_a_graph_reconnected_after_a_restart_reruns_the_cells_as_the_new_kernel_ran_them(ip: Any) -> None:
    """Plain cells, a step fails, Kernel ▸ Restart, the fixed cells run in the new kernel, Re-connect
    live, Rerun from failed: the re-run runs the fix (not the run's old package), reusing the step
    before it. A cell that fails in the kernel makes the button say so, in the graph."""
    from nbpipe.widgets.run_view import attach

    bug = "%%component scale\nimport os\nys = [x / ('NBPIPE_RUN_ID' not in os.environ) for x in xs]"
    cells = ["n = 4", "%%component load\nxs = list(range(n))", bug]
    for i, source in enumerate(cells):
        assert cell(ip, source, f"c{i}").success
    ip.run_line_magic("nbpipe", "run")
    run = ip.magics.commands.last_run
    assert run.wait(timeout=300, raise_on_failure=False).state == "failed"

    # Kernel ▸ Restart: nothing of the old kernel is left; the user runs the cells again, fixed.
    ip.reset(new_session=False)
    ip.magics.cells, ip.magics.failed, ip.magics._order = [], {}, []
    ip.magics.commands.refs.clear()
    ip.magics.commands.last_run = None
    for i, source in enumerate([*cells[:2], "%%component scale\nys = [x * 10 for x in xs]"]):
        assert cell(ip, source, f"c{i}").success

    view = attach(run.id)  # what "Re-connect live" makes
    view._on_msg(view, {"type": "action", "action": "rerun_failed", "payload": {}}, [])
    assert "with this kernel's pipeline 'notebook'" in view.notice["text"], view.notice
    new = view.run.wait(timeout=300, raise_on_failure=False)
    assert new.state == "succeeded", new.steps
    assert new.steps["load"]["state"] == "cached" and new.output("scale") == [0, 10, 20, 30]

    assert not cell(ip, "%%component scale\nys = [x * 10 for x in xs]\n1 / 0", "c2").success
    view._on_msg(view, {"type": "action", "action": "rerun", "payload": {}}, [])
    assert view.notice["kind"] == "error" and "'scale' failed when it last ran" in view.notice["text"]


def test_a_default_name_never_takes_another_cells_step(ip: Any) -> None:
    cell(ip, "n = 2", "params")
    count = ip.execution_count
    cell(ip, "%%component\nxs = list(range(n))", "make")
    first = ip.magics.cells[0].component.name
    ip.execution_count = count  # another cell whose default name would be the first one's
    assert cell(ip, "%%component\nzs = [x + 1 for x in xs]", "other").success
    names = [c.component.name for c in ip.magics.cells]
    assert names == [first, f"{first}_2"], names
    assert list(ip.magics.notebook_pipeline().steps) == names
