"""The nbpipe side of the benchmark: every workload through nbpipe's real local runner.

Started by ``run.py`` in the project venv as ``python nbpipe_side.py --out FILE`` with
``NBPIPE_HOME`` set to a fresh folder, so the embedded runner, its database and its store are
this invocation's own. Components live in ``__main__`` so they are pickled by value, as in a
notebook. The runner is started once (a warm-up run) before anything is timed, like a user's
session; it is stopped at the end. Caching is off for every workload except the cached chain.

Writes one JSON object to FILE: ``{workload: {...}}``. A workload that fails or times out is
recorded with ``error`` and the others still run.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import sys
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

import nbpipe
from nbpipe import Dataset, Input, Output, component, pipeline

# ---------------------------------------------------------------- components (pickled by value)


@component(cache=False)
def inc(x: int) -> int:
    return x + 1


@component(name="inc_cached", cache=True)  # its own name: a later "inc" would replace it (latest definition wins)
def inc_cached(x: int) -> int:
    return x + 1


@component(cache=False)
def join16(a0: int, a1: int, a2: int, a3: int, a4: int, a5: int, a6: int, a7: int, a8: int,
           a9: int, a10: int, a11: int, a12: int, a13: int, a14: int, a15: int) -> int:
    return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11 + a12 + a13 + a14 + a15


@component(cache=False)
def nap(x: int) -> int:
    import time

    time.sleep(1.0)
    return x


@component(cache=False)
def write_data(mb: int, data: Output[Dataset]):
    import os

    block = os.urandom(1 << 20)
    with open(data.path, "wb") as f:
        for _ in range(mb):
            f.write(block)


@component(cache=False)
def read_data(data: Input[Dataset]) -> int:
    n = 0
    with open(data.path, "rb") as f:
        while chunk := f.read(8 << 20):
            n += len(chunk)
    return n


# ---------------------------------------------------------------- pipelines


@pipeline(name="warmup")
def warmup(x: int = 0):
    inc(x=x)


@pipeline(name="chain")
def chain(x: int = 0):
    s = inc(x=x)
    for _ in range(9):
        s = inc(x=s.output)


@pipeline(name="cached-chain")
def cached_chain(x: int = 0):
    s = inc_cached(x=x)
    for _ in range(9):
        s = inc_cached(x=s.output)


@pipeline(name="fanout")
def fanout(x: int = 0):
    b = [inc(x=x) for _ in range(16)]
    join16(**{f"a{i}": t.output for i, t in enumerate(b)})


@pipeline(name="sleep16")
def sleep16(x: int = 0):
    for _ in range(16):
        nap(x=x)


@pipeline(name="handoff")
def handoff(mb: int = 100):
    w = write_data(mb=mb)
    read_data(data=w.outputs["data"])


def fan500_func(x: int = 0):
    for _ in range(500):
        inc(x=x)


# ---------------------------------------------------------------- measuring


def _ts(value: Any) -> float | None:
    """A step timestamp from the snapshot (epoch seconds or ISO 8601) as epoch seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _wait(run: Any, timeout: float) -> None:
    if "timeout" in inspect.signature(run.wait).parameters:
        run.wait(timeout=timeout)
    else:
        run.wait()


def _cpu() -> dict[str, float]:
    """CPU seconds so far of the runner, its step zygote (+ reaped steps) and this client process.

    Load-independent: on a busy shared machine wall times stretch, CPU seconds much less."""
    import psutil

    out = {"client": time.process_time()}
    try:
        info = json.loads((Path(os.environ["NBPIPE_HOME"]) / "runner.json").read_text())
        runner = psutil.Process(int(info["pid"]))
        t = runner.cpu_times()
        out["runner"] = t.user + t.system
        for child in runner.children():
            if "zygote" in " ".join(child.cmdline()):
                z = child.cpu_times()
                out["zygote"] = z.user + z.system
                out["steps"] = z.children_user + z.children_system
    except Exception:  # noqa: BLE001 - no runner yet (first run) or it moved: skip the CPU figures
        pass
    return out


def timed_run(pipe: Any, timeout: float, **params: Any) -> dict[str, Any]:
    cpu0 = _cpu()
    t0 = time.time()
    run = nbpipe.run(pipe, **params)
    t_submitted = time.time()
    timed_out = False
    try:
        _wait(run, timeout)
    except TimeoutError:
        timed_out = True
    t1 = time.time()
    cpu1 = _cpu()
    state = getattr(run, "state", None)
    out: dict[str, Any] = {"seconds": t1 - t0, "submit_seconds": t_submitted - t0, "state": state}
    out["cpu_seconds"] = {k: cpu1[k] - cpu0[k] for k in cpu1 if k in cpu0}
    if timed_out:
        out.update(timed_out=True, timeout=timeout)
        try:
            run.cancel()
        except Exception as exc:  # noqa: BLE001
            out["cancel_error"] = repr(exc)
    try:
        steps = run.snapshot()["steps"]
    except Exception as exc:  # noqa: BLE001 - timings are a bonus; the wall time still counts
        out["snapshot_error"] = repr(exc)
        return out
    rows = list(steps.values()) if isinstance(steps, dict) else list(steps)
    fin = []
    for r in rows:
        s, e = _ts(r.get("started_at")), _ts(r.get("finished_at"))
        fin.append({"start": s, "end": e, "cached": bool(r.get("cached")), "duration": r.get("duration")})
    out["steps"] = len(rows)
    out["cached_steps"] = sum(1 for r in fin if r["cached"])
    done = sorted((r for r in fin if r["end"] is not None), key=lambda r: r["end"])
    prev, costs, gaps, durs = t0, [], [], []
    for r in done:
        costs.append(r["end"] - prev)  # a chain step's full cost: previous end (or submit) to own end
        if r["start"] is not None:
            gaps.append(r["start"] - prev)  # scheduling gap before the step started
            durs.append(r["end"] - r["start"])  # the step's own start-to-end
        prev = r["end"]
    out["step_costs"] = costs
    out["step_gaps"] = gaps
    out["step_durations"] = durs
    if done and done[0]["start"] is not None:
        out["first_start_after_submit"] = done[0]["start"] - t0
        out["last_end_to_wait_return"] = t1 - done[-1]["end"]
    starts = [r for r in done if r["start"] is not None]
    out["max_concurrent"] = max((sum(1 for u in starts if u["start"] <= t["start"] < u["end"]) for t in starts),
                                default=0)
    if timed_out:
        out["steps_done"] = len(done)
        if done:  # honest extrapolation from the finished steps' pace, labelled as such
            out["extrapolated_seconds"] = (done[-1]["end"] - t0) / len(done) * len(rows)
    elif state != "succeeded":
        out["error"] = f"run ended {state}"
    return out


def repeat(n: int, fn: Any) -> dict[str, Any]:
    runs = [fn() for _ in range(n)]
    mid = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    out = dict(mid)
    out["runs"] = [r["seconds"] for r in runs]
    out["seconds"] = statistics.median(out["runs"])
    for key in ("step_costs", "step_gaps", "step_durations"):
        if mid.get(key):
            out[f"median_{key[:-1]}_ms"] = statistics.median(mid[key]) * 1000
    if mid.get("step_costs"):
        out["median_step_ms"] = out["median_step_cost_ms"]
    return out


def trace_and_package() -> dict[str, Any]:
    t0 = time.perf_counter()
    p = pipeline(name="fan500")(fan500_func)
    t1 = time.perf_counter()
    data = nbpipe.build_package(p)
    t2 = time.perf_counter()
    return {"seconds": t2 - t0, "trace_seconds": t1 - t0, "package_seconds": t2 - t1, "package_bytes": len(data)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--fan500-timeout", type=float, default=120.0)
    ap.add_argument("--only", default="", help="comma-separated workloads (default: all)")
    args = ap.parse_args()
    n = args.repeat
    results: dict[str, Any] = {"nbpipe_version": nbpipe.__version__, "nbpipe_home": os.environ.get("NBPIPE_HOME")}

    def save() -> None:
        with open(args.out, "w") as f:
            json.dump(results, f)

    # trace + package needs no runner: do it first, on a quiet process
    work = [
        ("trace500", lambda: repeat(n, trace_and_package)),
        ("warmup", lambda: timed_run(warmup, 120, x=1)),
        ("chain", lambda: repeat(n, lambda: timed_run(chain, 60, x=1))),
        ("fanout", lambda: repeat(n, lambda: timed_run(fanout, 60, x=1))),
        ("sleep16", lambda: repeat(n, lambda: timed_run(sleep16, 60, x=1))),
        ("handoff", lambda: repeat(n, lambda: timed_run(handoff, 60, mb=100))),
        ("cached_chain", lambda: cached()),
        ("fan500", lambda: timed_run(pipeline(name="fan500")(fan500_func), args.fan500_timeout, x=1)),
    ]

    def cached() -> dict[str, Any]:
        first = timed_run(cached_chain, 60, x=1)
        out = repeat(n, lambda: timed_run(cached_chain, 60, x=1))
        out["first_run_seconds"] = first["seconds"]
        return out

    only = set(filter(None, args.only.split(",")))
    try:
        for name, fn in work:
            if only and name not in only and name != "warmup":
                continue
            t, load = time.time(), os.getloadavg()[0]
            try:
                results[name] = fn()
                results[name]["loadavg_before"] = load
            except Exception as exc:  # noqa: BLE001 - record and go on to the next workload
                results[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            print(f"nbpipe {name}: {time.time() - t:.2f} s", file=sys.stderr, flush=True)
            save()
    finally:
        try:
            from nbpipe._embedded import stop_local_runner

            stop_local_runner()
        except Exception as exc:  # noqa: BLE001
            results["stop_error"] = repr(exc)
        save()


if __name__ == "__main__":
    main()
