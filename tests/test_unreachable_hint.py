"""A runner that does not answer: the hint says how to go back to the embedded runner for where the
URL was set (the panel's saved setting, the environment, configure()), not always "unset NBPIPE_RUNNER_URL"."""

from __future__ import annotations

import json
import socket

import pytest

from nbpipe import client as nbclient
from nbpipe.client import Client
from nbpipe.errors import RunnerError


def _dead_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return f"http://127.0.0.1:{port}"


def _hint(url: str | None = None) -> str:
    c = Client(url) if url else Client()
    try:
        with pytest.raises(RunnerError, match="No runner at") as info:
            c.health()
        return str(info.value.hint)
    finally:
        c.close()


def test_a_url_saved_by_the_panel_says_how_to_go_back_there(nb_home, monkeypatch) -> None:
    monkeypatch.delenv("NBPIPE_RUNNER_URL", raising=False)
    url = _dead_url()
    nb_home.mkdir(parents=True, exist_ok=True)
    (nb_home / "config.json").write_text(json.dumps({"runner": url}))
    hint = _hint()
    assert "Use embedded runner" in hint and "%nbpipe config runner=local" in hint and "config.json" in hint
    assert "NBPIPE_RUNNER_URL" not in hint


def test_a_url_from_the_environment_or_configure_names_that(nb_home, monkeypatch) -> None:
    url = _dead_url()
    monkeypatch.setenv("NBPIPE_RUNNER_URL", url)
    assert "unset NBPIPE_RUNNER_URL" in _hint()
    monkeypatch.delenv("NBPIPE_RUNNER_URL")
    nbclient.configure(url)
    try:
        hint = _hint()
        assert "%nbpipe config runner=local" in hint and "configure() with no URL" in hint
    finally:
        nbclient.configure(None)
    assert "nbpipe runner start" in _hint(url)  # a URL given to Client() itself
