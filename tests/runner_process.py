"""A real nbpipe runner process on loopback, restartable on the same data dir (test helper).

It gets its token the way users' runners do: generated at start and read back from the 0600
ready file, or given through ``NBPIPE_TOKEN`` in its environment (never on the command line).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any


class RunnerProcess:
    """A real runner process on loopback, restartable on the same data dir."""

    def __init__(self, data_dir: Path, token: str | None = None, extra_env: dict[str, str] | None = None):
        self.data_dir = data_dir
        self.token = token
        self.given_token = token
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.ready_file: Path | None = None

    def start(self) -> "RunnerProcess":
        ready = self.data_dir / f"ready-{time.time_ns()}.json"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "nbpipe.runner", "--port", "0", "--data-dir", str(self.data_dir),
               "--ready-file", str(ready)]
        env = {k: v for k, v in os.environ.items() if k != "NBPIPE_TOKEN"}
        env.update(self.extra_env)
        if self.given_token:
            env["NBPIPE_TOKEN"] = self.given_token
        self.log = open(self.data_dir / "runner.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log, env=env, start_new_session=True)
        deadline = time.time() + 60
        while not ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError((self.data_dir / "runner.log").read_text())
            if time.time() > deadline:
                raise TimeoutError("runner did not start")
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        self.url, self.token, self.ready_file = info["url"], info["token"], ready
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client_env(self) -> dict[str, str]:
        """Environment for a CLI process that talks to this runner."""
        return {"NBPIPE_RUNNER_URL": self.url, "NBPIPE_TOKEN": self.token or ""}

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


def stop_embedded_runner() -> bool:
    """``stop_local_runner()`` for fixtures' teardown, reaping the runner at once if this process
    started it (``ensure_local_runner`` in the test, or in a Jupyter server the test runs in-process).

    Such a runner, once stopped, stays a zombie until its parent reaps it, and ``stop_local_runner``
    (which probes the pid with signal 0) waited its whole 5 s for it to go, in every such teardown.
    """
    from nbpipe._embedded import nbpipe_home, stop_local_runner

    try:
        pid = int(json.loads((nbpipe_home() / "runner.json").read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return stop_local_runner()

    def reap() -> None:
        try:
            os.waitpid(pid, 0)  # returns once stop_local_runner's SIGTERM has ended it
        except ChildProcessError:
            pass  # not this process's child: its own parent (or init) reaps it

    threading.Thread(target=reap, daemon=True).start()
    return stop_local_runner()
