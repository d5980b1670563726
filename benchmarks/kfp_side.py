"""The Kubeflow side of the benchmark: one workload on ``kfp.local.SubprocessRunner``.

Runs inside the throwaway venv ``benchmarks/.kfp-venv`` (never the project venv), started by
``run.py`` as ``python kfp_side.py --mode M --workload W --out FILE``. It writes a JSON object
to FILE (stdout carries kfp's own step logs). Each task's start/end is recorded by wrapping
``kfp.local.task_dispatcher.run_single_task_implementation``, so per-step timings come from the
runner itself, not from log parsing. Progress (finished task count) is also appended to
``FILE.progress`` so a run killed by ``run.py``'s timeout still says how far it got.

Modes (what kfp 2.x offers, read from its source):
  venv    ``SubprocessRunner()`` as shipped since kfp 2.14: a fresh venv per step, pip upgrades
          pip/setuptools/wheel in it, then the step's command pip-installs kfp into it.
  default ``SubprocessRunner(use_venv=False)``: the step's command still runs
          ``pip install kfp==<version>`` before every step (already satisfied, but pip resolves it),
          and those installs are serialized across parallel tasks by kfp's pip_install_manager.
  fast    ``SubprocessRunner(use_venv=False)`` + ``@dsl.component(install_kfp_package=False)``:
          no per-step install; the step process only imports kfp and runs the function.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

from kfp import compiler, dsl, local
from kfp.dsl import Dataset, Input, Output
from kfp.local import task_dispatcher

MB = 1 << 20

# ---------------------------------------------------------------- per-step timings

_TASKS: list[dict[str, Any]] = []
_PROGRESS: str | None = None
_inner = task_dispatcher.run_single_task_implementation


def _timed_task(*args: Any, **kwargs: Any) -> Any:
    start = time.time()
    try:
        return _inner(*args, **kwargs)
    finally:
        end = time.time()
        _TASKS.append({"name": kwargs.get("component_name", "?"), "start": start, "end": end})
        if _PROGRESS:
            with open(_PROGRESS, "a") as f:
                f.write(f"{len(_TASKS)} {end}\n")


task_dispatcher.run_single_task_implementation = _timed_task


# ---------------------------------------------------------------- components and pipelines


def build(mode: str) -> dict[str, Any]:
    """Components and pipeline factories for one mode (component options differ by mode)."""
    comp = dsl.component(install_kfp_package=(mode != "fast"))

    @comp
    def inc(x: int) -> int:
        return x + 1

    @comp
    def join16(a0: int, a1: int, a2: int, a3: int, a4: int, a5: int, a6: int, a7: int, a8: int,
               a9: int, a10: int, a11: int, a12: int, a13: int, a14: int, a15: int) -> int:
        return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11 + a12 + a13 + a14 + a15

    @comp
    def nap(x: int) -> int:
        import time

        time.sleep(1.0)
        return x

    @comp
    def write_data(mb: int, data: Output[Dataset]):
        import os

        block = os.urandom(1 << 20)
        with open(data.path, "wb") as f:
            for _ in range(mb):
                f.write(block)

    @comp
    def read_data(data: Input[Dataset]) -> int:
        n = 0
        with open(data.path, "rb") as f:
            while chunk := f.read(8 << 20):
                n += len(chunk)
        return n

    def single() -> Any:
        @dsl.pipeline(name="single")
        def p(x: int = 0) -> int:
            return inc(x=x).output

        return p

    def chain() -> Any:
        @dsl.pipeline(name="chain")
        def p(x: int = 0) -> int:
            s = inc(x=x)
            for _ in range(9):
                s = inc(x=s.output)
            return s.output

        return p

    def fanout() -> Any:
        @dsl.pipeline(name="fanout")
        def p(x: int = 0) -> int:
            b = [inc(x=x) for _ in range(16)]
            return join16(**{f"a{i}": t.output for i, t in enumerate(b)}).output

        return p

    def sleep16() -> Any:
        @dsl.pipeline(name="sleep16")
        def p(x: int = 0):
            for _ in range(16):
                nap(x=x)

        return p

    def sleep16_parallel_for() -> Any:
        @dsl.pipeline(name="sleep16-parallelfor")
        def p(x: int = 0):
            with dsl.ParallelFor(list(range(16))) as item:
                nap(x=item)

        return p

    def handoff() -> Any:
        @dsl.pipeline(name="handoff")
        def p(mb: int = 100) -> int:
            w = write_data(mb=mb)
            return read_data(data=w.outputs["data"]).output

        return p

    def fan500() -> Any:
        @dsl.pipeline(name="fan500")
        def p(x: int = 0):
            for _ in range(500):
                inc(x=x)

        return p

    return {"single": single, "chain": chain, "fanout": fanout, "sleep16": sleep16, "sleep16_parallel_for": sleep16_parallel_for,
            "handoff": handoff, "fan500": fan500}


# ---------------------------------------------------------------- measuring


def init(mode: str, root: str, caching: bool = False) -> None:
    runner = local.SubprocessRunner() if mode == "venv" else local.SubprocessRunner(use_venv=False)
    local.init(runner=runner, pipeline_root=os.path.join(root, "outputs"), enable_caching=caching,
               cache_root=os.path.join(root, "cache"))


def timed_run(pipeline: Any, **params: Any) -> dict[str, Any]:
    _TASKS.clear()
    t0 = time.time()
    if _PROGRESS:
        with open(_PROGRESS, "a") as f:
            f.write(f"start {t0}\n")
    pipeline(**params)
    t1 = time.time()
    tasks = sorted(_TASKS, key=lambda t: t["end"])
    # a step's cost in a chain: from the previous step's end (or the run's start) to its own end
    prev, costs = t0, []
    for t in tasks:
        costs.append(t["end"] - prev)
        prev = t["end"]
    peak = max((sum(1 for u in tasks if u["start"] <= t["start"] < u["end"]) for t in tasks), default=0)
    return {"seconds": t1 - t0, "steps": len(tasks), "step_costs": costs, "max_concurrent": peak,
            "step_durations": [t["end"] - t["start"] for t in tasks]}


def repeat(n: int, fn: Any) -> dict[str, Any]:
    runs = [fn() for _ in range(n)]
    best = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    out = dict(best)
    out["runs"] = [r["seconds"] for r in runs]
    out["seconds"] = statistics.median(out["runs"])
    if best.get("step_costs"):
        out["median_step_ms"] = statistics.median(best["step_costs"]) * 1000
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["venv", "default", "fast"], required=True)
    ap.add_argument("--workload", required=True)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    global _PROGRESS
    _PROGRESS = args.out + ".progress"
    root = tempfile.mkdtemp(prefix=f"kfp-bench-{args.mode}-")
    pipes = build(args.mode)
    w, result = args.workload, {}
    init(args.mode, root)
    if w == "trace500":
        def one() -> dict[str, Any]:
            t0 = time.perf_counter()
            p = pipes["fan500"]()
            t1 = time.perf_counter()
            compiler.Compiler().compile(p, os.path.join(root, "fan500.yaml"))
            t2 = time.perf_counter()
            return {"seconds": t2 - t0, "trace_seconds": t1 - t0, "package_seconds": t2 - t1,
                    "package_bytes": os.path.getsize(os.path.join(root, "fan500.yaml"))}
        result = repeat(args.repeat, one)
    elif w == "cached_chain":
        p = pipes["chain"]()
        init(args.mode, root, caching=True)
        first = timed_run(p, x=1)  # fills the cache
        result = repeat(args.repeat, lambda: timed_run(p, x=1))
        result["first_run_seconds"] = first["seconds"]
    elif w == "handoff":
        p = pipes["handoff"]()
        result = repeat(args.repeat, lambda: timed_run(p, mb=100))
    else:
        p = pipes[w]()
        result = repeat(args.repeat, lambda: timed_run(p, x=1))
    result.update(mode=args.mode, workload=w, kfp_version=__import__("kfp").__version__)
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    sys.exit(main())
