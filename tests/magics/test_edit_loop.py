"""The edit → run loop when a cell changes its kind or a step its name, in a real IPython shell run the
way Lab runs cells (each execution carries the frontend's cell id).

- A plain ``%%component`` cell rewritten to hold a ``def`` is no plain-cell step any more (its old step
  and variable leave the notebook's pipeline), and back again it is one step, in its place.
- ``%nbpipe rerun --from OLD`` after a step was renamed (or its cell deleted) names the current steps
  and the closest one, before anything is uploaded.
"""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.error import UsageError


def cell(ip: Any, source: str, cell_id: str) -> Any:
    """Run ``source`` as Lab runs the cell ``cell_id``; the result says if it raised."""
    return ip.run_cell(source, store_history=True, cell_id=cell_id)


def test_a_plain_cell_turned_into_a_def_leaves_the_pipeline_and_comes_back(ip: Any) -> None:
    cell(ip, "n = 3", "params")
    assert cell(ip, "%%component load\nxs = list(range(n))", "load").success
    assert cell(ip, "%%component scale\nys = [x * 2 for x in xs]", "scale").success
    assert cell(ip, "%%component summarize\ntotal = sum(ys)", "summarize").success
    assert list(ip.magics.notebook_pipeline().steps) == ["load", "scale", "summarize"]

    # The user rewrites 'scale' as a function (to call it from a @pipeline later).
    assert cell(ip, "%%component scale\ndef scale(xs: list) -> list:\n    return [x * 3 for x in xs]",
                "scale").success
    assert [c.key for c in ip.magics.cells] == ["load", "summarize"]
    assert ip.user_ns["scale"].func(xs=[1]) == [3]  # the name is the def's component now
    pipe = ip.magics.notebook_pipeline()
    assert list(pipe.steps) == ["load", "summarize"]
    assert "ys" in [p["name"] for p in pipe.parameters]  # summarize reads the kernel's ys, as a value

    # ... and back to a plain cell: one step again, in its old place.
    assert cell(ip, "%%component scale\nys = [x * 4 for x in xs]", "scale").success
    pipe = ip.magics.notebook_pipeline()
    assert list(pipe.steps) == ["load", "scale", "summarize"]
    assert "x * 4" in pipe.steps["scale"].component.source


def test_an_unnamed_plain_cell_turned_into_a_def_drops_its_cell_step(ip: Any) -> None:
    cell(ip, "n = 2", "params")
    assert cell(ip, "%%component\nxs = list(range(n))", "make").success
    (old,) = [c.component.name for c in ip.magics.cells]
    assert cell(ip, "%%component\ndef make(n: int) -> list:\n    return list(range(n))", "make").success
    assert ip.magics.cells == [] and old not in ip.user_ns  # no stale cell_<N> component left behind
    with pytest.raises(UsageError, match="Nothing to run"):
        ip.run_line_magic("nbpipe", "run")


RENAME = """
@nbpipe.component
def load(n: int) -> list:
    return list(range(n))

@nbpipe.component
def {name}(xs: list) -> float:
    return sum(xs) / {den}

@nbpipe.pipeline
def renamed(n: int = 3):
    {name}(xs=load(n=n).output)
"""


@pytest.mark.timeout(600)
def test_rerun_from_a_renamed_or_misspelled_step_names_the_current_steps(ip: Any, nb_runner: Any) -> None:
    ip.run_line_magic("nbpipe", f"config runner={nb_runner.url}")
    ip.run_cell("import nbpipe")
    assert ip.run_cell(RENAME.format(name="train", den="(len(xs) - 3)")).success
    assert ip.run_cell("run = nbpipe.run(renamed)").success
    run = ip.user_ns["run"]
    assert run.wait(timeout=300, raise_on_failure=False).state == "failed"
    before = {r["id"] for r in ip.magics.commands.shell.user_ns["run"].client.runs(limit=50)}

    # The user renames the failed step's component and fixes it, then re-runs from the old name.
    assert ip.run_cell(RENAME.format(name="train_model", den="max(1, len(xs) - 3)")).success
    with pytest.raises(UsageError) as old:
        ip.run_line_magic("nbpipe", "rerun --from train")
    assert str(old.value) == (
        f"Step 'train' of run {run.id} is not in this kernel's pipeline 'renamed' any more (renamed, or its cell "
        "deleted?). Did you mean 'train_model'? Its steps now: load, train_model. Re-run from one of them "
        f"(%nbpipe rerun {run.id} --from train_model), or add --same-code to re-run the run's own package."
    )
    with pytest.raises(UsageError, match=rf"^Run {run.id} failed at step 'train', which is not in this kernel's "
                                         r"pipeline 'renamed' any more .*Did you mean 'train_model'\?"):
        ip.run_line_magic("nbpipe", "rerun --failed")
    with pytest.raises(UsageError, match=r"^This kernel's pipeline 'renamed' has no step 'trian_model'\. Did you "
                                         r"mean 'train_model'\? Its steps: load, train_model\."):
        ip.run_line_magic("nbpipe", "rerun --from trian_model")
    with pytest.raises(nbpipe_error(), match=r"Did you mean .train_model.\? .*run.rerun\(from_step=.train_model.\)"):
        run.rerun(from_step="train")
    assert {r["id"] for r in run.client.runs(limit=50)} == before  # refused before anything was submitted

    ip.run_line_magic("nbpipe", "rerun --from train_model")
    again = ip.magics.commands.last_run.wait(timeout=300)
    assert again.steps["load"]["state"] == "cached" and again.output("train_model") == 3.0


def nbpipe_error() -> type:
    from nbpipe.errors import NbpipeError

    return NbpipeError


@pytest.mark.timeout(600)
def test_logs_and_cancel_say_what_is_there(ip: Any, nb_runner: Any, capsys: Any) -> None:
    ip.run_line_magic("nbpipe", f"config runner={nb_runner.url}")
    ip.run_cell("import nbpipe")
    assert ip.run_cell(RENAME.format(name="train", den="len(xs)")).success
    assert ip.run_cell("run = nbpipe.run(renamed)").success
    run = ip.user_ns["run"].wait(timeout=300)
    capsys.readouterr()
    with pytest.raises(UsageError, match=rf"^Run {run.id} has no step 'trian'\. Did you mean 'train'\? Its steps: "
                                         r"load, train\.$"):
        ip.run_line_magic("nbpipe", f"logs {run.id} trian")
    ip.run_line_magic("nbpipe", "cancel")
    assert capsys.readouterr().out.strip() == f"Run {run.id} already succeeded; nothing to cancel."
    assert run.snapshot()["state"] == "succeeded"
