"""The Compare page's answer names each run's float parameters, as the run lists' answers do.

JSON turns the Python float ``1.0`` into the JS number 1, so the Compare page showed a run of
``threshold=1.0`` as ``1``. ``GET dashboard/compare`` now gives each run ``float_params`` (the
page formats those with ``.0``; see ``labextension/tests/dashboard.test.ts``). A real Jupyter
server and the real embedded runner; runs are read back only through the Lab route.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nbpipe import component, pipeline


@component
def score(threshold: float, n: int, label: str) -> float:
    return threshold * n


@pipeline(name="compare-floats")
def scored(threshold: float = 0.5, n: int = 2, label: str = "a"):
    score(threshold=threshold, n=n, label=label)


async def test_compare_names_each_run_s_float_parameters(api: Any, nbpipe_home: Any) -> None:
    from nbpipe import Client

    def go(params: dict[str, Any]) -> str:
        return Client().submit(scored, params).wait(timeout=300).id

    ids = [await asyncio.to_thread(go, {"threshold": t, "n": 3}) for t in (1.0, 2.5)]
    code, table = await api("dashboard/compare", runs=",".join(ids))
    assert code == 200, table
    assert [r["id"] for r in table["runs"]] == ids
    assert [r["params"]["threshold"] for r in table["runs"]] == [1.0, 2.5]
    assert [sorted(r["float_params"]) for r in table["runs"]] == [["threshold"], ["threshold"]]  # not n, not label
    assert table["differ"] == ["threshold"]
    assert [r["metrics"]["score.output"] for r in table["runs"]] == [3.0, 7.5]
