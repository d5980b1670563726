"""One A/B cell for issue 14: the cached re-run and the 10-step chain with every process's CPU.

``PYTHONPATH=<tree> python benchmarks/overhead_ab.py [CACHED_RUNS] [CHAIN_RUNS] [LABEL]`` (run it from
outside the tree, e.g. ``cd /tmp``, so ``python -m nbpipe.runner`` imports ``<tree>``) starts the
embedded runner in a fresh ``NBPIPE_HOME`` and prints one line: the load average, the cached
re-run's median wall time and the runner's and client's CPU per run, then the chain's median
per-step time, median wall, and CPU per step of the runner, the step processes (the zygote and
its children, from ``/proc/<zygote>/stat``'s ``cutime``/``cstime``) and the client. Interleave
before/after trees in one sitting: the load moves, CPU seconds much less.
"""
import os, sys, tempfile, time, json, statistics, subprocess
os.environ["NBPIPE_HOME"] = tempfile.mkdtemp(prefix="nbpipe-ab-")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbpipe
from overhead import cached_chain, chain
from nbpipe._embedded import stop_local_runner
def cpu(pid, children=False):
    """CPU seconds of ``pid`` (its threads' run time in ns from schedstat, ticks without it), plus
    (``children``) its ended children's, which /proc keeps in ticks only."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    try:
        own = sum(int(open(f"/proc/{pid}/task/{t}/schedstat").read().split()[0])
                  for t in os.listdir(f"/proc/{pid}/task")) / 1e9
    except (OSError, ValueError):
        own = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return own + ((int(f[13]) + int(f[14])) / os.sysconf("SC_CLK_TCK") if children else 0)
nc, nch = int(sys.argv[1]), int(sys.argv[2])
try:
    nbpipe.run(cached_chain, x=1).wait(); nbpipe.run(chain, x=0).wait()
    pid = int(json.load(open(os.path.join(os.environ["NBPIPE_HOME"], "runner.json")))["pid"])
    zy = [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]
    la = os.getloadavg()[0]
    c0 = cpu(pid); s0 = time.process_time(); walls = []
    for _ in range(nc):
        t0 = time.perf_counter(); nbpipe.run(cached_chain, x=1).wait(); walls.append(time.perf_counter() - t0)
    cached = (statistics.median(walls) * 1000, (cpu(pid) - c0) / nc * 1000, (time.process_time() - s0) / nc * 1000)
    c0 = cpu(pid); z0 = sum(cpu(z, True) for z in zy); s0 = time.process_time(); meds = []; walls = []
    for i in range(nch):
        t0 = time.perf_counter(); r = nbpipe.run(chain, x=i).wait(); walls.append(time.perf_counter() - t0)
        ends = sorted(s["finished_at"] for s in r.snapshot()["steps"])
        meds.append(statistics.median([b - a for a, b in zip(ends, ends[1:])]))
    n = nch * 10
    ch = (statistics.median(meds) * 1000, statistics.median(walls) * 1000, (cpu(pid) - c0) / n * 1000,
          (sum(cpu(z, True) for z in zy) - z0) / n * 1000, (time.process_time() - s0) / n * 1000)
    print(f"{sys.argv[3] if len(sys.argv) > 3 else ''} load {la:.1f}->{os.getloadavg()[0]:.1f} | cached: wall {cached[0]:.2f} ms runnerCPU {cached[1]:.2f} clientCPU {cached[2]:.2f} | "
          f"chain: per-step {ch[0]:.1f} ms wall {ch[1]:.0f} ms runnerCPU/step {ch[2]:.2f} stepsCPU/step {ch[3]:.2f} clientCPU/step {ch[4]:.2f}", flush=True)
finally:
    stop_local_runner()
