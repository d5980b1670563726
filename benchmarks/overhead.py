"""Runner overhead per step and per cached run (issue 14, items 1 and 2), with the runner's CPU.

``python benchmarks/overhead.py [--runs-cached N] [--runs-chain N]`` starts the embedded runner in
a fresh ``NBPIPE_HOME`` and times:

- **cached**: the 10-step chain with caching on, run once to fill the cache, then N re-runs, each
  ``nbpipe.run(...).wait()`` (client call to all outputs known; every step must come back cached);
- **chain**: the same chain with caching off, N runs; per-step = the median over steps of (this
  step's end − the previous step's end), as ``nbpipe_side.py`` does.

Medians are reported with the load average, and the runner's CPU per run / per step (from
``/proc/PID/stat``), which does not stretch with machine load. For an A/B against another tree,
run it with ``PYTHONPATH=/path/to/that/tree`` (the runner subprocess inherits it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ["NBPIPE_HOME"] = tempfile.mkdtemp(prefix="nbpipe-overhead-")

import nbpipe  # noqa: E402
from nbpipe import component, pipeline  # noqa: E402
from nbpipe._embedded import stop_local_runner  # noqa: E402


@component(name="inc", cache=True)
def inc_cached(x: int) -> int:
    return x + 1


@component(name="inc_plain", cache=False)
def inc(x: int) -> int:
    return x + 1


@pipeline(name="cached-chain")
def cached_chain(x: int = 0):
    s = inc_cached(x=x)
    for _ in range(9):
        s = inc_cached(x=s.output)


@pipeline(name="chain")
def chain(x: int = 0):
    s = inc(x=x)
    for _ in range(9):
        s = inc(x=s.output)


def _cpu(pid: int) -> float:
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs-cached", type=int, default=100)
    ap.add_argument("--runs-chain", type=int, default=15)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out: dict[str, object] = {}
    try:
        nbpipe.run(cached_chain, x=1).wait()
        nbpipe.run(chain, x=0).wait()
        pid = int(json.load(open(os.path.join(os.environ["NBPIPE_HOME"], "runner.json")))["pid"])

        load, walls = os.getloadavg()[0], []
        c0, s0 = _cpu(pid), time.process_time()
        for _ in range(args.runs_cached):
            t0 = time.perf_counter()
            r = nbpipe.run(cached_chain, x=1).wait()
            walls.append(time.perf_counter() - t0)
            assert all(s["state"] == "cached" for s in r.last_snapshot["steps"]), r.last_snapshot
        n = args.runs_cached
        out["cached"] = {"median_ms": statistics.median(walls) * 1000, "min_ms": min(walls) * 1000,
                         "runner_cpu_ms_per_run": (_cpu(pid) - c0) / n * 1000,
                         "client_cpu_ms_per_run": (time.process_time() - s0) / n * 1000, "load_before": load}

        load, meds, walls = os.getloadavg()[0], [], []
        c0 = _cpu(pid)
        for i in range(args.runs_chain):
            t0 = time.time()
            r = nbpipe.run(chain, x=i).wait()
            walls.append(time.time() - t0)
            ends = sorted(s["finished_at"] for s in r.snapshot()["steps"])
            meds.append(statistics.median([b - a for a, b in zip(ends, ends[1:])]))
        out["chain"] = {"per_step_median_ms": statistics.median(meds) * 1000, "wall_median_ms": statistics.median(walls) * 1000,
                        "runner_cpu_ms_per_step": (_cpu(pid) - c0) / args.runs_chain / 10 * 1000, "load_before": load}
    finally:
        stop_local_runner()
    c, ch = out["cached"], out["chain"]
    print(f"cached re-run, whole run (load {c['load_before']:.1f}): median {c['median_ms']:.2f} ms, min {c['min_ms']:.2f} ms; "
          f"runner CPU {c['runner_cpu_ms_per_run']:.2f} ms/run, client CPU {c['client_cpu_ms_per_run']:.2f} ms/run "
          f"(target <= 2 ms)")
    print(f"chain of 10 (load {ch['load_before']:.1f}): median per-step {ch['per_step_median_ms']:.1f} ms, "
          f"wall {ch['wall_median_ms']:.0f} ms, runner CPU {ch['runner_cpu_ms_per_step']:.2f} ms/step (target <= 5 ms)")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
