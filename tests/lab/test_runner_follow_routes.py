"""The Lab server follows the embedded runner: when it dies, ``status`` says so (and what brings
it back) instead of answering from a stale client, and the next request that needs a runner
starts a new one (on another port) instead of calling the dead address forever."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any


def _wait_dead(pid: int) -> None:
    """Until the killed runner process is gone (a state, bounded only as a safety net)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"runner {pid} did not exit")


async def test_status_and_requests_follow_a_restarted_embedded_runner(api: Any, nbpipe_home: Path) -> None:
    code, page = await api("runs")  # starts the embedded runner
    assert code == 200, page
    code, status = await api("status")
    assert code == 200 and status["reachable"] is True
    info = json.loads((nbpipe_home / "runner.json").read_text())
    os.kill(info["pid"], signal.SIGKILL)
    _wait_dead(info["pid"])

    code, status = await api("status")
    assert code == 200 and status["reachable"] is False and status["url"] == info["url"]
    assert "embedded runner stopped" in status["error"] and "starts it again" in status["error"]

    code, page = await api("runs")  # a new runner, not the dead address
    assert code == 200, page
    code, status = await api("status")
    assert status["reachable"] is True
    new = json.loads((nbpipe_home / "runner.json").read_text())
    assert new["pid"] != info["pid"] and status["url"] == new["url"]
