"""Where nbpipe's time goes: a breakdown of one run, client and runner side.

    .venv/bin/python benchmarks/profile_nbpipe.py [--workload chain|cached_chain|handoff] [--runs N]
        [--py-spy]   also sample the runner and the step zygote with py-spy (must be installed)

Starts its own embedded runner (fresh NBPIPE_HOME), warms it, then for N runs of the workload:
  * times the client's phases: build_package, upload (HEAD/PUT), POST /runs, wait for the end;
  * reads each step attempt's own result.json timing (setup = load payload + inputs, call, save)
    and the runner's started/finished stamps, giving the gaps between them;
  * with --py-spy, records the runner and zygote processes and prints their hottest frames
    (own time and inclusive time), so a miss can be pinned to a file and function.
The components are the ones ``nbpipe_side.py`` benchmarks (imported from it, pickled by value).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HOME = tempfile.mkdtemp(prefix="nbpipe-profile-home-")
os.environ["NBPIPE_HOME"] = HOME
sys.path.insert(0, str(HERE))

import nbpipe  # noqa: E402
import nbpipe_side as side  # noqa: E402
from nbpipe.client import default_client  # noqa: E402
from nbpipe.package import build_package  # noqa: E402


def phases(pipe: object, params: dict) -> dict[str, float]:
    """One run, with the client's submit split into its phases (the same calls Client.submit makes)."""
    client = default_client()
    t0 = time.perf_counter()
    pipe.resolve_params(params)  # type: ignore[attr-defined]
    data = build_package(pipe)
    t1 = time.perf_counter()
    digest = client.upload(data)
    t2 = time.perf_counter()
    body = {"package": digest, "params": params, "experiment": "Default", "name": None, "labels": {}}
    snap = client._request("POST", "/api/v1/runs", json=body).json()
    t3 = time.perf_counter()
    run = nbpipe.client.Run(client, snap["id"], snap)
    run.wait(timeout=120)
    t4 = time.perf_counter()
    return {"build_package": t1 - t0, "upload": t2 - t1, "post_run": t3 - t2, "run_to_wait_return": t4 - t3,
            "total": t4 - t0, "run_id": snap["id"]}


def attempt_timings(run_id: str) -> list[dict[str, float]]:
    """Per step: runner stamps from the snapshot plus the step process's own timing record."""
    run = nbpipe.attach(run_id)
    snap = run.snapshot()
    out = []
    for s in snap["steps"]:
        res = {}
        for p in Path(HOME).rglob(f"runs/{run_id}/{s['name']}/*/result.json"):
            res = json.loads(p.read_text())
        t = res.get("timing", {})
        out.append({"step": s["name"], "state": s["state"], "runner_start": s["started_at"],
                    "runner_end": s["finished_at"], "proc_start": res.get("started_at"),
                    "proc_end": res.get("finished_at"), **{f"proc_{k}": v for k, v in t.items()}})
    return out


def summarize(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = collections.defaultdict(list)
    prev_end = None
    for r in sorted((r for r in rows if r.get("runner_end")), key=lambda r: r["runner_end"]):
        if r.get("proc_start") and r.get("runner_start"):
            keys["runner_start->process_start"].append(r["proc_start"] - r["runner_start"])
            keys["process_end->runner_end"].append(r["runner_end"] - r["proc_end"])
        for k in ("proc_setup", "proc_call", "proc_save"):
            if r.get(k) is not None:
                keys[k].append(r[k])
        if prev_end is not None and r.get("runner_start"):
            keys["previous_end->runner_start"].append(r["runner_start"] - prev_end)
        prev_end = r["runner_end"]
    return {k: statistics.median(v) * 1000 for k, v in keys.items()}


def py_spy_top(raw: Path, n: int = 25) -> list[str]:
    """Hottest frames from py-spy's collapsed stacks: own samples and inclusive samples."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        c = int(count)
        total += c
        frames = stack.split(";")
        own[frames[-1]] += c
        for f in set(frames):
            incl[f] += c
    ours = collections.Counter({f: c for f, c in incl.items() if "nbpipe/" in f})
    lines = [f"  {total} samples (active only)"]
    lines += ["  own:"] + [f"    {c / total:6.1%}  {f}" for f, c in own.most_common(n)]
    lines += ["  inclusive, nbpipe frames:"] + [f"    {c / total:6.1%}  {f}" for f, c in ours.most_common(n)]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default="chain", choices=["chain", "cached_chain", "handoff", "fanout", "sleep16"])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--py-spy", action="store_true")
    ap.add_argument("--cprofile", action="store_true",
                    help="run the runner under cProfile and print call counts and cumulative times")
    args = ap.parse_args()
    prof = Path(HOME) / "runner.prof"
    runner_proc = None
    if args.cprofile:  # the same command _embedded starts, under cProfile; it writes runner.json when ready
        runner_proc = subprocess.Popen(
            [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "nbpipe.runner", "--host", "127.0.0.1",
             "--port", "0", "--data-dir", str(Path(HOME) / "runner"), "--ready-file", str(Path(HOME) / "runner.json")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(1200):
            if (Path(HOME) / "runner.json").exists():
                break
            time.sleep(0.05)
    pipe = getattr(side, args.workload)
    params = {"mb": 100} if args.workload == "handoff" else {"x": 1}
    procs: list[subprocess.Popen] = []
    try:
        side.timed_run(side.warmup, 120, x=1)  # starts the runner and its zygote
        if args.workload == "cached_chain":
            side.timed_run(pipe, 60, **params)  # fill the cache
        if args.py_spy:
            info = json.loads((Path(HOME) / "runner.json").read_text())
            zyg = subprocess.run(["pgrep", "-f", "-P", str(info["pid"]), "nbpipe.executors.zygote"],
                                 capture_output=True, text=True).stdout.split()
            spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            for name, pid in [("runner", info["pid"])] + [("zygote", int(p)) for p in zyg[:1]]:
                out = Path(HOME) / f"{name}.txt"
                cmd = [spy, "record", "-p", str(pid), "-r", "250", "-f", "raw", "-o", str(out), "--nonblocking"]
                if name == "zygote":
                    cmd.append("--subprocesses")
                procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(1.5)
        runs = [phases(pipe, params) for _ in range(args.runs)]
        med = {k: statistics.median(r[k] for r in runs) * 1000 for k in runs[0] if k != "run_id"}
        print(f"{args.workload}: client phases, median of {args.runs} runs (ms):")
        for k, v in med.items():
            print(f"  {k:<22} {v:8.1f}")
        print("per step, median over steps of the median run (ms):")
        mid = sorted(runs, key=lambda r: r["total"])[len(runs) // 2]
        for k, v in summarize(attempt_timings(mid["run_id"])).items():
            print(f"  {k:<30} {v:8.1f}")
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait(timeout=30)
        for name in ("runner", "zygote"):
            out = Path(HOME) / f"{name}.txt"
            if out.exists():
                keep = HERE / "results" / f"profile-{args.workload}-{name}.txt"
                keep.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(out, keep)
                print(f"py-spy, {name}:")
                print("\n".join(py_spy_top(out)))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        from nbpipe._embedded import stop_local_runner

        if runner_proc is not None:
            runner_proc.send_signal(signal.SIGINT)  # SIGTERM would skip writing the profile
            try:
                runner_proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                runner_proc.kill()
            if prof.exists():
                print_cprofile(prof, args.runs, args.workload)
        else:
            stop_local_runner()
        shutil.rmtree(HOME, ignore_errors=True)


def print_cprofile(prof: Path, runs: int, workload: str) -> None:
    """The runner's own view: calls per run and cumulative ms per run for the frames that matter."""
    import pstats

    keep = HERE / "results" / f"profile-{workload}-runner.prof"
    keep.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(prof, keep)
    st = pstats.Stats(str(prof))
    rows = []
    for (fname, line, func), (cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        short = f"{'/'.join(Path(fname).parts[-2:])}:{line}({func})"
        interesting = ("nbpipe/" in fname and "server.py" not in fname or func in (
            "do_commit", "do_execute", "begin", "_generate_cache_key", "fork", "write", "dumps", "loads")
            or "nbpipe/runner/server.py" in fname)
        if interesting:
            rows.append((ct, nc, short))
    rows.sort(reverse=True)
    total_runs = runs + 2  # + warm-up and cache fill (roughly)
    print(f"cProfile of the runner (per run, ~{total_runs} runs incl. warm-up): calls, cumulative ms")
    for ct, nc, short in rows[:45]:
        print(f"  {nc / total_runs:8.1f}  {ct / total_runs * 1000:8.2f} ms  {short}")


if __name__ == "__main__":
    main()
