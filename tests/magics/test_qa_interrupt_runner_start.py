"""QA: Ctrl-C while the first ``nbpipe.run`` waits for the embedded runner to start.

The first use of the embedded runner waits seconds for it (``%load_ext nbpipe`` starts it in the
background; the first run waits on that start). Interrupting there showed a screen of client.py and
_embedded.py frames and no word on what happened. It now says, in one screen, that it stopped
waiting for the runner, that the runner goes on starting, that nothing was submitted, and what to do.
The test holds the runner's start lock (a state), so the run is certainly waiting when interrupted.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

INTERRUPT_WHEN_STARTING = """
import os, signal, sys, threading
def _interrupt_when_starting(main=threading.main_thread().ident):
    while True:
        frame = sys._current_frames().get(main)
        names = set()
        while frame is not None:
            names.add(frame.f_code.co_name)
            frame = frame.f_back
        if "ensure_local_runner" in names:
            os.kill(os.getpid(), signal.SIGINT)
            return
        threading.Event().wait(0.01)
threading.Thread(target=_interrupt_when_starting, daemon=True).start()
"""

CELLS = [
    "%load_ext nbpipe\nimport nbpipe",
    "@nbpipe.component\ndef inc(x: int) -> int:\n    return x + 1\n@nbpipe.pipeline\ndef first_use(x: int = 1):\n    inc(x=x)",
    INTERRUPT_WHEN_STARTING,
    "run = nbpipe.run(first_use)",
    "print(nbpipe.run(first_use).wait(timeout=120).state)",
]


def stream(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.mark.timeout(600)
def test_interrupting_the_first_run_while_the_runner_starts_is_one_screen(nb_home: Path, tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nb.cells[3].metadata["tags"] = ["raises-exception"]
    nb_home.mkdir(parents=True, exist_ok=True)
    lock = os.open(nb_home / "runner.lock", os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # the runner "is starting": whoever waits for it waits here
    client = NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    try:
        with client.setup_kernel():
            for i in range(4):
                client.execute_cell(nb.cells[i], i)
            fcntl.flock(lock, fcntl.LOCK_UN)
            client.execute_cell(nb.cells[4], 4)
    finally:
        os.close(lock)
    (err,) = [o for o in nb.cells[3].outputs if o.output_type == "error"]
    shown = [ln for ln in re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(err.traceback)).splitlines() if ln.strip()]
    assert err.ename == "KeyboardInterrupt" and len(shown) == 3, shown
    assert re.fullmatch(r"Cell In\[\d+\], line 1", shown[0]) and shown[1].strip() == CELLS[3], shown
    assert shown[2] == ("KeyboardInterrupt: stopped waiting for the embedded nbpipe runner to start (its first "
                        "start takes a few seconds); it goes on starting in the background, and nothing was "
                        "submitted. Run the cell again."), shown
    assert stream(nb.cells[4]).strip() == "succeeded"  # run again, it runs
