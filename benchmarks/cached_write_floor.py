"""Issue 14, item 2: the floor of *writing down* a fully cached re-run, without the runner around it.

    .venv/bin/python benchmarks/cached_write_floor.py [--prior 2000] [--runs 1500]

A fully cached re-run of the 10-step chain writes one run row, 10 step rows, 10 artifact rows and 23
events in one SQLite transaction (WAL, synchronous=NORMAL, the runner's own schema from
``nbpipe.runner.db``). This writes exactly that with the bare ``sqlite3`` driver — no SQLAlchemy,
no HTTP, no scheduler — into a database that already holds ``--prior`` such runs, and prints the
CPU time of one transaction (inserts + commit) for the full record and for records with parts left
out, so the cost of each part of the record is known. The runner's whole cached re-run costs ~1.5 ms
of CPU (benchmarks/README.md, seventh round); kfp.local's in-process cache check of the same chain
1.1-1.3 ms. Medians of thread CPU time, so other load on the machine matters less than for wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import sqlalchemy as sa  # noqa: E402

from nbpipe.runner import db  # noqa: E402

RUN = ("INSERT INTO runs (id, name, pipeline, experiment, package, params, state, reason, labels, created_at, "
       "started_at, finished_at, profile) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")
STEP = ("INSERT INTO steps (run_id, name, component, state, attempt, max_attempts, reason, traceback, outputs, "
        "inputs, cache_key, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)")
ART = "INSERT INTO artifacts (run_id, step, name, digest, key, kind, format, size, created_at) VALUES (?,?,?,?,?,?,?,?,?)"
EVENT = "INSERT INTO events (run_id, type, data, ts) VALUES (?,?,?,?)"


def measure(prior: int, runs: int, artifacts: bool = True, events: int = 23, steps: bool = True) -> float:
    """Median CPU seconds of one cached run's transaction (see the module's docstring)."""
    path = os.path.join(tempfile.mkdtemp(prefix="nbpipe-floor-"), "floor.db")
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "wal_autocheckpoint=0"):
        conn.execute(f"PRAGMA {pragma}")
    engine = sa.create_engine("sqlite://", creator=lambda: conn)
    db.metadata.create_all(engine)
    conn.execute("INSERT INTO packages VALUES ('p', 'p', 1, '{}', 0)")
    digests = [secrets.token_hex(32) for _ in range(10)]

    def one(i: int) -> float:
        rid = time.strftime("r%Y%m%d-%H%M%S-") + secrets.token_hex(3) + str(i)
        now = time.time()
        t0 = time.thread_time()
        conn.execute("BEGIN")
        conn.execute(RUN, (rid, "cached-chain 2026-12-02 18:00:00", "cached-chain", "Default", "p", '{"x": 1}',
                           "succeeded", "", "{}", now, now, now, "default"))
        if steps:
            conn.executemany(STEP, [(rid, f"inc-{k}", "inc", "cached", 0, 1, "reused from run r2026 by the cache", "",
                                     json.dumps({"output": {"digest": digests[k], "key": "artifacts/" + digests[k],
                                                            "kind": "value", "format": "json", "size": 2, "value": k}}),
                                     '{"x": {"step": "inc-%d", "output": "output"}}' % k, secrets.token_hex(32), now)
                                    for k in range(10)])
        if artifacts:
            conn.executemany(ART, [(rid, f"inc-{k}", "output", digests[k], "artifacts/" + digests[k], "value", "json",
                                    2, now) for k in range(10)])
        conn.executemany(EVENT, [(rid, "StepFinished", json.dumps({"run_id": rid, "step": f"inc-{k}", "state": "cached",
                                                                   "reason": "reused from run r2026 by the cache",
                                                                   "attempt": 0, "duration": 0.0, "traceback": ""}), now)
                                 for k in range(events)])
        conn.execute("COMMIT")
        return time.thread_time() - t0

    for i in range(prior):
        one(i)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    took = []
    for i in range(runs):
        took.append(one(prior + i))
        if i % 50 == 49:  # the runner checkpoints in the background, ~every 8 runs' worth of pages
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    conn.close()
    return statistics.median(took)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prior", type=int, default=2000, help="cached runs already in the database")
    ap.add_argument("--runs", type=int, default=1500, help="cached runs measured")
    args = ap.parse_args()
    print(f"load {os.getloadavg()[0]:.1f}; {args.prior} runs in the database, median of {args.runs}")
    cases = [("the full record (what the runner writes)", {}),
             ("without the 10 artifact rows", {"artifacts": False}),
             ("with 3 events instead of 23", {"events": 3}),
             ("neither", {"artifacts": False, "events": 3}),
             ("the run row and 3 events only", {"artifacts": False, "events": 3, "steps": False})]
    for label, kw in cases:
        print(f"  {measure(args.prior, args.runs, **kw) * 1e3:6.3f} ms CPU  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
