"""Archive, restore and delete runs (Kubeflow's run storage state) on the real runner.

What a user does next is tested, not only the call: the archived run leaves every list (the API's,
the dashboard's, the experiments' counts) but its page, logs and re-run still work, and it comes
back when restored, across a runner restart too; a deleted run is gone (page, events, logs, lineage)
while the step cache it filled still hits and its outputs stay readable; a run still going is
refused with what to do. Real runner processes and real steps; a held step waits on a gate file
the test writes, so nothing depends on timing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from nbpipe import component, pipeline
from nbpipe import events as ev
from nbpipe.errors import RunnerError


@component(name="rs_make")
def make(n: int) -> dict:
    print(f"making {n}")
    return {"n": n}


@component(name="rs_use")
def use(data: dict) -> int:
    print("using it")
    return data["n"] * 2


@pipeline(name="run-storage")
def two(n: int = 1):
    use(data=make(n=n).output)


@component(name="rs_held")
def held(gate_path: str) -> int:
    import os
    import time

    while not os.path.exists(gate_path):
        time.sleep(0.05)
    return 1


@pipeline(name="run-storage-held")
def gated(gate_path: str = ""):
    held(gate_path=gate_path)


def _http(client: Any) -> httpx.Client:
    return client._http  # type: ignore[no-any-return]


def _ids(runs: list[dict[str, Any]]) -> set[str]:
    return {r["id"] for r in runs}


def test_an_archived_run_leaves_the_lists_keeps_its_page_and_comes_back_when_restored(nb_runner_factory: Any) -> None:
    runner = nb_runner_factory("archive")
    client = runner.client()
    kept = client.submit(two, {"n": 2}).wait(timeout=120)
    done = client.submit(two, {"n": 3}).wait(timeout=120)
    assert kept.state == done.state == "succeeded"
    runs_before = sum(e["runs"] for e in client.experiments())

    got = client.archive_run(done.id)
    assert got["archived"] is True and got["state"] == "succeeded" and got["archived_at"] > 0
    assert _ids(client.runs()) == {kept.id}  # gone from the run list ...
    assert _ids(client.runs(archived=True)) == {done.id}  # ... into the archived one
    page = _http(client).get("/api/v1/dashboard/runs", params={"facets": "true"}).json()
    assert [r["id"] for r in page["runs"]] == [kept.id] and page["total"] == 1
    assert page["facets"]["states"]["succeeded"] == 1
    archived_page = _http(client).get("/api/v1/dashboard/runs", params={"archived": "true"}).json()
    assert [r["id"] for r in archived_page["runs"]] == [done.id]
    assert sum(e["runs"] for e in client.experiments()) == runs_before - 1
    # the run itself is whole: its page, its logs, its outputs, and it can be run again
    snap = client.get_run(done.id)
    assert snap["archived_at"] == got["archived_at"] and snap["state"] == "succeeded"
    assert "making 3" in client.run(done.id).logs("rs_make")
    assert client.run(done.id).output("rs_use") == 6
    again = client.rerun(done.id).wait(timeout=120)
    assert again.state == "succeeded" and again.id in _ids(client.runs())  # the new run is not archived

    assert client.archive_run(done.id)["archived_at"] == got["archived_at"]  # archiving twice changes nothing
    runner.stop()
    runner.start()  # archived is stored, not remembered
    client = runner.client()
    assert done.id in _ids(client.runs(archived=True)) and done.id not in _ids(client.runs())

    back = client.unarchive_run(done.id)
    assert back["archived"] is False and back["archived_at"] is None
    assert done.id in _ids(client.runs()) and not client.runs(archived=True)
    assert client.get_run(done.id)["archived_at"] is None
    assert client.unarchive_run(done.id)["archived"] is False  # restoring a restored run is not an error


def test_a_run_still_going_is_neither_archived_nor_deleted_and_says_what_to_do(nb_client: Any, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    run = nb_client.submit(gated, {"gate_path": str(gate)})
    try:
        for event in run.events():
            if isinstance(event, ev.StepStarted):
                break
        for act in (nb_client.archive_run, nb_client.delete_run):
            with pytest.raises(RunnerError) as err:
                act(run.id)
            text = str(err.value)
            assert f"Run {run.id} is running" in text and f"nbpipe cancel {run.id}" in text, text
        assert run.id in _ids(nb_client.runs())  # nothing changed
    finally:
        gate.touch()
    assert run.wait(timeout=120).state == "succeeded"
    run.archive()  # once it ended, it can be (the run handle, as a notebook has it)
    assert run.snapshot()["archived_at"] and run.id in _ids(nb_client.runs(archived=True))
    run.unarchive()
    assert run.snapshot()["archived_at"] is None
    run.delete()
    with pytest.raises(RunnerError, match=f"No run {run.id}"):
        run.snapshot()


def test_a_deleted_run_is_gone_but_its_cache_and_outputs_stay(nb_runner_factory: Any) -> None:
    runner = nb_runner_factory("delete")
    client = runner.client()
    first = client.submit(two, {"n": 5}).wait(timeout=120)
    assert first.state == "succeeded"
    digest = first.steps["rs_make"]["outputs"]["output"]["digest"]
    logs = runner.data_dir / "logs" / first.id
    assert logs.is_dir()
    http = _http(client)

    gone = client.delete_run(first.id)
    assert gone == {"id": first.id, "deleted": True, "state": "succeeded"}
    assert http.get(f"/api/v1/runs/{first.id}").status_code == 404
    assert http.get(f"/api/v1/runs/{first.id}/events", params={"after": 0}).status_code == 404
    assert http.get(f"/api/v1/runs/{first.id}/steps/rs_make/logs").status_code == 404
    assert first.id not in _ids(client.runs()) | _ids(client.runs(archived=True))
    assert not logs.exists()
    engine = sa.create_engine(f"sqlite:///{runner.data_dir / 'nbpipe.db'}")
    with engine.connect() as conn:
        for table in ("runs", "steps", "attempts", "artifacts", "expansions"):
            col = "id" if table == "runs" else "run_id"
            left = conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {col} = :r"), {"r": first.id}).scalar()
            assert left == 0, table
        kept = conn.execute(sa.text("SELECT type, data FROM events WHERE run_id = :r"), {"r": first.id}).all()
        assert [(t, json.loads(d)["storage"]) for t, d in kept] == [("RunStorage", "deleted")]  # the lists' last word
    engine.dispose()
    with pytest.raises(RunnerError, match=f"No run {first.id}"):
        client.delete_run(first.id)  # twice: there is nothing left to delete

    # what other runs rely on stays: the step cache hits, and the outputs' bytes are still there
    second = client.submit(two, {"n": 5}).wait(timeout=120)
    assert second.steps["rs_make"]["state"] == "cached" and second.output("rs_use") == 10
    assert http.get(f"/api/v1/artifacts/{digest}").status_code == 200
    lineage = http.get(f"/api/v1/lineage/runs/{second.id}/steps/rs_make")
    assert lineage.status_code == 200, lineage.text  # its producer is gone: the lineage says what is left
    producer = lineage.json()["artifacts"][0]["producer"]
    assert producer["run"] != first.id, producer  # not a run that no longer exists


def test_migration_6_adds_archived_at_and_keeps_every_existing_run_listed(tmp_path: Path) -> None:
    from nbpipe.runner import db, migrations, views

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = db.connect(url)
    with engine.begin() as conn:  # a database from before archiving: no archived_at column, at version 5
        conn.execute(sa.text("ALTER TABLE runs DROP COLUMN archived_at"))
        conn.execute(sa.text("DELETE FROM nbpipe_migrations WHERE version = 6"))
        conn.execute(sa.text("INSERT INTO packages (digest, name, size, spec, created_at) VALUES ('dd', 'p', 1, '{}', 0)"))
        conn.execute(sa.text("INSERT INTO runs (id, name, pipeline, experiment, package, params, state, reason, "
                             "labels, created_at, profile) VALUES ('r1', 'r', 'p', 'e', 'dd', '{}', 'succeeded', '', '{}', 0, 'default')"))
    engine.dispose()
    engine = db.connect(url)
    assert migrations.applied(engine) == list(range(1, migrations.LATEST + 1))
    assert "archived_at" in {c["name"] for c in sa.inspect(engine).get_columns("runs")}
    assert [r["id"] for r in views.list_runs(engine)] == ["r1"] and views.list_runs(engine, archived=True) == []
    engine.dispose()


def _cli(runner: Any, *args: str, stdin: str | None = None) -> Any:
    import os
    import subprocess
    import sys

    env = {**os.environ, **runner.client_env()}
    return subprocess.run([sys.executable, "-m", "nbpipe.cli", "--runner", runner.url, *args], capture_output=True,
                          text=True, env=env, input=stdin, timeout=120)


def test_the_command_line_archives_restores_and_deletes_and_asks_before_deleting(nb_runner: Any, nb_client: Any) -> None:
    a = nb_client.submit(two, {"n": 7}).wait(timeout=120)
    b = nb_client.submit(two, {"n": 8}).wait(timeout=120)
    out = _cli(nb_runner, "archive", a.id, b.id, "r-nope")
    assert out.returncode == 1  # one of three failed: said, and the others done
    assert f"archived {a.id}" in out.stdout and f"archived {b.id}" in out.stdout
    assert "r-nope: No run r-nope" in out.stderr, out.stderr
    listed = _cli(nb_runner, "runs", "--archived").stdout
    assert a.id in listed and b.id in listed and a.id not in _cli(nb_runner, "runs").stdout
    assert _cli(nb_runner, "unarchive", b.id).stdout.strip() == f"restored {b.id} to the run list"

    refused = _cli(nb_runner, "delete", a.id)  # no terminal to ask: refused, nothing deleted
    assert refused.returncode == 1 and "cannot be undone" in refused.stderr and "--yes" in refused.stderr, refused
    assert nb_client.get_run(a.id)["state"] == "succeeded"
    gone = _cli(nb_runner, "delete", "--yes", a.id)
    assert gone.returncode == 0 and gone.stdout.strip() == f"deleted {a.id}", gone
    assert a.id not in _cli(nb_runner, "runs", "--archived").stdout


def test_open_run_lists_hear_of_archive_restore_and_delete_on_the_event_stream(nb_client: Any) -> None:
    """The Lab's run lists follow /api/v1/events: each change is a RunStorage event, whoever made it."""
    run = nb_client.submit(two, {"n": 9}).wait(timeout=120)
    http = _http(nb_client)
    start = http.get("/api/v1/dashboard/runs").json()["last_event_id"]
    run.archive()
    run.archive()  # no change: no event
    run.unarchive()
    run.delete()
    seen = []
    with http.stream("GET", "/api/v1/events", params={"after": start}, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                e = ev.decode(line[6:])
                if e.run_id == run.id:
                    assert isinstance(e, ev.RunStorage), e
                    seen.append(e.storage)
                    if e.storage == "deleted":
                        break
    assert seen == ["archived", "available", "deleted"]
