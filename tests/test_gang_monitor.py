"""The gang monitor ends an attempt whatever order its workers are reaped in.

A cancelled 2-worker step stayed ``running`` forever about 1 run in 10 (CI, test_distributed's
runner-crash case): both workers were killed at once, and when the second was reaped in the loop
iteration that woke the monitor, its done callback had not run yet, the monitor raised and the
attempt never ended. Here the exits are driven through every interleaving of a few loop iterations
(the exit-code wait is replaced: it is the one thing a unit test cannot make real; the rest is the
real monitor). The real processes are in tests/test_distributed.py.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from nbpipe.executors import gang as gang_mod
from nbpipe.executors.base import Handle


class _Exited:
    """A worker that has already been killed and is reaped after ``iterations`` loop iterations."""

    def __init__(self, pid: int, iterations: int, code: int) -> None:
        self.pid, self.iterations, self.code, self.returncode = pid, iterations, code, None


def _monitor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: list[_Exited], stopping: bool):
    async def exit_code(p: _Exited) -> int:
        for _ in range(p.iterations):
            await asyncio.sleep(0)
        p.returncode = p.code
        return p.code

    monkeypatch.setattr(gang_mod, "_exit_code", exit_code)

    async def main():
        job = {"result_key": "k.json", "store": {"type": "local", "root": str(tmp_path / "store")}}
        g = gang_mod.Gang(job, len(workers), str(tmp_path / "log"), None)
        g.procs = workers  # type: ignore[assignment]
        g.states, g.codes, g.stopping = ["running"] * len(workers), [None] * len(workers), stopping
        g.kill = _no_kill  # type: ignore[method-assign]  # the workers are already gone
        h = Handle("a", pid=workers[0].pid)
        await asyncio.wait_for(g._monitor(h), 30)
        return h.done.result(), g

    return asyncio.run(main())


async def _no_kill(grace: float = 3.0) -> None:
    return None


@pytest.mark.parametrize("iterations", list(itertools.product(range(4), repeat=3)))
def test_a_cancelled_gang_ends_whatever_order_its_workers_are_reaped_in(tmp_path, monkeypatch, iterations):
    workers = [_Exited(4_000_000 + r, n, -15) for r, n in enumerate(iterations)]
    status, g = _monitor(tmp_path, monkeypatch, workers, stopping=True)
    assert g.states == ["stopped"] * 3
    assert status.signal == 15


@pytest.mark.parametrize("iterations", [(2, 0, 1), (0, 1, 0), (1, 1, 0), (3, 2, 1)])
def test_the_first_worker_reaped_with_a_failure_is_the_cause(tmp_path, monkeypatch, iterations):
    workers = [_Exited(4_000_000 + r, n, 3 + r) for r, n in enumerate(iterations)]
    status, g = _monitor(tmp_path, monkeypatch, workers, stopping=False)
    first = min(range(3), key=lambda r: (iterations[r], r))
    assert g.first_failure == first
    assert g.states[first] == "failed"
    assert f"worker rank {first} of 3" in (status.reason or "")
