"""The Lab server extension's runner routes, through a real Jupyter server with auth on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient

ROUTES = [
    ("GET", "status"),
    ("GET", "settings"),
    ("PUT", "settings"),
    ("GET", "runs"),
    ("GET", "runs/abc"),
    ("POST", "runs/abc/cancel"),
    ("POST", "runs/abc/rerun"),
    ("GET", "runs/abc/events"),
    ("GET", "runs/abc/steps/make/logs"),
    ("GET", "artifacts/" + "0" * 64),
    ("POST", "notebook/analyze"),
    ("POST", "notebook/export"),
    ("POST", "notebook/run"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_route_refuses_requests_without_a_token(jp_fetch: Any, method: str, path: str) -> None:
    body = "{}" if method in ("POST", "PUT") else None
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        # An empty Authorization header replaces the token jp_fetch would send.
        await jp_fetch(
            "nbpipe",
            "api",
            *path.split("/"),
            method=method,
            body=body,
            follow_redirects=False,
            headers={"Authorization": ""},
        )
    assert info.value.code in (401, 403)


async def test_extension_is_loaded_from_the_server_config(jp_serverapp: Any) -> None:
    assert "nbpipe.lab" in jp_serverapp.extension_manager.extensions
    assert jp_serverapp.extension_manager.extensions["nbpipe.lab"].enabled


async def test_status_before_the_embedded_runner_starts(api: Any) -> None:
    code, body = await api("status")
    assert code == 200
    assert body["mode"] == "embedded" and body["source"] == "default"
    assert body["reachable"] is False and body["url"] is None
    assert "first run" in body["error"]


async def test_settings_round_trip_keeps_the_token_server_side(api: Any, nbpipe_home: Path) -> None:
    code, body = await api("settings", "PUT", {"runner_url": "http://127.0.0.1:9/", "token": "s3cret"})
    assert code == 200, body
    assert body == {
        "runner_url": "http://127.0.0.1:9",
        "has_token": True,
        "source": "config",
        "editable": True,
        "config_path": str(nbpipe_home / "config.json"),
    }
    assert "s3cret" not in json.dumps(body)
    stored = json.loads((nbpipe_home / "config.json").read_text())
    assert stored == {"runner": "http://127.0.0.1:9", "token": "s3cret"}

    # The status names the configured runner and why it cannot be reached (nothing listens on port 9).
    code, status = await api("status")
    assert code == 200
    assert status["mode"] == "remote" and status["url"] == "http://127.0.0.1:9" and not status["reachable"]
    assert "No runner at http://127.0.0.1:9" in status["error"]

    # Run routes say the same, as a 502 the panel can show.
    code, err = await api("runs")
    assert code == 502 and err["message"].startswith("No runner at http://127.0.0.1:9")
    assert "nbpipe runner start" in err["hint"]

    # Changing the URL without a token keeps the stored one; clearing the URL goes back to embedded.
    code, body = await api("settings", "PUT", {"runner_url": "http://localhost:8765"})
    assert body["has_token"] is True and body["runner_url"] == "http://localhost:8765"
    code, body = await api("settings", "PUT", {"runner_url": None})
    assert code == 200 and body["runner_url"] is None and body["source"] == "default"
    assert json.loads((nbpipe_home / "config.json").read_text()) == {}


@pytest.mark.parametrize("url", ["ftp://host", "not a url", "http://", "http://host:99999", "http://h/?q=1"])
async def test_settings_reject_bad_urls(api: Any, url: str) -> None:
    code, body = await api("settings", "PUT", {"runner_url": url})
    assert code == 400
    assert "http://HOST:PORT" in body["message"] or "port" in body["message"]


async def test_settings_from_the_environment_are_read_only(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBPIPE_RUNNER_URL", "http://127.0.0.1:9")
    code, body = await api("settings")
    assert body["source"] == "env" and body["editable"] is False
    code, body = await api("settings", "PUT", {"runner_url": "http://127.0.0.1:10"})
    assert code == 400 and "NBPIPE_RUNNER_URL" in body["message"]


async def test_bad_requests_get_readable_errors(api: Any) -> None:
    code, body = await api("runs", limit="many")
    assert code == 400 and body["message"] == "limit must be an integer"
    code, body = await api("runs/abc/events", after="-1")
    assert code == 400 and "event id" in body["message"]
    code, body = await api("notebook/analyze", "POST", {"path": "../../etc/passwd.ipynb"})
    assert code == 400 and "outside the Jupyter root" in body["message"]
    code, body = await api("notebook/analyze", "POST", {"path": "missing.ipynb"})
    assert code == 400 and body["message"].startswith("No notebook missing.ipynb")
