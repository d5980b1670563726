"""A real nbpipe runner process on loopback, restartable on the same data dir (test helper)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


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
