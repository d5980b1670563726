"""The runner's event log: events are written in the same transaction as the state they describe.

A state change and its event commit together (see ``Scheduler._tx``), so a runner killed at
any point leaves a database whose events replay to the same states. Events queued during a
transaction are inserted in one batch just before its commit; readers are woken after the
commit. Readers wait on :meth:`EventLog.wait` with the sequence number they last saw, so no
wake-up is lost between reading the table and waiting. Non-goal: event contents (see
:mod:`nbpipe.events`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import sqlalchemy as sa

from .. import events as ev
from . import db


_NAMES: dict[type, tuple[str, ...]] = {}
_EVENTS_ADD = db.events.insert()  # built once: building it per commit cost more than the insert


def _fields(event: ev.Event) -> dict[str, Any]:
    """``ev.encode(event)`` without ``id``, shallow: it is dumped to JSON at once, so the deep copy
    ``dataclasses.asdict`` makes of every nested list and dict is not needed (a third of a cached step)."""
    names = _NAMES.get(type(event))
    if names is None:
        names = _NAMES[type(event)] = tuple(f.name for f in dataclasses.fields(event) if f.name != "id")
    data = {n: getattr(event, n) for n in names}
    data["type"] = event.type
    return data


class EventLog:
    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self.seq = 0
        self._waiter: asyncio.Event | None = None
        self._pending: list[dict[str, Any]] = []

    def add(self, event: ev.Event) -> None:
        """Queue an event for the transaction in progress (see :meth:`write`)."""
        data = _fields(event)
        self._pending.append({"run_id": event.run_id, "type": event.type, "data": db.dumps(data), "ts": event.ts})

    def write(self, conn: sa.Connection) -> bool:
        """Insert the queued events in ``conn``'s transaction (called just before it commits)."""
        batch, self._pending = self._pending, []
        if batch:
            conn.execute(_EVENTS_ADD, batch)
        return bool(batch)

    def discard(self) -> None:
        """The transaction rolled back: its events describe changes that never happened."""
        self._pending = []

    def committed(self) -> None:
        """Wake readers after a commit that stored events."""
        self.seq += 1
        if self._waiter is not None:
            old, self._waiter = self._waiter, None
            old.set()

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
