"""Bounded memory: hostile uploads are streamed, a 200 MB log is served without reading it whole.

A 1.1 MiB package that inflates (deflate level 1, ~229:1) to a 250 MiB payload used to cost the
runner ~480 MiB per upload; six at once went to 1.9 GiB. Logs were read whole on the event loop.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import zipfile

import httpx
import psutil

from nbpipe import Dataset, Output, component, pipeline
from nbpipe.package import build_package

MiB = 2**20


@component(cache=False)
def tiny() -> int:
    return 1


@pipeline
def tiny_pipe():
    tiny()


@component(cache=False)
def chatty(mb: int) -> None:
    import sys

    line = ("x" * 1023 + "\n").encode()
    block = line * 1024
    for _ in range(mb):
        sys.stdout.buffer.write(block)
    sys.stdout.flush()


@pipeline
def chatty_pipe(mb: int = 200):
    chatty(mb=mb)


def hostile_package(payload_mb: int = 250) -> bytes:
    """A valid package whose one payload inflates to ``payload_mb`` MiB from ~1 MiB (level 1)."""
    zin = zipfile.ZipFile(io.BytesIO(build_package(tiny_pipe)))
    spec = json.loads(zin.read("nbpipe.json"))
    blob = b"\0" * (payload_mb * MiB)
    digest = hashlib.sha256(blob).hexdigest()
    for comp in spec["components"].values():
        comp["payload"]["digest"] = digest
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("nbpipe.json", json.dumps(spec))
        zf.writestr(zipfile.ZipInfo(f"payloads/{digest}"), blob, compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
    return out.getvalue()


class PeakRSS:
    def __init__(self, pid: int):
        self.proc = psutil.Process(pid)
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(0.02)

    def __enter__(self) -> "PeakRSS":
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def test_six_concurrent_hostile_uploads_keep_the_runner_small(nb_runner_factory) -> None:
    r = nb_runner_factory("uploads")
    data = hostile_package()
    ratio = 250 * MiB / len(data)
    assert len(data) < 1.5 * MiB and ratio > 150
    digest = hashlib.sha256(data).hexdigest()
    codes: list[int] = []
    with PeakRSS(r.pid) as rss:
        def upload() -> None:
            resp = httpx.put(f"{r.url}/api/v1/packages/{digest}", content=data, headers=r.headers(), timeout=300)
            codes.append(resp.status_code)

        threads = [threading.Thread(target=upload) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    print(f"\n6 uploads of a {len(data) / MiB:.2f} MiB package ({ratio:.0f}:1, 250 MiB payload): "
          f"runner peak RSS {rss.peak / MiB:.0f} MiB")
    assert codes == [201] * 6
    assert rss.peak < 300 * MiB
    assert not list((r.data_dir / "uploads").iterdir())  # no temporary file left behind


def test_a_200_mb_log_is_streamed_and_health_stays_responsive(nb_runner_factory) -> None:
    r = nb_runner_factory("logs")
    c = r.client()
    run = c.submit(chatty_pipe, {"mb": 200}).wait(timeout=300)
    size = 200 * MiB
    head = httpx.get(f"{r.url}/api/v1/runs/{run.id}/steps/chatty/logs", params={"limit": 10}, headers=r.headers())
    assert head.text == "x" * 10
    tail = httpx.get(f"{r.url}/api/v1/runs/{run.id}/steps/chatty/logs", params={"offset": size - 5},
                     headers=r.headers())
    assert tail.text == "xxxx\n"
    slowest = 0.0
    got = 0
    with PeakRSS(r.pid) as rss:
        with httpx.stream("GET", f"{r.url}/api/v1/runs/{run.id}/steps/chatty/logs", headers=r.headers(),
                          timeout=120) as resp:
            for i, chunk in enumerate(resp.iter_bytes()):
                got += len(chunk)
                if i % 50 == 0:  # the event loop answers while the download is in flight
                    t0 = time.monotonic()
                    assert httpx.get(f"{r.url}/api/v1/health", timeout=30).status_code == 200
                    slowest = max(slowest, time.monotonic() - t0)
    base = psutil.Process(r.pid).memory_info().rss
    print(f"\n200 MB log: streamed {got / MiB:.0f} MiB, runner peak RSS {rss.peak / MiB:.0f} MiB "
          f"(after: {base / MiB:.0f} MiB), slowest /health during the download {slowest * 1000:.0f} ms")
    assert got == size
    assert rss.peak < 300 * MiB


def test_concurrent_large_model_bundle_uploads_are_streamed(nb_runner_factory) -> None:
    """A model bundle (PUT /endpoints/NAME/versions) may be hundreds of MiB: it is streamed to a file,
    not held whole (three 200 MiB uploads at once used to take the runner past 1 GiB)."""
    r = nb_runner_factory("bundles")
    size = 200 * MiB
    codes: list[tuple[int, str]] = []

    def body():  # a zip of the wrong format: the runner must read all of it before it can say so
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("manifest.json", json.dumps({"format": "not-a-bundle"}))
        head = buf.getvalue()
        block = b"\0" * MiB
        for _ in range(size // MiB):
            yield block
        yield head

    with PeakRSS(r.pid) as rss:
        def upload(i: int) -> None:
            resp = httpx.put(f"{r.url}/api/v1/endpoints/big-{i}/versions", content=body(), timeout=300,
                             headers={**r.headers(), "Content-Type": "application/zip"})
            codes.append((resp.status_code, resp.json()["error"]))

        threads = [threading.Thread(target=upload, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    print(f"\n3 model bundle uploads of {size / MiB:.0f} MiB at once: runner peak RSS {rss.peak / MiB:.0f} MiB")
    assert [c for c, _ in codes] == [400] * 3, codes
    assert all("not an nbpipe endpoint bundle" in e for _, e in codes), codes
    assert rss.peak < 300 * MiB
    assert not list((r.data_dir / "uploads").iterdir())  # no temporary file left behind


@component(cache=False)
def big_artifact(mb: int, data: Output[Dataset]) -> None:
    with open(data.path, "wb") as fh:
        for _ in range(mb):
            fh.write(b"\0" * MiB)


@pipeline
def big_artifact_pipe(mb: int = 250):
    big_artifact(mb=mb)


def test_an_artifact_from_a_store_without_urls_is_streamed(tmp_path) -> None:
    """S3 with NBPIPE_S3_PUBLIC_ENDPOINT=off (or a plugin store) has neither a local file nor a URL for
    an artifact: GET /artifacts/DIGEST read all 250 MiB of it into the runner's memory."""
    import uuid

    from runner_process import RunnerProcess
    from test_store_s3 import ACCESS, SECRET, start_moto, stop

    moto, s3_url = start_moto()
    env = {"NBPIPE_STORE": "s3", "NBPIPE_S3_ENDPOINT": s3_url, "NBPIPE_S3_BUCKET": "nbpipe-memory",
           "NBPIPE_S3_PREFIX": uuid.uuid4().hex[:8], "NBPIPE_S3_ACCESS_KEY": ACCESS, "NBPIPE_S3_SECRET_KEY": SECRET,
           "NBPIPE_S3_PUBLIC_ENDPOINT": "off"}
    r = RunnerProcess(tmp_path / "runner", extra_env=env).start()
    try:
        run = r.client().submit(big_artifact_pipe, {"mb": 250}).wait(timeout=600)
        digest = run.steps["big_artifact"]["outputs"]["data"]["digest"]
        got = 0
        with PeakRSS(r.pid) as rss:
            with httpx.stream("GET", f"{r.url}/api/v1/artifacts/{digest}", headers=r.headers(), timeout=300) as resp:
                assert resp.status_code == 200
                for chunk in resp.iter_bytes():
                    got += len(chunk)
        print(f"\n250 MiB artifact from S3 (no public endpoint): runner peak RSS {rss.peak / MiB:.0f} MiB")
        assert got == 250 * MiB
        assert rss.peak < 300 * MiB
        assert not list((r.data_dir / "uploads").iterdir())  # the temporary copy is gone once sent
    finally:
        r.stop()
        stop(moto)
