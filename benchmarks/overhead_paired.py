"""Paired A/B for issue 14: two trees' runners up at once, one client alternating requests between them.

``python benchmarks/overhead_paired.py TREE_A TREE_B [CACHED_RUNS] [CHAIN_RUNS]`` (run from outside the
trees, e.g. ``cd /tmp``) starts ``python -m nbpipe.runner`` from each tree (``PYTHONPATH=TREE``, each in a
fresh data dir), warms both, then alternates: one cached re-run of the chain on A, one on B (the order
swapped every round), then the same with the uncached chain. Both runners see the same machine load at
the same moments, which interleaved cells minutes apart (``overhead_ab.py``) do not on a shared machine.
The client is this process's nbpipe, the same for both: it compares runners only. Prints per tree the
load, the cached re-run's median / 25th / 10th percentile and the runner's CPU per run (schedstat), the
chain's median per-step time (and its best run) and the runner's CPU per step.
"""
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ["NBPIPE_HOME"] = tempfile.mkdtemp(prefix="nbpipe-paired-")
import nbpipe  # noqa: E402
from nbpipe.client import Client  # noqa: E402
from overhead import cached_chain, chain  # noqa: E402


def cpu(pid: int) -> float:
    return sum(int(open(f"/proc/{pid}/task/{t}/schedstat").read().split()[0])
               for t in os.listdir(f"/proc/{pid}/task")) / 1e9


def main() -> None:
    trees = {"A": sys.argv[1], "B": sys.argv[2]}
    n_cached = int(sys.argv[3]) if len(sys.argv) > 3 else 400
    n_chain = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    procs, clients, pids = {}, {}, {}
    try:
        for k, tree in trees.items():
            d = tempfile.mkdtemp(prefix=f"nbpipe-paired-{k}-")
            ready = os.path.join(d, "ready.json")
            procs[k] = subprocess.Popen(
                [sys.executable, "-m", "nbpipe.runner", "--host", "127.0.0.1", "--port", "0",
                 "--data-dir", os.path.join(d, "runner"), "--ready-file", ready],
                env={**os.environ, "PYTHONPATH": tree}, cwd=tempfile.gettempdir(),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            deadline = time.time() + 120
            while not os.path.exists(ready) or not os.path.getsize(ready):
                if procs[k].poll() is not None or time.time() > deadline:
                    raise SystemExit(f"runner {k} ({tree}) did not start")
                time.sleep(0.05)
            info = json.load(open(ready))
            clients[k], pids[k] = Client(info["url"], token=info["token"]), info["pid"]
        for c in clients.values():
            nbpipe.run(cached_chain, runner=c, x=1).wait()
            nbpipe.run(chain, runner=c, x=0).wait()
            for _ in range(20):
                nbpipe.run(cached_chain, runner=c, x=1).wait()
        load0 = os.getloadavg()[0]
        walls: dict[str, list[float]] = {"A": [], "B": []}
        c0 = {k: cpu(p) for k, p in pids.items()}
        for i in range(n_cached):
            for k in (("A", "B") if i % 2 == 0 else ("B", "A")):
                t0 = time.perf_counter()
                r = nbpipe.run(cached_chain, runner=clients[k], x=1).wait()
                walls[k].append(time.perf_counter() - t0)
                assert all(s["state"] == "cached" for s in r.last_snapshot["steps"])
        per_run = {k: (cpu(p) - c0[k]) / n_cached * 1000 for k, p in pids.items()}
        steps: dict[str, list[float]] = {"A": [], "B": []}
        c1 = {k: cpu(p) for k, p in pids.items()}
        for i in range(n_chain):
            for k in (("A", "B") if i % 2 == 0 else ("B", "A")):
                r = nbpipe.run(chain, runner=clients[k], x=i).wait()
                ends = sorted(s["finished_at"] for s in r.snapshot()["steps"])
                steps[k].append(statistics.median([b - a for a, b in zip(ends, ends[1:])]))
        per_step = {k: (cpu(p) - c1[k]) / (n_chain * 10) * 1000 for k, p in pids.items()}
        load1 = os.getloadavg()[0]
        for k in ("A", "B"):
            w = sorted(walls[k])
            print(f"{k} {trees[k]} load {load0:.1f}->{load1:.1f} | cached: median {statistics.median(w) * 1000:.2f} ms "
                  f"p25 {w[len(w) // 4] * 1000:.2f} p10 {w[len(w) // 10] * 1000:.2f} runnerCPU/run {per_run[k]:.2f} ms | "
                  f"chain: per-step {statistics.median(steps[k]) * 1000:.2f} ms (best run {min(steps[k]) * 1000:.2f}) "
                  f"runnerCPU/step {per_step[k]:.2f} ms", flush=True)
    finally:
        for p in procs.values():
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
