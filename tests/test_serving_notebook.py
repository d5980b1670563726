"""``notebooks/train_and_serve.ipynb`` on a real kernel (nbclient) against the real embedded runner:
distributed training (2 torch.distributed workers), evaluation, a gated deploy step, HTTP queries
equal to the kernel's predictions, a new version and a rollback. Then a fresh kernel (a restart)
still reaches the endpoint, and stopping the runner stops its model server."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "train_and_serve.ipynb"


def _run(nb, cwd: Path):
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_train_and_serve_notebook(nb_home: Path, tmp_path: Path) -> None:
    nb = _run(nbformat.read(NOTEBOOK, as_version=4), tmp_path)
    out = "\n".join(_text(c) for c in nb.cells if c.cell_type == "code")
    assert "HTTP predictions equal the kernel's: True" in out
    acc = float(out.split("accuracy ")[1].split(";")[0])
    assert acc >= 0.9
    assert "rolled back to 1" in out and "['1', '2'] -> 2" in out
    # the live widget (what the browser got over the comm) shows the distributed step's two workers
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    (snap,) = [m["state"]["snapshot"] for m in state.values() if m["state"].get("snapshot")]
    train = next(s for s in snap["steps"] if s["name"] == "train")
    assert [(w["rank"], w["state"]) for w in train["workers"]] == [(0, "succeeded"), (1, "succeeded")]

    from nbpipe.client import Client
    from nbpipe.serving import endpoint

    client = Client()
    runs = client.runs()
    assert len(runs) == 1
    run = client.run(runs[0]["id"])
    assert run.state == "succeeded"
    log = run.logs("train")
    assert "[rank 0] worker 0 of 2: final loss" in log and "[rank 1] worker 1 of 2: final loss" in log
    ep = endpoint("digits", runner=client)
    assert ep.info["versions"][0]["source"]["run_id"] == run.id

    # a new kernel (what a restart gives): the endpoint is still there, served by the runner
    fresh = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from nbpipe import serving\n"
        "ep = serving.endpoint('digits')\n"
        "print(ep.version, ep.predict([[0.0] * 64, [1.0] * 64]).tolist())")])
    _run(fresh, tmp_path)
    assert _text(fresh.cells[0]).startswith("1 [")

    pid = ep.info["pid"]
    from nbpipe._embedded import stop_local_runner

    assert stop_local_runner()
    deadline = time.monotonic() + 30
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the model server outlived its runner"
        time.sleep(0.05)
