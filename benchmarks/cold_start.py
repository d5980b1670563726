"""Cold start (issue 14, item 4): what a new user waits for before the first run can start.

``python benchmarks/cold_start.py [--repeat N] [--out FILE]`` measures, each in a fresh process
and (for the runner) a fresh ``NBPIPE_HOME``; the median of N repeats is reported with the load
average before and after:

- ``import nbpipe``: wall time of ``python -c "import nbpipe"`` minus ``python -c pass``, and the
  heavy modules it pulls in (``python -X importtime``): none of the runner's server stack
  (fastapi, uvicorn, sqlalchemy, httpx), ``kubernetes`` or ``minio`` may appear;
- runner ready: what ``%load_ext nbpipe`` starts in the background (``client.prestart`` →
  ``ensure_local_runner``) until ``/api/v1/health`` answers, in a fresh home;
- first package accepted: right after that, ``Client.upload`` of a new 3-step package
  (HEAD + PUT: validation, payloads stored, database row), the runner's first one;
- ``nbpipe inspect PACKAGE``: the whole CLI process, wall time.

Targets: runner ready ≤ 1.5 s, first package ≤ 100 ms, inspect ≤ 300 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("fastapi", "uvicorn", "starlette", "sqlalchemy", "httpx", "kubernetes", "minio", "jsonschema", "anyio")
PY = sys.executable
NBPIPE_CLI = str(Path(PY).with_name("nbpipe"))

CHILD = r"""
import json, os, sys, time
t0 = time.perf_counter()
import nbpipe
from nbpipe import component, pipeline
from nbpipe.client import Client, default_client
from nbpipe._embedded import ensure_local_runner, stop_local_runner
t_import = time.perf_counter()
import atexit
atexit.register(stop_local_runner)   # whatever happens below, the runner this child started stops
url = ensure_local_runner()          # what %load_ext nbpipe starts in the background (client.prestart)
client = default_client()
client.health()
t_ready = time.perf_counter()

@component(cache=False)
def a(x: int) -> int:
    return x + 1

@component(cache=False)
def b(x: int) -> int:
    return x * 2

@pipeline
def p(x: int = 1):
    b(x=b(x=a(x=x).output).output)

pkg = nbpipe.build_package(p)
t_built = time.perf_counter()
client.upload(pkg)
t_up = time.perf_counter()
stop_local_runner()
print(json.dumps({"import_s": t_import - t0, "runner_ready_s": t_ready - t_import,
                  "first_package_s": t_up - t_built, "package_bytes": len(pkg)}))
"""


def _wall(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t


def _importtime() -> dict[str, object]:
    out = subprocess.run([PY, "-X", "importtime", "-c", "import nbpipe"], capture_output=True, text=True, check=True)
    mods = {line.split("|")[2].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    total = [int(line.split("|")[1]) for line in out.stderr.splitlines() if line.rstrip().endswith("| nbpipe")]
    return {"cumulative_us": total[-1] if total else None,
            "heavy_imported": sorted(m for m in mods if m.split(".")[0] in HEAVY)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    load_before = os.getloadavg()
    rows: dict[str, list[float]] = {"import_nbpipe_s": [], "runner_ready_s": [], "first_package_s": [], "inspect_s": []}
    with tempfile.TemporaryDirectory(prefix="nbpipe-cold-") as tmp:
        pkg_path = Path(tmp) / "p.nbpipe"
        for i in range(args.repeat):
            home = Path(tmp) / f"home{i}"
            env = {**os.environ, "NBPIPE_HOME": str(home)}
            env.pop("NBPIPE_URL", None)
            base = _wall([PY, "-c", "pass"])
            rows["import_nbpipe_s"].append(max(_wall([PY, "-c", "import nbpipe"]) - base, 0.0))
            child = Path(tmp) / "child.py"
            child.write_text(CHILD)
            out = subprocess.run([PY, str(child)], capture_output=True, text=True, env=env, cwd=tmp, timeout=120)
            if out.returncode:
                raise SystemExit(f"cold-start child failed:\n{out.stderr}")
            rec = json.loads(out.stdout.strip().splitlines()[-1])
            rows["runner_ready_s"].append(rec["runner_ready_s"])
            rows["first_package_s"].append(rec["first_package_s"])
            if not pkg_path.exists():
                maker = Path(tmp) / "make_pkg.py"
                maker.write_text("import nbpipe\nfrom nbpipe import component, pipeline\n"
                                 "@component\ndef a(x: int) -> int:\n    return x\n"
                                 "@pipeline\ndef p(x: int = 1):\n    a(x=a(x=x).output)\n"
                                 f"open({str(pkg_path)!r}, 'wb').write(nbpipe.build_package(p))\n")
                subprocess.run([PY, str(maker)], check=True, cwd=tmp)
            rows["inspect_s"].append(_wall([NBPIPE_CLI, "inspect", str(pkg_path)]))
    result = {name: {"median": statistics.median(v), "min": min(v), "max": max(v), "all": v} for name, v in rows.items()}
    result["importtime"] = _importtime()
    result["load_before"] = load_before
    result["load_after"] = os.getloadavg()
    result["repeat"] = args.repeat
    targets = {"runner_ready_s": 1.5, "first_package_s": 0.100, "inspect_s": 0.300}
    print(f"cold start, median of {args.repeat} (load {load_before[0]:.1f} -> {result['load_after'][0]:.1f})")
    for name, v in rows.items():
        t = targets.get(name)
        verdict = "" if t is None else ("  met" if statistics.median(v) <= t else f"  MISSED (target {t * 1000:.0f} ms)")
        print(f"  {name:18s} {statistics.median(v) * 1000:8.1f} ms  (min {min(v) * 1000:.1f}, max {max(v) * 1000:.1f}){verdict}")
    print(f"  import nbpipe heavy modules: {result['importtime']['heavy_imported'] or 'none'}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
