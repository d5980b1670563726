"""Presigned artifact URLs for clients outside the cluster: a public S3 endpoint.

In a cluster the runner reaches MinIO at an internal address; a notebook outside cannot. With
``NBPIPE_S3_PUBLIC_ENDPOINT`` the store signs download URLs for the public host (a SigV4 signature
covers the host, so rewriting an internal URL afterwards would not work). Tested with a real S3
server (moto) at 127.0.0.1 as "the cluster's" address and a TCP proxy on 127.0.0.2 as the public
address; moto does not check presigned signatures, so each URL's SigV4 signature is also checked
here against the host it is used with. The runner is a real process on the S3 store; the client
follows its redirect.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from runner_process import RunnerProcess
from test_store_s3 import ACCESS, CREDENTIAL_VARS, SECRET, start_moto, stop

from nbpipe import component, pipeline
from nbpipe.stores import open_store
from nbpipe.stores.s3 import S3Store, S3StoreError


class Proxy:
    """A TCP forwarder on ``host``: the public address of the S3 server (bytes pass unchanged)."""

    def __init__(self, host: str, target: tuple[str, int]):
        self.target = target
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        self.connections = 0
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self.target)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()


@pytest.fixture(scope="module")
def s3() -> Iterator[tuple[str, Proxy]]:
    """moto at 127.0.0.1 ("the cluster's" address) and its public proxy at 127.0.0.2."""
    proc, url = start_moto()
    parts = urlsplit(url)
    proxy = Proxy("127.0.0.2", (parts.hostname or "127.0.0.1", parts.port or 80))
    yield url, proxy
    proxy.close()
    stop(proc)


@pytest.fixture
def creds(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NBPIPE_S3_ACCESS_KEY", ACCESS)
    monkeypatch.setenv("NBPIPE_S3_SECRET_KEY", SECRET)


def sigv4_valid(url: str, host: str, secret: str = SECRET) -> bool:
    """Whether a presigned GET ``url`` arriving with ``Host: host`` has a valid signature (AWS SigV4,
    query-string form, written from the AWS spec: what S3/MinIO check; moto does not check
    presigned URLs, even with its IAM authentication on)."""
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    given = dict(params).get("X-Amz-Signature", "")
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
                     for k, v in sorted(p for p in params if p[0] != "X-Amz-Signature"))
    signed = dict(params)["X-Amz-SignedHeaders"]
    assert signed == "host", signed  # presigned GETs sign the host header only
    canonical = "\n".join(["GET", parts.path, query, f"host:{host}", "", signed, "UNSIGNED-PAYLOAD"])
    date, scope = dict(params)["X-Amz-Date"], dict(params)["X-Amz-Credential"].split("/", 1)[1]
    to_sign = "\n".join(["AWS4-HMAC-SHA256", date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), given)


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_urls_are_signed_for_the_public_endpoint_and_work_through_it(s3: tuple[str, Proxy], creds: None) -> None:
    internal, proxy = s3
    store = S3Store(internal, "nbpipe-public", prefix=f"t-{uuid.uuid4().hex[:8]}", public_endpoint=proxy.url)
    info = store.put_bytes(b"bytes for a browser outside the cluster")
    url = store.url_for(info.key, expires=120)
    assert url is not None and urlsplit(url).netloc == urlsplit(proxy.url).netloc  # carries the public host
    public_host, internal_host = urlsplit(proxy.url).netloc, urlsplit(internal).netloc
    assert sigv4_valid(url, public_host) and not sigv4_valid(url, internal_host)  # signed for the public host
    before = proxy.connections
    assert _get(url) == (200, b"bytes for a browser outside the cluster")
    assert proxy.connections > before  # fetched through the public address
    # rewriting a URL signed for the internal host would not do: the signature covers the host
    inside = S3Store(internal, "nbpipe-public", prefix=store.prefix, public_endpoint="")
    internal_url = inside.url_for(info.key, expires=120)
    assert sigv4_valid(internal_url, internal_host)
    assert not sigv4_valid(internal_url.replace(internal_host, public_host), public_host)
    # the setting travels in the store's config and comes from the environment too
    assert open_store(store.config()).url_for(info.key).startswith(proxy.url + "/")


def test_public_endpoint_from_the_environment_off_and_bad_values(s3: tuple[str, Proxy], creds: None,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    internal, proxy = s3
    monkeypatch.setenv("NBPIPE_S3_PUBLIC_ENDPOINT", proxy.url)
    store = S3Store(internal, "nbpipe-public")
    assert store.url_for(store.put_bytes(b"x").key).startswith(proxy.url + "/")
    monkeypatch.setenv("NBPIPE_S3_PUBLIC_ENDPOINT", "off")
    assert S3Store(internal, "nbpipe-public").url_for(store.put_bytes(b"x").key) is None  # the runner streams
    monkeypatch.setenv("NBPIPE_S3_PUBLIC_ENDPOINT", "ftp://s3.example.org/bucket")
    with pytest.raises(S3StoreError, match="is not a server address"):
        S3Store(internal, "nbpipe-public")


@component(cache=False)
def make_blob() -> bytes:
    return b"artifact bytes " * 1000


@pipeline
def blob():
    make_blob()


@pytest.mark.parametrize("public", ["proxy", "off"])
def test_kernel_gets_artifacts_from_a_runner_on_s3_through_the_public_endpoint(
        s3: tuple[str, Proxy], tmp_path: Path, public: str) -> None:
    """The runner answers downloads with a URL signed for the public host (or streams the object when
    the public endpoint is off); the client outside follows it and gets the real bytes."""
    internal, proxy = s3
    env = {"NBPIPE_STORE": "s3", "NBPIPE_S3_ENDPOINT": internal, "NBPIPE_S3_BUCKET": "nbpipe-public",
           "NBPIPE_S3_PREFIX": uuid.uuid4().hex[:8], "NBPIPE_S3_ACCESS_KEY": ACCESS, "NBPIPE_S3_SECRET_KEY": SECRET,
           "NBPIPE_S3_PUBLIC_ENDPOINT": proxy.url if public == "proxy" else "off"}
    runner = RunnerProcess(tmp_path / "runner", extra_env=env).start()
    try:
        client = runner.client()
        run = client.submit(blob).wait(timeout=120)
        digest = run.steps["make_blob"]["outputs"]["output"]["digest"]
        before = proxy.connections
        import httpx

        raw = httpx.get(f"{client.url}/api/v1/artifacts/{digest}", headers=client._http.headers)  # noqa: SLF001
        if public == "proxy":
            assert raw.status_code == 307 and raw.headers["location"].startswith(proxy.url + "/")
            assert sigv4_valid(raw.headers["location"], urlsplit(proxy.url).netloc)
        else:
            assert raw.status_code == 200 and proxy.connections == before
        assert run.output("make_blob") == b"artifact bytes " * 1000
        if public == "proxy":
            assert proxy.connections > before
    finally:
        runner.stop()
