"""SQLite WAL checkpoints on a thread of their own, not inside the event loop's commits.

With SQLite's default ``wal_autocheckpoint`` (1,000 pages) the commit that crosses the limit copies
the WAL back into the database and syncs both files before it returns: on the runner that is the
event loop's thread, a fully cached re-run writes ~45 pages, so every ~20th run (and a chain's step
every few steps) waited for two ``fdatasync`` and a few hundred page copies. Here a daemon thread with
its own connection runs a ``PASSIVE`` checkpoint (it never blocks writers or readers) whenever
another connection committed since its last look (``PRAGMA data_version``), a few times a second.
The writers' own automatic checkpoint stays as a backstop at a larger size (:data:`BACKSTOP_PAGES`),
for bursts between two looks or if this thread could not open the database.

Non-goals: PostgreSQL (it checkpoints itself) and in-memory databases (no WAL).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import weakref
from typing import Any

log = logging.getLogger(__name__)

INTERVAL_S = 0.2  # how often the thread looks for new commits
BACKSTOP_PAGES = 20_000  # the writers' wal_autocheckpoint while a checkpointer runs (~80 MB of WAL)


class Checkpointer:
    """Checkpoints the WAL of the SQLite file at ``path`` until :meth:`stop` (or its owner is collected)."""

    def __init__(self, path: str, interval: float = INTERVAL_S):
        self.path = path
        self.interval = interval
        self.checkpoints = 0  # PASSIVE checkpoints run (for tests and diagnostics)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nbpipe-wal-checkpoint", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:  # the writers' backstop checkpoints instead
            log.warning("WAL checkpoints stay on the writers: cannot open %s (%s)", self.path, exc)
            return
        try:
            conn.execute("PRAGMA wal_autocheckpoint=0")  # (this connection never writes anyway)
            seen = None
            while not self._stop.wait(self.interval):
                seen = self._look(conn, seen)
            self._look(conn, seen)  # what the last commits left, before the database closes
        finally:
            conn.close()

    def _look(self, conn: sqlite3.Connection, seen: Any) -> Any:
        try:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if version != seen:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self.checkpoints += 1
            return version
        except sqlite3.Error as exc:  # busy or gone: try again at the next look
            log.debug("WAL checkpoint of %s skipped: %s", self.path, exc)
            return seen


def attach(engine: Any, path: str) -> Checkpointer:
    """Start a :class:`Checkpointer` for ``engine``'s database file, stopped when the engine is
    disposed or garbage-collected."""
    from sqlalchemy import event as sa_event

    cp = Checkpointer(path)
    sa_event.listen(engine, "engine_disposed", lambda _engine: cp.stop())
    weakref.finalize(engine, cp._stop.set)  # (no join from a finalizer)
    _BY_ENGINE[engine] = cp
    return cp


def of(engine: Any) -> Checkpointer | None:
    """The checkpointer :func:`attach` started for ``engine``, if any."""
    return _BY_ENGINE.get(engine)


_BY_ENGINE: "weakref.WeakKeyDictionary[Any, Checkpointer]" = weakref.WeakKeyDictionary()
