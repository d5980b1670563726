"""Interrupting a sweep (Ctrl-C, the kernel's stop button) says which trials go on and how to stop them.

Before, the KeyboardInterrupt came out of the event stream with no word about the trial runs left
running in the runner or the trials never submitted.
"""

from __future__ import annotations

import _thread
import threading

import pytest

import nbpipe
from nbpipe import component, pipeline


@component
def gated(c: float, gate: str) -> float:
    import os
    import time

    while not os.path.exists(gate):  # held open until the test has interrupted the sweep
        time.sleep(0.05)
    return c


@pipeline
def qa2_gated(c: float = 1.0, gate: str = ""):
    gated(c=c, gate=gate)


def test_interrupted_sweep_names_the_running_trials(nb_client, tmp_path, capsys) -> None:
    gate = tmp_path / "open"
    started = threading.Event()

    def interrupt_once_running() -> None:
        for e in nb_client.events(after=0):
            if type(e).__name__ == "StepStarted" and getattr(e, "step", "") == "gated":
                break
        started.set()
        _thread.interrupt_main()

    threading.Thread(target=interrupt_once_running, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            nbpipe.sweep(qa2_gated, space={"c": [1.0, 2.0, 3.0]}, objective="gated", parallelism=1,
                         params={"gate": str(gate)}, experiment="qa2 interrupted", runner=nb_client)
        assert started.is_set()
        err = capsys.readouterr().err
        running = nb_client.runs(experiment="qa2 interrupted")
        running = running["runs"] if isinstance(running, dict) else running
        assert len(running) == 1
        assert f"1 trial run(s) go on in the runner ({running[0]['id']}), 2 trial(s) were not submitted" in err
        assert "nbpipe cancel RUN" in err
    finally:
        gate.write_text("")
