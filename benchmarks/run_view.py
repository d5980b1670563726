"""The run graph in Chromium at scale (issue 14, item 3): first paint and 1,000 events.

``python benchmarks/run_view.py [--sizes 500,2000,10000] [--repeat 3]`` loads the run view (the
widget's and the run page's renderer, ``nbpipe/widgets/run_view.js``) in Debian's headless
Chromium through the browser tests' harness, and for an N-step fan-out snapshot measures, in the
page (``performance.now``):

- **first paint**: ``setSnapshot`` until two animation frames later (script, style, layout, paint);
- **snapshot**: ``setSnapshot`` with a forced reflow (``tests/browser/test_run_view_scale.py``);
- **1,000 events**: 250 steps × (StepStarted, StepLog, ArtifactSaved, StepFinished), applied and
  flushed, then laid out; **per event**: 100 more, each flushed on its own (the live SSE case).

The workload scripts are the browser test's own (imported from it). Medians of ``--repeat``.
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
  const t0 = performance.now();
  view.setSnapshot(snap);
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  return performance.now() - t0;
}"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="500,2000,10000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "run_view.json"))
    args = ap.parse_args()
    conf = _load("rv_conftest", ROOT / "tests" / "browser" / "conftest.py")
    scale = _load("rv_scale", ROOT / "tests" / "browser" / "test_run_view_scale.py")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), conf._Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/harness/harness.html"
    from playwright.sync_api import sync_playwright

    rows = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(conf.CHROMIUM), args=conf.CHROMIUM_ARGS)
            try:
                for n in (int(s) for s in args.sizes.split(",")):
                    got: dict[str, list[float]] = {}
                    for _ in range(args.repeat):
                        page = browser.new_page(viewport={"width": 1280, "height": 720}, device_scale_factor=1)
                        page.goto(url)
                        page.wait_for_function("window.rvReady === true")
                        snap = page.evaluate(scale.FANOUT, n)
                        got.setdefault("first_paint_ms", []).append(page.evaluate(FIRST_PAINT, snap))
                        m = page.evaluate(scale.MEASURE, snap)
                        assert m["nodes"] == n and m["events"] == 1000, m
                        for k in ("setSnapshotMs", "eventsMs", "perEventMs", "sameShapeMs"):
                            got.setdefault(k, []).append(m[k])
                        page.close()
                    row = {"steps": n, "load_before": os.getloadavg()[0],
                           **{k: round(statistics.median(v), 1) for k, v in got.items()}}
                    rows.append(row)
                    print(f"{n:6} steps: first paint {row['first_paint_ms']:7.1f} ms, setSnapshot {row['setSnapshotMs']:7.1f} ms, "
                          f"1,000 events {row['eventsMs']:6.1f} ms, per event {row['perEventMs']:5.2f} ms "
                          f"(load {row['load_before']:.1f})", flush=True)
            finally:
                browser.close()
    finally:
        server.shutdown()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
