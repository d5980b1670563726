"""The audit log on a shared runner: who submitted, cancelled, re-ran or deployed what.

Real runner with a users file (see tests/test_profiles.py); alice works in team-a, bob tries to
touch her run (refused: not recorded), root (admin) reads the log over HTTP and with `nbpipe audit`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import nbpipe
from nbpipe.audit_cli import format_rows, parse_since
from tests.test_profiles import TOKENS, Team, shared, team  # noqa: F401 - the module's runner fixture


def test_audit_records_who_did_what(team: Team) -> None:  # noqa: F811
    alice, bob, root = team.http["alice"], team.http["bob"], team.http["root"]
    run = team.clients["alice"].submit(shared, {"n": 21}).wait(timeout=120)
    assert alice.post(f"/api/v1/runs/{run.id}/cancel").status_code == 200
    again = alice.post(f"/api/v1/runs/{run.id}/rerun", json={}).json()["id"]
    assert bob.post(f"/api/v1/runs/{run.id}/cancel").status_code == 404  # refused: not a change, not recorded
    nbpipe.serve(5, predict=lambda m, x: x, name="audited", runner=team.clients["alice"])

    assert bob.get("/api/v1/audit").status_code == 403
    assert "for admins" in bob.get("/api/v1/audit").json()["error"]
    rows = root.get("/api/v1/audit", params={"user": "alice"}).json()
    seen = [(r["action"], r["profile"], r["target"]) for r in reversed(rows)]
    assert ("submit", "team-a", run.id) in seen
    assert ("cancel", "team-a", run.id) in seen
    rerun = next(r for r in rows if r["action"] == "rerun")
    assert rerun["target"] == run.id and rerun["detail"] == {"new_run": again}
    assert ("deploy", "team-a", "audited") in seen
    assert any(a == "upload" for a, _, _ in seen)  # the package upload
    assert not [r for r in root.get("/api/v1/audit").json() if r["user"] == "bob" and r["target"] == run.id]
    assert all(r["role"] == "user" for r in rows)
    # filters
    only = root.get("/api/v1/audit", params={"action": "cancel", "target": run.id}).json()
    assert [(r["user"], r["action"]) for r in only] == [("alice", "cancel")]
    assert root.get("/api/v1/audit", params={"since": time.time() + 60}).json() == []

    env = {**os.environ, "NBPIPE_RUNNER_URL": team.runner.url, "NBPIPE_TOKEN": TOKENS["root"]}
    out = subprocess.run([sys.executable, "-m", "nbpipe.cli", "audit", "--user", "alice", "--since", "1h"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:4] == ["WHEN", "USER", "ACTION", "PROFILE"]
    assert any("alice" in line and "cancel" in line and run.id in line for line in lines)
    out = subprocess.run([sys.executable, "-m", "nbpipe.cli", "audit", "--json", "--action", "deploy"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert [r["target"] for r in json.loads(out.stdout)] == ["audited"]
    env["NBPIPE_TOKEN"] = TOKENS["bob"]
    out = subprocess.run([sys.executable, "-m", "nbpipe.cli", "audit"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 1 and "audit log is for admins" in out.stderr


def test_a_schedules_runs_are_audited_in_its_profile(team: Team) -> None:  # noqa: F811
    bob, root = team.http["bob"], team.http["root"]
    run = team.clients["bob"].submit(shared, {"n": 8}).wait(timeout=120)
    package = bob.get(f"/api/v1/runs/{run.id}").json()["package"]
    sid = bob.post("/api/v1/schedules", json={"package": package, "interval": 3600,
                                              "start_at": time.time()}).json()["id"]
    deadline = time.monotonic() + 120
    while True:  # the first slot is now: wait for the fire's record
        rows = root.get("/api/v1/audit", params={"user": f"schedule {sid}"}).json()
        if rows or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert bob.delete(f"/api/v1/schedules/{sid}").status_code == 200
    assert [(r["action"], r["profile"], r["role"]) for r in rows] == [("submit", "team-b", "system")]
    fired = rows[0]["target"]
    assert bob.get(f"/api/v1/runs/{fired}").json()["labels"]["schedule"] == sid
    made = root.get("/api/v1/audit", params={"action": "schedule", "target": sid}).json()
    assert [(r["user"], r["profile"]) for r in made] == [("bob", "team-b")]


def test_audit_cli_helpers() -> None:
    assert parse_since("2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_since("1700000000") == 1700000000.0
    assert parse_since(None) is None
    try:
        parse_since("yesterday")
    except nbpipe.errors.NbpipeError as exc:
        assert "not a duration" in str(exc)
    else:
        raise AssertionError("no error")
    assert format_rows([]) == ["(no audit records match)"]
