"""Behind JupyterHub: the Lab server extension forwards the hub user; the runner isolates profiles.

A real runner with a users file and a proxy token; the Lab extension's setting is that runner and
the proxy token (as a hub's spawner would set them), ``JUPYTERHUB_USER`` names the user. Alice's
Lab sees her run, its logs and artifact; bob's Lab does not, even asking by id. A forged user
with a user's own token (not the proxy's) is ignored by the runner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from nbpipe.client import Client
from nbpipe.runner.auth import hash_token
from tests.runner_process import RunnerProcess
from tests.test_profiles import shared

PROXY = "hub-proxy-" + "x" * 40
ALICE = "alice-" + "a" * 40


@pytest.fixture
def hub_runner(tmp_path: Path) -> Iterator[RunnerProcess]:
    users = tmp_path / "users.json"
    users.write_text(json.dumps({
        "users": [{"name": "alice", "profiles": ["team-a"], "token_sha256": hash_token(ALICE)},
                  {"name": "bob", "profiles": ["team-b"]}],
        "proxy": {"token_sha256": hash_token(PROXY)}}))
    runner = RunnerProcess(tmp_path / "runner", extra_env={"NBPIPE_USERS_FILE": str(users)}).start()
    yield runner
    runner.stop()


async def test_two_hub_users_see_only_their_profiles(api: Any, hub_runner: RunnerProcess,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    run = Client(hub_runner.url, token=ALICE).submit(shared, {"n": 4}).wait(timeout=120)
    digest = run.steps["make_data"]["outputs"]["data"]["digest"]
    monkeypatch.setenv("NBPIPE_RUNNER_URL", hub_runner.url)
    monkeypatch.setenv("NBPIPE_TOKEN", PROXY)

    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    code, body = await api("runs")
    assert code == 200 and [r["id"] for r in body["runs"]] == [run.id]
    assert (await api(f"runs/{run.id}"))[0] == 200
    code, text = await api(f"runs/{run.id}/steps/make_data/logs")
    assert code == 200 and "made 4 bytes" in text
    assert (await api(f"artifacts/{digest}"))[0] == 200
    code, status = await api("status")
    assert status["reachable"] is True

    monkeypatch.setenv("JUPYTERHUB_USER", "bob")  # the extension now acts for bob
    code, body = await api("runs")
    assert code == 200 and body["runs"] == []
    for path in (f"runs/{run.id}", f"runs/{run.id}/steps/make_data/logs", f"artifacts/{digest}"):
        code, err = await api(path)  # the runner's 404 (the Lab answers a missing artifact with 400)
        text = json.dumps(err)
        assert code in (400, 404) and ("No run" in text or "No artifact" in text), (path, code, err)
    code, _ = await api(f"runs/{run.id}/cancel", "POST")
    assert code == 404
    assert Client(hub_runner.url, token=ALICE).get_run(run.id)["state"] == "succeeded"

    # with alice's own token the forwarded name is ignored: she stays alice (not bob)
    monkeypatch.setenv("NBPIPE_TOKEN", ALICE)
    code, body = await api("runs")
    assert [r["id"] for r in body["runs"]] == [run.id]
