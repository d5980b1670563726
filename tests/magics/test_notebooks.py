"""The example notebooks, "restart and run all" on a real kernel with nbclient, against the real
embedded runner (started by the kernel in an isolated NBPIPE_HOME, stopped afterwards).

What the front end would show is read from the widget state nbclient records from the
kernel's comm messages, so these check the live widget really reached the browser side.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def execute(name: str, cwd: Path) -> tuple[Any, float]:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    started = time.monotonic()
    NotebookClient(
        nb, timeout=400, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return nb, time.monotonic() - started


def text_of(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def cell_with(nb: Any, source_start: str) -> Any:
    return next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(source_start))


def widget_snapshots(nb: Any) -> list[dict[str, Any]]:
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    return [m["state"]["snapshot"] for m in state.values() if m["state"].get("snapshot")]


def esm_of(nb: Any) -> str:
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    return next(m["state"]["_esm"] for m in state.values() if m["state"].get("snapshot"))


def reply_time(cell: Any) -> float:
    stamp = cell.metadata["execution"]["shell.execute_reply"]
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def check_run(nb: Any, steps: list[str]) -> dict[str, Any]:
    (snap,) = widget_snapshots(nb)
    assert snap["state"] == "succeeded"
    assert {s["name"]: s["state"] for s in snap["steps"]} == {s: "succeeded" for s in steps}
    assert "export function createRunView" in esm_of(nb)  # the one inlined renderer module was sent
    # %nbpipe run returned while the run went on: the kernel was free for the next cell.
    assert reply_time(cell_with(nb, "%nbpipe run")) < snap["finished_at"]
    return snap


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quickstart_notebook(nb_home: Path, tmp_path: Path) -> None:
    nb, seconds = execute("quickstart.ipynb", tmp_path)
    snap = check_run(nb, ["load", "split", "train", "evaluate", "predict"])
    assert snap["params"] == {"test_size": 0.25, "gamma": 0.001, "index": 42}
    pulled = text_of(cell_with(nb, "%nbpipe pull"))
    for part in (
        "succeeded. Loaded:",
        "X (ndarray)",
        "model (Model)",
        "confusion (ClassificationMetrics)",
        "evaluate_output (float)",
        "predict_output (int)",
    ):
        assert part in pulled
    shown = text_of(nb.cells[-1])
    accuracy = float(re.search(r"accuracy (\d\.\d+)", shown).group(1))  # type: ignore[union-attr]
    assert accuracy > 0.95
    seen, true = re.search(r"image #42 looks like a (\d); it is a (\d)", shown).groups()  # type: ignore[union-attr]
    assert seen == true
    assert "confusion matrix rows: 10" in shown
    print(f"quickstart.ipynb end to end: {seconds:.1f} s")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_plain_cells_notebook(nb_home: Path, tmp_path: Path) -> None:
    nb, seconds = execute("plain_cells.ipynb", tmp_path)
    snap = check_run(nb, ["load_data", "split", "train", "evaluate"])
    assert snap["params"] == {"test_size": 0.25, "gamma": 0.001}  # JSON variables of unmarked cells
    by_name = {s["name"]: s for s in snap["steps"]}
    assert sorted(by_name["train"]["upstream"]) == ["split"]
    assert set(by_name["evaluate"]["upstream"]) == {"split", "train"}
    pulled = text_of(cell_with(nb, "%nbpipe pull"))
    assert "clf (SVC)" in pulled and "accuracy (float)" in pulled
    kernel_acc = float(
        re.search(r"accuracy (\d\.\d+)", text_of(cell_with(nb, "%%component evaluate"))).group(1)
    )  # type: ignore[union-attr]
    pulled_acc = float(re.search(r"pulled accuracy (\d\.\d+)", text_of(nb.cells[-1])).group(1))  # type: ignore[union-attr]
    assert pulled_acc == kernel_acc > 0.95  # the step computed what the cell computed in the kernel
    print(f"plain_cells.ipynb end to end: {seconds:.1f} s")
