"""The scheduler's write transactions on PostgreSQL, sent as one psycopg pipeline (``db.begin_batched``).

Batching must keep every guarantee of the unbatched transaction: events get ids in the order they
were added, the ids the event log hands to live readers are the table's ids, a failing statement
rolls back the whole transaction (state and events), a transaction reads its own writes, and a
resume by ``after`` (``Last-Event-ID``) on a real runner returns exactly the newer events.
Uses the private PostgreSQL server of ``test_postgres.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from runner_process import RunnerProcess
from test_postgres import chain, new_database, pg_server  # noqa: F401 - pg_server is a fixture

from nbpipe import events as ev
from nbpipe.runner import db
from nbpipe.runner.eventlog import EventLog


@pytest.fixture
def engine(pg_server: str) -> sa.Engine:  # noqa: F811 - the imported fixture
    eng = db.connect(new_database(pg_server, f"b_{os.urandom(4).hex()}"))
    yield eng
    eng.dispose()


def _table(engine: sa.Engine) -> list[tuple[int, str, str]]:
    with engine.connect() as conn:
        return [(r.id, r.run_id, r.data) for r in conn.execute(sa.select(db.events).order_by(db.events.c.id))]


def test_event_ids_come_back_in_order_and_match_the_table(engine: sa.Engine) -> None:
    log = EventLog(engine)
    for n in range(3):  # a few transactions, a batch of several events and one of one
        with db.begin_batched(engine) as conn:
            for i in range(5 if n != 1 else 1):
                log.add(ev.StepLog(run_id=f"r{n}", ts=float(i), step=f"s{i}", attempt=1, text=f"{n}-{i}"))
            assert log.write(conn)
        log.committed()
    rows = _table(engine)
    assert len(rows) == 11
    ids = [r[0] for r in rows]
    assert ids == sorted(set(ids))
    kept = log.after(None, 0, 100)
    assert kept is not None and [e["id"] for e in kept] == ids
    assert [e["text"] for e in kept] == [f"{n}-{i}" for n in range(3) for i in range(5 if n != 1 else 1)]
    # what the table stores under each id is what the readers were handed for it
    assert all(ev.decode({**json.loads(d), "id": i}).text == k["text"]
               for (i, _, d), k in zip(rows, kept))
    assert log.after("r2", ids[5], 100) == [e for e in kept if e["id"] > ids[5] and e["run_id"] == "r2"]


def test_a_failing_statement_rolls_back_the_state_and_its_events(engine: sa.Engine) -> None:
    log = EventLog(engine)
    with db.begin_batched(engine) as conn:
        conn.execute(db.meta_info.insert(), {"key": "a", "value": "1"})
        log.add(ev.RunStarted(run_id="r", ts=1.0))
        log.write(conn)
    log.committed()
    first = _table(engine)
    with pytest.raises(sa.exc.DBAPIError):
        try:
            with db.begin_batched(engine) as conn:
                conn.execute(db.meta_info.insert(), {"key": "b", "value": "2"})
                conn.execute(db.meta_info.insert(), {"key": "a", "value": "duplicate"})  # fails at the server
                log.add(ev.RunFinished(run_id="r", ts=2.0, state="succeeded"))
                log.write(conn)
        except BaseException:
            log.discard()
            raise
    with engine.connect() as c:
        assert c.execute(sa.text("select key, value from nbpipe_meta where key in ('a', 'b')")).all() == [("a", "1")]
    assert _table(engine) == first  # no event of the rolled-back transaction
    # the connection went back to the pool usable; the next transaction's ids continue upwards
    with db.begin_batched(engine) as conn:
        conn.execute(db.meta_info.insert(), {"key": "b", "value": "3"})
        log.add(ev.RunFinished(run_id="r", ts=3.0, state="succeeded"))
        log.write(conn)
    log.committed()
    rows = _table(engine)
    assert len(rows) == 2 and rows[1][0] > rows[0][0]
    assert [e["id"] for e in log.after("r", 0, 10)] == [r[0] for r in rows]


def test_a_batched_transaction_reads_its_own_writes_and_single_row_returning_works(engine: sa.Engine) -> None:
    with db.begin_batched(engine) as conn:
        conn.execute(db.meta_info.insert(), {"key": "own", "value": "x"})
        assert conn.execute(sa.select(db.meta_info.c.value).where(db.meta_info.c.key == "own")).scalar() == "x"
        # a single-row insert into a table with a serial id reads it back (implicit RETURNING)
        res = conn.execute(db.audit.insert().values(ts=1.0, user="u", role="admin", action="a", profile="default"))
        assert res.inserted_primary_key[0] >= 1
        with pytest.raises(RuntimeError):
            with db.begin_batched(engine) as other:  # another connection does not see it before the commit
                assert other.execute(sa.select(db.meta_info.c.value).where(db.meta_info.c.key == "own")).all() == []
                raise RuntimeError("roll this one back")
    with engine.connect() as c:
        assert c.execute(sa.select(db.meta_info.c.value).where(db.meta_info.c.key == "own")).scalar() == "x"


def test_a_run_on_postgresql_resumes_its_events_by_id(pg_server: str, tmp_path: Path) -> None:  # noqa: F811
    url = new_database(pg_server, f"resume_{os.urandom(4).hex()}")
    r = RunnerProcess(tmp_path / "pg-resume", extra_env={"NBPIPE_DATABASE_URL": url}).start()
    try:
        c = r.client()
        run = c.submit(chain, {"x": 1}).wait(timeout=120)
        assert run.state == "succeeded" and run.output("add_one-3") == 4
        got = list(c.events(run.id, follow=False))
        ids = [e.id for e in got]
        assert ids == sorted(set(ids)) and len(ids) >= 8
        kinds = [e.type for e in got]
        assert kinds[0] == "RunCreated" and "RunStarted" in kinds and kinds[-1] == "RunFinished"
        for step in ("add_one", "add_one-2", "add_one-3"):  # each step started before it finished
            started = next(i for i, e in enumerate(got) if e.type == "StepStarted" and e.step == step)
            finished = next(i for i, e in enumerate(got) if e.type == "StepFinished" and e.step == step)
            assert started < finished
        for cut in (ids[0], ids[len(ids) // 2], ids[-2]):  # a resume returns exactly the newer events
            assert [e.id for e in c.events(run.id, after=cut, follow=False)] == [i for i in ids if i > cut]
        with sa.create_engine(url).connect() as conn:  # the ids the stream served are the table's
            assert [i for (i,) in conn.execute(sa.select(db.events.c.id).where(db.events.c.run_id == run.id)
                                               .order_by(db.events.c.id))] == ids
            # each step's one output row, written in its end's transaction without reading its id back
            arts = conn.execute(sa.select(db.artifacts.c.id, db.artifacts.c.step, db.artifacts.c.digest)
                                .where(db.artifacts.c.run_id == run.id).order_by(db.artifacts.c.id)).all()
        steps = {s["name"]: s for s in run.snapshot()["steps"]}
        assert [(a.step, a.digest) for a in arts] == [(n, next(iter(steps[n]["outputs"].values()))["digest"])
                                                      for n in ("add_one", "add_one-2", "add_one-3")]
        assert len({a.id for a in arts}) == 3
    finally:
        r.stop()
