"""WAL checkpoints of the runner's SQLite database run on their own thread, not in the event loop's
commits (nbpipe.runner.checkpoint): real SQLite files, real threads; waits on the thread's state."""

from __future__ import annotations

import os
import time

import sqlalchemy as sa

from nbpipe.runner import checkpoint, db


def _until(pred, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _write(engine: sa.Engine, n: int) -> None:
    """``n`` commits of a ~4 KB row each: about one WAL page per commit."""
    for i in range(n):
        with engine.begin() as conn:
            conn.execute(sa.insert(db.meta_info), {"key": f"k{time.monotonic_ns()}-{i}", "value": "x" * 4000})


def test_commits_leave_checkpoints_to_the_thread_and_it_stops_with_the_engine(tmp_path):
    path = tmp_path / "nbpipe.db"
    engine = db.connect(f"sqlite:///{path}", background_checkpoints=True)
    cp = checkpoint.of(engine)
    assert cp is not None and cp._thread.is_alive()
    with engine.connect() as conn:  # the writers' own checkpoint is only the backstop
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == checkpoint.BACKSTOP_PAGES
    size0 = os.path.getsize(path)
    looks = cp.checkpoints
    _write(engine, 20)
    # The thread copies the commits into the database file (WAL mode writes it only when checkpointing).
    _until(lambda: cp.checkpoints > looks and os.path.getsize(path) > size0 + 20 * 4000, "the thread's checkpoint")
    engine.dispose()
    _until(lambda: not cp._thread.is_alive(), "the thread to stop with the engine")


def test_without_the_thread_writers_do_not_checkpoint_at_sqlites_default(tmp_path):
    path = tmp_path / "nbpipe.db"
    engine = db.connect(f"sqlite:///{path}", background_checkpoints=True)
    cp = checkpoint.of(engine)
    cp.stop()
    assert not cp._thread.is_alive()
    size0 = os.path.getsize(path)
    _write(engine, 1300)  # past SQLite's default of 1,000 pages, below the backstop
    assert os.path.getsize(f"{path}-wal") > 1200 * 4096
    assert os.path.getsize(path) == size0  # no commit copied the WAL back
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM nbpipe_meta WHERE key LIKE 'k%'").scalar() == 1300
    engine.dispose()


def test_other_connections_keep_sqlites_own_checkpoints(tmp_path):
    engine = db.connect(f"sqlite:///{tmp_path / 'other.db'}")
    assert checkpoint.of(engine) is None
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
    engine.dispose()


def test_a_thread_that_cannot_open_the_file_gives_up_and_leaves_it_to_the_backstop(tmp_path):
    missing = tmp_path / "no" / "such" / "dir" / "x.db"
    cp = checkpoint.Checkpointer(str(missing), interval=0.01)
    _until(lambda: not cp._thread.is_alive(), "the thread to give up")
    assert cp.checkpoints == 0
    assert not missing.exists()
