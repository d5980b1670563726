"""The runner's event log: events are written in the same transaction as the state they describe.

A state change and its event commit together (see ``Scheduler._tx``), so a runner killed at
any point leaves a database whose events replay to the same states. Events queued during a
transaction are inserted in one batch just before its commit; readers are woken after the
commit. Readers wait on :meth:`EventLog.wait` with the sequence number they last saw, so no
wake-up is lost between reading the table and waiting.

The newest committed events are also kept in memory (:meth:`EventLog.after`), so the live
readers — every run's SSE stream, the endpoint follower — are fanned out to without querying the
table on each commit; the table serves older ids (a resume by ``Last-Event-ID``, a restart).
Non-goal: event contents (see :mod:`nbpipe.events`).
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import json
from typing import Any

import sqlalchemy as sa

from .. import events as ev
from . import db


_NAMES: dict[type, tuple[str, ...]] = {}
# PostgreSQL: the ids come back with the insert (one statement, no second round trip), in the
# batch's order; SQLite reads max(id) in-process, which costs less than its RETURNING path.
_EVENTS_ADD_IDS = db.events.insert().returning(db.events.c.id, sort_by_parameter_order=True)
# In a pipelined transaction (db.begin_batched) the ids are read after the commit instead: psycopg
# queues one INSERT … RETURNING per event and the commit's sync brings their results, so the whole
# transaction is one round trip (the RETURNING above made the pipeline wait for it before COMMIT).
_PG_EVENTS_ADD = "INSERT INTO events (run_id, type, data, ts) VALUES (%s, %s, %s, %s) RETURNING id"
KEEP = 20_000  # committed events kept in memory for the live readers


def _fields(event: ev.Event) -> dict[str, Any]:
    """``ev.encode(event)`` without ``id``, shallow: it is dumped to JSON at once, so the deep copy
    ``dataclasses.asdict`` makes of every nested list and dict is not needed (a third of a cached step)."""
    names = _NAMES.get(type(event))
    if names is None:
        names = _NAMES[type(event)] = tuple(f.name for f in dataclasses.fields(event) if f.name != "id")
    own = getattr(event, "__dict__", None)
    if own is not None and len(own) == len(names) + 1:  # a frozen dataclass's __dict__: its fields, id too
        data = dict(own)  # ~5x faster than reading each field; the JSON is dumped with sorted keys anyway
        del data["id"]
    else:
        data = {n: getattr(event, n) for n in names}
    data["type"] = event.type
    return data


class EventLog:
    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self.seq = 0
        self._waiter: asyncio.Event | None = None
        self._pending: list[dict[str, Any]] = []
        self._written: list[dict[str, Any]] = []  # inserted in the open transaction, with their ids
        self._id_cursor: Any = None  # PostgreSQL, pipelined: the psycopg cursor the ids come back on
        self._ids: list[int] = []  # the kept events' ids (ascending) ...
        # ... and [run id, event, id]: the event as the table reads it back, kept as its JSON text until a
        # reader asks for it (parsed once then; a run nobody follows live is never parsed here)
        self._kept: list[list[Any]] = []
        self._floor: int | None = None  # every event with an id above it is kept (None: not known yet)

    def add(self, event: ev.Event) -> None:
        """Queue an event for the transaction in progress (see :meth:`write`)."""
        data = _fields(event)
        self._pending.append({"run_id": event.run_id, "type": event.type, "data": db.dumps(data), "ts": event.ts})

    def write(self, conn: sa.Connection) -> bool:
        """Insert the queued events in ``conn``'s transaction (called just before it commits)."""
        batch, self._pending = self._pending, []
        if batch:
            if conn.dialect.name == "postgresql" and conn.info.get(db._PIPE) is not None:
                import psycopg

                cur = conn.connection.dbapi_connection.cursor()
                try:
                    cur.executemany(_PG_EVENTS_ADD, [(r["run_id"], r["type"], r["data"], r["ts"]) for r in batch],
                                    returning=True)
                except psycopg.Error as exc:  # an earlier statement failed: as SQLAlchemy would raise it
                    raise sa.exc.DBAPIError.instance(_PG_EVENTS_ADD, None, exc, psycopg.Error) from exc
                self._id_cursor = cur  # read in committed(): not waited for before the COMMIT
            elif conn.dialect.name == "postgresql":
                for row, (id_,) in zip(batch, conn.execute(_EVENTS_ADD_IDS, batch).all(), strict=True):
                    row["id"] = int(id_)
            else:
                db.insert(conn, db.events, batch)
                # ids are consecutive: this process is the table's only writer, one transaction at a time
                last = db.last_id(conn, db.events)
                for i, row in enumerate(batch):
                    row["id"] = last - len(batch) + 1 + i
            self._written = batch
        return bool(batch)

    def discard(self) -> None:
        """The transaction rolled back: its events describe changes that never happened."""
        self._pending = []
        self._written = []
        self._id_cursor = None

    def committed(self) -> None:
        """Keep the committed events for the live readers, then wake them."""
        batch, self._written = self._written, []
        cur, self._id_cursor = self._id_cursor, None
        if cur is not None:  # the statements' results arrived with the commit's (one per event, in order)
            ids = []
            while True:
                ids.append(int(cur.fetchone()[0]))
                if not cur.nextset():
                    break
            cur.close()
            for row, id_ in zip(batch, ids, strict=True):
                row["id"] = id_
        if batch:
            if self._floor is None or (self._ids and batch[0]["id"] != self._ids[-1] + 1) or (
                    not self._ids and batch[0]["id"] != self._floor + 1):
                self._ids, self._kept, self._floor = [], [], batch[0]["id"] - 1  # a gap: start keeping anew
            for row in batch:
                self._ids.append(row["id"])
                self._kept.append([row["run_id"], row["data"], row["id"], row["type"]])
            if len(self._ids) > 2 * KEEP:
                drop = len(self._ids) - KEEP
                self._floor = self._ids[drop - 1]
                del self._ids[:drop], self._kept[:drop]
        self.seq += 1
        if self._waiter is not None:
            old, self._waiter = self._waiter, None
            old.set()

    def after(self, run_id: str | None, after: int, limit: int) -> list[dict[str, Any]] | None:
        """Committed events with an id above ``after`` (of one run, or all), oldest first, from
        memory; None when memory does not reach back that far (read the table instead).
        Callers must not change the returned events (they are shared by every reader)."""
        if self._floor is None or after < self._floor:
            return None
        out: list[dict[str, Any]] = []
        for i in range(bisect.bisect_right(self._ids, after), len(self._ids)):
            if run_id is None or self._kept[i][0] == run_id:
                out.append(self._event(i))
                if len(out) >= limit:
                    break
        return out

    def scan(self, after: int, limit: int, kind: str, mentions: str) -> tuple[list[dict[str, Any]], int] | None:
        """Of the (at most ``limit``) kept events after id ``after``: those of type ``kind`` that may mention
        ``mentions`` (a plain word, which JSON never escapes: their text contains it; one a reader already
        parsed is returned whatever it says), and the id of the last one looked at (``after`` if none);
        None when memory does not reach back that far. The others are never parsed here (the endpoint
        follower looks at every event for one kind of artifact, and checks what it gets)."""
        if self._floor is None or after < self._floor:
            return None
        start = bisect.bisect_right(self._ids, after)
        end = min(len(self._ids), start + limit)
        kept = self._kept
        found = [self._event(i) for i in range(start, end) if kept[i][3] == kind
                 and (not isinstance(kept[i][1], str) or mentions in kept[i][1])]
        return found, (self._ids[end - 1] if end > start else after)

    def newest(self) -> tuple[str, dict[str, Any]] | None:
        """The newest committed event kept, as (run id, event); None if none is kept."""
        return (self._kept[-1][0], self._event(len(self._kept) - 1)) if self._kept else None

    def _event(self, i: int) -> dict[str, Any]:
        entry = self._kept[i]
        data = entry[1]
        if isinstance(data, str):  # parsed on first read (two readers at once: parsed twice, the same)
            data = json.loads(data)
            data["id"] = entry[2]
            entry[1] = data
        return data  # type: ignore[no-any-return]

    def flush(self) -> None:
        """Kept for callers that flushed the old batched log; events are written on commit now."""

    async def wait(self, seq: int, timeout: float) -> bool:
        """Wait until events newer than ``seq`` were stored; False on timeout."""
        if self.seq != seq:
            return True
        if self._waiter is None:
            self._waiter = asyncio.Event()
        waiter = self._waiter
        try:
            await asyncio.wait_for(waiter.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False
