"""Shared fixtures: an isolated NBPIPE_HOME for the whole session, and a real runner process.

The runner fixture starts ``python -m nbpipe.runner`` on 127.0.0.1 port 0 with its own data
dir, exactly as users run it, and stops it afterwards.
"""

from __future__ import annotations

import gc
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
from runner_process import RunnerProcess, stop_embedded_runner

_SESSION_HOME = tempfile.mkdtemp(prefix="nbpipe-test-home-")
os.environ["NBPIPE_HOME"] = _SESSION_HOME
os.environ.pop("NBPIPE_RUNNER_URL", None)
os.environ.pop("NBPIPE_TOKEN", None)
# Every runner this session starts (fixtures, kernels' embedded runners) stops when the session's
# process is gone, also when it was killed (e.g. by `timeout`) before its own cleanup ran.
os.environ["NBPIPE_EXIT_WITH_PID"] = str(os.getpid())


def pytest_collection_finish(session: Any) -> None:
    """Keep what collection loaded (every test module, Jupyter, IPython: ~475,000 objects) out of
    the garbage collector's full passes.

    A full pass walks every tracked object: 1-4 s in this process, paid in each explicit
    ``gc.collect()`` (IPython's ``shell.reset()`` in the magics tests' ``ip`` fixture runs one per
    test) and in Python's own gen-2 passes. Objects made by the tests are collected as before.
    """
    gc.collect()
    gc.freeze()


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    os.environ["NBPIPE_HOME"] = _SESSION_HOME
    stop_embedded_runner()


@pytest.fixture()
def nb_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh NBPIPE_HOME that kernels started by the test inherit; its embedded runner is stopped
    afterwards."""
    home = tmp_path / "home"
    monkeypatch.setenv("NBPIPE_HOME", str(home))
    yield home
    stop_embedded_runner()


@pytest.fixture(scope="module")
def nb_runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    r = RunnerProcess(tmp_path_factory.mktemp("runner")).start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def nb_client(nb_runner: RunnerProcess) -> Any:
    return nb_runner.client()


@pytest.fixture()
def nb_runner_factory(tmp_path: Path) -> Iterator[Any]:
    """Make extra runners (restartable, with a token); all are stopped afterwards."""
    made: list[RunnerProcess] = []

    def make(name: str = "data", token: str | None = None) -> RunnerProcess:
        r = RunnerProcess(tmp_path / name, token=token)
        made.append(r)
        return r.start()

    yield make
    for r in made:
        r.stop()
