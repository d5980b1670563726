"""A runner URL without its scheme (``localhost:8765``) is refused where it is set, naming where it came
from and the URL meant: ``configure()``, ``Client(url)``, ``NBPIPE_RUNNER_URL``, the saved config and the
CLI. It was accepted, then every request failed with httpx's "Request URL is missing an 'http://' or
'https://' protocol" and a screen of frames."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbpipe import client as nbclient
from nbpipe.errors import NbpipeError


def test_configure_and_client_refuse_a_url_without_scheme() -> None:
    with pytest.raises(NbpipeError) as err:
        nbclient.configure("localhost:8765")
    assert "'localhost:8765' (from nbpipe.client.configure(url)) is not a runner URL" in str(err.value)
    assert err.value.hint == "Use 'http://localhost:8765'."
    assert nbclient._DEFAULT["url"] is None  # nothing was set
    with pytest.raises(NbpipeError) as err:
        nbclient.Client("127.0.0.1:9")
    assert "(from Client(url))" in str(err.value) and err.value.hint == "Use 'http://127.0.0.1:9'."
    nbclient.configure("https://runner.example:8765/")  # with its scheme: fine (nothing is contacted)
    nbclient.configure()


def test_env_and_saved_config_name_where_the_url_came_from(nb_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBPIPE_RUNNER_URL", "localhost:8765")
    with pytest.raises(NbpipeError) as err:
        nbclient.Client()
    assert "(from NBPIPE_RUNNER_URL)" in str(err.value), str(err.value)
    monkeypatch.delenv("NBPIPE_RUNNER_URL")
    nb_home.mkdir(parents=True, exist_ok=True)
    (nb_home / "config.json").write_text(json.dumps({"runner": "ftp://x:1"}))
    with pytest.raises(NbpipeError) as err:
        nbclient.Client()
    assert "config.json's \"runner\")" in str(err.value) and err.value.hint == "Use 'http://x:1'.", str(err.value)


def test_the_cli_says_it_in_one_line(nb_home: Path) -> None:
    env = {**os.environ, "NBPIPE_HOME": str(nb_home), "NBPIPE_RUNNER_URL": "localhost:8765"}
    out = subprocess.run([sys.executable, "-m", "nbpipe.cli", "runs"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "'localhost:8765' (from NBPIPE_RUNNER_URL) is not a runner URL" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "httpx" not in out.stderr, out.stderr
