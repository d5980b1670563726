"""Archive, restore and delete through the Lab server (``/nbpipe/api``), as the Runs page calls them.

Before these routes the Lab's server extension knew no archive route and answered DELETE on a run
with 405, so the Runs page could not reach the runner's run storage at all. Real Jupyter server, real
embedded runner; the runner's refusals keep their status and words (409 with the hint to cancel
first, 404 for an unknown run).
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient

PIPELINE = textwrap.dedent('''
    import os, time
    from nbpipe import component, pipeline

    @component
    def double(x: int) -> int:
        return 2 * x

    @pipeline
    def quick(x: int = 1):
        double(x=x)

    @component(cache=False)
    def gated(gate: str) -> int:
        while not os.path.exists(gate):
            time.sleep(0.05)
        return 1

    @pipeline
    def held(gate: str = ""):
        gated(gate=gate)
''')


def load_pipelines(folder: Path) -> Any:
    """``quick`` (one step, done at once) and ``held`` (runs until its ``gate`` file exists), as a module."""
    (folder / "archive_pipes.py").write_text(PIPELINE)
    sys.path.insert(0, str(folder))
    sys.modules.pop("archive_pipes", None)
    try:
        import archive_pipes
    finally:
        sys.path.remove(str(folder))
    return archive_pipes


@pytest.fixture
def pipes(tmp_path: Path, nbpipe_home: Path) -> Any:
    return load_pipelines(tmp_path)


async def submit(pipe: Any, params: dict[str, Any], wait: bool = True) -> Any:
    from nbpipe import Client

    def go() -> Any:
        run = Client().submit(pipe, params)
        return run.wait(timeout=300) if wait else run

    return await asyncio.to_thread(go)


async def listed(api: Any, archived: bool = False) -> list[str]:
    code, page = await api("dashboard/runs", **({"archived": "true"} if archived else {}))
    assert code == 200, page
    return [r["id"] for r in page["runs"]]


@pytest.mark.parametrize("path,method", [("runs/abc/archive", "POST"), ("runs/abc/unarchive", "POST"),
                                         ("runs/abc", "DELETE")])
async def test_storage_routes_refuse_requests_without_a_token(jp_fetch: Any, path: str, method: str) -> None:
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        await jp_fetch("nbpipe", "api", *path.split("/"), method=method,
                       body="{}" if method == "POST" else None, headers={"Authorization": ""},
                       follow_redirects=False)
    assert info.value.code in (401, 403)


async def test_archive_restore_and_delete_through_the_lab_server(api: Any, pipes: Any) -> None:
    a = await submit(pipes.quick, {"x": 1})
    b = await submit(pipes.quick, {"x": 2})
    assert set(await listed(api)) == {a.id, b.id}

    code, body = await api(f"runs/{a.id}/archive", "POST")
    assert code == 200 and body["archived"] is True and body["archived_at"] > 0, body
    assert await listed(api) == [b.id] and await listed(api, archived=True) == [a.id]
    code, snap = await api(f"runs/{a.id}")
    assert code == 200 and snap["archived_at"] == body["archived_at"]  # its page still opens, and says so

    code, body = await api(f"runs/{a.id}/unarchive", "POST")
    assert code == 200 and body["archived"] is False and body["archived_at"] is None
    assert set(await listed(api)) == {a.id, b.id} and await listed(api, archived=True) == []

    code, body = await api(f"runs/{b.id}", "DELETE")
    assert code == 200 and body["deleted"] is True, body
    code, body = await api(f"runs/{b.id}")
    assert code == 404, body
    gone = ((f"runs/{b.id}", "DELETE"), (f"runs/{b.id}/archive", "POST"), ("runs/nope/unarchive", "POST"))
    for path, method in gone:
        code, body = await api(path, method)
        assert code == 404 and body["message"].startswith("No run "), (path, body)


async def test_a_running_run_is_refused_with_the_runners_message_and_hint(api: Any, pipes: Any,
                                                                          tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    run = await submit(pipes.held, {"gate": str(gate)}, wait=False)
    try:
        calls = ((f"runs/{run.id}/archive", "POST", "archived"), (f"runs/{run.id}", "DELETE", "deleted"))
        for path, method, verb in calls:
            code, body = await api(path, method)
            assert code == 409, body
            assert f"Run {run.id} is " in body["message"] and f"cannot be {verb}" in body["message"], body
            assert body["hint"].startswith("Cancel it first"), body
        assert run.id in await listed(api)
    finally:
        gate.write_text("go")
        await asyncio.to_thread(run.wait, 120)
