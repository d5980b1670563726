"""Fixtures for the Lab server extension tests: a real Jupyter server (auth on) and a real runner.

``jp_fetch`` sends the server's token; ``anonymous_fetch`` sends none, to check that every
route refuses it. ``NBPIPE_HOME`` is a temporary folder, so the embedded runner these tests
start is their own and is stopped afterwards.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient

# jupyter_server's fixtures and hooks (jp_fetch, jp_serverapp…), for tests/lab only: a
# top-level pytest_plugins would put its event-loop handling under every test (and break
# Playwright's sync API in tests/browser); a subfolder may not declare pytest_plugins.
from pytest_jupyter.jupyter_server import *  # noqa: E402,F401,F403

NOTEBOOKS = Path(__file__).parent / "notebooks"



@pytest.fixture
def nbpipe_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Any:
    from nbpipe._embedded import stop_local_runner

    home = tmp_path_factory.mktemp("nbpipe-home")
    monkeypatch.setenv("NBPIPE_HOME", str(home))
    for name in ("NBPIPE_RUNNER_URL", "NBPIPE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    yield home
    stop_local_runner()


@pytest.fixture
def jp_server_config(nbpipe_home: Path) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"nbpipe.lab": True}, "allow_unauthenticated_access": False},
        "IdentityProvider": {"token": "nbpipe-test-token"},
    }


@pytest.fixture
def notebooks(jp_root_dir: Path) -> Path:
    """The fixture notebooks, copied into the server's root directory."""
    for nb in NOTEBOOKS.glob("*.ipynb"):
        shutil.copy(nb, jp_root_dir / nb.name)
    return jp_root_dir


@pytest.fixture
def api(jp_fetch: Any) -> Any:
    """``await api("runs")`` → (status, parsed JSON or text); errors come back, not raised."""

    async def call(path: str, method: str = "GET", body: Any = None, **params: Any) -> tuple[int, Any]:
        kw: dict[str, Any] = {"method": method, "params": params, "request_timeout": 120}
        if body is not None:
            kw["body"] = json.dumps(body)
        elif method in ("POST", "PUT"):
            kw["body"] = "{}"
        try:
            resp = await jp_fetch("nbpipe", "api", *path.split("/"), **kw)
        except tornado.httpclient.HTTPClientError as exc:
            resp = exc.response
            assert resp is not None, exc
        text = resp.body.decode()
        ctype = resp.headers.get("Content-Type", "")
        return resp.code, json.loads(text) if ctype.startswith("application/json") and text else text

    return call
