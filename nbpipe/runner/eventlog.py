"""The runner's event log: events are queued and written once per event-loop turn.

Writing each event in its own transaction cost a commit per state change (several per
step); batching per loop turn also wakes Server-Sent-Event readers once per batch. Readers
wait on :meth:`EventLog.wait` with the sequence number they last saw, so no wake-up is lost
between reading the table and waiting. Non-goal: event contents (see :mod:`nbpipe.events`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa

from .. import events as ev
from . import db


class EventLog:
    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self.seq = 0
        self._waiter = asyncio.Event()
        self._pending: list[dict[str, Any]] = []
        self._scheduled = False

    def emit(self, event: ev.Event) -> None:
        """Queue an event; it is stored (and readers woken) at the end of this loop turn."""
        data = ev.encode(event)
        data.pop("id", None)
        self._pending.append({"run_id": event.run_id, "type": event.type, "data": db.dumps(data), "ts": event.ts})
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if not batch:
            return
        with self.engine.begin() as conn:
            conn.execute(db.events.insert(), batch)
        self.seq += 1
        old, self._waiter = self._waiter, asyncio.Event()
        old.set()

    async def wait(self, seq: int, timeout: float) -> bool:
        """Wait until events newer than ``seq`` were stored; False on timeout."""
        if self.seq != seq:
            return True
        waiter = self._waiter
        try:
            await asyncio.wait_for(waiter.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False
