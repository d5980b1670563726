"""Scale (issue 14, item 3): per-step cost of 500- and 10,000-step runs, and the runner's memory.

``python benchmarks/scale.py [--sizes 500,10000] [--shapes fanout,chain]`` starts the embedded
runner in a fresh ``NBPIPE_HOME`` and, for each shape and size, times one run of

- **fanout**: N independent ``inc`` steps (the runner runs ``parallelism`` at once);
- **chain**: N ``inc`` steps, each taking the previous one's output (strictly one at a time);

from ``nbpipe.run`` to ``wait()`` returning (caching off), and reports per-step cost = wall / N,
the ratio to the smallest size, the runner's CPU per step, its peak RSS (``VmHWM``) and the load
average before each run. The in-process floor (the same N calls in one loop) is printed alongside.
Results: ``benchmarks/results/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["NBPIPE_HOME"] = tempfile.mkdtemp(prefix="nbpipe-scale-")

import nbpipe  # noqa: E402
from nbpipe import component, pipeline  # noqa: E402
from nbpipe._embedded import stop_local_runner  # noqa: E402


@component(name="inc", cache=False)
def inc(x: int) -> int:
    return x + 1


def fanout(n: int):  # noqa: ANN201
    @pipeline(name=f"fanout-{n}")
    def p(x: int = 0):
        for _ in range(n):
            inc(x=x)
    return p


def chain(n: int):  # noqa: ANN201
    @pipeline(name=f"chain-{n}")
    def p(x: int = 0):
        s = inc(x=x)
        for _ in range(n - 1):
            s = inc(x=s.output)
    return p


def _proc(pid: int) -> tuple[float, int]:
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    cpu = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    hwm = next(int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith("VmHWM:"))
    return cpu, hwm * 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="500,10000")
    ap.add_argument("--shapes", default="fanout,chain")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "scale.json"))
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    try:
        nbpipe.run(chain(2), x=0).wait()  # starts the runner and its zygote
        pid = int(json.load(open(os.path.join(os.environ["NBPIPE_HOME"], "runner.json")))["pid"])
        for shape in args.shapes.split(","):
            for n in sizes:
                pipe = {"fanout": fanout, "chain": chain}[shape](n)
                t0, v = time.perf_counter(), 0
                for _ in range(n):
                    v = inc.func(v)  # the floor: the same calls in one process
                floor = time.perf_counter() - t0
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                nbpipe.build_package(pipe)  # traced and packaged (reused by the submit below)
                package_s = time.perf_counter() - t0
                cpu0, _ = _proc(pid)
                r = nbpipe.run(pipe, x=0).wait(timeout=3600)
                wall = time.perf_counter() - t0
                cpu1, hwm = _proc(pid)
                states = {s["state"] for s in r.snapshot()["steps"]}
                assert states == {"succeeded"}, states
                row = {"shape": shape, "steps": n, "wall_s": wall, "per_step_ms": wall / n * 1000,
                       "trace_package_s": package_s, "runner_cpu_ms_per_step": (cpu1 - cpu0) / n * 1000,
                       "runner_peak_rss_mb": hwm / 1e6, "load_before": load, "floor_s": floor}
                base = next((b for b in rows if b["shape"] == shape), None)
                row["ratio_to_smallest"] = row["per_step_ms"] / base["per_step_ms"] if base else 1.0
                rows.append(row)
                print(f"{shape:6} {n:6} steps: {wall:7.1f} s, {row['per_step_ms']:5.1f} ms/step "
                      f"(x{row['ratio_to_smallest']:.2f} of {sizes[0]}), runner CPU {row['runner_cpu_ms_per_step']:.1f} "
                      f"ms/step, runner peak RSS {row['runner_peak_rss_mb']:.0f} MB, load {load:.1f}", flush=True)
    finally:
        stop_local_runner()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
