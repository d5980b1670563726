"""The runner's in-memory event log: ``scan`` (what the endpoint follower reads after every commit)
finds exactly the saved artifacts of one name, moves the follower's cursor past every other event
without parsing it, and says when memory does not reach back (the table is read instead)."""

from __future__ import annotations

from nbpipe import events as ev
from nbpipe.runner import db
from nbpipe.runner.eventlog import EventLog


def _commit(engine, log: EventLog, events: list[ev.Event]) -> None:
    with db.write_tx(engine) as conn:
        for e in events:
            log.add(e)
        log.write(conn)
    log.committed()


def test_scan_returns_only_the_named_artifacts_and_the_last_id_looked_at(tmp_path):
    engine = db.connect(f"sqlite:///{tmp_path / 'e.db'}")
    try:
        log = EventLog(engine)
        assert log.scan(0, 500, "ArtifactSaved", "endpoint") is None  # nothing kept yet: read the table
        _commit(engine, log, [
            ev.StepStarted(run_id="r1", ts=1.0, step="train"),
            ev.ArtifactSaved(run_id="r1", ts=2.0, step="train", name="model", digest="d1"),
            ev.ArtifactSaved(run_id="r1", ts=3.0, step="deploy", name="endpoint", digest="d2"),
            ev.StepFinished(run_id="r1", ts=4.0, step="deploy", state="succeeded", reason="endpoint"),
        ])
        ids = log._ids
        found, last = log.scan(ids[0] - 1, 500, "ArtifactSaved", "endpoint")
        assert [(e["name"], e["digest"], e["id"]) for e in found] == [("endpoint", "d2", ids[2])]
        assert last == ids[-1]
        assert log.scan(last, 500, "ArtifactSaved", "endpoint") == ([], last)  # nothing new: cursor stays
        found, last2 = log.scan(ids[0] - 1, 2, "ArtifactSaved", "endpoint")  # the limit bounds the look
        assert found == [] and last2 == ids[1]
        assert isinstance(log._kept[0][1], str)  # the StepStarted was never parsed
        # Events a reader (an SSE stream) already parsed: every one of the type (the caller checks them).
        assert log.after(None, ids[0] - 1, 500)[2]["name"] == "endpoint"
        assert [e["id"] for e in log.scan(ids[0] - 1, 500, "ArtifactSaved", "endpoint")[0]] == [ids[1], ids[2]]
    finally:
        engine.dispose()
