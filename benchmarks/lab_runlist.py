"""The run list with 10,000 runs: runner API, Lab server route, and the Runs page in Chromium.

    .venv/bin/python benchmarks/lab_runlist.py [--runs 10000] [--repeat 20]

1. Fills a fresh runner database with N runs (3 steps each, 5 experiments, 3 pipelines, 4
   notebooks, mixed states) straight through the runner's own tables, then starts a real runner
   (``python -m nbpipe.runner``) on it.
2. Times ``GET /api/v1/dashboard/runs`` (first page with facets, filtered, searched, deep page)
   and, for reference, the plain ``GET /api/v1/runs``: median and p95 of ``--repeat`` calls.
3. Starts a real ``jupyter lab`` on that runner (``NBPIPE_RUNNER_URL``) and times the Lab
   server's ``/nbpipe/api/dashboard/runs`` (what the browser calls).
4. Opens the Runs page in Debian's Chromium and times, from the click to the rows on screen:
   the first page, the next pages, a filter, and a search (which waits 250 ms for typing to stop);
   then the side panel's list of the newest 50 runs.

Everything it starts (runner, Lab, Chromium) is stopped by PID at the end. Results go to
``benchmarks/results/lab_runlist.json``. Requires the built lab extension (``jlpm build``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "nbpipe-bench-token"


def fill_database(data_dir: Path, n: int) -> None:
    """N runs with steps and events, written through the runner's tables (as the runner would)."""
    import sqlalchemy as sa

    from nbpipe.runner import db

    data_dir.mkdir(parents=True, exist_ok=True)
    engine = db.connect(f"sqlite:///{data_dir / 'nbpipe.db'}")
    rng = random.Random(7)
    spec = {"steps": [{"name": s, "component": s, "inputs": {}, "after": []} for s in ("prepare", "train", "evaluate")],
            "components": {s: {"digest": "0" * 64} for s in ("prepare", "train", "evaluate")}}
    experiments = ["Default", "digits", "churn", "ranking", "sweeps"]
    pipelines = ["digits", "churn-model", "ranker"]
    notebooks = ["notebooks/quickstart.ipynb", "work/churn.ipynb", "work/ranking.ipynb", "scratch.ipynb"]
    start = time.time() - n * 60
    runs, steps, events = [], [], []
    for i in range(n):
        rid = f"r{i:06d}-{rng.randrange(16**6):06x}"
        state = rng.choices(["succeeded", "failed", "cancelled"], [90, 8, 2])[0]
        created = start + i * 60
        runs.append({"id": rid, "name": f"{pipelines[i % 3]} {time.strftime('%Y-%m-%d %H:%M', time.gmtime(created))}",
                     "pipeline": pipelines[i % 3], "experiment": experiments[i % 5], "package": "a" * 64,
                     "params": json.dumps({"n": i % 7, "lr": round(0.1 * (1 + i % 5), 2)}), "state": state,
                     "reason": "", "labels": json.dumps({"notebook": notebooks[i % 4]}), "created_at": created,
                     "started_at": created + 0.2, "finished_at": created + 5 + rng.random() * 30})
        for j, s in enumerate(("prepare", "train", "evaluate")):
            st = "failed" if state == "failed" and j == 2 else "cached" if j == 0 and i % 2 else "succeeded"
            steps.append({"run_id": rid, "name": s, "component": s, "state": st, "attempt": 1, "max_attempts": 1,
                          "started_at": created + j, "finished_at": created + j + 1, "reason": "", "traceback": "",
                          "outputs": "{}", "inputs": "{}"})
        events.append({"run_id": rid, "type": "RunFinished", "data": json.dumps({"type": "RunFinished", "run_id": rid,
                       "ts": created + 30, "state": state, "reason": "", "duration": 30.0}), "ts": created + 30})
    with engine.begin() as conn:
        conn.execute(db.packages.insert().values(digest="a" * 64, name="bench", size=1, spec=json.dumps(spec),
                                                 created_at=start))
        for table, rows in ((db.runs, runs), (db.steps, steps), (db.events, events)):
            for k in range(0, len(rows), 5000):
                conn.execute(table.insert(), rows[k:k + 5000])
        assert conn.execute(sa.select(sa.func.count()).select_from(db.runs)).scalar() == n
    engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def timed(fn: Callable[[], Any], repeat: int) -> dict[str, float]:
    fn()  # warm
    ms = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t0) * 1000)
    ms.sort()
    return {"median_ms": round(statistics.median(ms), 1), "p95_ms": round(ms[max(0, int(len(ms) * 0.95) - 1)], 1),
            "min_ms": round(ms[0], 1)}


_WATCH = """([sel, count, text]) => {
  const t0 = performance.now();
  window.__nbpDone = new Promise((resolve) => {
    const ok = () => {
      const els = document.querySelectorAll(sel);
      return count !== null ? els.length === count : (els.length > 0 && els[0].textContent === text);
    };
    if (ok()) { resolve(0); return; }
    const mo = new MutationObserver(() => { if (ok()) { mo.disconnect(); resolve(performance.now() - t0); } });
    mo.observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
  });
}"""


def ui_time(page: Any, action: Callable[[], Any], selector: str, count: int | None = None,
            text: str | None = None) -> float:
    """Milliseconds from just before ``action`` until the page shows it (measured in the page)."""
    page.evaluate(_WATCH, [selector, count, text])
    action()
    return round(float(page.evaluate("() => window.__nbpDone")), 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    import httpx

    results: dict[str, Any] = {"runs": args.runs, "machine_load": os.getloadavg()}
    tmp = Path(tempfile.mkdtemp(prefix="nbpipe-bench-lab-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        t0 = time.perf_counter()
        fill_database(tmp / "runner", args.runs)
        results["fill_s"] = round(time.perf_counter() - t0, 1)
        ready = tmp / "ready.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NBPIPE_", "JUPYTER_"))}
        env["NBPIPE_HOME"] = str(tmp / "home")
        runner = subprocess.Popen([sys.executable, "-m", "nbpipe.runner", "--port", "0", "--data-dir", str(tmp / "runner"),
                                   "--ready-file", str(ready)], env=env, start_new_session=True,
                                  stdout=open(tmp / "runner.log", "wb"), stderr=subprocess.STDOUT)
        procs.append(runner)
        deadline = time.time() + 60
        while not ready.exists():
            assert runner.poll() is None and time.time() < deadline, (tmp / "runner.log").read_text()
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        http = httpx.Client(base_url=info["url"], headers={"Authorization": f"Bearer {info['token']}"}, timeout=30)

        def api(path: str, **params: Any) -> Callable[[], Any]:
            def call() -> Any:
                r = http.get(path, params=params)
                r.raise_for_status()
                return r.json()
            return call

        first = api("/api/v1/dashboard/runs", facets="true")()
        assert first["total"] == args.runs and len(first["runs"]) == 50, first["total"]
        results["runner_api"] = {
            "first page + facets": timed(api("/api/v1/dashboard/runs", facets="true"), args.repeat),
            "first page": timed(api("/api/v1/dashboard/runs"), args.repeat),
            "experiment filter": timed(api("/api/v1/dashboard/runs", experiment="digits"), args.repeat),
            "notebook filter": timed(api("/api/v1/dashboard/runs", notebook="work/churn.ipynb"), args.repeat),
            "state=failed": timed(api("/api/v1/dashboard/runs", state="failed"), args.repeat),
            "search 'churn'": timed(api("/api/v1/dashboard/runs", q="churn"), args.repeat),
            "last page (offset 9950)": timed(api("/api/v1/dashboard/runs", offset=args.runs - 50), args.repeat),
            "reference: GET /api/v1/runs?limit=50": timed(api("/api/v1/runs", limit=50), args.repeat),
        }

        # ---- the Lab server route, on that runner
        labext = tmp / "labextensions"
        labext.mkdir()
        (labext / "nbpipe").symlink_to(ROOT / "nbpipe" / "labextension", target_is_directory=True)
        port = free_port()
        lab_env = dict(env, NBPIPE_RUNNER_URL=info["url"], NBPIPE_TOKEN=info["token"],
                       JUPYTER_CONFIG_DIR=str(tmp / "jcfg"), JUPYTER_RUNTIME_DIR=str(tmp / "jrt"))
        settings = tmp / "settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True)
        (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
        (tmp / "root").mkdir()
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={tmp / 'root'}",
               f"--LabApp.user_settings_dir={tmp / 'settings'}", f"--LabApp.workspaces_dir={tmp / 'ws'}",
               f"--LabApp.extra_labextensions_path={labext}"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        lab = subprocess.Popen(cmd, env=lab_env, cwd=tmp / "root", start_new_session=True,
                               stdout=open(tmp / "lab.log", "wb"), stderr=subprocess.STDOUT)
        procs.append(lab)
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            assert lab.poll() is None and time.time() < deadline, (tmp / "lab.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2):
                    break
            except OSError:
                time.sleep(0.3)
        lab_http = httpx.Client(base_url=url, headers={"Authorization": f"token {TOKEN}"}, timeout=30)

        def lab_api(**params: Any) -> Callable[[], Any]:
            def call() -> Any:
                r = lab_http.get("/nbpipe/api/dashboard/runs", params=params)
                r.raise_for_status()
                return r.json()
            return call

        results["lab_route"] = {
            "first page + facets": timed(lab_api(facets="1"), args.repeat),
            "first page": timed(lab_api(), args.repeat),
            "search 'churn'": timed(lab_api(q="churn"), args.repeat),
        }

        # ---- the Runs page in Chromium
        from playwright.sync_api import expect, sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.goto(f"{url}/lab?token={TOKEN}")
                page.locator(".jp-Launcher").first.wait_for(timeout=120_000)
                page.keyboard.press("Control+Shift+C")
                page.locator(".lm-CommandPalette-input").fill("nbpipe: Runs")
                item = page.locator('.lm-CommandPalette-item[data-command="nbpipe:open-runs"]').first
                rows = page.locator("#nbpipe-runs tr.nbp-runs-row")
                label_sel = "#nbpipe-runs .nbp-page-label"
                ui: dict[str, Any] = {}
                ui["open Runs page (50 of 10,000 rows)"] = ui_time(page, lambda: item.click(), "#nbpipe-runs tr.nbp-runs-row", count=50)
                expect(rows).to_have_count(50)
                older = page.locator("#nbpipe-runs button:has-text('Older')")
                pages = [ui_time(page, older.click, label_sel, text=f"{50 * k + 1:,}–{50 * (k + 1):,} of {args.runs:,}")
                         for k in range(1, 6)]
                ui["next page (median of 5)"] = round(statistics.median(pages), 1)
                select = page.locator('#nbpipe-runs select[data-filter="experiment"]')
                ui["experiment filter"] = ui_time(page, lambda: select.select_option("churn"), label_sel,
                                                  text=f"1–50 of {args.runs // 5:,}")
                search = page.locator("#nbpipe-runs .nbp-runs-search")
                ui["search (incl. 250 ms typing debounce)"] = ui_time(page, lambda: search.fill("ranking"), label_sel,
                                                                      text=f"1–50 of {args.runs // 20:,}")
                ui["DOM rows"] = rows.count()
                # the side panel's short list (newest 50) on the same database
                ui["side panel: open, list of newest 50"] = ui_time(
                    page, lambda: page.locator('.lm-TabBar-tab[data-id="nbpipe-panel"]').click(),
                    "#nbpipe-panel .nbp-runs .nbp-run", count=50)
                results["runs_page_ui_ms"] = ui
                page.screenshot(path=str(ROOT / "test-artifacts" / "lab-dashboard-runs-10000.png"))
            finally:
                browser.close()
    finally:
        for p in reversed(procs):
            stop(p)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "lab_runlist.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
