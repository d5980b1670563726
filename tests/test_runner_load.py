"""Concurrent uploads and submissions: none fails, none is lost, no parallelism slot leaks.

200 submissions from 20 threads, each thread with its own client (so uploads of the same and
of different packages race), against one real runner. Before, 0–3 of 50 failed per try (500s,
"No package … upload it first" right after a 201, runs stuck queued, a leaked slot).
"""

from __future__ import annotations

import json
import threading
import time

from nbpipe import component, pipeline

THREADS, PER_THREAD = 20, 10


@component(cache=True)
def first(x: int) -> int:
    return x * 2


@component(cache=True)
def second(y: int) -> int:
    return y + 1


@pipeline
def chain(x: int = 0):
    second(y=first(x=x).output)


def _package_named(name: str) -> bytes:
    import io
    import zipfile

    from nbpipe.package import build_package

    zin = zipfile.ZipFile(io.BytesIO(build_package(chain)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            blob = zin.read(info)
            if info.filename == "nbpipe.json":
                spec = json.loads(blob)
                spec["pipeline"]["name"] = name
                blob = json.dumps(spec).encode()
            zout.writestr(info.filename, blob)
    return out.getvalue()


def test_200_concurrent_submissions_all_succeed_and_free_their_slots(nb_runner_factory) -> None:
    r = nb_runner_factory("load")
    shared = _package_named("chain-shared")
    own = [_package_named(f"chain-{t}") for t in range(THREADS)]
    results: dict[str, str] = {}
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def worker(t: int) -> None:
        c = r.client()  # its own client: every thread uploads for itself
        runs = []
        try:
            start.wait()
            for i in range(PER_THREAD):
                pkg = shared if i % 2 else own[t]
                runs.append(c.submit(pkg, {"x": (t * PER_THREAD + i) % 60}))
            for run in runs:
                results[run.id] = run.wait(timeout=600, raise_on_failure=False).snapshot()["state"]
        except Exception as exc:  # noqa: BLE001 - collected and reported below
            with lock:
                errors.append(f"thread {t}: {type(exc).__name__}: {exc}")

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.monotonic() - t0
    print(f"\n{THREADS * PER_THREAD} submissions from {THREADS} threads: {elapsed:.1f} s, {len(errors)} failures")
    assert errors == []
    assert len(results) == THREADS * PER_THREAD
    assert set(results.values()) == {"succeeded"}
    c = r.client()
    listed = c.runs(limit=1000)
    assert len(listed) == THREADS * PER_THREAD and {x["state"] for x in listed} == {"succeeded"}
    health = c.health()
    assert health["running_steps"] == 0 and health["active_runs"] == 0 and health["loop"]["ticking"]
