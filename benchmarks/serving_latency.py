"""Latency of one small inference request to an nbpipe endpoint (KServe v2 over HTTP, loopback).

Starts a real runner on a fresh data dir, deploys a tiny linear model with ``nbpipe.serve``, then
times N sequential ``POST /v2/models/NAME/infer`` requests (one 1x4 FP32 input) on one keep-alive
connection with httpx, after a warm-up. Prints p50/p90/p99 and, for comparison, the same through
``Endpoint.predict`` (numpy in, numpy out). Usage::

    .venv/bin/python benchmarks/serving_latency.py [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def predict(model, x):
    return x @ model


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    import httpx
    import numpy as np

    from runner_process import RunnerProcess

    from nbpipe.serving import serve

    with tempfile.TemporaryDirectory(prefix="nbpipe-serving-bench-") as tmp:
        os.environ["NBPIPE_HOME"] = tmp
        runner = RunnerProcess(Path(tmp) / "runner").start()
        try:
            client = runner.client()
            t0 = time.perf_counter()
            ep = serve(np.array([[1.0], [2.0], [3.0], [4.0]]), predict=predict, name="bench", runner=client)
            deploy_s = time.perf_counter() - t0
            body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4]}]}
            url = f"{ep.url}/v2/models/bench/infer"
            with httpx.Client(headers={"Authorization": f"Bearer {client.token}"}) as http:
                for _ in range(20):
                    http.post(url, json=body).raise_for_status()
                raw = []
                for _ in range(args.requests):
                    t = time.perf_counter()
                    r = http.post(url, json=body)
                    raw.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200
            X = np.array([[0.1, 0.2, 0.3, 0.4]], dtype=np.float32)
            for _ in range(20):
                ep.predict(X)
            sdk = []
            for _ in range(args.requests):
                t = time.perf_counter()
                ep.predict(X)
                sdk.append((time.perf_counter() - t) * 1000)
        finally:
            runner.stop()

    def q(xs: list[float], p: float) -> float:
        return statistics.quantiles(xs, n=100)[int(p) - 1]

    result = {"requests": args.requests, "deploy_s": round(deploy_s, 3),
              "http_ms": {"p50": round(statistics.median(raw), 3), "p90": round(q(raw, 90), 3),
                          "p99": round(q(raw, 99), 3)},
              "sdk_predict_ms": {"p50": round(statistics.median(sdk), 3), "p90": round(q(sdk, 90), 3)},
              "loadavg": os.getloadavg()}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
