"""QA: ``nbpipe run NOTEBOOK.ipynb`` runs the notebook's pipeline (exported as ``nbpipe export`` does).

It said "The package x.ipynb is not an nbpipe package (not a zip file)", so a notebook had to be
exported to a file first; ``nbpipe rerun RUN --with NOTEBOOK.ipynb`` (a fixed notebook) did the same.
Its progress said "1 steps".
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

CELLS = [
    "import nbpipe",
    "%%component double\ndef double(x: int) -> int:\n    return x * 2",
    "@nbpipe.pipeline\ndef doubling(x: int = 1):\n    double(x=x)",
    "@nbpipe.pipeline\ndef other(x: int = 1):\n    double(x=x)",
]


def cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nbpipe.cli", "--runner", url, *args], capture_output=True,
                          text=True, timeout=240)


@pytest.mark.timeout(600)
def test_run_a_notebook_and_choose_its_pipeline(nb_runner, tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    path = tmp_path / "two.ipynb"
    nbformat.write(nb, path)
    done = cli("run", f"{path}:doubling", "-p", "x=21", url=nb_runner.url)
    assert done.returncode == 0 and "succeeded in" in done.stdout, done.stdout + done.stderr
    run_id = done.stdout.split()[1]
    assert done.stdout.splitlines()[0] == f"Run {run_id} (doubling): 1 step"  # was "1 steps"
    shown = cli("show", run_id, url=nb_runner.url).stdout
    assert "double.output: json" in shown and "42" in shown, shown

    refused = cli("run", str(path), url=nb_runner.url)  # two pipelines: the export's choice, named
    assert refused.returncode != 0 and "defines 2 pipelines" in refused.stderr, refused.stderr
    assert "not an nbpipe package" not in refused.stderr
