"""Shared fixtures: an isolated NBPIPE_HOME for the whole session, and a real runner process.

The runner fixture starts ``python -m nbpipe.runner`` on 127.0.0.1 port 0 with its own data
dir, exactly as users run it, and stops it afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

_SESSION_HOME = tempfile.mkdtemp(prefix="nbpipe-test-home-")
os.environ["NBPIPE_HOME"] = _SESSION_HOME
os.environ.pop("NBPIPE_RUNNER_URL", None)
os.environ.pop("NBPIPE_TOKEN", None)


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    from nbpipe._embedded import stop_local_runner

    os.environ["NBPIPE_HOME"] = _SESSION_HOME
    stop_local_runner()


class RunnerProcess:
    """A real runner process on loopback, restartable on the same data dir."""

    def __init__(self, data_dir: Path, token: str | None = None, extra_env: dict[str, str] | None = None):
        self.data_dir = data_dir
        self.token = token
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> "RunnerProcess":
        ready = self.data_dir / f"ready-{time.time_ns()}.json"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "nbpipe.runner", "--port", "0", "--data-dir", str(self.data_dir),
               "--ready-file", str(ready)]
        if self.token:
            cmd += ["--token", self.token]
        self.log = open(self.data_dir / "runner.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log, env={**os.environ, **self.extra_env},
                                     start_new_session=True)
        deadline = time.time() + 60
        while not ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError((self.data_dir / "runner.log").read_text())
            if time.time() > deadline:
                raise TimeoutError("runner did not start")
            time.sleep(0.05)
        self.url = json.loads(ready.read_text())["url"]
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.log.close()

    def client(self) -> Any:
        from nbpipe.client import Client

        return Client(self.url, token=self.token)


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
