"""The run graph in Chromium at scale (issue 14, item 3): first paint and 1,000 events.

``python benchmarks/run_view.py [--sizes 500,10000] [--shapes fanout,chain] [--repeat 3]
[--widgets DIR]`` loads the run view (the widget's and the run page's renderer,
``nbpipe/widgets/run_view.js``) in Debian's headless Chromium through the browser tests' harness,
and for an N-step fan-out (load → N-2 shards → merge) and an N-step chain measures, in the page
(``performance.now``):

- **first paint**: ``setSnapshot`` until two animation frames later (script, style, layout, paint);
- **1,000 events**: 250 steps × (StepStarted, StepLog, ArtifactSaved, StepFinished), applied,
  flushed and laid out (forced reflow); **to paint**: the same until two animation frames later
  (a large graph zoomed out repaints its canvas in the next frame);
- **per event**: 100 more, each flushed on its own (the live SSE case).

The workload scripts are the browser tests' own (tests/browser/test_run_view_large.py). Medians
of ``--repeat``; the 1-minute load average is recorded per row. ``--widgets DIR`` serves another
copy of nbpipe/widgets (e.g. ``git archive <rev> nbpipe/widgets | tar -x -C /tmp/old`` →
``--widgets /tmp/old/nbpipe/widgets``) for a before/after comparison in one session.
Results: ``benchmarks/results/run_view.json``.
"""

from __future__ import annotations

import argparse
import http.server
import importlib.util
import json
import os
import statistics
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


FIRST_PAINT = """async (snap) => {
  document.querySelector('#app').replaceChildren();
  const host = document.createElement('div');
  document.querySelector('#app').append(host);
  const view = window.RV.createRunView(host, {});
  window.view = view;
  const t0 = performance.now();
  view.setSnapshot(snap);
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  return performance.now() - t0;
}"""

EVENTS_MS = """async (events) => {
  const view = window.view, host = document.querySelector('#app');
  const frames = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const t1 = performance.now();
  for (const e of events) view.applyEvent(e);
  view.flush();
  void host.getBoundingClientRect().height;
  const eventsMs = performance.now() - t1;
  await frames();
  const eventsPaintMs = performance.now() - t1;
  let id = events[events.length - 1].id + 1;
  const t2 = performance.now();
  for (let i = 250; i < 350; i += 1) {
    view.applyEvent({ type: 'StepStarted', id: id++, run_id: 'r-big', ts: Date.now() / 1000, step: `shard-${i}`, attempt: 1, max_attempts: 1 });
    view.flush();
  }
  void host.getBoundingClientRect().height;
  const perEventMs = (performance.now() - t2) / 100;
  const n = {};
  for (const s of view.snapshot.steps) n[s.state] = (n[s.state] || 0) + 1;
  return { eventsMs, eventsPaintMs, perEventMs, failed: n.failed || 0, running: n.running || 0,
    domNodes: host.querySelectorAll('.rv-node').length };
}"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="500,10000")
    ap.add_argument("--shapes", default="fanout,chain")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--widgets", default="", help="serve this copy of nbpipe/widgets instead (before/after runs)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "run_view.json"))
    args = ap.parse_args()
    conf = _load("rv_conftest", ROOT / "tests" / "browser" / "conftest.py")
    sys.path.insert(0, str(ROOT / "tests" / "browser"))
    large = _load("rv_large", ROOT / "tests" / "browser" / "test_run_view_large.py")
    if args.widgets:
        conf.WIDGETS = Path(args.widgets).resolve()  # the harness server reads it per request
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), conf._Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/harness/harness.html"
    from playwright.sync_api import sync_playwright

    rows = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(conf.CHROMIUM), args=conf.CHROMIUM_ARGS)
            try:
                for shape in args.shapes.split(","):
                    for n in (int(s) for s in args.sizes.split(",")):
                        got: dict[str, list[float]] = {}
                        loads = []
                        for _ in range(args.repeat):
                            loads.append(os.getloadavg()[0])
                            page = browser.new_page(viewport={"width": 1280, "height": 720}, device_scale_factor=1)
                            page.goto(url)
                            page.wait_for_function("window.rvReady === true")
                            snap = page.evaluate(large.FANOUT if shape == "fanout" else large.CHAIN, n)
                            got.setdefault("first_paint_ms", []).append(page.evaluate(FIRST_PAINT, snap))
                            m = page.evaluate(EVENTS_MS, page.evaluate(large.EVENTS))
                            assert m["failed"] == 5 and m["running"] == 100, m
                            for k in ("eventsMs", "eventsPaintMs", "perEventMs", "domNodes"):
                                got.setdefault(k, []).append(m[k])
                            page.close()
                        row = {"shape": shape, "steps": n, "load": round(statistics.median(loads), 2),
                               "widgets": args.widgets or "nbpipe/widgets",
                               **{k: round(statistics.median(v), 1) for k, v in got.items()}}
                        rows.append(row)
                        print(f"{shape:7} {n:6} steps: first paint {row['first_paint_ms']:7.1f} ms, "
                              f"1,000 events {row['eventsMs']:6.1f} ms ({row['eventsPaintMs']:6.1f} ms to paint), "
                              f"per event {row['perEventMs']:5.2f} ms, {int(row['domNodes'])} step nodes in the DOM "
                              f"(load {row['load']:.1f})", flush=True)
            finally:
                browser.close()
    finally:
        server.shutdown()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
