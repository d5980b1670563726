"""QA: the run graph's "Previous runs" list says the state those runs ended in.

Found in JupyterLab: *Rerun from here* on a step that was still running switched the widget to the
new run and listed the old one as "r… · running" ever after, though it then succeeded. When the
shown run finishes, the list now has each earlier run's state as it is then. The real embedded
runner (isolated NBPIPE_HOME from the root conftest) and the real widget; the gate is a flag file.
"""

from __future__ import annotations

from pathlib import Path

import nbpipe
from nbpipe.widgets import RunView

from .test_widget_runner_health import gated, wait_for


def test_previous_runs_show_the_state_they_ended_in(tmp_path: Path) -> None:
    first_flag, second_flag = tmp_path / "first", tmp_path / "second"
    first = nbpipe.run(gated, flag=str(first_flag))
    view = RunView(first)
    try:
        wait_for("the first run's step running",
                 lambda: any(s["state"] == "running" for s in view.snapshot.get("steps", [])))
        second = nbpipe.run(gated, flag=str(second_flag))
        view.switch(second)  # what a Rerun button does
        assert view.previous == [{"id": first.id, "name": first.snapshot()["name"], "state": "running"}]
        first_flag.touch()
        first.wait(timeout=120)
        second_flag.touch()
        assert view.wait(timeout=120)
        assert view.snapshot["state"] == "succeeded"
        assert [(p["id"], p["state"]) for p in view.previous] == [(first.id, "succeeded")]
    finally:
        view.close()
