"""nbpipe vs. plain Python vs. Kubeflow's local runner, side by side, in one command.

    .venv/bin/python benchmarks/run.py          (or: make bench)

Measures six workloads (see README.md) on four systems:
  in-process   plain Python calls in this process: the floor
  nbpipe       nbpipe's embedded local runner (``nbpipe_side.py``, fresh NBPIPE_HOME, warm runner)
  kfp default  ``kfp.local.SubprocessRunner(use_venv=False)`` with default components: pip installs
               kfp before every step (``kfp_side.py`` in the throwaway venv benchmarks/.kfp-venv)
  kfp fast     the same runner with ``@dsl.component(install_kfp_package=False)``: no per-step install
plus one step on ``SubprocessRunner()`` exactly as kfp 2.17 ships it (a fresh venv per step).

Prints a table, writes ``benchmarks/results/latest.json``. Every run has a timeout; a run that
hits it is reported as "timed out" with how far it got and an extrapolation, labelled as such.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
KFP_VENV = HERE / ".kfp-venv"
RESULTS = HERE / "results"
KFP_REQ = "kfp>=2,<3"
MB = 1 << 20

# name, steps, label
WORKLOADS = [
    ("chain", 10, "10-step chain"),
    ("fanout", 17, "16-way fan-out + join"),
    ("sleep16", 16, "16 steps sleeping 1 s"),
    ("handoff", 2, "100 MB hand-off (2 steps)"),
    ("trace500", 500, "500-step fan-out: trace+package"),
    ("fan500", 500, "500-step fan-out: run"),
    ("cached_chain", 10, "cached re-run of the chain"),
]
SYSTEMS = ["inprocess", "nbpipe", "kfp_default", "kfp_fast"]

# nbpipe targets from the issue: (workload, field, limit in seconds, text)
TARGETS = [
    ("chain", "median_step_ms", 0.005, "median per-step overhead on the chain <= 5 ms (issue 14)"),
    ("sleep16", "seconds", 2.0, "16 sleeping steps < 2 s"),
    ("handoff", "seconds", 0.3, "100 MB hand-off <= 0.3 s"),
    ("cached_chain", "seconds", 0.002, "cached re-run of the chain <= 2 ms (issue 14)"),
    ("trace500", "seconds", 0.2, "500-step trace+package <= 200 ms"),
]

# kfp side plan: (mode, workload, repeats, timeout s). fan500 is capped on purpose.
KFP_PLAN = [
    ("fast", "chain", 3, 90), ("fast", "fanout", 3, 120), ("fast", "sleep16", 1, 90),
    ("fast", "sleep16_parallel_for", 1, 90), ("fast", "handoff", 3, 90), ("fast", "trace500", 3, 90),
    ("fast", "cached_chain", 3, 90), ("fast", "fan500", 1, 45),
    ("default", "chain", 3, 150), ("default", "fanout", 1, 150), ("default", "sleep16", 1, 150),
    ("default", "handoff", 3, 120), ("default", "trace500", 1, 90), ("default", "cached_chain", 3, 120),
    ("default", "fan500", 1, 30),
    ("venv", "single", 1, 240),  # only with --kfp-venv: minutes, and it downloads from PyPI
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes with a time limit


def run_bounded(cmd: list[str], timeout: float, env: dict[str, str] | None = None,
                log_path: Path | None = None) -> tuple[int | None, float]:
    """Run ``cmd`` in its own session; on timeout end that session (only it). Returns (rc, seconds)."""
    out = open(log_path, "w") if log_path else subprocess.DEVNULL
    t0 = time.time()
    try:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                cwd=PROJECT)
        try:
            return proc.wait(timeout=timeout), time.time() - t0
        except subprocess.TimeoutExpired:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=5)
                    break
                except subprocess.TimeoutExpired:
                    continue
            return None, time.time() - t0
    finally:
        if log_path:
            out.close()  # type: ignore[union-attr]


# ---------------------------------------------------------------- in-process floor


def _inc(x: int) -> int:
    return x + 1


def _nap(x: int) -> int:
    time.sleep(1.0)
    return x


def _median_of(n: int, fn: Callable[[], Any]) -> dict[str, Any]:
    runs = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return {"seconds": statistics.median(runs), "runs": runs}


def in_process(repeat: int) -> dict[str, Any]:
    """The same work as plain calls: what a pipeline step costs when nothing orchestrates it."""
    def chain() -> int:
        s = _inc(1)
        for _ in range(9):
            s = _inc(s)
        return s

    def fanout() -> int:
        return sum(_inc(1) for _ in range(16))

    def sleep16() -> None:  # the ideal parallel floor: all 16 at once
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(_nap, range(16)))

    tmp = Path(tempfile.mkdtemp(prefix="nbpipe-bench-inproc-"))

    def handoff() -> int:
        path = tmp / "data.bin"
        block = os.urandom(MB)
        with open(path, "wb") as f:
            for _ in range(100):
                f.write(block)
        n = 0
        with open(path, "rb") as f:
            while chunk := f.read(8 * MB):
                n += len(chunk)
        path.unlink()
        return n

    res = {
        "chain": _median_of(repeat, chain),
        "fanout": _median_of(repeat, fanout),
        "sleep16": _median_of(1, sleep16),
        "handoff": _median_of(repeat, handoff),
        "fan500": _median_of(repeat, lambda: [_inc(1) for _ in range(500)]),
        "cached_chain": _median_of(repeat, chain),
    }
    res["sleep16"]["note"] = "16 threads: the ideal parallel floor (serial calls take 16 s)"
    res["cached_chain"]["note"] = "the chain's plain calls (no cache involved)"
    shutil.rmtree(tmp, ignore_errors=True)
    return res


# ---------------------------------------------------------------- nbpipe


def nbpipe_side(repeat: int, timeout: float, only: str = "") -> dict[str, Any]:
    home = tempfile.mkdtemp(prefix="nbpipe-bench-home-")
    out = Path(home) / "result.json"
    env = {**os.environ, "NBPIPE_HOME": home}
    env.pop("NBPIPE_URL", None)
    cmd = [sys.executable, str(HERE / "nbpipe_side.py"), "--out", str(out), "--repeat", str(repeat), "--only", only]
    rc, secs = run_bounded(cmd, timeout, env=env, log_path=RESULTS / "logs" / "nbpipe.log")
    # backstop: stop the embedded runner of this NBPIPE_HOME if the side could not
    subprocess.run([sys.executable, "-c", "from nbpipe._embedded import stop_local_runner as s; s()"],
                   env=env, cwd=PROJECT, timeout=30, capture_output=True)
    res = json.loads(out.read_text()) if out.exists() else {}
    if rc != 0:
        res["process_error"] = "timed out" if rc is None else f"exit code {rc}"
    res["process_seconds"] = secs
    shutil.rmtree(home, ignore_errors=True)
    return res


# ---------------------------------------------------------------- kfp


def ensure_kfp_venv() -> Path:
    """Create benchmarks/.kfp-venv with kfp (never touching the project venv); reuse it if ready."""
    py = KFP_VENV / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import kfp.local"], capture_output=True).returncode == 0:
        return py
    log(f"creating {KFP_VENV} with {KFP_REQ} (once; ~30 s)")
    shutil.rmtree(KFP_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(KFP_VENV)], check=True, timeout=120)
    uv = shutil.which("uv") or str(PROJECT / ".venv" / "bin" / "uv")
    lock = str(PROJECT / "requirements-kfp.lock")  # the versions the tests' kfp venv uses too
    if Path(uv).exists():
        cmd = [uv, "pip", "install", "-q", "--python", str(py), "-r", lock]
    else:
        cmd = [str(py), "-m", "pip", "install", "-q", "-r", lock]
    subprocess.run(cmd, check=True, timeout=600)
    return py


def _progress(path: Path) -> dict[str, Any]:
    """How far a killed kfp run got: steps finished after the last run start, and the pace."""
    if not path.exists():
        return {}
    start, ends = None, []
    for line in path.read_text().splitlines():
        a, b = line.split()
        if a == "start":
            start, ends = float(b), []
        else:
            ends.append(float(b))
    if start is None or not ends:
        return {"steps_done": 0}
    return {"steps_done": len(ends), "pace_seconds_per_step": (ends[-1] - start) / len(ends)}


def kfp_side(py: Path, mode: str, workload: str, repeat: int, timeout: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="kfp-bench-out-"))
    out = tmp / "result.json"
    cmd = [str(py), str(HERE / "kfp_side.py"), "--mode", mode, "--workload", workload,
           "--repeat", str(repeat), "--out", str(out)]
    load = os.getloadavg()[0]
    rc, secs = run_bounded(cmd, timeout, log_path=RESULTS / "logs" / f"kfp-{mode}-{workload}.log")
    if rc == 0 and out.exists():
        res = json.loads(out.read_text())
    elif rc is None:
        res = {"timed_out": True, "timeout": timeout, **_progress(Path(str(out) + ".progress"))}
    else:
        res = {"error": f"exit code {rc}; see results/logs/kfp-{mode}-{workload}.log"}
    res["process_seconds"] = secs
    res["loadavg_before"] = load
    shutil.rmtree(tmp, ignore_errors=True)
    return res


# ---------------------------------------------------------------- report


def _fmt_s(r: dict[str, Any] | None, steps: int) -> str:
    if not r:
        return "-"
    if r.get("timed_out"):
        done = r.get("steps_done")
        pace = r.get("pace_seconds_per_step")
        ex = r.get("extrapolated_seconds") or (pace * steps if pace else None)
        extra = f", {done}/{steps} steps done; ~{ex:.0f} s extrapolated" if ex else ""
        return f"timed out after {r['timeout']:.0f} s{extra}"
    if "error" in r or "seconds" not in r:
        return "error"
    v = r["seconds"]
    return f"{v:.3f}" if v >= 0.01 else f"{v:.2g}"


def _wall(r: dict[str, Any] | None, steps: int) -> float | None:
    """Seconds, or the labelled extrapolation of a timed-out run."""
    if not r:
        return None
    if r.get("timed_out"):
        pace = r.get("pace_seconds_per_step")
        ex = r.get("extrapolated_seconds")
        return ex if ex else (pace * steps if pace else None)
    return r.get("seconds") if "error" not in r else None


def build_rows(res: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for name, steps, label in WORKLOADS:
        row: dict[str, Any] = {"workload": name, "label": label, "steps": steps}
        floor = (res["inprocess"].get(name) or {}).get("seconds")
        for sysname in SYSTEMS:
            r = res[sysname].get(name)
            row[sysname] = _fmt_s(r, steps)
            w = _wall(r, steps)
            row[f"{sysname}_seconds"] = w
            row[f"{sysname}_extrapolated"] = bool(r and r.get("timed_out"))
            if sysname != "inprocess" and w is not None and name != "trace500":
                base = floor if (floor is not None and name != "sleep16") else (1.0 if name == "sleep16" else 0.0)
                row[f"{sysname}_overhead_ms_per_step"] = (w - base) / steps * 1000
            if r and r.get("median_step_ms") is not None and name in ("chain", "cached_chain"):
                row[f"{sysname}_median_step_ms"] = r["median_step_ms"]
            if r and r.get("max_concurrent") is not None:
                row[f"{sysname}_max_concurrent"] = r["max_concurrent"]
        nb = row.get("nbpipe_seconds")
        for k in ("kfp_default", "kfp_fast"):
            v = row.get(f"{k}_seconds")
            row[f"{k}_over_nbpipe"] = (v / nb) if (v is not None and nb) else None
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]], res: dict[str, Any]) -> str:
    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    lines = ["| workload | in-process s | nbpipe s | kfp default s | kfp fast s | kfp default / nbpipe | "
             "kfp fast / nbpipe |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratios = []
        for k in ("kfp_default", "kfp_fast"):
            v = r.get(f"{k}_over_nbpipe")
            ratios.append("-" if v is None else (f"~{v:.0f}x (extrap.)" if r.get(f"{k}_extrapolated") else
                                                 f"{v:.2g}x" if v < 10 else f"{v:.0f}x"))
        ip = r["inprocess"] if r["workload"] != "trace500" else "n/a"
        lines.append(f"| {r['label']} | {ip} | {r['nbpipe']} | {r['kfp_default']} | {r['kfp_fast']} | "
                     f"{ratios[0]} | {ratios[1]} |")
    lines += ["", "| per step (ms) | nbpipe | kfp default | kfp fast |", "|---|---:|---:|---:|"]
    for r in rows:
        if r["workload"] == "trace500":
            continue
        cells = []
        for k in ("nbpipe", "kfp_default", "kfp_fast"):
            o = r.get(f"{k}_overhead_ms_per_step")
            c = num(o, ".0f" if o is None or o >= 10 else ".1f") + (" (extrap.)" if r.get(f"{k}_extrapolated") and o is not None else "")
            if r.get(f"{k}_median_step_ms") is not None:
                c += f" (median {r[f'{k}_median_step_ms']:.0f})"
            if r["workload"] in ("sleep16", "fan500") and r.get(f"{k}_max_concurrent") is not None:
                c += f" [max {r[f'{k}_max_concurrent']} at once]"
            cells.append(c)
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    lines += ["", "| nbpipe CPU per step (ms; load-independent) | runner | step processes | client |",
              "|---|---:|---:|---:|"]
    for name, steps, label in WORKLOADS:
        cpu = (res["nbpipe"].get(name) or {}).get("cpu_seconds")
        if cpu:
            cells = [num(cpu[k] / steps * 1000 if k in cpu else None, ".1f") for k in ("runner", "steps", "client")]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    extra = res.get("extra", {})
    pf = extra.get("kfp_fast_sleep16_parallel_for")
    if pf:
        lines.append("")
        lines.append(f"kfp fast, the 16 sleeps written as dsl.ParallelFor: {_fmt_s(pf, 16)} s "
                     f"(max {pf.get('max_concurrent', '?')} at once)")
    venv = extra.get("kfp_venv_single")
    if venv:
        lines.append(f"kfp SubprocessRunner() as shipped (use_venv=True), one 1-step pipeline: "
                     f"{_fmt_s(venv, 1)} s")
    return "\n".join(lines)


def check_targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for workload, field, limit, text in TARGETS:
        r = res["nbpipe"].get(workload) or {}
        v = r.get(field)
        if field == "median_step_ms" and v is not None:
            v = v / 1000.0
        out.append({"target": text, "value_seconds": v, "limit_seconds": limit,
                    "met": (v is not None and (v < limit if workload == "sleep16" else v <= limit))})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="repeats of the small workloads (median taken)")
    ap.add_argument("--skip-kfp", action="store_true", help="only in-process and nbpipe")
    ap.add_argument("--kfp-venv", action="store_true",
                    help="also time one step on SubprocessRunner() as shipped (a fresh venv per step; "
                         "~1 min, downloads from PyPI)")
    ap.add_argument("--out", default=str(RESULTS / "latest.json"))
    ap.add_argument("--only", default="", help="comma-separated workloads, e.g. chain,cached_chain (default: all)")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    if only:  # the other workloads are neither run nor shown
        WORKLOADS[:] = [w for w in WORKLOADS if w[0] in only]
        KFP_PLAN[:] = [p for p in KFP_PLAN if p[1] in only or (p[0] == "venv" and args.kfp_venv)]
        TARGETS[:] = [t for t in TARGETS if t[0] in only]
    (RESULTS / "logs").mkdir(parents=True, exist_ok=True)
    started = time.time()
    meta = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "python": platform.python_version(),
            "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(), "platform": platform.platform(),
            "git": subprocess.run(["git", "describe", "--always", "--dirty"], cwd=PROJECT, capture_output=True,
                                  text=True).stdout.strip()}

    log("in-process floor ...")
    res: dict[str, Any] = {"inprocess": in_process(args.repeat), "extra": {}}

    log("nbpipe (embedded local runner) ...")
    res["nbpipe"] = nbpipe_side(args.repeat, timeout=420, only=args.only)
    for w in [w[0] for w in WORKLOADS]:
        r = res["nbpipe"].get(w, {})
        log(f"  nbpipe {w}: {r.get('seconds', r.get('error', 'missing'))}")

    res["kfp_default"], res["kfp_fast"] = {}, {}
    if not args.skip_kfp:
        py = ensure_kfp_venv()
        meta["kfp_version"] = subprocess.run([str(py), "-c", "import kfp; print(kfp.__version__)"],
                                             capture_output=True, text=True).stdout.strip()
        for mode, workload, reps, timeout in KFP_PLAN:
            if mode == "venv" and not args.kfp_venv:
                continue
            reps = min(reps, args.repeat)
            log(f"kfp {mode} {workload} (x{reps}, timeout {timeout} s) ...")
            r = kfp_side(py, mode, workload, reps, timeout)
            log(f"  -> {_fmt_s(r, 500 if workload == 'fan500' else 1)}")
            if mode == "venv":
                res["extra"]["kfp_venv_single"] = r
            elif workload == "sleep16_parallel_for":
                res["extra"]["kfp_fast_sleep16_parallel_for"] = r
            else:
                res[f"kfp_{mode}"][workload] = r

    rows = build_rows(res)
    table = render(rows, res)
    targets = check_targets(res)
    meta.update(loadavg_end=os.getloadavg(), total_seconds=time.time() - started)
    doc = {"meta": meta, "targets": targets, "rows": rows, "results": res}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1, default=str))
    print(table)
    print()
    for t in targets:
        v = t["value_seconds"]
        shown = "-" if v is None else (f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s")
        print(f"[{'met' if t['met'] else 'MISSED'}] {t['target']}: {shown}")
    print(f"\n{meta['cpus']} cpus, load {meta['loadavg_start'][0]:.1f} -> {meta['loadavg_end'][0]:.1f}; "
          f"{meta['total_seconds']:.0f} s in all; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
