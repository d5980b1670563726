"""Event latency (issue 14, item 5): a step's state change → an SSE client has it.

``python benchmarks/event_latency.py [--runs N] [--out FILE]`` starts the embedded runner in a fresh
``NBPIPE_HOME``, follows ``GET /api/v1/events`` (Server-Sent Events, all runs) from a thread,
and runs N 10-step chains (caching off). For every StepStarted / StepFinished / RunFinished event,
latency = the time the client parsed it − the event's ``ts`` (stamped by the runner when it
changed the state, before the commit). Same machine, same clock. Reports p50 / p95 / max, with
the load average. Target: p95 ≤ 50 ms. Not measured here: the widget model's own hop (kernel
comm → browser), which adds the kernel's message round trip.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ["NBPIPE_HOME"] = tempfile.mkdtemp(prefix="nbpipe-evlat-")

import httpx  # noqa: E402

import nbpipe  # noqa: E402
from nbpipe import component, pipeline  # noqa: E402
from nbpipe import events as ev  # noqa: E402
from nbpipe.client import default_client  # noqa: E402


@component(cache=False)
def inc(x: int) -> int:
    return x + 1


@pipeline(name="chain10")
def chain10(x: int = 0):
    s = inc(x=x)
    for _ in range(9):
        s = inc(x=s.output)


def follow(client, after: int, seen: list[tuple[str, float]], stop: threading.Event) -> None:
    try:
        _follow(client, after, seen, stop)
    except httpx.HTTPError:  # the runner stopped at the end of the measurement: the stream ends with it
        if not stop.is_set():
            raise


def _follow(client, after: int, seen: list[tuple[str, float]], stop: threading.Event) -> None:
    with client._http.stream("GET", "/api/v1/events", params={"after": after},
                             timeout=httpx.Timeout(None, connect=10.0)) as resp:
        data: list[str] = []
        for line in resp.iter_lines():
            now = time.time()
            if line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                e = ev.decode("\n".join(data))
                data = []
                if isinstance(e, (ev.StepStarted, ev.StepFinished, ev.RunFinished)):
                    seen.append((e.type, now - e.ts))
            if stop.is_set():
                return


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    client = default_client()
    nbpipe.run(chain10, x=0).wait()  # warm: runner, zygote
    after = client.get_run(client.runs(limit=1)[0]["id"])["last_event_id"]
    seen: list[tuple[str, float]] = []
    stop = threading.Event()
    t = threading.Thread(target=follow, args=(client, after, seen, stop), daemon=True)
    t.start()
    time.sleep(0.5)  # the stream is open
    load = os.getloadavg()
    for i in range(args.runs):
        nbpipe.run(chain10, x=i).wait()
    deadline = time.time() + 10
    while sum(1 for k, _ in seen if k == "RunFinished") < args.runs and time.time() < deadline:
        time.sleep(0.05)
    stop.set()
    lat = [d for _, d in seen]
    result = {"events": len(lat), "p50_ms": statistics.median(lat) * 1000, "p95_ms": pct(lat, 95) * 1000,
              "max_ms": max(lat) * 1000, "load_before": load, "load_after": os.getloadavg(), "runs": args.runs}
    print(f"event latency over {len(lat)} events of {args.runs} chain runs (load {load[0]:.1f} -> "
          f"{result['load_after'][0]:.1f}): p50 {result['p50_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms, "
          f"max {result['max_ms']:.1f} ms  {'met' if result['p95_ms'] <= 50 else 'MISSED'} (target p95 <= 50 ms)")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    from nbpipe._embedded import stop_local_runner

    stop_local_runner()
    return 0


if __name__ == "__main__":
    sys.exit(main())
