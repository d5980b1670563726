"""The kept-alive loopback POST the client submits runs with (nbpipe.loopback_http)."""

from __future__ import annotations

import json
import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nbpipe.client import Client
from nbpipe.errors import RunnerError
from nbpipe.loopback_http import LoopbackPoster


class _Server:
    """Answers each POST with its body echoed, then (``drop``) closes the connection without saying so,
    as a runner does to an idle kept-alive connection."""

    def __init__(self, drop: bool, status: int = 200):
        self.bodies: list[dict] = []
        self.peers: set[int] = set()
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append(body)
                outer.peers.add(self.client_address[1])
                data = json.dumps({"got": body, "message": "refused" if status >= 400 else ""}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
                if drop:
                    self.close_connection = True

            def log_message(self, *a: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("drop", [False, True])
def test_each_post_is_sent_once_on_a_kept_or_a_closed_connection(drop: bool) -> None:
    srv = _Server(drop)
    try:
        p = LoopbackPoster(srv.url, {"Authorization": "Bearer t"}, 10.0)
        for i in range(5):
            status, data = p.post("/api/v1/runs", {"i": i})  # type: ignore[misc]
            assert status == 200 and json.loads(data)["got"] == {"i": i}
            if drop:  # the runner's close has reached this end (as it has once a connection sat idle)
                assert p._conn is not None and select.select([p._conn.sock], [], [], 30)[0]
        assert srv.bodies == [{"i": i} for i in range(5)]  # never resent, never lost
        # kept alive: one connection; closed by the server after each answer: a new one each time
        assert len(srv.peers) == (5 if drop else 1)
        p.close()
    finally:
        srv.close()


def test_client_uses_it_only_for_a_plain_http_loopback_runner() -> None:
    assert LoopbackPoster.usable("http://127.0.0.1:8888") and LoopbackPoster.usable("http://localhost:1")
    assert not LoopbackPoster.usable("https://127.0.0.1:8888")
    assert not LoopbackPoster.usable("http://10.1.2.3:8888")
    assert not LoopbackPoster.usable("http://127.0.0.1:8888/proxy/runner")


def test_client_errors_are_the_same_as_over_httpx() -> None:
    srv = _Server(False, status=400)
    try:
        c = Client(srv.url, token="t")
        assert c._poster is not None
        with pytest.raises(RunnerError, match="^refused"):
            c._post_json("/api/v1/runs", {"x": 1})
        c.close()
    finally:
        srv.close()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    c = Client(f"http://127.0.0.1:{port}", token="t")
    with pytest.raises(RunnerError, match="No runner at"):
        c._post_json("/api/v1/runs", {"x": 1})
